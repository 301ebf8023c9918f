package load

import (
	"context"
	"fmt"
	"time"

	"carnet/internal/store"
	"carnet/internal/synth"
)

// CanaryStore is where canaries go: their Patient records and the guard's
// list of them (store.SQL).
type CanaryStore interface {
	Commit(ctx context.Context, ws []store.Write) error
	AddCanaries(ctx context.Context, canaries map[string]string) error
}

// CanariesPerFacility is how many canary patients each facility holds.
const CanariesPerFacility = 3

// Canaries writes the group's canary patients and registers them with the
// guard. It returns how many were written.
func Canaries(ctx context.Context, st CanaryStore, g *synth.Group, perFacility int) (int, error) {
	cs := g.Canaries(perFacility)
	now := time.Now().UTC()
	ws := make([]store.Write, 0, len(cs))
	ids := make(map[string]string, len(cs))
	for _, c := range cs {
		w, err := NewWrite(c.Patient, now)
		if err != nil {
			return 0, fmt.Errorf("canary: %w", err)
		}
		ws = append(ws, w)
		ids[w.Resource.ID] = c.Facility
	}
	if err := st.Commit(ctx, ws); err != nil {
		return 0, fmt.Errorf("canaries: %w", err)
	}
	if err := st.AddCanaries(ctx, ids); err != nil {
		return 0, err
	}
	return len(cs), nil
}
