package review

import "testing"

func TestExplain(t *testing.T) {
	p := func(x float32) *float32 { return &x }
	for _, c := range []struct {
		r    Reason
		want string
	}{
		{Reason{Field: "amount", Observed: "872.14", Expected: "216.4189"}, "amount 872.14 where about 216 is typical"},
		{Reason{Field: "amount", Observed: "9000", Expected: "4870.2", Note: "above the training range (max 5000)"},
			"amount 9000 where about 4870 is typical; above the training range (max 5000)"},
		{Reason{Field: "country", Observed: "BR", Expected: "US", Probability: p(0.001)}, "country BR, a value the model gave 0.1% here (US expected)"},
		{Reason{Field: "country", Observed: "XX", Expected: "US", Probability: p(0.02), Note: "not seen in training"}, "country XX, a value not seen in training (US expected)"},
		{Reason{Field: "mcc", Observed: "5411", Expected: "a value not seen in training", Probability: p(0.3)}, "mcc 5411, a value the model gave 30% here (a rarer value expected)"},
		{Reason{Field: "mcc", Observed: "5411", Expected: "<OTHER>", Probability: p(0.3)}, "mcc 5411, a value the model gave 30% here (a rarer value expected)"},
		{Reason{Field: "mcc", Observed: "<OTHER>", Expected: "<MISSING>", Probability: p(0.3)}, "mcc <OTHER>, a value not seen in training (usually missing)"},
		{Reason{Field: "amount", Observed: "", Expected: "12.5", Note: "missing"}, "amount is missing; about 12.5 is typical"},
		{Reason{Field: "amount", Observed: "0.5", Expected: "0.0123456"}, "amount 0.5 where about 0.0123 is typical"},
		{Reason{Field: "amount", Observed: "8.76", Expected: "23.2000001"}, "amount 8.76 where about 23.2 is typical"},
		{Reason{Field: "amount", Observed: "1e6", Expected: "12465.32"}, "amount 1e6 where about 12500 is typical"},
	} {
		if got := Explain(c.r); got != c.want {
			t.Errorf("Explain(%+v)\n got %q\nwant %q", c.r, got, c.want)
		}
	}
}
