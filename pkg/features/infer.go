package features

import (
	"math"
	"regexp"
	"strconv"
	"strings"
)

// InferOptions tunes schema inference. Zero values select the defaults.
type InferOptions struct {
	// MaxSample is the number of rows examined; longer inputs are sampled
	// with an even stride that keeps their order. Default 100,000.
	MaxSample int
	// Ignore names fields to leave out whatever they look like (e.g. a label column).
	Ignore []string
}

var (
	// Label-like columns are left out: learning from them is not unsupervised.
	labelName = regexp.MustCompile(`(?i)^(label|labels|target|class|y|is_?fraud|fraud.*|.*_fraud.*|is_?flagged_?fraud|anomaly|is_?anomaly|outlier|attack|attack_?cat)$`)
	// Personal data identifies a person, not a behaviour: left out by default.
	piiName = regexp.MustCompile(`(?i)^(first|last|first_?name|last_?name|full_?name|name|surname|street|address|address\d|email|e_?mail|phone|phone_?number|ssn|dob|date_?of_?birth|birth_?date|passport|ip_?address)$`)
	// Identifier-like names.
	idName = regexp.MustCompile(`(?i)(^id$|_id$|id$|^idx$|^index$|^orig_row$|^unnamed: ?\d+$|_num$|^num$|number$|_no$|_nr$|uuid|guid|^key$|_key$|^cc_|card)`)
	// Postal codes are codes, not quantities.
	zipName = regexp.MustCompile(`(?i)^(zip|zip_?code|postcode|postal_?code|post_?code)$`)
	// Names that suggest which id is the transaction and which the entity.
	txIDName   = regexp.MustCompile(`(?i)(trans|tx|txn|transaction).*(id|num|no)$|^(id|transaction_?id|trans_num)$`)
	keyName    = regexp.MustCompile(`(?i)(card|cc_num|customer|account|acct|user|client|name_?orig)`)
	nullTokens = []string{"na", "n/a", "nan", "null", "none", "-", "?", "nil"}
)

// IsNull reports whether a raw value means "missing".
func IsNull(v string) bool {
	if v == "" {
		return true
	}
	if len(v) > 6 {
		return false
	}
	// Every null token starts with one of these (after optional spaces).
	if c := v[0]; c != 'n' && c != 'N' && c != '-' && c != '?' && c != ' ' && c != '\t' {
		return false
	}
	v = strings.TrimSpace(v)
	for _, t := range nullTokens {
		if strings.EqualFold(v, t) { // no allocation, unlike ToLower
			return true
		}
	}
	return v == ""
}

type columnStats struct {
	nonEmpty  int
	distinct  map[string]int
	capped    bool
	numeric   int // values that parse as finite floats
	integer   int // of those, integral
	monotonic bool
	last      float64
	maxAbs    float64
	times     int // values parsed by the candidate layout
	layout    string
	boolean   int
}

const distinctCap = 20000

// InferSchema proposes a schema from a header and sample rows (rows may be
// ragged; missing cells count as empty). It never fails: every column gets a
// kind and a reason, which users review with `trainer schema`.
func InferSchema(names []string, rows [][]string, opt InferOptions) *Schema {
	if opt.MaxSample <= 0 {
		opt.MaxSample = 100000
	}
	stride := 1
	if len(rows) > opt.MaxSample {
		stride = (len(rows) + opt.MaxSample - 1) / opt.MaxSample
	}
	ignore := make(map[string]bool, len(opt.Ignore))
	for _, n := range opt.Ignore {
		ignore[strings.TrimSpace(n)] = true
	}
	stats := make([]columnStats, len(names))
	for i := range stats {
		stats[i] = columnStats{distinct: make(map[string]int), monotonic: true, last: math.Inf(-1)}
	}
	sampled := 0
	for r := 0; r < len(rows); r += stride {
		sampled++
		row := rows[r]
		for c := range names {
			if c >= len(row) || IsNull(row[c]) {
				continue
			}
			observe(&stats[c], strings.TrimSpace(row[c]))
		}
	}
	s := &Schema{Fields: make([]Field, len(names))}
	for c, name := range names {
		f := classify(name, &stats[c], sampled)
		if ignore[name] {
			f.Kind, f.Reason = Ignored, "ignored by request"
		}
		s.Fields[c] = f
	}
	assignRoles(s, stats)
	return s
}

