package record

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"carnet/internal/fhir"
	"carnet/internal/store"
)

// MaxEntries bounds the entries of one transaction or batch.
const MaxEntries = 10000

// EntryResult is the outcome of one Bundle entry.
type EntryResult struct {
	Status   int
	Location string // "Type/id/_history/v"
	Resource *store.Resource
	Err      *fhir.Error // batch entries only
	// Unchanged: a PUT identical to the current version wrote nothing.
	Unchanged bool
}

type txEntry struct {
	method, typ, id string
	res             fhir.Resource
	ifMatch         int
}

// entryError locates an error in entry i.
func entryError(i int, err error) error {
	fe := fhir.AsError(err)
	if fe.Status >= 500 {
		return err
	}
	out := *fe
	loc := "Bundle.entry[" + strconv.Itoa(i) + "]"
	if out.Expr != "" {
		out.Expr = loc + ".resource." + out.Expr
	} else {
		out.Expr = loc
	}
	return &out
}

// parseEntries reads the entries of a transaction or batch Bundle, assigns
// ids to POSTed resources and rewrites references to their fullUrls.
func parseEntries(b fhir.Resource) ([]txEntry, error) {
	raw, ok := b["entry"]
	if !ok {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, fhir.Invalid("Bundle.entry", "entry must be an array")
	}
	if len(list) > MaxEntries {
		return nil, fhir.Errorf(http.StatusRequestEntityTooLarge, "too-costly", "a Bundle may hold at most %d entries", MaxEntries)
	}
	entries := make([]txEntry, len(list))
	rewrite := map[string]string{}
	for i, e := range list {
		em, ok := e.(map[string]any)
		if !ok {
			return nil, entryError(i, fhir.Invalid("", "entry must be an object"))
		}
		req, _ := em["request"].(map[string]any)
		method, _ := req["method"].(string)
		url, _ := req["url"].(string)
		if req == nil || method == "" || url == "" {
			return nil, entryError(i, fhir.Invalid("request", "request.method and request.url are required"))
		}
		te := txEntry{method: method}
		if ifm, ok := req["ifMatch"].(string); ok {
			v, err := ParseETag(ifm)
			if err != nil {
				return nil, entryError(i, err)
			}
			te.ifMatch = v
		}
		if _, ok := req["ifNoneExist"]; ok {
			return nil, entryError(i, fhir.Errorf(http.StatusBadRequest, "not-supported", "conditional create (ifNoneExist) is not supported"))
		}
		url = strings.TrimPrefix(url, "/")
		if strings.ContainsAny(url, "?") {
			return nil, entryError(i, fhir.Errorf(http.StatusBadRequest, "not-supported", "conditional or search URLs are not supported in a Bundle entry"))
		}
		parts := strings.Split(url, "/")
		te.typ = parts[0]
		if err := fhir.CheckType(te.typ); err != nil {
			return nil, entryError(i, fhir.Invalid("request.url", "%s", err.Msg))
		}
		switch method {
		case "POST":
			if len(parts) != 1 {
				return nil, entryError(i, fhir.Invalid("request.url", "POST takes a type, not %q", url))
			}
			te.id = fhir.NewID()
		case "PUT", "DELETE":
			if len(parts) != 2 || !fhir.ValidID(parts[1]) {
				return nil, entryError(i, fhir.Invalid("request.url", "%s takes Type/id, not %q", method, url))
			}
			te.id = parts[1]
		default:
			return nil, entryError(i, fhir.Errorf(http.StatusBadRequest, "not-supported", "method %q is not supported in a Bundle entry (POST, PUT, DELETE)", method))
		}
		if method != "DELETE" {
			r, ok := em["resource"].(map[string]any)
			if !ok {
				return nil, entryError(i, fhir.Invalid("resource", "%s needs a resource", method))
			}
			te.res = r
			if method == "POST" {
				te.res["id"] = te.id
			}
		}
		if full, ok := em["fullUrl"].(string); ok && full != "" {
			rewrite[full] = te.typ + "/" + te.id
		}
		entries[i] = te
	}
	if len(rewrite) > 0 {
		for _, te := range entries {
			if te.res != nil {
				fhir.RewriteReferences(te.res, rewrite)
			}
		}
	}
	return entries, nil
}

// Transaction applies the entries of a transaction Bundle all or nothing.
// known lists further "Type/id" references to accept without a lookup
// (resources an import will create in another chunk).
func (s *Service) Transaction(ctx context.Context, b fhir.Resource, known map[string]bool) ([]EntryResult, error) {
	entries, err := parseEntries(b)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		results, err := s.transactionOnce(ctx, entries, known)
		if errors.Is(err, store.ErrConflict) && attempt < 3 && !hasIfMatch(entries) {
			continue
		}
		if errors.Is(err, store.ErrConflict) {
			return nil, fhir.Errorf(http.StatusConflict, "conflict", "a resource of the transaction changed concurrently; nothing was written")
		}
		return results, err
	}
}

func hasIfMatch(es []txEntry) bool {
	for _, e := range es {
		if e.ifMatch > 0 {
			return true
		}
	}
	return false
}

