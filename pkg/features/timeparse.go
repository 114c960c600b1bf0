package features

import (
	"math"
	"strconv"
	"time"
)

// Time layouts recognised by inference, most specific first.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04",
	"2006/01/02 15:04:05",
	"01/02/2006 15:04:05",
	"01/02/2006 15:04",
	"02.01.2006 15:04:05",
	"2006-01-02",
}

// clock is the part of a timestamp the encoder uses: wall-clock hour (with
// fraction) and weekday, in the offset the timestamp was written in.
type clock struct {
	hour    float64
	weekday int // 0 = Sunday
	unix    int64
	ms      int64 // the milliseconds past unix (0-999)
}

// parseClock parses s with layout without allocating on the common
// ISO-8601 shapes; other layouts go through time.Parse.
func parseClock(s, layout string) (clock, bool) {
	switch layout {
	case "unix", "unixms":
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return clock{}, false
		}
		if layout == "unixms" {
			v /= 1000
		}
		// Finite and within ±3000 years of 1970: Inf or a unit mix-up is bad data.
		if !(v > -1e11 && v < 1e11) {
			return clock{}, false
		}
		sec := math.Floor(v)
		c := clockFromUnix(int64(sec), v-sec)
		// Truncated as the other layouts' digits are, past the binary
		// error (0.123 s is 0.12299…; float64 holds a time of this
		// century to about 0.25 µs): a microsecond of slack.
		c.ms = min(int64(math.Floor((v-sec)*1000+1e-3)), 999)
		return c, true
	}
	if len(layout) >= 10 && layout[:10] == "2006-01-02" {
		// The ISO layouts: parse directly, without allocating.
		c, ok := parseISO(s)
		return c, ok
	}
	t, err := time.Parse(layout, s)
	if err != nil {
		return clock{}, false
	}
	h, m, sec := t.Clock()
	return clock{hour: float64(h) + float64(m)/60 + float64(sec)/3600, weekday: int(t.Weekday()), unix: t.Unix(), ms: int64(t.Nanosecond() / 1e6)}, true
}

func clockFromUnix(sec int64, frac float64) clock {
	days := sec / 86400
	rem := sec % 86400
	if rem < 0 {
		rem += 86400
		days--
	}
	wd := int((days + 4) % 7) // 1970-01-01 was a Thursday
	if wd < 0 {
		wd += 7
	}
	return clock{hour: (float64(rem) + frac) / 3600, weekday: wd, unix: sec}
}

// parseISO handles YYYY-MM-DD[( |T)HH:MM[:SS[.fff]]][Z|±hh:mm] directly.
func parseISO(s string) (clock, bool) {
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return clock{}, false
	}
	y, ok1 := digits(s[0:4])
	mo, ok2 := digits(s[5:7])
	d, ok3 := digits(s[8:10])
	if !ok1 || !ok2 || !ok3 || mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) {
		return clock{}, false
	}
	var h, mi, sec int
	var frac float64
	var ms int64
	rest := s[10:]
	if len(rest) > 0 {
		if len(rest) < 6 || (rest[0] != ' ' && rest[0] != 'T') || rest[3] != ':' {
			return clock{}, false
		}
		var ok bool
		if h, ok = digits(rest[1:3]); !ok || h > 23 {
			return clock{}, false
		}
		if mi, ok = digits(rest[4:6]); !ok || mi > 59 {
			return clock{}, false
		}
		rest = rest[6:]
		if len(rest) >= 3 && rest[0] == ':' {
			if sec, ok = digits(rest[1:3]); !ok || sec > 59 {
				return clock{}, false
			}
			rest = rest[3:]
			if len(rest) > 1 && rest[0] == '.' {
				i := 1
				scale := 0.1
				for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
					frac += float64(rest[i]-'0') * scale
					if i <= 3 {
						ms += int64(rest[i]-'0') * msPlace[i]
					}
					scale /= 10
					i++
				}
				if i == 1 {
					return clock{}, false
				}
				rest = rest[i:]
			}
		}
	}
	offset := 0
	switch {
	case rest == "" || rest == "Z" || rest == "z":
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, ok1 := digits(rest[1:3])
		om, ok2 := digits(rest[4:6])
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return clock{}, false
		}
		offset = oh*3600 + om*60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return clock{}, false
	}
	days := daysFromCivil(y, mo, d)
	wd := int((days + 4) % 7)
	if wd < 0 {
		wd += 7
	}
	wall := int64(h*3600 + mi*60 + sec)
	return clock{
		hour:    (float64(wall) + frac) / 3600,
		weekday: wd,
		unix:    days*86400 + wall - int64(offset),
		ms:      ms,
	}, true
}

// msPlace[i] is what the i-th digit after the dot counts in milliseconds.
var msPlace = [4]int64{0, 100, 10, 1}

func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// daysFromCivil returns days since 1970-01-01 (Howard Hinnant's algorithm).
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era*146097 + doe - 719468)
}

// ParseTime parses a timestamp field value with its layout, to the
// millisecond: entity states keep event times in milliseconds, and a
// burst within one second (a card being tested) keeps its order in time
// rather than falling back on the order the records were read in.
func ParseTime(s, layout string) (time.Time, bool) {
	c, ok := parseClock(s, layout)
	if !ok {
		return time.Time{}, false
	}
	return time.UnixMilli(c.unix*1000 + c.ms).UTC(), true
}

// detectLayout returns the first known layout that parses s.
func detectLayout(s string) string {
	for _, l := range timeLayouts {
		if _, err := time.Parse(l, s); err == nil {
			return l
		}
	}
	return ""
}
