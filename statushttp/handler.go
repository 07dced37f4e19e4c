package statushttp

import (
	"cmp"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/roster-sd/roster/discovery"
)

// Handler is the http.Handler of a process's registration status (see the
// package documentation). It reads the backend at each request and starts
// no goroutine. It is safe for concurrent use.
type Handler struct {
	status discovery.StatusReporter
	facts  discovery.FactsReporter // nil if the backend has none
}

var _ http.Handler = (*Handler)(nil)

// New returns a Handler of the registrations of status, with the backend
// facts of status if it implements discovery.FactsReporter.
func New(status discovery.StatusReporter) *Handler {
	facts, _ := status.(discovery.FactsReporter)
	return &Handler{status: status, facts: facts}
}

// Report is what the Handler answers, and its JSON document.
type Report struct {
	// Ready is the probe rule's verdict: the status code is 200 if true,
	// 503 if false.
	Ready bool `json:"ready"`
	// Reason explains Ready in a sentence.
	Reason string `json:"reason"`
	// Registrations are the registrations the process holds, sorted by
	// service and ID.
	Registrations []Registration `json:"registrations"`
	// Backend holds the backend's facts, if it reports them.
	Backend *Backend `json:"backend,omitempty"`
}

// Registration is the status of one registration.
type Registration struct {
	Service  string            `json:"service"`
	ID       string            `json:"id"`
	Address  string            `json:"address"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// State is the state's name: registering, registered, retrying, lost
	// or conflict.
	State string `json:"state"`
	// Since is when the registration entered State; for a retrying
	// registration, when its latest attempt failed (each attempt is a
	// status of its own), which NextRetry follows by RetryInSeconds.
	Since time.Time `json:"since"`
	// WasRegistered is discovery.Status.WasRegistered.
	WasRegistered bool `json:"was_registered"`
	// Attempt, RetryInSeconds and NextRetry describe a retrying
	// registration: the failed attempt's number, the delay before the
	// next one, and when it is due.
	Attempt        int        `json:"attempt,omitempty"`
	RetryInSeconds float64    `json:"retry_in_seconds,omitempty"`
	NextRetry      *time.Time `json:"next_retry,omitempty"`
	// Cause is the error that put the registration in its state, if any.
	Cause string `json:"cause,omitempty"`
	// Condition and ConditionReason are the condition the instance
	// publishes (discovery.Condition: not_ready, draining) and its
	// reason, such as a failing health check's output; both are omitted
	// while it is serving without a reason. A condition other than
	// serving never makes the process not ready: it says whether clients
	// should send the instance new work, not whether it is registered.
	Condition       string `json:"condition,omitempty"`
	ConditionReason string `json:"condition_reason,omitempty"`
}

// Backend holds the facts of a backend that implements
// discovery.FactsReporter.
type Backend struct {
	Connected     bool   `json:"connected"`
	RetryAttempts uint64 `json:"retry_attempts"`
	// LeaseRemainingSeconds and KeepAliveRTTSeconds are set while the
	// backend holds a lease.
	LeaseRemainingSeconds *float64 `json:"lease_remaining_seconds,omitempty"`
	KeepAliveRTTSeconds   *float64 `json:"keepalive_rtt_seconds,omitempty"`
}

// Ready applies the probe rule to statuses, the registrations a process
// holds: it is ready if it holds at least one and every one of them has
// been registered at least once (see the package documentation). The
// reason says why, naming the first registration that holds it back.
func Ready(statuses []discovery.Status) (ready bool, reason string) {
	if len(statuses) == 0 {
		return false, "no registration: not registered yet, or deregistered"
	}
	faults := 0
	for _, st := range statuses {
		if !st.WasRegistered && st.State != discovery.StateRegistered {
			return false, fmt.Sprintf("%s has not been registered yet (%s)", st.Instance.Key(), st.State)
		}
		if st.State != discovery.StateRegistered {
			faults++
		}
	}
	if faults > 0 {
		return true, fmt.Sprintf("every registration has been registered; %d of %d not registered now, which does not make the process unready",
			faults, len(statuses))
	}
	return true, "every registration is registered"
}

// Report returns the status as it is now.
func (h *Handler) Report() Report {
	statuses := h.status.Statuses()
	ready, reason := Ready(statuses)
	r := Report{Ready: ready, Reason: reason, Registrations: make([]Registration, 0, len(statuses))}
	for _, st := range statuses {
		reg := Registration{
			Service:       st.Instance.Service,
			ID:            st.Instance.ID,
			Address:       st.Instance.Address,
			Metadata:      st.Instance.Metadata,
			State:         st.State.String(),
			Since:         st.Since,
			WasRegistered: st.WasRegistered || st.State == discovery.StateRegistered,
		}
		if st.State == discovery.StateRetrying {
			next := st.Since.Add(st.RetryIn)
			reg.Attempt, reg.RetryInSeconds, reg.NextRetry = st.Attempt, st.RetryIn.Seconds(), &next
		}
		if st.Err != nil {
			reg.Cause = st.Err.Error()
		}
		if st.Instance.Condition != discovery.ConditionServing {
			reg.Condition = st.Instance.Condition.String()
		}
		reg.ConditionReason = st.Instance.Reason
		r.Registrations = append(r.Registrations, reg)
	}
	if h.facts != nil {
		f := h.facts.BackendFacts()
		r.Backend = &Backend{Connected: f.Connected, RetryAttempts: f.RetryAttempts}
		if f.HasLease {
			remaining, rtt := f.LeaseRemaining.Seconds(), f.KeepAliveRTT.Seconds()
			r.Backend.LeaseRemainingSeconds, r.Backend.KeepAliveRTTSeconds = &remaining, &rtt
		}
	}
	return r
}

// Formats of the answer, chosen with ?format= or the Accept header.
const (
	FormatJSON = "json"
	FormatHTML = "html"
	FormatText = "text"
)

// format returns the format r asks for: ?format= first, then the Accept
// header; "" for an unknown ?format=.
func format(r *http.Request) string {
	switch f := r.URL.Query().Get("format"); f {
	case FormatJSON, FormatHTML, FormatText:
		return f
	case "":
	default:
		return ""
	}
	return acceptedFormat(r.Header.Values("Accept"))
}

// offered lists the formats with the media type each answers as, in the
// server's order of preference for a tie.
var offered = [...]struct{ format, typ, subtype string }{
	{FormatText, "text", "plain"},
	{FormatHTML, "text", "html"},
	{FormatJSON, "application", "json"},
}

// acceptedFormat chooses the format that the Accept header values prefer,
// following RFC 9110 (section 12.5.1): every offered format gets the
// quality value (q) of the most specific media range that matches it
// (type/subtype over type/* over */*), q=0 refuses it, and the highest q
// wins; on a tie, a format named by its own type beats one matched by a
// wildcard, then the earlier range wins, then plain text, HTML and JSON in
// that order. A range whose q is not a qvalue (0 to 1, at most three
// decimals: "q=2", "q=Inf") is ignored. Plain text when no format is
// acceptable or there is no header (curl).
func acceptedFormat(accept []string) string {
	type match struct {
		q           int // thousandths
		specificity int // 0 for */*, 1 for type/*, 2 for type/subtype; -1 for no match
		pos         int // index of the range in the header
	}
	var matches [len(offered)]match
	for i := range matches {
		matches[i].specificity = -1
	}
	pos := 0
	for _, value := range accept {
		for _, part := range strings.Split(value, ",") {
			pos++
			mediaType, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			q := 1000
			if v, ok := params["q"]; ok {
				if q, ok = qvalue(v); !ok {
					continue
				}
			}
			typ, subtype, _ := strings.Cut(mediaType, "/")
			for i, o := range offered {
				spec := -1
				switch {
				case typ == o.typ && subtype == o.subtype:
					spec = 2
				case typ == o.typ && subtype == "*":
					spec = 1
				case typ == "*" && subtype == "*":
					spec = 0
				}
				// The most specific range decides; among equally specific
				// ones, the first.
				if spec > matches[i].specificity {
					matches[i] = match{q: q, specificity: spec, pos: pos}
				}
			}
		}
	}
	best := -1
	for i, m := range matches {
		if m.specificity < 0 || m.q == 0 {
			continue
		}
		if best < 0 {
			best = i
			continue
		}
		b := matches[best]
		switch {
		case m.q != b.q:
			if m.q > b.q {
				best = i
			}
		case (m.specificity == 2) != (b.specificity == 2):
			if m.specificity == 2 {
				best = i
			}
		case m.pos < b.pos:
			best = i
		}
	}
	if best < 0 {
		return FormatText
	}
	return offered[best].format
}

// qvalue parses an RFC 9110 qvalue ("0", "0.5", "1", "1.000") into
// thousandths; ok is false for anything else, which includes values above
// 1, negative ones, exponents, "Inf" and "NaN".
func qvalue(s string) (q int, ok bool) {
	whole, frac, _ := strings.Cut(s, ".")
	if (whole != "0" && whole != "1") || len(frac) > 3 {
		return 0, false
	}
	n := 0
	for i := 0; i < 3; i++ {
		n *= 10
		if i < len(frac) {
			c := frac[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n += int(c - '0')
		}
	}
	if whole == "1" {
		if n != 0 {
			return 0, false
		}
		return 1000, true
	}
	return n, true
}

// ServeHTTP implements http.Handler: GET and HEAD answer with the Report,
// as JSON, HTML or plain text, with status 200 if the process is ready and
// 503 if not. Other methods get 405, an unknown ?format= 400.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	f := format(r)
	if f == "" {
		http.Error(w, "unknown format: want json, html or text", http.StatusBadRequest)
		return
	}
	rep := h.Report()
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Add("Vary", "Accept")
	switch f {
	case FormatJSON:
		hdr.Set("Content-Type", "application/json")
	case FormatHTML:
		hdr.Set("Content-Type", "text/html; charset=utf-8")
	default:
		hdr.Set("Content-Type", "text/plain; charset=utf-8")
	}
	code := http.StatusOK
	if !rep.Ready {
		code = http.StatusServiceUnavailable
	}
	w.WriteHeader(code)
	if r.Method == http.MethodHead {
		return
	}
	switch f {
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep) // the client went away
	case FormatHTML:
		_ = page.Execute(w, rep)
	default:
		_ = writeText(w, rep)
	}
}

// writeText writes the report as a few lines of plain text.
func writeText(w io.Writer, rep Report) error {
	var b strings.Builder
	verdict := "not ready"
	if rep.Ready {
		verdict = "ready"
	}
	fmt.Fprintf(&b, "%s: %s\n", verdict, rep.Reason)
	for _, reg := range rep.Registrations {
		fmt.Fprintf(&b, "%s/%s at %s: %s", reg.Service, reg.ID, reg.Address, describe(reg))
		if reg.Cause != "" {
			fmt.Fprintf(&b, ": %s", reg.Cause)
		}
		if reg.Condition != "" || reg.ConditionReason != "" {
			cond := cmp.Or(reg.Condition, discovery.ConditionServing.String())
			if reg.ConditionReason != "" {
				cond += " " + strconv.Quote(reg.ConditionReason)
			}
			fmt.Fprintf(&b, "; publishes %s", cond)
		}
		b.WriteByte('\n')
	}
	if be := rep.Backend; be != nil {
		b.WriteString("backend: " + backendLine(be) + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// describe says a registration's state in words: "registered since ...",
// or "retrying (attempt 2 failed at ..., next at ...)": each failed attempt
// is a status of its own, whose Since is when that attempt failed.
func describe(reg Registration) string {
	since := reg.Since.UTC().Format(time.RFC3339Nano)
	if reg.NextRetry != nil {
		return fmt.Sprintf("%s (attempt %d failed at %s, next at %s)", reg.State, reg.Attempt, since, reg.NextRetry.UTC().Format(time.RFC3339Nano))
	}
	return reg.State + " since " + since
}

func backendLine(be *Backend) string {
	out := "disconnected"
	if be.Connected {
		out = "connected"
	}
	out += fmt.Sprintf(", %d retry attempts", be.RetryAttempts)
	if be.LeaseRemainingSeconds != nil {
		out += fmt.Sprintf(", lease %.1fs left, keep-alive round trip %.1fms", *be.LeaseRemainingSeconds, *be.KeepAliveRTTSeconds*1000)
	}
	return out
}

// page is the HTML answer; html/template escapes every value by context.
var page = template.Must(template.New("status").Funcs(template.FuncMap{
	"describe": describe,
	"backend":  backendLine,
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>roster status</title>
<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}</style></head>
<body>
<h1>{{if .Ready}}Ready{{else}}Not ready{{end}}</h1>
<p>{{.Reason}}</p>
<table>
<tr><th>service</th><th>id</th><th>address</th><th>metadata</th><th>state</th><th>cause</th></tr>
{{range .Registrations}}<tr><td>{{.Service}}</td><td>{{.ID}}</td><td>{{.Address}}</td><td>{{range $k, $v := .Metadata}}{{$k}}={{$v}} {{end}}</td><td>{{describe .}}</td><td>{{.Cause}}{{if .Condition}} publishes {{.Condition}}{{end}}{{if .ConditionReason}} "{{.ConditionReason}}"{{end}}</td></tr>
{{end}}</table>
{{with .Backend}}<p>Backend: {{backend .}}</p>{{end}}
</body></html>
`))