func observe(st *columnStats, v string) {
	st.nonEmpty++
	if !st.capped {
		st.distinct[v]++
		if len(st.distinct) > distinctCap {
			st.capped = true
		}
	}
	if x, err := strconv.ParseFloat(v, 64); err == nil && !math.IsInf(x, 0) && !math.IsNaN(x) {
		st.numeric++
		if x == math.Trunc(x) {
			st.integer++
		}
		if x < st.last {
			st.monotonic = false
		}
		st.last = x
		st.maxAbs = math.Max(st.maxAbs, math.Abs(x))
	} else {
		st.monotonic = false
		switch strings.ToLower(v) {
		case "true", "false", "yes", "no", "t", "f", "y", "n":
			st.boolean++
		}
	}
	if st.numeric == 0 && st.times == st.nonEmpty-1 {
		// Timestamp candidates: every value so far parsed with one layout.
		if st.layout == "" {
			st.layout = detectLayout(v)
		}
		if st.layout != "" {
			if _, ok := parseClock(v, st.layout); ok {
				st.times++
			}
		}
	}
}

func classify(name string, st *columnStats, sampled int) Field {
	f := Field{Name: name}
	distinct := len(st.distinct)
	switch {
	case labelName.MatchString(name):
		f.Kind, f.Reason = Ignored, "looks like a label; learning from it would not be unsupervised"
	case st.nonEmpty == 0:
		f.Kind, f.Reason = Ignored, "always empty"
	case distinct == 1 && !st.capped:
		f.Kind, f.Reason = Ignored, "constant"
	case piiName.MatchString(name):
		f.Kind, f.Reason = Ignored, "personal data: identifies a person, not a behaviour"
	case st.numeric == st.nonEmpty:
		classifyNumeric(name, st, &f)
	case st.times == st.nonEmpty && st.layout != "":
		f.Kind, f.Layout, f.Reason = Timestamp, st.layout, "every value parses as a time"
		if st.layout == "2006-01-02" {
			f.Reason = "dates without a time of day: day of week only"
		}
	case st.numeric >= st.nonEmpty*95/100 && st.numeric > 0:
		classifyNumeric(name, st, &f)
		f.Reason += "; a few non-numeric values are read as missing"
	case st.boolean == st.nonEmpty:
		f.Kind, f.Reason = Categorical, "boolean"
	case distinct > 50 && (st.capped || float64(distinct) > 0.5*float64(st.nonEmpty)):
		f.Kind, f.Reason = ID, "high-cardinality text: an identifier, not a category"
	default:
		f.Kind, f.Reason = Categorical, "text with "+strconv.Itoa(distinct)+" distinct values"
		if st.capped {
			f.Reason = "text with many distinct values"
		}
	}
	_ = sampled
	return f
}

func classifyNumeric(name string, st *columnStats, f *Field) {
	distinct := len(st.distinct)
	integral := st.integer == st.numeric
	lname := strings.ToLower(name)
	switch {
	case zipName.MatchString(name):
		f.Kind, f.Reason = Categorical, "postal code"
	case integral && (strings.Contains(lname, "time") || strings.Contains(lname, "date") || lname == "ts" || strings.Contains(lname, "epoch")) && st.maxAbs >= 1e9 && st.maxAbs < 4e9:
		f.Kind, f.Layout, f.Reason = Timestamp, "unix", "integer Unix seconds"
	case integral && (strings.Contains(lname, "time") || lname == "ts" || strings.Contains(lname, "epoch")) && st.maxAbs >= 1e12 && st.maxAbs < 4e12:
		f.Kind, f.Layout, f.Reason = Timestamp, "unixms", "integer Unix milliseconds"
	case integral && st.maxAbs >= 1e11 && distinct > 50:
		f.Kind, f.Reason = ID, "long integer codes (card or account numbers)"
	case integral && idName.MatchString(name) && distinct >= 50:
		f.Kind, f.Reason = ID, "identifier name with many integer values"
	case st.monotonic && distinct >= 10 && st.nonEmpty >= 100:
		f.Kind, f.Reason = ID, "never decreases across the input: a sequence or time counter that does not generalise"
	default:
		f.Kind, f.Reason = Numeric, "numbers"
		if integral && distinct <= 2 {
			f.Reason = "0/1 flag"
		}
	}
}

// assignRoles names the transaction id, entity key and event time, by name
// and kind, when the schema has obvious candidates.
func assignRoles(s *Schema, stats []columnStats) {
	for i, f := range s.Fields {
		switch f.Kind {
		case ID:
			if s.IDField == "" && txIDName.MatchString(f.Name) {
				s.IDField = f.Name
			} else if s.KeyField == "" && keyName.MatchString(f.Name) {
				s.KeyField = f.Name
			}
		case Timestamp:
			if s.TimeField == "" && stats[i].layout != "2006-01-02" {
				s.TimeField = f.Name
			}
		}
	}
}
