package load

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"strings"

	"carnet/internal/fhir"
	"carnet/internal/record"
)

// ImportResult counts what an import did.
type ImportResult struct {
	Files, Entries              int
	Created, Updated, Unchanged int
	Deleted                     int
}

// importChunk is the number of entries applied per transaction.
const importChunk = 500

// Entries reads a FHIR file: a Bundle (transaction, batch or collection), a
// single resource, or NDJSON (one resource per line). It returns transaction
// entries that are idempotent: every resource is PUT under a stable id
// (its own id, the uuid of its urn:uuid fullUrl, or one derived from its
// content), and references to fullUrls are rewritten to Type/id.
func Entries(path string) ([]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%s: empty file", path)
	}
	var resources []fhir.Resource
	var fullURLs []string
	var methods []string
	if r, err := fhir.Parse(trimmed); err == nil {
		if fhir.Type(r) == "Bundle" {
			list, _ := r["entry"].([]any)
			for i, e := range list {
				em, _ := e.(map[string]any)
				res, _ := em["resource"].(map[string]any)
				req, _ := em["request"].(map[string]any)
				method, _ := req["method"].(string)
				full, _ := em["fullUrl"].(string)
				if method == "DELETE" {
					url, _ := req["url"].(string)
					methods = append(methods, "DELETE "+url)
					resources = append(resources, nil)
					fullURLs = append(fullURLs, "")
					continue
				}
				if res == nil {
					return nil, fmt.Errorf("%s: entry %d has no resource", path, i)
				}
				methods = append(methods, "PUT")
				resources = append(resources, res)
				fullURLs = append(fullURLs, full)
			}
		} else {
			resources, fullURLs, methods = []fhir.Resource{r}, []string{""}, []string{"PUT"}
		}
	} else if trimmed[0] == '{' && !bytes.Contains(trimmed, []byte("\n{")) {
		return nil, fmt.Errorf("%s: %v", path, err)
	} else {
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		line := 0
		for sc.Scan() {
			line++
			l := bytes.TrimSpace(sc.Bytes())
			if len(l) == 0 {
				continue
			}
			r, err := fhir.Parse(l)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %v", path, line, err)
			}
			resources = append(resources, r)
			fullURLs = append(fullURLs, "")
			methods = append(methods, "PUT")
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	// Stable ids and the fullUrl -> Type/id map.
	rewrite := map[string]string{}
	for i, r := range resources {
		if r == nil {
			continue
		}
		typ := fhir.Type(r)
		if typ == "" {
			return nil, fmt.Errorf("%s: resource %d has no resourceType", path, i+1)
		}
		id := fhir.ID(r)
		if id == "" {
			if u, ok := strings.CutPrefix(fullURLs[i], "urn:uuid:"); ok && fhir.ValidID(u) {
				id = u
			} else {
				b, _ := fhir.Marshal(r)
				sum := sha256.Sum256(append([]byte(fullURLs[i]+"\x00"), b...))
				id = fmt.Sprintf("%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
			}
			r["id"] = id
		}
		if fullURLs[i] != "" {
			rewrite[fullURLs[i]] = typ + "/" + id
		}
	}
	entries := make([]any, 0, len(resources))
	for i, r := range resources {
		if r == nil {
			url := strings.TrimPrefix(methods[i], "DELETE ")
			entries = append(entries, map[string]any{"request": map[string]any{"method": "DELETE", "url": url}})
			continue
		}
		if len(rewrite) > 0 {
			fhir.RewriteReferences(r, rewrite)
		}
		delete(r, "meta") // versionId/lastUpdated are the server's
		entries = append(entries, map[string]any{
			"resource": r,
			"request":  map[string]any{"method": "PUT", "url": fhir.Type(r) + "/" + fhir.ID(r)},
		})
	}
	return entries, nil
}

// Import loads files through the record service, importChunk entries per
// transaction. Re-running an import changes nothing. total, if not nil, is
// called once with the number of entries before loading starts.
func Import(ctx context.Context, svc *record.Service, files []string, total func(int), progress Progress) (*ImportResult, error) {
	res := &ImportResult{}
	var all [][]any
	known := map[string]bool{}
	n := 0
	for _, f := range files {
		es, err := Entries(f)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			em := e.(map[string]any)
			if em["resource"] != nil {
				known[em["request"].(map[string]any)["url"].(string)] = true
			}
		}
		all = append(all, es)
		n += len(es)
		res.Files++
	}
	if total != nil {
		total(n)
	}
	for fi, es := range all {
		for start := 0; start < len(es); start += importChunk {
			chunk := es[start:min(start+importChunk, len(es))]
			b := fhir.Resource{"resourceType": "Bundle", "type": "transaction", "entry": chunk}
			results, err := svc.Transaction(ctx, b, known)
			if err != nil {
				fe := fhir.AsError(err)
				if fe.Status < 500 {
					return res, fmt.Errorf("%s: entries %d-%d: %s", files[fi], start+1, start+len(chunk), fe.Error())
				}
				return res, fmt.Errorf("%s: %w", files[fi], err)
			}
			for _, r := range results {
				switch r.Status {
				case http.StatusCreated:
					res.Created++
				case http.StatusNoContent:
					res.Deleted++
				case http.StatusOK:
					if r.Unchanged {
						res.Unchanged++
					} else {
						res.Updated++
					}
				}
			}
			res.Entries += len(chunk)
			if progress != nil {
				progress(len(chunk))
			}
		}
	}
	return res, nil
}
