// Package store keeps resources and their search index. One interface,
// two back ends (store/sqlite, store/postgres) sharing the SQL in this package.
//
// Writes go through Commit: every call is atomic (all of its writes or none)
// and durable (fsync'd) when it returns nil. Concurrent Commit calls are
// group-committed: a single writer loop applies whatever is queued in one
// database transaction, each call inside its own savepoint, so one fsync
// acknowledges many writes.
package store

import (
	"context"
	"errors"
	"time"

	"carnet/internal/fhir"
)

// Errors a Store returns.
var (
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: the resource changed since the write was prepared
	// (its current version is not Write.IfVersion).
	ErrConflict = errors.New("store: version conflict")
	ErrClosed   = errors.New("store: closed")
)

// Resource is one stored version of a resource.
type Resource struct {
	Type, ID string
	Version  int
	Updated  time.Time
	Deleted  bool
	Patient  string // compartment patient id, "" if none
	Data     []byte // canonical JSON with id and meta; nil when Deleted
}

// Write is a new version of a resource, prepared (id, meta, JSON, index)
// before it reaches the store.
type Write struct {
	Resource
	// IfVersion is the current version the write was prepared against;
	// 0 means the resource must not exist yet.
	IfVersion int
	// New marks a server-assigned random id: the existence check is skipped.
	New   bool
	Index []fhir.IndexEntry
	// Links are the care relationships the resource states (fhir.CareLinks).
	Links []fhir.CareLink
	// stored is the sealed resource (with a Sealer), set by sealWrites;
	// sealed says sealWrites has run (Index is blind).
	stored []byte
	sealed bool
}

// Page is one page of search results.
type Page struct {
	Total    int
	Matches  []*Resource
	Included []*Resource
}

// LoadPhase announces a bulk-load phase after the resources: its name and
// how many units progress will count for it (0: unknown).
type LoadPhase func(name string, total int)

// Stats counts current (not deleted) resources by type.
type Stats map[string]int

// Store is the storage interface every back end implements.
type Store interface {
	// Read returns the current version; Deleted is set for a deleted resource.
	Read(ctx context.Context, typ, id string) (*Resource, error)
	ReadVersion(ctx context.Context, typ, id string, version int) (*Resource, error)
	// History returns up to limit versions, newest first.
	History(ctx context.Context, typ, id string, limit int) ([]*Resource, error)
	// Search runs q within sc (nil: unrestricted): the scope filters the
	// query itself, so totals, pages and includes see only what it reaches.
	Search(ctx context.Context, q *fhir.Query, sc *Scope) (*Page, error)
	// Reach returns which of patients sc reaches.
	Reach(ctx context.Context, sc *Scope, patients []string) (map[string]bool, error)
	// Missing returns the "Type/id" references among refs that do not exist
	// (or are deleted).
	Missing(ctx context.Context, refs []string) ([]string, error)
	Commit(ctx context.Context, ws []Write) error
	// CommitAudited is Commit plus audit records appended in the same
	// transaction.
	CommitAudited(ctx context.Context, ws []Write, recs []*AuditRecord) error
	// Load bulk-inserts new resources into an empty store (seeding): large
	// transactions, no existence checks. progress counts resources, then the
	// units of each later phase announced through phase (which may be nil).
	Load(ctx context.Context, batches <-chan []Write, progress func(n int), phase LoadPhase) error
	Stats(ctx context.Context) (Stats, error)
	Backend() string
	Close() error
}
