package api

import (
	"bytes"
	"net/http"
	"strconv"

	"carnet/internal/fhir"
	"carnet/internal/record"
)

// bundle handles POST /fhir: transaction (all or nothing) and batch Bundles.
func (s *Server) bundle(w http.ResponseWriter, r *http.Request) {
	res, err := s.readResource(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if fhir.Type(res) != "Bundle" {
		s.fail(w, r, fhir.Invalid("resourceType", "POST /fhir takes a Bundle of type transaction or batch"))
		return
	}
	ctx, cancel := withTimeout(r.Context())
	defer cancel()
	var results []record.EntryResult
	typ, _ := res["type"].(string)
	switch typ {
	case "transaction":
		results, err = s.records(r).Transaction(ctx, res, nil)
	case "batch":
		// Entries commit one by one: audited once, after, like a read.
		results, err = s.records(r).Audited(nil).Batch(ctx, res)
	default:
		err = fhir.Invalid("Bundle.type", "Bundle.type must be transaction or batch, not %q", typ)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if typ == "transaction" && wroteAny(results) {
		committed(r)
	}
	base := s.base(r)
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Bundle","type":"` + typ + `-response","entry":[`)
	for i, e := range results {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('{')
		if e.Resource != nil {
			disclose(r, e.Resource.Type, e.Resource.Patient)
			b.WriteString(`"fullUrl":`)
			writeJSONString(&b, base+"/"+e.Resource.Type+"/"+e.Resource.ID)
			if !e.Resource.Deleted && preferReturn(r) != "minimal" {
				b.WriteString(`,"resource":`)
				b.Write(e.Resource.Data)
			}
			b.WriteByte(',')
		}
		b.WriteString(`"response":{"status":"` + strconv.Itoa(e.Status) + " " + http.StatusText(e.Status) + `"`)
		if e.Location != "" {
			b.WriteString(`,"location":`)
			writeJSONString(&b, e.Location)
			b.WriteString(`,"etag":"W/\"` + strconv.Itoa(e.Resource.Version) + `\"","lastModified":"` + fhir.FormatInstant(e.Resource.Updated) + `"`)
		}
		if e.Err != nil {
			b.WriteString(`,"outcome":`)
			b.Write(e.Err.Outcome().JSON())
		}
		b.WriteString(`}}`)
	}
	b.WriteString(`]}`)
	s.respond(w, http.StatusOK, b.Bytes())
}

// wroteAny: did a transaction commit anything (not all unchanged)?
func wroteAny(rs []record.EntryResult) bool {
	for _, e := range rs {
		if !e.Unchanged {
			return true
		}
	}
	return false
}
