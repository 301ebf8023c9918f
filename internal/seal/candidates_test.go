package seal

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestRotationUnderWayOnAnotherInstance: between carnet keys rotate's
// rewrap (with PATH.next) and its move of PATH.next to PATH, another
// instance that meets a rewrapped key opens it with the new key file
// beside the old one, and still opens everything after the move.
func TestRotationUnderWayOnAnotherInstance(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "carnet.key")
	oldKEK, err := InitKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st := newMemStore()
	a := openRing(t, st, oldKEK)
	b := openRing(t, st, oldKEK)
	b.ReloadWithAny(KeyFileCandidates(path))
	old := mustSeal(t, a, "Patient", "p0", 1, "F1", FieldResource, []byte("before"))

	newKEK, err := InitKeyFile(path + ".next")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Rotate(ctx, newKEK); err != nil {
		t.Fatal(err)
	}
	// Rewrapped, not yet moved: b meets a key made after the rotation.
	fresh := mustSeal(t, a, "Patient", "p1", 1, "F1", FieldResource, []byte("after"))
	mustOpen(t, b, "Patient", "p1", 1, FieldResource, fresh, []byte("after"))
	mustOpen(t, b, "Patient", "p0", 1, FieldResource, old, []byte("before"))

	// Moved into place: still fine.
	if err := os.Rename(path+".next", path); err != nil {
		t.Fatal(err)
	}
	later := mustSeal(t, a, "Patient", "p2", 1, "F2", FieldResource, []byte("later"))
	mustOpen(t, b, "Patient", "p2", 1, FieldResource, later, []byte("later"))

}
