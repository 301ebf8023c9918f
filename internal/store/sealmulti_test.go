package store_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"carnet/internal/fhir"
	"carnet/internal/load"
	"carnet/internal/seal"
	"carnet/internal/store"
	"carnet/internal/store/postgres"
	"carnet/internal/store/storetest"
)

// TestSealKeysAcrossInstances: instances sharing a PostgreSQL database
// that each make a data key for a new facility at the same time do not
// give two keys one number (the second would overwrite the first's and
// its records would never open again); and an instance reading while
// another rotates and reseals never fails on a key it has not seen yet.
func TestSealKeysAcrossInstances(t *testing.T) {
	ctx := t.Context()
	u := storetest.PostgresURL(t)
	keyPath := filepath.Join(t.TempDir(), "k.key")
	if _, err := seal.InitKeyFile(keyPath); err != nil {
		t.Fatal(err)
	}
	open := func() (*store.SQL, *seal.Keyring) {
		t.Helper()
		st, err := postgres.Open(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st, unsealWith(t, st, keyPath, keyPath)
	}
	a, kra := open()
	b, _ := open()

	// Both instances know the same keys, then each makes patients of new
	// facilities at the same time.
	now := time.Now().UTC().Truncate(time.Millisecond)
	patient := func(i int, fac string) store.Write {
		r := fhir.Resource{"resourceType": "Patient", "id": fmt.Sprintf("p%d", i),
			"name":                 []any{map[string]any{"family": fmt.Sprintf("Famille%d", i)}},
			"managingOrganization": map[string]any{"reference": "Organization/" + fac}}
		w, err := load.NewWrite(r, now)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	var wg sync.WaitGroup
	for i := range 20 {
		st := a
		if i%2 == 1 {
			st = b
		}
		wg.Go(func() {
			if err := st.Commit(ctx, []store.Write{patient(i, fmt.Sprintf("fac-%d", i))}); err != nil {
				t.Errorf("commit p%d: %v", i, err)
			}
		})
	}
	wg.Wait()
	c, kc := open() // a third instance, from the table alone
	for i := range 20 {
		r, err := c.Read(ctx, "Patient", fmt.Sprintf("p%d", i))
		if err != nil {
			t.Fatalf("p%d after concurrent key creation: %v", i, err)
		}
		if !strings.Contains(string(r.Data), fmt.Sprintf("Famille%d", i)) {
			t.Fatalf("p%d reads as %s", i, r.Data)
		}
	}
	_, keys := kc.Status()
	seen := map[string]int{}
	for _, k := range keys {
		if !k.Retired {
			seen[k.Scope]++
		}
	}
	for i := range 20 {
		if seen[fmt.Sprintf("fac-%d", i)] == 0 {
			t.Errorf("fac-%d has no current key: %v", i, seen)
		}
	}

	// b reads from the database (searches: no cache) while a rotates and
	// reseals; b learns the new keys as it meets them.
	queries := make([]*fhir.Query, 20)
	for i := range queries {
		var err error
		if queries[i], err = query(t, "Patient", fmt.Sprintf("_id=p%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var stop atomic.Bool
	var reads, fails atomic.Int64
	var firstErr atomic.Value
	for range 3 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i = (i + 1) % 20 {
				p, err := b.Search(ctx, queries[i], nil)
				reads.Add(1)
				if err != nil || len(p.Matches) != 1 || !strings.Contains(string(p.Matches[0].Data), fmt.Sprintf("Famille%d", i)) {
					fails.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprint(err))
				}
			}
		})
	}
	// As carnet keys rotate does: the new key file beside the old one
	// (PATH.next), the keys rewrapped, then the file moved into place; b
	// meets rewrapped keys before and after the move.
	next := keyPath + ".next"
	nk, err := seal.InitKeyFile(next)
	if err != nil {
		t.Fatal(err)
	}
	if err := kra.Rotate(ctx, nk); err != nil {
		t.Fatal(err)
	}
	// The operator moves the new key file in place (b rereads it there).
	if err := os.Rename(next, keyPath); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := a.Reseal(ctx, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if fails.Load() > 0 {
		t.Fatalf("%d of %d reads on the other instance failed during rotation and reseal; first: %v", fails.Load(), reads.Load(), firstErr.Load())
	}
	if reads.Load() == 0 {
		t.Fatal("no reads")
	}
}

// unsealWith opens st's keys with the key file at path, rereading the key
// file at reload (after another process rotated) when it meets an unknown
// key, as carnet serve does.
func unsealWith(t *testing.T, st *store.SQL, path, reload string) *seal.Keyring {
	t.Helper()
	k, err := seal.LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := seal.Open(t.Context(), st, k)
	if err != nil {
		t.Fatalf("seal.Open: %v", err)
	}
	kr.ReloadWithAny(seal.KeyFileCandidates(reload))
	st.UseSealer(kr)
	return kr
}
