package audit

import (
	"context"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Inclusion and consistency proofs verify against signed roots with the
// reference RFC 6962 verifier, across reopening.
func TestProofs(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t)
	dir := t.TempDir()
	l, err := Open(ctx, s.st, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var entries [][]byte
	roots := map[int64][]byte{}
	for i := range 37 {
		e := mkEntry(i)
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e.Encode())
		if i == 9 || i == 20 || i == 36 {
			if _, err := l.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			size, root, _, _ := l.Latest()
			roots[size] = root
		}
	}
	l.Close(ctx)
	if l, err = Open(ctx, s.st, dir, nil); err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	if size, _, note, _ := l.Latest(); size != 37 || note == "" {
		t.Fatalf("after reopening: latest %d %q", size, note)
	}
	for size, root := range roots {
		for idx := int64(0); idx < size; idx++ {
			p, err := l.InclusionProof(idx, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(idx), uint64(size), rfc6962.DefaultHasher.HashLeaf(entries[idx]), p, root); err != nil {
				t.Errorf("inclusion of %d in %d: %v", idx, size, err)
			}
		}
	}
	for _, c := range [][2]int64{{10, 21}, {21, 37}, {10, 37}} {
		p, err := l.ConsistencyProof(c[0], c[1])
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(c[0]), uint64(c[1]), p, roots[c[0]], roots[c[1]]); err != nil {
			t.Errorf("consistency %v: %v", c, err)
		}
	}
	if _, err := l.InclusionProof(3, 99); err != ErrBeyondCheckpoint {
		t.Errorf("proof beyond the checkpoint: %v", err)
	}
	// A wrong leaf does not verify.
	p, _ := l.InclusionProof(5, 37)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, 5, 37, rfc6962.DefaultHasher.HashLeaf(entries[6]), p, roots[37]); err == nil {
		t.Error("a proof for entry 5 verified entry 6")
	}
}
