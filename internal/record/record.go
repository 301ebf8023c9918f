// Package record implements FHIR interactions on top of a store: it validates
// resources, assigns ids, versions and meta, extracts search index entries,
// checks references and turns transactions into one atomic commit. HTTP
// handlers and the import command both go through it.
package record

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"carnet/internal/fhir"
	"carnet/internal/store"
)

// Service performs FHIR interactions against a Store.
type Service struct {
	st    store.Store
	now   func() time.Time
	check WriteCheck
	audit AuditHook
}

// AuditHook returns the audit record of a commit of ws (nil: none), to be
// appended in the same transaction as the writes.
type AuditHook func(ws []store.Write) *store.AuditRecord

// Audited returns a copy of s whose commits append hook's record with the
// writes, atomically.
func (s *Service) Audited(hook AuditHook) *Service {
	c := *s
	c.audit = hook
	return &c
}

// commit writes ws, with their audit record when s has a hook.
func (s *Service) commit(ctx context.Context, ws []store.Write) error {
	if len(ws) == 0 {
		return nil
	}
	if s.audit != nil {
		if rec := s.audit(ws); rec != nil {
			return s.st.CommitAudited(ctx, ws, []*store.AuditRecord{rec})
		}
	}
	return s.st.Commit(ctx, ws)
}

// WriteCheck authorizes one write before it is committed: typ/prev is the
// current version (nil if none); next the new version, nil for the check
// made as soon as the current version is known (before preconditions or
// validation can say anything about it); batch is every write of the same
// commit. An error stops the whole commit.
type WriteCheck func(ctx context.Context, typ string, prev *store.Resource, next *store.Write, batch []store.Write) error

// New returns a Service over st that writes on no one's behalf (import,
// seeding, tests).
func New(st store.Store) *Service { return &Service{st: st, now: time.Now} }

// As returns a copy of s whose writes must pass check (the caller's access
// policy).
func (s *Service) As(check WriteCheck) *Service {
	c := *s
	c.check = check
	return &c
}

func (s *Service) allowed(ctx context.Context, typ string, prev *store.Resource, next *store.Write, batch []store.Write) error {
	if s.check == nil {
		return nil
	}
	return s.check(ctx, typ, prev, next, batch)
}

// Store returns the underlying store.
func (s *Service) Store() store.Store { return s.st }

// Outcome of a write.
type Outcome struct {
	Resource *store.Resource
	Created  bool // 201 rather than 200
	NoChange bool // an update identical to the current version: no new version
}

// prepared is a write ready for the store, with the references it needs.
type prepared struct {
	w    store.Write
	refs []string
	noop *store.Resource
}

// prepare validates r as a new version of typ/id after current (nil if none).
func (s *Service) prepare(r fhir.Resource, typ, id string, current *store.Resource, isNew bool) (*prepared, error) {
	if err := fhir.Validate(r, typ); err != nil {
		return nil, err
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	p := &prepared{refs: fhir.LocalReferences(r)}
	ver, ifVer := 1, 0
	if current != nil {
		ifVer = current.Version
		ver = current.Version + 1
		if !current.Deleted {
			// Identical content: no new version (keeps imports idempotent).
			fhir.SetMeta(r, id, current.Version, current.Updated)
			if same, err := fhir.Marshal(r); err == nil && bytes.Equal(same, current.Data) {
				p.noop = current
				return p, nil
			}
		}
	}
	fhir.SetMeta(r, id, ver, now)
	data, err := fhir.Marshal(r)
	if err != nil {
		return nil, fhir.Invalid("", "cannot encode resource")
	}
	p.w = store.Write{
		Resource:  store.Resource{Type: typ, ID: id, Version: ver, Updated: now, Patient: fhir.PatientOf(r), Data: data},
		IfVersion: ifVer,
		New:       isNew,
		Index:     fhir.Extract(r),
		Links:     fhir.CareLinks(r),
	}
	return p, nil
}

// checkRefs fails with 422 if a local reference does not resolve; known
// lists "Type/id" that will exist (created in the same transaction).
func (s *Service) checkRefs(ctx context.Context, refs []string, known map[string]bool) error {
	var ask []string
	for _, r := range refs {
		if !known[r] {
			ask = append(ask, r)
		}
	}
	if len(ask) == 0 {
		return nil
	}
	missing, err := s.st.Missing(ctx, ask)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return &fhir.Error{Status: http.StatusUnprocessableEntity, Code: "processing",
			Msg: "broken reference: " + strings.Join(missing, ", ") + " does not exist"}
	}
	return nil
}

// Create stores r as a new resource of type typ with a fresh random id.
func (s *Service) Create(ctx context.Context, typ string, r fhir.Resource) (*Outcome, error) {
	return s.create(ctx, typ, fhir.NewID(), r)
}

func (s *Service) create(ctx context.Context, typ, id string, r fhir.Resource) (*Outcome, error) {
	p, err := s.prepare(r, typ, id, nil, true)
	if err != nil {
		return nil, err
	}
	if err := s.allowed(ctx, typ, nil, &p.w, []store.Write{p.w}); err != nil {
		return nil, err
	}
	if err := s.checkRefs(ctx, p.refs, nil); err != nil {
		return nil, err
	}
	if err := s.commit(ctx, []store.Write{p.w}); err != nil {
		return nil, storeErr(err)
	}
	return &Outcome{Resource: &p.w.Resource, Created: true}, nil
}

