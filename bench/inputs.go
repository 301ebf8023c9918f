package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// inputs are what the workloads pick from, gathered through the API.
type inputs struct {
	patientIDs   []string // for read
	families     []string // family names whose search returns >= minFamily
	encPatients  []string // patient ids with at least one Encounter
	familyMinHit int      // smallest total among the chosen families
	notes        []string
}

const (
	wantPatientIDs  = 5000
	wantFamilies    = 50
	minFamily       = 20
	wantEncPatients = 2000
)

type bundle struct {
	Total *int `json:"total"`
	Link  []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
	} `json:"entry"`
}

func (b *bundle) next() string {
	for _, l := range b.Link {
		if l.Relation == "next" {
			return l.URL
		}
	}
	return ""
}

type miniResource struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Name         []struct {
		Family string `json:"family"`
	} `json:"name"`
	Subject *struct {
		Reference string `json:"reference"`
	} `json:"subject"`
}

type apiClient struct {
	base  string // http://127.0.0.1:PORT/fhir
	hc    *http.Client
	token string // bearer token sent when set
	// refused, when set, is told of a GET answered 401 or 429 (the access
	// guard asking for a step-up, or throttling): it steps up or waits and
	// returns true to retry the request (at most maxRetries times).
	refused func(ctx context.Context, status int, h http.Header) bool
}

// maxRetries bounds the retries of one GET after refused said to retry.
const maxRetries = 4

func newAPIClient(base string) *apiClient {
	return &apiClient{base: base, hc: &http.Client{
		Timeout:   2 * time.Minute,
		Transport: &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true},
	}}
}

// get fetches a path (relative to base) or an absolute URL and decodes JSON.
func (c *apiClient) get(ctx context.Context, pathOrURL string, v any) (int, error) {
	u := pathOrURL
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		u = c.base + pathOrURL
	}
	var resp *http.Response
	var b []byte
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Accept", "application/fhir+json")
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		if resp, err = c.hc.Do(req); err != nil {
			return 0, err
		}
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return resp.StatusCode, err
		}
		if (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusTooManyRequests) &&
			c.refused != nil && attempt < maxRetries && c.refused(ctx, resp.StatusCode, resp.Header) {
			continue
		}
		break
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("GET %s: %s: %.200s", u, resp.Status, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return resp.StatusCode, fmt.Errorf("GET %s: %w", u, err)
		}
	}
	return resp.StatusCode, nil
}

// post sends a resource and returns the created resource's id.
func (c *apiClient) post(ctx context.Context, typ string, body []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+"/"+typ, strings.NewReader(string(body)))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Accept", "application/fhir+json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("POST %s: %s: %.300s", typ, resp.Status, b)
	}
	var r miniResource
	if err := json.Unmarshal(b, &r); err != nil || r.ID == "" {
		return "", fmt.Errorf("POST %s: no id in response %.200s", typ, b)
	}
	return r.ID, nil
}

// pageResources walks a search's pages, calling fn per resource until fn
// returns false, maxPages pages were read or there is no next link.
func (c *apiClient) pageResources(ctx context.Context, first string, maxPages int, fn func(miniResource) bool) (int, error) {
	u := first
	seen := 0
	for page := 0; u != "" && page < maxPages; page++ {
		var b bundle
		if _, err := c.get(ctx, u, &b); err != nil {
			return seen, err
		}
		for _, e := range b.Entry {
			var r miniResource
			if json.Unmarshal(e.Resource, &r) != nil {
				continue
			}
			seen++
			if !fn(r) {
				return seen, nil
			}
		}
		if len(b.Entry) == 0 {
			break
		}
		u = b.next()
	}
	return seen, nil
}

// searchTotal returns how many matches a search reports: its total, or the
// page's entry count plus one when a next page exists and total is absent.
func (c *apiClient) searchTotal(ctx context.Context, path string) (int, error) {
	var b bundle
	if _, err := c.get(ctx, path, &b); err != nil {
		return 0, err
	}
	if b.Total != nil {
		return *b.Total, nil
	}
	n := len(b.Entry)
	if b.next() != "" {
		n++
	}
	return n, nil
}

