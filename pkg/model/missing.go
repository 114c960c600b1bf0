package model

// Missing reports whether learned field f of slot i was encoded as missing:
// empty, null or a value that did not parse.
func (s *Scorer) Missing(i, f int) bool { return s.d.Miss[i*s.nf+f] }