func (s *Service) transactionOnce(ctx context.Context, entries []txEntry, known map[string]bool) ([]EntryResult, error) {
	created := map[string]bool{}
	seen := map[string]int{}
	for i, te := range entries {
		key := te.typ + "/" + te.id
		if j, dup := seen[key]; dup {
			return nil, entryError(i, fhir.Invalid("request.url", "%s is also the target of entry %d", key, j))
		}
		seen[key] = i
		if te.method != "DELETE" {
			created[key] = true
		}
	}
	results := make([]EntryResult, len(entries))
	prevs := make([]*store.Resource, len(entries))
	var writes []store.Write
	var writeEntry []int // entry index of each write
	var refs []string
	for i, te := range entries {
		var cur *store.Resource
		var err error
		if te.method != "POST" {
			if cur, err = s.current(ctx, te.typ, te.id); err != nil {
				return nil, err
			}
			if err := s.allowed(ctx, te.typ, cur, nil, nil); err != nil {
				return nil, entryError(i, err)
			}
		}
		prevs[i] = cur
		if te.ifMatch > 0 && (cur == nil || cur.Version != te.ifMatch) {
			return nil, entryError(i, preconditionFailed(cur, te.ifMatch))
		}
		switch te.method {
		case "DELETE":
			if cur == nil {
				return nil, entryError(i, fhir.NotFound("%s/%s does not exist", te.typ, te.id))
			}
			results[i] = EntryResult{Status: http.StatusNoContent, Resource: cur}
			if !cur.Deleted {
				w := s.deletion(cur)
				writes = append(writes, w)
				writeEntry = append(writeEntry, i)
				results[i].Resource = &w.Resource
			}
			if created[te.typ+"/"+te.id] {
				return nil, entryError(i, fhir.Invalid("request.url", "cannot delete a resource written in the same transaction"))
			}
		default:
			if te.method == "PUT" && fhir.ID(te.res) != te.id {
				return nil, entryError(i, fhir.Invalid("id", "the resource id must match request.url %s/%s", te.typ, te.id))
			}
			p, err := s.prepare(te.res, te.typ, te.id, cur, te.method == "POST")
			if err != nil {
				return nil, entryError(i, err)
			}
			if p.noop != nil {
				results[i] = EntryResult{Status: http.StatusOK, Resource: p.noop, Unchanged: true}
				continue
			}
			refs = append(refs, p.refs...)
			writes = append(writes, p.w)
			writeEntry = append(writeEntry, i)
			status := http.StatusOK
			if cur == nil || cur.Deleted {
				status = http.StatusCreated
			}
			results[i] = EntryResult{Status: status, Resource: &writes[len(writes)-1].Resource}
		}
	}
	// References must resolve: to the store, to this transaction, or to known;
	// not to a resource this transaction deletes (it still exists in the store).
	for _, r := range refs {
		if _, inTx := seen[r]; inTx && !created[r] {
			return nil, &fhir.Error{Status: http.StatusUnprocessableEntity, Code: "processing",
				Msg: "broken reference: " + r + " is deleted by this transaction"}
		}
	}
	all := map[string]bool{}
	for k := range created {
		all[k] = true
	}
	for k := range known {
		all[k] = true
	}
	for k := range writes {
		i := writeEntry[k]
		if err := s.allowed(ctx, writes[k].Type, prevs[i], &writes[k], writes); err != nil {
			return nil, entryError(i, err)
		}
	}
	if err := s.checkRefs(ctx, dedupe(refs), all); err != nil {
		return nil, err
	}
	if err := s.commit(ctx, writes); err != nil {
		return nil, storeErr(err)
	}
	for i := range results {
		if rr := results[i].Resource; rr != nil {
			results[i].Location = fmt.Sprintf("%s/%s/_history/%d", rr.Type, rr.ID, rr.Version)
		}
	}
	return results, nil
}

// Batch applies each entry on its own; failures are reported per entry.
func (s *Service) Batch(ctx context.Context, b fhir.Resource) ([]EntryResult, error) {
	entries, err := parseEntries(b)
	if err != nil {
		return nil, err
	}
	results := make([]EntryResult, len(entries))
	for i, te := range entries {
		var out *Outcome
		var err error
		switch te.method {
		case "POST":
			// keep the id assigned while parsing: other entries' urn:uuid
			// references were rewritten to it
			out, err = s.create(ctx, te.typ, te.id, te.res)
		case "PUT":
			out, err = s.Update(ctx, te.typ, te.id, te.res, te.ifMatch)
		case "DELETE":
			out, err = s.Delete(ctx, te.typ, te.id, te.ifMatch)
		}
		if err != nil {
			fe := fhir.AsError(err)
			if fe.Status >= 500 {
				return nil, err
			}
			results[i] = EntryResult{Status: fe.Status, Err: fe}
			continue
		}
		status := http.StatusOK
		switch {
		case te.method == "DELETE":
			status = http.StatusNoContent
		case out.Created:
			status = http.StatusCreated
		}
		rr := out.Resource
		results[i] = EntryResult{Status: status, Resource: rr, Location: fmt.Sprintf("%s/%s/_history/%d", rr.Type, rr.ID, rr.Version)}
	}
	return results, nil
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	out := s[:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// ParseETag reads a version from an ETag / If-Match value: W/"3", "3" or 3.
func ParseETag(s string) (int, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimPrefix(t, "W/")
	t = strings.Trim(t, `"`)
	v, err := strconv.Atoi(t)
	if err != nil || v < 1 {
		return 0, fhir.Invalid("If-Match", "expected a version ETag like W/\"3\", got %q", s)
	}
	return v, nil
}