// collectCarnet gathers workload inputs from a seeded Carnet.
func collectCarnet(ctx context.Context, c *apiClient) (*inputs, error) {
	in := &inputs{}
	famCount := map[string]int{}
	ids := map[string]bool{}
	_, err := c.pageResources(ctx, "/Patient?_count=100", wantPatientIDs/100+20, func(r miniResource) bool {
		if r.ID != "" && !ids[r.ID] {
			ids[r.ID] = true
			in.patientIDs = append(in.patientIDs, r.ID)
		}
		for _, n := range r.Name {
			if n.Family != "" {
				famCount[n.Family]++
				break
			}
		}
		return len(in.patientIDs) < wantPatientIDs
	})
	if err != nil && len(in.patientIDs) == 0 {
		return nil, fmt.Errorf("listing patients: %w", err)
	}
	if len(in.patientIDs) == 0 {
		return nil, fmt.Errorf("listing patients: GET /Patient?_count=100 returned no patient")
	}

	// Families, most frequent in the sample first, kept when the server
	// finds enough of them.
	fams := make([]string, 0, len(famCount))
	for f := range famCount {
		fams = append(fams, f)
	}
	sort.Slice(fams, func(i, j int) bool {
		if famCount[fams[i]] != famCount[fams[j]] {
			return famCount[fams[i]] > famCount[fams[j]]
		}
		return fams[i] < fams[j]
	})
	if in.families, in.familyMinHit, err = pickFamilies(ctx, c, fams, func(f string) string {
		return "/Patient?family=" + url.QueryEscape(f) + "&_count=20"
	}); err != nil {
		return nil, err
	}

	// Patients with encounters: from a walk over encounters, else by probing.
	seenEnc := map[string]bool{}
	_, err = c.pageResources(ctx, "/Encounter?_count=100", wantEncPatients/20, func(r miniResource) bool {
		if r.Subject != nil {
			if id, ok := strings.CutPrefix(r.Subject.Reference, "Patient/"); ok && !seenEnc[id] {
				seenEnc[id] = true
				in.encPatients = append(in.encPatients, id)
			}
		}
		return len(in.encPatients) < wantEncPatients
	})
	if err != nil || len(in.encPatients) < 50 {
		if err != nil {
			in.notes = append(in.notes, "Encounter listing failed ("+shortErr(err)+"); encounter patients found by probing")
		}
		for i, id := range in.patientIDs {
			if i >= 1000 || len(in.encPatients) >= 500 {
				break
			}
			if seenEnc[id] {
				continue
			}
			n, err := c.searchTotal(ctx, "/Encounter?patient="+url.QueryEscape(id))
			if err != nil {
				return nil, fmt.Errorf("probing encounters: %w", err)
			}
			if n > 0 {
				seenEnc[id] = true
				in.encPatients = append(in.encPatients, id)
			}
		}
	}
	if len(in.encPatients) == 0 {
		return nil, fmt.Errorf("no patient with an Encounter found")
	}
	return in, nil
}

// pickFamilies keeps up to wantFamilies candidates whose search finds at
// least minFamily patients, probing at most 300.
func pickFamilies(ctx context.Context, c *apiClient, candidates []string, path func(string) string) ([]string, int, error) {
	var out []string
	minHit := 0
	for i, f := range candidates {
		if i >= 300 || len(out) >= wantFamilies {
			break
		}
		n, err := c.searchTotal(ctx, path(f))
		if err != nil {
			return nil, 0, fmt.Errorf("family search: %w", err)
		}
		if n >= minFamily {
			out = append(out, f)
			if minHit == 0 || n < minHit {
				minHit = n
			}
		}
	}
	if len(out) == 0 {
		return nil, 0, fmt.Errorf("no family name with >= %d patients among %d candidates (seed more patients)", minFamily, min(len(candidates), 300))
	}
	return out, minHit, nil
}

func shortErr(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
