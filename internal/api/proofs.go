package api

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"

	"carnet/internal/audit"
	"carnet/internal/auth"
	"carnet/internal/fhir"
	"carnet/internal/policy"
)

// Prover serves the audit tree's signed checkpoint and proofs (audit.Log).
type Prover interface {
	Latest() (int64, []byte, string, error)
	InclusionProof(index, size int64) ([][]byte, error)
	ConsistencyProof(size1, size2 int64) ([][]byte, error)
}

func (s *Server) proofRoutes() {
	only := func(h http.HandlerFunc) http.HandlerFunc {
		return s.only(func(p *auth.Principal) bool { return p.HasRole(policy.SecurityOfficer) }, "audit proofs are for the security officer", h)
	}
	s.handle("GET /audit/checkpoint", only(s.checkpoint))
	s.handle("GET /audit/proof/inclusion", only(s.inclusion))
	s.handle("GET /audit/proof/consistency", only(s.consistency))
}

func (s *Server) prover(w http.ResponseWriter, r *http.Request) (Prover, bool) {
	p, ok := s.auditor.(Prover)
	if !ok {
		s.fail(w, r, fhir.Errorf(http.StatusNotImplemented, "not-supported", "this instance does not checkpoint the audit log"))
	}
	return p, ok
}

func b64s(hs [][]byte) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h)
	}
	return out
}

// checkpoint: the latest signed checkpoint (size, root, signed note).
func (s *Server) checkpoint(w http.ResponseWriter, r *http.Request) {
	p, ok := s.prover(w, r)
	if !ok {
		return
	}
	size, root, note, err := p.Latest()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"origin": audit.Origin, "size": size, "root": base64.StdEncoding.EncodeToString(root), "note": note})
}

func intParam(r *http.Request, name string) (int64, error) {
	v, err := strconv.ParseInt(r.URL.Query().Get(name), 10, 64)
	if err != nil || v < 0 {
		return 0, fhir.Invalid(name, "%s must be a whole number >= 0", name)
	}
	return v, nil
}

func (s *Server) proofError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, audit.ErrBeyondCheckpoint) {
		s.fail(w, r, fhir.Invalid("size", "%v", err))
		return
	}
	s.fail(w, r, fhir.Invalid("", "%v", err))
}

// inclusion: GET /audit/proof/inclusion?index=N&size=M.
func (s *Server) inclusion(w http.ResponseWriter, r *http.Request) {
	p, ok := s.prover(w, r)
	if !ok {
		return
	}
	idx, err := intParam(r, "index")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	size, err := intParam(r, "size")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	hs, err := p.InclusionProof(idx, size)
	if err != nil {
		s.proofError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"index": idx, "size": size, "proof": b64s(hs)})
}

// consistency: GET /audit/proof/consistency?from=A&to=B.
func (s *Server) consistency(w http.ResponseWriter, r *http.Request) {
	p, ok := s.prover(w, r)
	if !ok {
		return
	}
	from, err := intParam(r, "from")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	to, err := intParam(r, "to")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	hs, err := p.ConsistencyProof(from, to)
	if err != nil {
		s.proofError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"from": from, "to": to, "proof": b64s(hs)})
}
