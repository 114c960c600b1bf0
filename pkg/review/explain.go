package review

import (
	"math"
	"strconv"
	"strings"
)

// Reason is one field's part in an alert, as the alerts topic carries it.
type Reason struct {
	Field        string   `json:"field"`
	Contribution float32  `json:"contribution"`
	Observed     string   `json:"observed"`
	Expected     string   `json:"expected"`
	Probability  *float32 `json:"probability,omitempty"`
	Note         string   `json:"note,omitempty"`
}

// unseenExpected is what the scorer writes for an expected category the
// model knows only as "not in its vocabulary" (model.UnseenValue).
const unseenExpected = "a value not seen in training"

// Explain says a reason in plain words for an analyst: "amount 872.14
// where about 216 is typical", "country BR, a value the model gave 0.1%
// here (US expected)". It never shows the encoder's internal levels
// (<OTHER>, <MISSING>).
func Explain(r Reason) string {
	obs := strings.TrimSpace(r.Observed)
	exp := strings.TrimSpace(r.Expected)
	internal := func(s string) bool { return s == "<OTHER>" || s == "<MISSING>" }
	switch exp {
	case "<OTHER>":
		exp = unseenExpected
	case "<MISSING>":
		exp = ""
	}
	var b strings.Builder
	b.WriteString(r.Field)
	switch {
	case r.Note == "missing" || obs == "":
		b.WriteString(" is missing")
		if exp != "" && exp != unseenExpected {
			b.WriteString("; about " + about(exp) + " is typical")
		}
		return b.String()
	case r.Probability != nil || r.Note == "not seen in training":
		// A category.
		b.WriteString(" " + obs)
		if r.Note == "not seen in training" || internal(obs) {
			b.WriteString(", a value not seen in training")
		} else if r.Probability != nil {
			b.WriteString(", a value the model gave " + percent(float64(*r.Probability)) + " here")
		}
		switch exp {
		case "":
			b.WriteString(" (usually missing)")
		case unseenExpected:
			b.WriteString(" (a rarer value expected)")
		default:
			b.WriteString(" (" + exp + " expected)")
		}
	default:
		b.WriteString(" " + obs)
		if exp != "" {
			b.WriteString(" where about " + about(exp) + " is typical")
		}
		if r.Note != "" {
			b.WriteString("; " + r.Note)
		}
	}
	return b.String()
}

// about rounds a number to three significant digits ("216.4189" → "216");
// anything else is returned as it is.
func about(s string) string {
	x, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
		return s
	}
	if x == 0 {
		return "0"
	}
	e := int(math.Floor(math.Log10(math.Abs(x)))) - 2
	mag := math.Pow(10, float64(e))
	return strconv.FormatFloat(math.Round(x/mag)*mag, 'f', max(-e, 0), 64)
}

// percent writes a probability as a percentage with two significant
// digits: 0.1%, 12%, 0.0042%.
func percent(p float64) string {
	if p <= 0 {
		return "0%"
	}
	return strconv.FormatFloat(p*100, 'g', 2, 64) + "%"
}