// Update stores r as the new version of typ/id, creating it if it does not
// exist. ifMatch > 0 requires the current version to be ifMatch.
func (s *Service) Update(ctx context.Context, typ, id string, r fhir.Resource, ifMatch int) (*Outcome, error) {
	if bodyID := fhir.ID(r); bodyID != id {
		if bodyID == "" {
			return nil, fhir.Invalid("id", "the resource must carry the id %q of the URL", id)
		}
		return nil, fhir.Invalid("id", "the resource id %q does not match the URL id %q", bodyID, id)
	}
	for attempt := 0; ; attempt++ {
		cur, err := s.current(ctx, typ, id)
		if err != nil {
			return nil, err
		}
		if err := s.allowed(ctx, typ, cur, nil, nil); err != nil {
			return nil, err
		}
		if ifMatch > 0 && (cur == nil || cur.Version != ifMatch) {
			return nil, preconditionFailed(cur, ifMatch)
		}
		p, err := s.prepare(r, typ, id, cur, false)
		if err != nil {
			return nil, err
		}
		if p.noop != nil {
			return &Outcome{Resource: p.noop, NoChange: true}, nil
		}
		if err := s.allowed(ctx, typ, cur, &p.w, []store.Write{p.w}); err != nil {
			return nil, err
		}
		if err := s.checkRefs(ctx, p.refs, map[string]bool{typ + "/" + id: true}); err != nil {
			return nil, err
		}
		err = s.commit(ctx, []store.Write{p.w})
		if errors.Is(err, store.ErrConflict) && ifMatch == 0 && attempt < 3 {
			continue // a concurrent writer won: redo on the new current version
		}
		if err != nil {
			if errors.Is(err, store.ErrConflict) && ifMatch > 0 {
				return nil, preconditionFailed(nil, ifMatch)
			}
			return nil, storeErr(err)
		}
		return &Outcome{Resource: &p.w.Resource, Created: cur == nil || cur.Deleted}, nil
	}
}

// Delete marks typ/id deleted (a new, empty version).
func (s *Service) Delete(ctx context.Context, typ, id string, ifMatch int) (*Outcome, error) {
	for attempt := 0; ; attempt++ {
		cur, err := s.current(ctx, typ, id)
		if err != nil {
			return nil, err
		}
		if cur == nil {
			return nil, fhir.NotFound("%s/%s does not exist", typ, id)
		}
		if err := s.allowed(ctx, typ, cur, nil, nil); err != nil {
			return nil, err
		}
		if ifMatch > 0 && cur.Version != ifMatch {
			return nil, preconditionFailed(cur, ifMatch)
		}
		if cur.Deleted {
			return &Outcome{Resource: cur, NoChange: true}, nil
		}
		w := s.deletion(cur)
		if err := s.allowed(ctx, typ, cur, &w, []store.Write{w}); err != nil {
			return nil, err
		}
		err = s.commit(ctx, []store.Write{w})
		if errors.Is(err, store.ErrConflict) && ifMatch == 0 && attempt < 3 {
			continue
		}
		if err != nil {
			return nil, storeErr(err)
		}
		return &Outcome{Resource: &w.Resource}, nil
	}
}

func (s *Service) deletion(cur *store.Resource) store.Write {
	return store.Write{
		Resource:  store.Resource{Type: cur.Type, ID: cur.ID, Version: cur.Version + 1, Updated: s.now().UTC().Truncate(time.Millisecond), Deleted: true, Patient: cur.Patient},
		IfVersion: cur.Version,
	}
}

// current returns the current version or nil if the resource never existed.
func (s *Service) current(ctx context.Context, typ, id string) (*store.Resource, error) {
	cur, err := s.st.Read(ctx, typ, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, storeErr(err)
	}
	return cur, nil
}

func preconditionFailed(cur *store.Resource, want int) error {
	if cur == nil {
		return fhir.Errorf(http.StatusPreconditionFailed, "conflict", "If-Match: version %d required, but the resource does not exist", want)
	}
	return fhir.Errorf(http.StatusPreconditionFailed, "conflict", "If-Match: version %d required, current version is %d", want, cur.Version)
}

// storeErr maps store errors to client-visible errors.
func storeErr(err error) error {
	var fe *fhir.Error
	switch {
	case errors.As(err, &fe):
		return fe
	case errors.Is(err, store.ErrConflict):
		return fhir.Errorf(http.StatusConflict, "conflict", "the resource was changed concurrently; retry")
	case errors.Is(err, store.ErrNotFound):
		return fhir.NotFound("not found")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fhir.Errorf(http.StatusServiceUnavailable, "timeout", "request cancelled")
	case errors.Is(err, store.ErrClosed):
		return fhir.Errorf(http.StatusServiceUnavailable, "transient", "server shutting down")
	}
	return err
}
