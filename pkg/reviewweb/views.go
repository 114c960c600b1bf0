package reviewweb

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fraudstream/fraudstream/pkg/casework"
	"github.com/fraudstream/fraudstream/pkg/labels"
	"github.com/fraudstream/fraudstream/pkg/review"
)

var funcs = template.FuncMap{
	"pct":  func(x float64) string { return strconv.FormatFloat(100*x, 'f', 0, 64) + "%" },
	"f3":   func(x float32) string { return strconv.FormatFloat(float64(x), 'g', 4, 32) },
	"f2":   func(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) },
	"esc":  url.PathEscape,
	"inc":  func(i int) int { return i + 1 },
	"ago":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	"join": func(s []string) string { return strings.Join(s, ", ") },
}

// Field is one field of a transaction, in its order in the record.
type Field struct{ Name, Value string }

// fields lists a JSON object's fields in their order.
func fields(raw json.RawMessage) []Field {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	var out []Field
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return out
		}
		var v any
		if dec.Decode(&v) != nil {
			return out
		}
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case nil:
			s = ""
		default:
			b, _ := json.Marshal(x)
			s = string(b)
		}
		out = append(out, Field{fmt.Sprint(k), s})
	}
	return out
}

// CaseView is a case as the pages and the API show it.
type CaseView struct {
	ID           string          `json:"id"`
	Position     int             `json:"-"`
	Score        float32         `json:"score"`
	Threshold    float32         `json:"threshold"`
	ModelVersion string          `json:"model_version"`
	EventTime    string          `json:"event_time,omitempty"`
	EntityKey    string          `json:"entity_key,omitempty"`
	Cluster      int             `json:"cluster"`
	Priority     float64         `json:"priority"`
	Prob         *float64        `json:"fraud_probability,omitempty"`
	Raised       string          `json:"raised,omitempty"`
	Reasons      []ReasonView    `json:"reasons"`
	Transaction  json.RawMessage `json:"transaction"`
	Fields       []Field         `json:"-"`
	Label        *labels.Label   `json:"label,omitempty"`
	Received     time.Time       `json:"received"`
	Keys         []string        `json:"entity_keys,omitempty"`
}

// ReasonView is a reason with its plain-words text.
type ReasonView struct {
	review.Reason
	Text string `json:"text"`
}

func view(c *casework.Case) CaseView {
	v := CaseView{ID: c.ID(), Score: c.Score, Threshold: c.Threshold, ModelVersion: c.ModelVersion, EventTime: c.EventTime,
		EntityKey: c.EntityKey, Cluster: c.Cluster, Priority: c.Priority, Prob: c.Prob, Raised: c.Raised,
		Transaction: c.Transaction, Fields: fields(c.Transaction), Label: c.Label, Received: c.Received, Keys: c.Keys}
	for _, r := range c.Reasons {
		v.Reasons = append(v.Reasons, ReasonView{r, review.Explain(r)})
	}
	return v
}

func (s *Server) queue(r *http.Request) ([]CaseView, int64, error) {
	n := s.cfg.QueueSize
	if q := r.URL.Query().Get("n"); q != "" {
		if v, err := strconv.Atoi(q); err == nil && v > 0 {
			n = min(v, 500)
		}
	}
	cases, err := s.svc.Queue(r.Context(), n)
	if err != nil {
		return nil, 0, err
	}
	pending, err := s.svc.Pending(r.Context())
	if err != nil {
		return nil, 0, err
	}
	out := make([]CaseView, len(cases))
	for i, c := range cases {
		out[i] = view(c)
		out[i].Position = i
	}
	return out, pending, nil
}

func (s *Server) unavailable(w http.ResponseWriter, err error) {
	s.log.Error("the queue store failed", "err", err)
	http.Error(w, "the queue is unavailable right now; try again", http.StatusServiceUnavailable)
}

func (s *Server) queuePage(w http.ResponseWriter, r *http.Request) {
	cases, pending, err := s.queue(r)
	if err != nil {
		s.unavailable(w, err)
		return
	}
	s.render(w, "queue.html", map[string]any{"User": user(r), "Cases": cases, "Pending": pending, "Reranker": s.svc.Reranker()})
}

// CaseDetail is the case page's content.
type CaseDetail struct {
	Case     CaseView        `json:"case"`
	History  []labels.Label  `json:"history"`
	Similar  []SimilarView   `json:"similar"`
	Entities []EntityHistory `json:"entity_history"`
	Prev     string          `json:"prev,omitempty"`
	Next     string          `json:"next,omitempty"`
}

// SimilarView is a near transaction.
type SimilarView struct {
	ID       string  `json:"id"`
	Distance float64 `json:"distance"`
	Score    float32 `json:"score"`
	At       string  `json:"event_time,omitempty"`
	Label    string  `json:"label,omitempty"`
	Fields   []Field `json:"-"`
}

// EntityHistory is an entity's recent transactions.
type EntityHistory struct {
	Key          string        `json:"key"`
	Transactions []SimilarView `json:"transactions"`
}

func entryView(e review.Entry) SimilarView {
	v := SimilarView{ID: e.ID, Score: e.Score, Fields: fields(e.Raw)}
	if !e.At.IsZero() {
		v.At = e.At.UTC().Format("2006-01-02 15:04:05")
	}
	return v
}

