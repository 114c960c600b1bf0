// Package generator makes realistic synthetic card transactions with
// injected fraud and known ground truth, for the local demo and load tests.
//
// Normal traffic: cards with a home country, a usual channel and a typical
// spend; merchants with a category and a country; amounts log-normal per
// category and card; activity peaking in the day. Fraud (Rate of the
// traffic, 0.5% by default) follows four patterns, each visible in the
// transaction's own fields:
//
//   - card testing: tiny online amounts at digital-goods merchants, at night;
//   - account takeover: a card used abroad, online, on a new device type,
//     for a large amount;
//   - merchant compromise: a compromised merchant's terminal charging
//     unusual amounts in a category that does not match it;
//   - amount spike: 10–40 times the card's usual spend.
//
// A Generator is deterministic for a seed and not safe for concurrent use.
package generator

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Pattern names a fraud pattern ("" for a normal transaction).
type Pattern string

const (
	CardTesting        Pattern = "card_testing"
	AccountTakeover    Pattern = "account_takeover"
	MerchantCompromise Pattern = "merchant_compromise"
	AmountSpike        Pattern = "amount_spike"
)

// Transaction is one generated card transaction, as produced to Kafka.
type Transaction struct {
	ID        string    `json:"tx_id"`
	Card      string    `json:"card_id"`
	Merchant  string    `json:"merchant_id"`
	Category  string    `json:"mcc"`
	Amount    float64   `json:"amount"`
	Currency  string    `json:"currency"`
	Country   string    `json:"country"`
	Channel   string    `json:"channel"`
	Device    string    `json:"device"`
	EntryMode string    `json:"entry_mode"`
	Time      time.Time `json:"event_time"`
}

// Config tunes a Generator. Zero values select the defaults.
type Config struct {
	Seed uint64
	// Cards and Merchants size the population. Defaults 20,000 and 2,000.
	Cards, Merchants int
	// Rate is the share of fraudulent transactions. Default 0.005.
	Rate float64
}

type card struct {
	id      string
	country string
	channel string
	device  string
	spend   float64 // typical amount multiplier
}

type merchant struct {
	id       string
	category int
	country  string
}

var (
	categories = []struct {
		name   string
		median float64
		online bool
	}{
		{"grocery", 35, false}, {"fuel", 45, false}, {"restaurant", 28, false}, {"pharmacy", 22, false},
		{"apparel", 60, true}, {"electronics", 180, true}, {"travel", 320, true}, {"digital_goods", 12, true},
		{"utilities", 90, true}, {"entertainment", 25, true}, {"home", 85, false}, {"jewelry", 250, false},
	}
	countries = []string{"FR", "FR", "FR", "DE", "DE", "BE", "ES", "IT", "NL"}
	abroad    = []string{"NG", "RU", "BR", "VN", "US", "CN", "ID"}
	devices   = []string{"ios", "android", "web", "pos_terminal"}
)

// Generator produces transactions.
type Generator struct {
	rng       *rand.Rand
	cards     []card
	merchants []merchant
	rate      float64
	seq       int64
}

// New builds the card and merchant population.
func New(cfg Config) *Generator {
	if cfg.Cards <= 0 {
		cfg.Cards = 20000
	}
	if cfg.Merchants <= 0 {
		cfg.Merchants = 2000
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 0.005
	}
	g := &Generator{rng: rand.New(rand.NewPCG(cfg.Seed, 0x5eed)), rate: cfg.Rate}
	for i := range cfg.Cards {
		c := card{id: fmt.Sprintf("card-%06d", i), country: countries[g.rng.IntN(len(countries))], spend: math.Exp(0.4 * g.rng.NormFloat64())}
		if g.rng.Float64() < 0.6 {
			c.channel, c.device = "pos", "pos_terminal"
		} else {
			c.channel, c.device = "online", devices[g.rng.IntN(3)]
		}
		g.cards = append(g.cards, c)
	}
	for i := range cfg.Merchants {
		g.merchants = append(g.merchants, merchant{id: fmt.Sprintf("m-%05d", i), category: g.rng.IntN(len(categories)), country: countries[g.rng.IntN(len(countries))]})
	}
	return g
}

// Next returns the next transaction at time now and its fraud pattern
// ("" when it is normal).
func (g *Generator) Next(now time.Time) (Transaction, Pattern) {
	g.seq++
	c := g.cards[g.rng.IntN(len(g.cards))]
	m := g.merchants[g.rng.IntN(len(g.merchants))]
	cat := categories[m.category]
	t := Transaction{ID: fmt.Sprintf("tx-%010d", g.seq), Card: c.id, Merchant: m.id, Category: cat.name, Currency: "EUR",
		Country: m.country, Channel: c.channel, Device: c.device, EntryMode: "chip", Time: g.daytime(now)}
	if cat.online {
		t.Channel, t.EntryMode = "online", "ecom"
		if t.Device == "pos_terminal" {
			t.Device = "web"
		}
	} else if t.Channel == "online" {
		t.Channel, t.Device = "pos", "pos_terminal"
	}
	if t.Channel == "pos" && g.rng.Float64() < 0.3 {
		t.EntryMode = "contactless"
	}
	t.Amount = round2(cat.median * c.spend * math.Exp(0.5*g.rng.NormFloat64()))
	if g.rng.Float64() >= g.rate {
		return t, ""
	}
	p := []Pattern{CardTesting, AccountTakeover, MerchantCompromise, AmountSpike}[g.rng.IntN(4)]
	switch p {
	case CardTesting:
		t.Category, t.Channel, t.EntryMode, t.Device = "digital_goods", "online", "ecom", "web"
		t.Amount = round2(0.5 + g.rng.Float64()*1.5)
		t.Time = atNight(t.Time, g.rng)
	case AccountTakeover:
		t.Country = abroad[g.rng.IntN(len(abroad))]
		t.Channel, t.EntryMode = "online", "ecom"
		t.Device = []string{"android", "web"}[g.rng.IntN(2)]
		t.Category = []string{"electronics", "jewelry", "travel"}[g.rng.IntN(3)]
		t.Amount = round2(800 + g.rng.Float64()*2500)
	case MerchantCompromise:
		t.EntryMode = "magstripe"
		t.Channel, t.Device = "pos", "pos_terminal"
		t.Category = "fuel"
		t.Amount = round2(400 + g.rng.Float64()*600)
	case AmountSpike:
		t.Amount = round2(t.Amount * (10 + 30*g.rng.Float64()))
	}
	return t, p
}

// JSON encodes a transaction as a Kafka message value.
func (t Transaction) JSON() []byte {
	b, _ := json.Marshal(t)
	return b
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }

// daytime puts a normal transaction on now's date at an hour drawn from a
// daily profile (busy from 8 to 22, quiet at night), so that a short demo
// still sees a realistic spread of hours.
func (g *Generator) daytime(now time.Time) time.Time {
	y, m, d := now.UTC().Date()
	h := 8 + g.rng.Float64()*14
	if g.rng.Float64() < 0.03 {
		h = g.rng.Float64() * 8 // a few honest night owls
	}
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Add(time.Duration(h * float64(time.Hour)))
}

// atNight moves a time to between 01:00 and 05:00 of its day.
func atNight(t time.Time, rng *rand.Rand) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 1+rng.IntN(4), rng.IntN(60), rng.IntN(60), 0, time.UTC)
}
