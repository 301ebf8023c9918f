package api

import (
	"bytes"
	"encoding/base64"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"carnet/internal/fhir"
	"carnet/internal/policy"
	"carnet/internal/store"
)

// searchValues collects the parameters of a search: the URL query, the form
// body of POST _search, or the contents of an opaque paging cursor.
func (s *Server) searchValues(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	vals, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, fhir.Invalid("", "malformed query string")
	}
	if r.Method == http.MethodPost {
		if ct := r.Header.Get("Content-Type"); ct != "" {
			mt, _, _ := mime.ParseMediaType(ct)
			if mt != "application/x-www-form-urlencoded" {
				return nil, fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "POST _search takes application/x-www-form-urlencoded")
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		if err := r.ParseForm(); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, fhir.ErrTooLarge
			}
			return nil, fhir.Invalid("", "malformed form body")
		}
		for k, v := range r.PostForm {
			vals[k] = append(vals[k], v...)
		}
	}
	if c := vals.Get("_cursor"); c != "" {
		raw, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil {
			return nil, fhir.Invalid("_cursor", "invalid paging cursor")
		}
		cv, err := url.ParseQuery(string(raw))
		if err != nil {
			return nil, fhir.Invalid("_cursor", "invalid paging cursor")
		}
		return cv, nil
	}
	return vals, nil
}

func cursor(canonical string, offset int) string {
	q := canonical
	if offset > 0 {
		if q != "" {
			q += "&"
		}
		q += "_offset=" + strconv.Itoa(offset)
	}
	return base64.RawURLEncoding.EncodeToString([]byte(q))
}

func (s *Server) search(w http.ResponseWriter, r *http.Request) {
	typ, _, err := typeAndID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	vals, err := s.searchValues(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q, err := fhir.ParseQuery(typ, vals, preferStrict(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.can(r, policy.Search, typ); err != nil {
		s.fail(w, r, err)
		return
	}
	page, err := s.st.Search(r.Context(), q, s.scope(r, policy.Search, typ))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.respond(w, http.StatusOK, s.searchBundle(r, q, vals, page))
}

// searchBundle renders a searchset Bundle, copying stored JSON as is.
func (s *Server) searchBundle(r *http.Request, q *fhir.Query, vals url.Values, page *store.Page) []byte {
	base := s.base(r)
	canonical := q.Encode(vals)
	link := func(offset int) string {
		if offset == 0 && !strings.Contains(canonical, "_cursor") {
			if canonical == "" {
				return base + "/" + q.Type
			}
			return base + "/" + q.Type + "?" + canonical
		}
		return base + "/" + q.Type + "?_cursor=" + cursor(canonical, offset)
	}
	var b bytes.Buffer
	b.Grow(256 + len(page.Matches)*1024)
	b.WriteString(`{"resourceType":"Bundle","type":"searchset","total":`)
	b.WriteString(strconv.Itoa(page.Total))
	b.WriteString(`,"link":[{"relation":"self","url":`)
	writeJSONString(&b, link(q.Offset))
	b.WriteByte('}')
	if !q.SummaryCount && q.Count > 0 {
		if q.Offset > 0 {
			b.WriteString(`,{"relation":"previous","url":`)
			writeJSONString(&b, link(max(0, q.Offset-q.Count)))
			b.WriteByte('}')
		}
		if q.Offset < page.Total-q.Count { // not q.Offset+q.Count < Total: a huge _offset would overflow
			b.WriteString(`,{"relation":"next","url":`)
			writeJSONString(&b, link(q.Offset+q.Count))
			b.WriteByte('}')
		}
	}
	b.WriteByte(']')
	first := true
	entry := func(res *store.Resource, mode string) {
		if first {
			b.WriteString(`,"entry":[`)
			first = false
		} else {
			b.WriteByte(',')
		}
		b.WriteString(`{"fullUrl":`)
		writeJSONString(&b, base+"/"+res.Type+"/"+res.ID)
		b.WriteString(`,"resource":`)
		b.Write(res.Data)
		b.WriteString(`,"search":{"mode":"` + mode + `"}}`)
	}
	for _, m := range page.Matches {
		disclose(r, m.Type, m.Patient)
		entry(m, "match")
	}
	for _, m := range page.Included {
		disclose(r, m.Type, m.Patient)
		entry(m, "include")
	}
	if len(q.Ignored) > 0 {
		oo := fhir.NewOutcome("warning", "not-supported", "ignored search parameters: "+strings.Join(q.Ignored, ", "))
		if first {
			b.WriteString(`,"entry":[`)
			first = false
		} else {
			b.WriteByte(',')
		}
		b.WriteString(`{"resource":`)
		b.Write(oo.JSON())
		b.WriteString(`,"search":{"mode":"outcome"}}`)
	}
	if !first {
		b.WriteByte(']')
	}
	b.WriteByte('}')
	return b.Bytes()
}