func (s *Server) detail(r *http.Request, id string) (CaseDetail, error) {
	c, err := s.svc.Get(r.Context(), id)
	if err != nil {
		return CaseDetail{}, err
	}
	d := CaseDetail{Case: view(c)}
	if d.History, err = s.svc.History(r.Context(), id); err != nil {
		return d, err
	}
	sim, err := s.svc.Similar(r.Context(), c, 10)
	if err != nil {
		return d, err
	}
	for _, h := range sim {
		v := entryView(h.Entry)
		v.Distance, v.Label = h.Distance, h.Label
		d.Similar = append(d.Similar, v)
	}
	hist := s.svc.EntityHistory(c, 10)
	for _, k := range c.Keys {
		eh := EntityHistory{Key: k}
		for _, e := range hist[k] {
			eh.Transactions = append(eh.Transactions, entryView(e))
		}
		d.Entities = append(d.Entities, eh)
	}
	d.Prev, d.Next, err = s.svc.Neighbours(r.Context(), id, 4*s.cfg.QueueSize)
	return d, err
}

func (s *Server) casePage(w http.ResponseWriter, r *http.Request) {
	d, err := s.detail(r, r.PathValue("id"))
	if errors.Is(err, casework.ErrNoCase) {
		http.Error(w, "no case for transaction "+r.PathValue("id"), http.StatusNotFound)
		return
	}
	if err != nil {
		s.unavailable(w, err)
		return
	}
	s.render(w, "case.html", map[string]any{"User": user(r), "D": d, "Flash": r.URL.Query().Get("labelled")})
}

func (s *Server) labelSubmit(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	l, code, err := s.label(r.Context(), user(r), id, r.PostFormValue("label"), r.PostFormValue("note"))
	if err != nil {
		http.Error(w, err.Error(), code)
		return
	}
	switch next := r.PostFormValue("next"); {
	case next == "queue" || next == "":
		http.Redirect(w, r, "/queue?labelled="+url.QueryEscape(id+" "+l.Label), http.StatusSeeOther)
	default:
		http.Redirect(w, r, "/cases/"+url.PathEscape(next)+"?labelled="+url.QueryEscape(id+" "+l.Label), http.StatusSeeOther)
	}
}

func (s *Server) clustersPage(w http.ResponseWriter, r *http.Request) {
	cs, err := s.svc.Clusters(r.Context(), 3)
	if err != nil {
		s.unavailable(w, err)
		return
	}
	s.render(w, "clusters.html", map[string]any{"User": user(r), "Clusters": clusterViews(cs)})
}

// ClusterView is a cluster as the pages and the API show it.
type ClusterView struct {
	ID            int              `json:"id"`
	Pending       int64            `json:"pending"`
	Labelled      map[string]int64 `json:"labelled"`
	LabelledShare float64          `json:"labelled_share"`
	Reasons       []string         `json:"typical_reasons"`
	Sample        []CaseView       `json:"sample"`
}

func clusterViews(cs []casework.ClusterInfo) []ClusterView {
	out := make([]ClusterView, len(cs))
	for i, c := range cs {
		out[i] = clusterView(c)
	}
	return out
}

func clusterView(c casework.ClusterInfo) ClusterView {
	v := ClusterView{ID: c.ID, Pending: c.Pending, Labelled: c.Labelled, LabelledShare: c.LabelledShare(), Reasons: c.Reasons}
	for _, x := range c.Sample {
		v.Sample = append(v.Sample, view(x))
	}
	return v
}

func (s *Server) clusterPage(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("c"))
	if err != nil {
		http.Error(w, "no such cluster", http.StatusNotFound)
		return
	}
	c, err := s.svc.Cluster(r.Context(), id, 10)
	if err != nil {
		s.unavailable(w, err)
		return
	}
	s.render(w, "cluster.html", map[string]any{"User": user(r), "C": clusterView(c), "Flash": r.URL.Query().Get("labelled")})
}

func (s *Server) clusterLabelSubmit(w http.ResponseWriter, r *http.Request) {
	c := r.PathValue("c")
	n, code, err := s.clusterLabel(r.Context(), user(r), c, r.PostFormValue("label"), r.PostFormValue("note"))
	if err != nil {
		http.Error(w, err.Error(), code)
		return
	}
	http.Redirect(w, r, "/clusters/"+url.PathEscape(c)+"?labelled="+strconv.Itoa(n), http.StatusSeeOther)
}

func (s *Server) apiQueue(w http.ResponseWriter, r *http.Request) {
	cases, pending, err := s.queue(r)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"pending": pending, "cases": cases})
}

func (s *Server) apiCase(w http.ResponseWriter, r *http.Request) {
	d, err := s.detail(r, r.PathValue("id"))
	switch {
	case errors.Is(err, casework.ErrNoCase):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no case for transaction " + r.PathValue("id")})
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	default:
		writeJSON(w, http.StatusOK, d)
	}
}

func (s *Server) apiLabel(w http.ResponseWriter, r *http.Request) {
	var in struct{ Label, Note string }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want JSON {\"label\",\"note\"}"})
		return
	}
	l, code, err := s.label(r.Context(), user(r), r.PathValue("id"), in.Label, in.Note)
	if err != nil {
		writeJSON(w, code, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) apiClusters(w http.ResponseWriter, r *http.Request) {
	cs, err := s.svc.Clusters(r.Context(), 3)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"clusters": clusterViews(cs)})
}

func (s *Server) apiClusterLabel(w http.ResponseWriter, r *http.Request) {
	var in struct{ Label, Note string }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want JSON {\"label\",\"note\"}"})
		return
	}
	n, code, err := s.clusterLabel(r.Context(), user(r), r.PathValue("c"), in.Label, in.Note)
	if err != nil {
		writeJSON(w, code, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"labelled": n})
}

func (s *Server) apiAudit(w http.ResponseWriter, r *http.Request) {
	ev, err := s.svc.Audit(r.Context(), 200)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	out := make([]json.RawMessage, len(ev))
	for i, e := range ev {
		out[i] = json.RawMessage(e)
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": out})
}
