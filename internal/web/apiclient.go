package web

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// apiResponse is an in-process API answer.
type apiResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// recorder is a minimal http.ResponseWriter that keeps the answer.
type recorder struct {
	h      http.Header
	status int
	buf    bytes.Buffer
}

func (rc *recorder) Header() http.Header { return rc.h }
func (rc *recorder) WriteHeader(status int) {
	if rc.status == 0 {
		rc.status = status
	}
}
func (rc *recorder) Write(b []byte) (int, error) {
	if rc.status == 0 {
		rc.status = http.StatusOK
	}
	return rc.buf.Write(b)
}

// call makes an API request as the page's user, from the page's client
// address, through the whole API pipeline (policy, guard, audit). body is
// a url.Values (form), []byte (FHIR JSON) or nil.
func (s *Server) call(r *http.Request, u *user, method, path string, body any) *apiResponse {
	return s.callWith(r, u, method, path, body, nil)
}

// callWith is call with more request headers (If-Match).
func (s *Server) callWith(r *http.Request, u *user, method, path string, body any, hdr map[string]string) *apiResponse {
	var rd io.Reader
	ctype := ""
	switch b := body.(type) {
	case url.Values:
		rd, ctype = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	case []byte:
		rd, ctype = bytes.NewReader(b), "application/fhir+json"
	}
	req, err := http.NewRequestWithContext(r.Context(), method, path, rd)
	if err != nil {
		return &apiResponse{Status: http.StatusBadRequest, Body: outcome(err.Error())}
	}
	req.RemoteAddr = r.RemoteAddr
	req.Host = r.Host
	req.TLS = r.TLS
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("User-Agent", "carnet-web")
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if u != nil {
		req.Header.Set("Authorization", "Bearer "+u.token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rc := &recorder{h: http.Header{}}
	s.opt.API.ServeHTTP(rc, req)
	if rc.status == 0 {
		rc.status = http.StatusOK
	}
	return &apiResponse{Status: rc.status, Header: rc.h, Body: rc.buf.Bytes()}
}

func outcome(msg string) []byte {
	b, _ := json.Marshal(map[string]any{"resourceType": "OperationOutcome", "issue": []any{map[string]any{"severity": "error", "code": "processing", "diagnostics": msg}}})
	return b
}

// OK reports a 2xx answer.
func (a *apiResponse) OK() bool { return a.Status >= 200 && a.Status < 300 }

// JSON decodes the body into v.
func (a *apiResponse) JSON(v any) error { return json.Unmarshal(a.Body, v) }

// Resource decodes the body as one FHIR resource.
func (a *apiResponse) Resource() (res, error) {
	var m res
	if err := json.Unmarshal(a.Body, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// Entries decodes a searchset Bundle's resources (matches and includes)
// and its total (-1 when absent).
func (a *apiResponse) Entries() ([]res, int, error) {
	var b struct {
		Total *int `json:"total"`
		Entry []struct {
			Resource res `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(a.Body, &b); err != nil {
		return nil, 0, err
	}
	out := make([]res, 0, len(b.Entry))
	for _, e := range b.Entry {
		if e.Resource != nil {
			out = append(out, e.Resource)
		}
	}
	total := -1
	if b.Total != nil {
		total = *b.Total
	}
	return out, total, nil
}

// Message is the OperationOutcome's text, or the HTTP status text.
func (a *apiResponse) Message() string {
	var oo struct {
		Issue []struct {
			Diagnostics string `json:"diagnostics"`
			Details     struct {
				Text string `json:"text"`
			} `json:"details"`
		} `json:"issue"`
		Error string `json:"error_description"`
	}
	if json.Unmarshal(a.Body, &oo) == nil {
		var msgs []string
		for _, i := range oo.Issue {
			if i.Diagnostics != "" {
				msgs = append(msgs, i.Diagnostics)
			} else if i.Details.Text != "" {
				msgs = append(msgs, i.Details.Text)
			}
		}
		if len(msgs) > 0 {
			return strings.Join(msgs, "; ")
		}
		if oo.Error != "" {
			return oo.Error
		}
	}
	return http.StatusText(a.Status)
}

// StepUp reports the guard asking for a fresh one-time code.
func (a *apiResponse) StepUp() bool {
	return a.Status == http.StatusUnauthorized && strings.Contains(a.Header.Get("WWW-Authenticate"), "insufficient_user_authentication")
}

// Suspended reports that the guard suspended the account: a 403 whose
// OperationOutcome has the issue code "suspended" (not any refusal that
// mentions suspended accounts).
func (a *apiResponse) Suspended() bool {
	return a.Status == http.StatusForbidden && apiCode(a) == "suspended"
}

// apiCode is the first issue code of an OperationOutcome answer.
func apiCode(a *apiResponse) string {
	var oo struct {
		Issue []struct {
			Code string `json:"code"`
		} `json:"issue"`
	}
	if json.Unmarshal(a.Body, &oo) != nil || len(oo.Issue) == 0 {
		return ""
	}
	return oo.Issue[0].Code
}

// handled turns the API answers every page treats alike into a page: the
// guard's step-up (to the step-up form, then back), a suspension or an
// ended session (to the login page), throttling. It reports whether it
// answered.
func (s *Server) handled(w http.ResponseWriter, r *http.Request, u *user, a *apiResponse) bool {
	switch {
	case a.StepUp():
		next := r.URL.RequestURI()
		if r.Method != http.MethodGet {
			next = r.Header.Get("Referer")
			if next == "" {
				next = Prefix
			}
		}
		http.Redirect(w, r, Prefix+"step-up?"+url.Values{"next": {localPath(next)}}.Encode(), http.StatusSeeOther)
		return true
	case a.Suspended():
		s.endSession(w, r)
		p := s.newPage(r, nil)
		p.Error = p.T("error.suspended")
		s.render(w, r, http.StatusForbidden, "login", p.withLogin(s.csrfToken(w, r), "", ""))
		return true
	case a.Status == http.StatusUnauthorized:
		s.endSession(w, r)
		http.Redirect(w, r, Prefix+"login?expired=1&"+url.Values{"next": {r.URL.RequestURI()}}.Encode(), http.StatusSeeOther)
		return true
	case a.Status == http.StatusTooManyRequests:
		p := s.newPage(r, u)
		p.Error = p.T("error.throttled", a.Header.Get("Retry-After"))
		s.render(w, r, http.StatusTooManyRequests, "error", p)
		return true
	case a.Status >= 500:
		p := s.newPage(r, u)
		p.Error = p.T("error.unavailable")
		s.render(w, r, http.StatusServiceUnavailable, "error", p)
		return true
	}
	return false
}
