package main

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"

	"carnet/bench/loadgen"
)

// target is a server under test.
type target struct {
	name   string // sqlite, postgres or peer
	addr   string // host:port
	prefix string // path of the FHIR base: /fhir or /fhir/R4
	peer   bool
}

func newTarget(name, base string, peer bool) (target, error) {
	u, err := url.Parse(base)
	if err != nil {
		return target{}, err
	}
	return target{name: name, addr: u.Host, prefix: strings.TrimRight(u.Path, "/"), peer: peer}, nil
}

type workload struct {
	name string
	desc string
	// paths builds the request targets to pick from; nil for create.
	paths func(t target, in *inputs) []string
}

var workloads = []workload{
	{
		name: "read",
		desc: "GET [base]/Patient/{id}, id drawn at random from up to 5,000 patient ids listed through the API",
		paths: func(t target, in *inputs) []string {
			return mapStr(in.patientIDs, func(id string) string { return t.prefix + "/Patient/" + id })
		},
	},
	{
		name: "search-family",
		desc: "GET [base]/Patient?family={name}&_count=20, name drawn from up to 50 family names each matching >= 20 patients (a full first page)",
		paths: func(t target, in *inputs) []string {
			return mapStr(in.families, func(f string) string {
				return t.prefix + "/Patient?family=" + url.QueryEscape(f) + "&_count=20"
			})
		},
	},
	{
		name: "search-encounter",
		desc: "GET [base]/Encounter?patient={id} (peer: patient=Patient/{id}), id drawn from up to 2,000 patients that have encounters",
		paths: func(t target, in *inputs) []string {
			return mapStr(in.encPatients, func(id string) string {
				if t.peer {
					return t.prefix + "/Encounter?patient=Patient/" + id
				}
				return t.prefix + "/Encounter?patient=" + url.QueryEscape(id)
			})
		},
	},
	{
		name: "create",
		desc: "POST [base]/Patient with a small synthetic Patient (~450 bytes: identifier, name, gender, birthDate, telecom, address), expecting 201",
	},
}

func workloadByName(name string) (workload, bool) {
	for _, w := range workloads {
		if w.name == name {
			return w, true
		}
	}
	return workload{}, false
}

func mapStr(in []string, f func(string) string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = f(s)
	}
	return out
}

// createBodies pre-generates Patient bodies so that building them costs the
// load generator nothing while it measures.
func createBodies(seed uint64, n int) [][]byte {
	rng := rand.New(rand.NewPCG(seed, 0xc0ffee))
	out := make([][]byte, n)
	for i := range out {
		out[i] = newPatient(rng, fmt.Sprintf("BENCH-%d-%06d", seed, i)).Body
	}
	return out
}

// sources returns the per-worker request source of w against t, and one
// request of it (for the probe and the console).
func (w workload) sources(t target, in *inputs, bodies [][]byte, seed uint64) (func(int) loadgen.Source, loadgen.Request, error) {
	if w.paths == nil {
		return postSources(t.prefix+"/Patient", bodies, seed), postRequest(t.prefix+"/Patient", bodies[0]), nil
	}
	paths := w.paths(t, in)
	if len(paths) == 0 {
		return nil, loadgen.Request{}, fmt.Errorf("no input for %s", w.name)
	}
	return getSources(paths, seed), loadgen.Request{Path: paths[0]}, nil
}

// getSources draws GET paths at random, each worker with its own sequence.
func getSources(paths []string, seed uint64) func(int) loadgen.Source {
	return func(worker int) loadgen.Source {
		rng := rand.New(rand.NewPCG(seed, uint64(worker)))
		return func() loadgen.Request {
			return loadgen.Request{Path: paths[rng.IntN(len(paths))]}
		}
	}
}

// postSources POSTs bodies drawn at random to path.
func postSources(path string, bodies [][]byte, seed uint64) func(int) loadgen.Source {
	return func(worker int) loadgen.Source {
		rng := rand.New(rand.NewPCG(seed, uint64(worker)))
		return func() loadgen.Request {
			return postRequest(path, bodies[rng.IntN(len(bodies))])
		}
	}
}

func postRequest(path string, body []byte) loadgen.Request {
	return loadgen.Request{Method: "POST", Path: path, ContentType: "application/fhir+json", Body: body}
}
