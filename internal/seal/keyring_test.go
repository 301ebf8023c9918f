package seal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"carnet/internal/store"
)

// memStore is an in-memory KeyStore: rows by number, upserted as the SQL
// store does (scope and creation time are kept on update).
type memStore struct {
	mu      sync.Mutex
	keys    map[uint32]store.SealKey
	failPut bool
	failGet bool
	puts    int
	// conflicts counts puts refused for a taken number.
	conflicts int
	// afterGet, when set, runs after SealKeys took its snapshot and before
	// it returns it (without the store's lock held).
	afterGet func()
}

var errStoreDown = errors.New("memstore: down")

func newMemStore() *memStore { return &memStore{keys: map[uint32]store.SealKey{}} }

func (m *memStore) SealKeys(ctx context.Context) ([]store.SealKey, error) {
	m.mu.Lock()
	if m.failGet {
		m.mu.Unlock()
		return nil, errStoreDown
	}
	out := make([]store.SealKey, 0, len(m.keys))
	for _, k := range m.keys {
		k.Wrapped = bytes.Clone(k.Wrapped)
		out = append(out, k)
	}
	hook := m.afterGet
	m.afterGet = nil
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b store.SealKey) int { return int(a.Num) - int(b.Num) })
	if hook != nil {
		hook()
	}
	return out, nil
}

func (m *memStore) PutSealKeys(ctx context.Context, keys []store.SealKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failPut {
		return errStoreDown
	}
	// All or none: a number held by another key (another scope or
	// creation time) is refused, as the SQL store does.
	for _, k := range keys {
		if old, ok := m.keys[k.Num]; ok && (old.Scope != k.Scope || !old.Created.Equal(k.Created)) {
			m.conflicts++
			return fmt.Errorf("memstore: seal key %d: %w", k.Num, store.ErrExists)
		}
	}
	m.puts++
	for _, k := range keys {
		k.Wrapped = bytes.Clone(k.Wrapped)
		if old, ok := m.keys[k.Num]; ok {
			old.KEK, old.Wrapped, old.Retired = k.KEK, k.Wrapped, k.Retired
			k = old
		}
		m.keys[k.Num] = k
	}
	return nil
}

func (m *memStore) setFail(put, get bool) {
	m.mu.Lock()
	m.failPut, m.failGet = put, get
	m.mu.Unlock()
}

// rows lists the stored keys by number (no hook, no failure).
func (m *memStore) rows() []store.SealKey {
	var out []store.SealKey
	for _, k := range m.snapshot() {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b store.SealKey) int { return int(a.Num) - int(b.Num) })
	return out
}

func (m *memStore) snapshot() map[uint32]store.SealKey {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := make(map[uint32]store.SealKey, len(m.keys))
	for n, k := range m.keys {
		k.Wrapped = bytes.Clone(k.Wrapped)
		c[n] = k
	}
	return c
}

func (m *memStore) update(num uint32, f func(*store.SealKey)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := m.keys[num]
	f(&k)
	m.keys[num] = k
}

// describe lists keys without their wrapped bytes.
func describe(rows []store.SealKey) string {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "[%d %q %s retired=%v] ", r.Num, r.Scope, r.KEK, r.Retired)
	}
	return b.String()
}

// hookKEK is a KEK that runs onWrap (once) before its first Wrap.
type hookKEK struct {
	KEK
	once   sync.Once
	onWrap func()
}

func (h *hookKEK) Wrap(plain, ad []byte) ([]byte, error) {
	h.once.Do(func() {
		if h.onWrap != nil {
			h.onWrap()
		}
	})
	return h.KEK.Wrap(plain, ad)
}

func openRing(t *testing.T, st KeyStore, kek KEK) *Keyring {
	t.Helper()
	k, err := Open(context.Background(), st, kek)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return k
}

func mustSeal(t *testing.T, k *Keyring, typ, id string, ver int, scope, field string, plain []byte) []byte {
	t.Helper()
	b, err := k.Seal(context.Background(), typ, id, ver, scope, field, plain)
	if err != nil {
		t.Fatalf("Seal %s/%s v%d %s scope %q: %v", typ, id, ver, field, scope, err)
	}
	return b
}

func mustOpen(t *testing.T, k *Keyring, typ, id string, ver int, field string, sealed, want []byte) {
	t.Helper()
	got, err := k.Open(typ, id, ver, field, sealed)
	if err != nil {
		t.Fatalf("Open %s/%s v%d %s: %v", typ, id, ver, field, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Open %s/%s v%d %s = %d bytes %.40q, want %d bytes %.40q", typ, id, ver, field, len(got), got, len(want), want)
	}
}

func keyNum(sealed []byte) uint32 { return binary.BigEndian.Uint32(sealed[1:5]) }

func scopeRows(rows []store.SealKey, scope string) []store.SealKey {
	var out []store.SealKey
	for _, r := range rows {
		if r.Scope == scope {
			out = append(out, r)
		}
	}
	return out
}

func TestOpenCreatesGroupAndIndexKeys(t *testing.T) {
	st, kek := newMemStore(), newKeyFile(t)
	k := openRing(t, st, kek)
	rows := st.rows()
	if len(rows) != 2 || len(scopeRows(rows, GroupScope)) != 1 || len(scopeRows(rows, IndexScope)) != 1 {
		t.Fatalf("stored keys after first Open = %+v, want one group and one index key", rows)
	}
	for _, r := range rows {
		if r.KEK != kek.ID() || r.Retired || len(r.Wrapped) == 0 || r.Created.IsZero() {
			t.Errorf("stored key %+v: want wrapped by %s, current, with a creation time", r, kek.ID())
		}
	}
	if !k.Has(GroupScope) || !k.Has(IndexScope) || k.Has("F1") {
		t.Errorf("Has: group %v index %v F1 %v", k.Has(GroupScope), k.Has(IndexScope), k.Has("F1"))
	}
	id, status := k.Status()
	if id != kek.ID() || len(status) != 2 {
		t.Fatalf("Status = %s, %+v", id, status)
	}
	for _, r := range status {
		if r.Wrapped != nil {
			t.Errorf("Status leaks wrapped key %d", r.Num)
		}
	}
	// Status is a copy.
	status[0].Retired = true
	status[0].Scope = "tampered"
	if _, s2 := k.Status(); s2[0].Retired || s2[0].Scope == "tampered" {
		t.Error("Status returns the keyring's own rows")
	}

	// Opening again neither makes nor changes keys.
	puts := st.puts
	k2 := openRing(t, st, kek)
	if st.puts != puts || len(st.rows()) != 2 {
		t.Errorf("second Open stored keys: %d puts, rows %+v", st.puts-puts, st.rows())
	}
	b := mustSeal(t, k, "Patient", "p1", 1, GroupScope, FieldResource, []byte(`{"a":1}`))
	mustOpen(t, k2, "Patient", "p1", 1, FieldResource, b, []byte(`{"a":1}`))
}

func TestOpenStoreErrors(t *testing.T) {
	ctx := context.Background()
	kek := newKeyFile(t)
	st := newMemStore()
	st.setFail(false, true)
	if k, err := Open(ctx, st, kek); err == nil || !errors.Is(err, errStoreDown) {
		t.Errorf("Open with failing SealKeys = %v, %v; want the store's error", k, err)
	}
	st.setFail(true, false)
	if k, err := Open(ctx, st, kek); err == nil || !errors.Is(err, errStoreDown) {
		t.Errorf("Open with failing PutSealKeys = %v, %v; want the store's error", k, err)
	}
	st.setFail(false, false)
	if n := len(st.rows()); n != 0 {
		t.Errorf("%d keys stored by failed Opens", n)
	}
	openRing(t, st, kek)
}

func TestSealOpenRoundTrip(t *testing.T) {
	k := openRing(t, newMemStore(), newKeyFile(t))
	big := make([]byte, 100<<10)
	for i := range big {
		big[i] = byte(i*7 + i>>8)
	}
	marker := []byte(`{"resourceType":"Patient","name":[{"family":"Dupont-Marker"}]}`)
	for _, plain := range [][]byte{nil, {}, {0}, {'x'}, marker, big} {
		for _, scope := range []string{GroupScope, "F1"} {
			b := mustSeal(t, k, "Patient", "p1", 3, scope, FieldResource, plain)
			if len(b) != 5+12+len(plain)+16 {
				t.Errorf("sealed %d bytes: %d bytes, want %d", len(plain), len(b), 5+12+len(plain)+16)
			}
			if b[0] != formatV1 {
				t.Errorf("sealed value starts with %#x", b[0])
			}
			if !k.Current(b) {
				t.Errorf("fresh seal (%d bytes, scope %q) not Current", len(plain), scope)
			}
			got, err := k.Open("Patient", "p1", 3, FieldResource, b)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("Open of %d bytes = %d bytes, %v", len(plain), len(got), err)
			}
			if len(plain) >= 8 && bytes.Contains(b, plain[len(plain)/2-4:len(plain)/2+4]) {
				t.Errorf("ciphertext of %d bytes contains the plaintext", len(plain))
			}
		}
	}
	s1 := mustSeal(t, k, "Patient", "p1", 3, "", FieldResource, marker)
	s2 := mustSeal(t, k, "Patient", "p1", 3, "", FieldResource, marker)
	if bytes.Equal(s1, s2) {
		t.Error("two seals of the same value are equal")
	}
	if bytes.Equal(s1[5:17], s2[5:17]) {
		t.Error("two seals share a nonce")
	}
	if bytes.Contains(s1, []byte("Dupont")) {
		t.Error("ciphertext contains a clear name")
	}
	// Opened plaintext is not aliased to the ciphertext.
	got, _ := k.Open("Patient", "p1", 3, FieldResource, s1)
	got[0] = '!'
	mustOpen(t, k, "Patient", "p1", 3, FieldResource, s1, marker)
}

func TestOpenBinding(t *testing.T) {
	k := openRing(t, newMemStore(), newKeyFile(t))
	plain := []byte(`{"resourceType":"Patient","id":"p1"}`)
	b := mustSeal(t, k, "Patient", "p1", 2, "F1", FieldResource, plain)
	mustOpen(t, k, "Patient", "p1", 2, FieldResource, b, plain)
	for _, c := range []struct {
		typ, id string
		ver     int
		field   string
	}{
		{"Observation", "p1", 2, FieldResource},
		{"Patient", "p2", 2, FieldResource},
		{"Patient", "p1", 1, FieldResource},
		{"Patient", "p1", 3, FieldResource},
		{"Patient", "p1", -2, FieldResource},
		{"Patient", "p1", 2, "name"},
		{"Patient", "p1", 2, ""},
		// The separators must keep the parts apart.
		{"Patient\x00p1", "", 2, FieldResource},
		{"Patien", "tp1", 2, FieldResource},
		{"Patient", "p12", 0, FieldResource},
		{"Patient", "p", 12, FieldResource},
		{"Patient", "p1", 2, "resource\x00"},
	} {
		got, err := k.Open(c.typ, c.id, c.ver, c.field, b)
		if err == nil {
			t.Errorf("Open as %q/%q v%d %q succeeded: %q", c.typ, c.id, c.ver, c.field, got)
			continue
		}
		if !errors.Is(err, ErrOpen) {
			t.Errorf("Open as %q/%q: error %q does not wrap ErrOpen", c.typ, c.id, err)
		}
		rec := fmt.Sprintf("%s/%s version %d (%s)", c.typ, c.id, c.ver, c.field)
		if !strings.Contains(err.Error(), rec) {
			t.Errorf("error %q does not name the record %q", err, rec)
		}
	}

	// Every single-byte change is refused.
	small := mustSeal(t, k, "Patient", "p1", 2, "F1", "name", []byte("Ann"))
	for i := range small {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			bad := bytes.Clone(small)
			bad[i] ^= x
			if got, err := k.Open("Patient", "p1", 2, "name", bad); err == nil || !errors.Is(err, ErrOpen) {
				t.Errorf("byte %d ^ %#x: Open = %q, %v; want ErrOpen", i, x, got, err)
			}
		}
	}
	// Every truncation and an extension are refused.
	for n := range len(small) {
		if got, err := k.Open("Patient", "p1", 2, "name", small[:n]); err == nil || !errors.Is(err, ErrOpen) {
			t.Errorf("truncated to %d: Open = %q, %v; want ErrOpen", n, got, err)
		}
	}
	if _, err := k.Open("Patient", "p1", 2, "name", append(bytes.Clone(small), 0)); !errors.Is(err, ErrOpen) {
		t.Errorf("extended: Open error %v, want ErrOpen", err)
	}
	// A value moved to another key's number is refused.
	other := bytes.Clone(small)
	grp := mustSeal(t, k, "Patient", "p1", 2, GroupScope, "name", []byte("Ann"))
	copy(other[1:5], grp[1:5])
	if keyNum(other) == keyNum(small) {
		t.Fatal("group and F1 share a key")
	}
	if _, err := k.Open("Patient", "p1", 2, "name", other); !errors.Is(err, ErrOpen) {
		t.Errorf("value relabelled with another key: error %v, want ErrOpen", err)
	}
	// Clear values.
	for _, clear := range [][]byte{nil, []byte(`{"resourceType":"Patient","id":"p1"}`), []byte("\x01"), []byte("\x01\x00\x00")} {
		_, err := k.Open("Patient", "p1", 2, FieldResource, clear)
		if !errors.Is(err, ErrOpen) || !strings.Contains(err.Error(), "not a sealed value") {
			t.Errorf("Open of clear %q: error %v, want ErrOpen and 'not a sealed value'", clear, err)
		}
		if k.Current(clear) {
			t.Errorf("Current(%q) = true", clear)
		}
	}
	// The index key is no data key.
	var idx uint32
	_, rows := k.Status()
	for _, r := range rows {
		if r.Scope == IndexScope {
			idx = r.Num
		}
	}
	forged := bytes.Clone(small)
	binary.BigEndian.PutUint32(forged[1:5], idx)
	if _, err := k.Open("Patient", "p1", 2, "name", forged); !errors.Is(err, ErrOpen) {
		t.Errorf("value labelled with the index key: error %v, want ErrOpen", err)
	}
	// An unknown key number.
	binary.BigEndian.PutUint32(forged[1:5], 9999)
	if _, err := k.Open("Patient", "p1", 2, "name", forged); !errors.Is(err, ErrOpen) || !strings.Contains(err.Error(), "9999") {
		t.Errorf("unknown key: error %v, want ErrOpen naming key 9999", err)
	}
	if k.Current(forged) {
		t.Error("Current of an unknown key = true")
	}
}

func TestOpenWrongKEK(t *testing.T) {
	ctx := context.Background()
	st, kek, other := newMemStore(), newKeyFile(t), newKeyFile(t)
	k := openRing(t, st, kek)
	b := mustSeal(t, k, "Patient", "p1", 1, "F1", FieldResource, []byte("x"))
	before := st.snapshot()

	k2, err := Open(ctx, st, other)
	if err == nil {
		t.Fatalf("Open with another key file succeeded (%v)", k2)
	}
	for _, want := range []string{kek.ID(), other.ID(), "key file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if after := st.snapshot(); len(after) != len(before) {
		t.Errorf("refused Open changed the store: %d keys, was %d", len(after), len(before))
	}
	// A KEK claiming the right id but holding another key is refused too.
	liar := &idKEK{KEK: other, id: kek.ID()}
	if _, err := Open(ctx, st, liar); err == nil || !strings.Contains(err.Error(), "does not unwrap") {
		t.Errorf("Open with a wrong key under the right id: %v, want 'does not unwrap'", err)
	}
	mustOpen(t, openRing(t, st, kek), "Patient", "p1", 1, FieldResource, b, []byte("x"))
}

// idKEK is a KEK with another id.
type idKEK struct {
	KEK
	id string
}

func (k *idKEK) ID() string { return k.id }

func TestOpenAlteredKeyRows(t *testing.T) {
	ctx := context.Background()
	kek := newKeyFile(t)
	for _, c := range []struct {
		name  string
		alter func(*store.SealKey)
	}{
		{"wrapped byte flipped", func(r *store.SealKey) { r.Wrapped[len(r.Wrapped)/2] ^= 1 }},
		{"wrapped truncated", func(r *store.SealKey) { r.Wrapped = r.Wrapped[:10] }},
		{"wrapped empty", func(r *store.SealKey) { r.Wrapped = nil }},
		{"scope moved", func(r *store.SealKey) { r.Scope = "F2" }},
		{"renumbered", func(r *store.SealKey) { r.Num += 100 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := newMemStore()
			k := openRing(t, st, kek)
			mustSeal(t, k, "Patient", "p1", 1, "F1", FieldResource, []byte("x"))
			var num uint32
			for _, r := range st.rows() {
				if r.Scope == "F1" {
					num = r.Num
				}
			}
			st.mu.Lock()
			r := st.keys[num]
			delete(st.keys, num)
			c.alter(&r)
			st.keys[r.Num] = r
			st.mu.Unlock()
			k2, err := Open(ctx, st, kek)
			if err == nil {
				t.Fatalf("Open with an altered key row succeeded (%v)", k2)
			}
			if !strings.Contains(err.Error(), kek.ID()) || !strings.Contains(err.Error(), "does not unwrap") {
				t.Errorf("error %q should say the key does not unwrap with %s", err, kek.ID())
			}
		})
	}
	// Swapping two rows' wrapped keys is caught (the wrap is bound to the
	// key number and scope).
	st := newMemStore()
	k := openRing(t, st, kek)
	mustSeal(t, k, "Patient", "p1", 1, "F1", FieldResource, []byte("x"))
	rows := st.rows()
	st.update(rows[0].Num, func(r *store.SealKey) { r.Wrapped = rows[1].Wrapped })
	st.update(rows[1].Num, func(r *store.SealKey) { r.Wrapped = rows[0].Wrapped })
	if _, err := Open(ctx, st, kek); err == nil {
		t.Error("Open with swapped wrapped keys succeeded")
	}
}

func TestScopeKeys(t *testing.T) {
	ctx := context.Background()
	st, kek := newMemStore(), newKeyFile(t)
	k := openRing(t, st, kek)
	g := mustSeal(t, k, "Patient", "p0", 1, GroupScope, FieldResource, []byte("group"))
	if k.Has("F1") {
		t.Fatal("Has(F1) before any use")
	}
	f1 := mustSeal(t, k, "Patient", "p1", 1, "F1", FieldResource, []byte("one"))
	if !k.Has("F1") {
		t.Fatal("Has(F1) false after sealing with F1")
	}
	f1b := mustSeal(t, k, "Patient", "p1", 2, "F1", FieldResource, []byte("one bis"))
	f2 := mustSeal(t, k, "Patient", "p2", 1, "F2", FieldResource, []byte("two"))
	if keyNum(f1) != keyNum(f1b) {
		t.Errorf("two F1 seals use keys %d and %d", keyNum(f1), keyNum(f1b))
	}
	if n := map[uint32]bool{keyNum(g): true, keyNum(f1): true, keyNum(f2): true}; len(n) != 3 {
		t.Errorf("group, F1 and F2 keys not distinct: %d %d %d", keyNum(g), keyNum(f1), keyNum(f2))
	}
	rows := st.rows()
	for _, sc := range []string{GroupScope, IndexScope, "F1", "F2"} {
		if rs := scopeRows(rows, sc); len(rs) != 1 || rs[0].Retired || rs[0].KEK != kek.ID() {
			t.Errorf("stored keys of scope %q: %+v, want one current", sc, rs)
		}
	}
	nums := map[uint32]bool{}
	for _, r := range rows {
		if nums[r.Num] {
			t.Errorf("key number %d used twice", r.Num)
		}
		nums[r.Num] = true
	}
	for _, v := range [][]byte{g, f1, f1b, f2} {
		if !k.Current(v) {
			t.Errorf("value with key %d not Current", keyNum(v))
		}
	}

	// Persisted: a second keyring opens them all and seals F1 with the
	// same key.
	k2 := openRing(t, st, kek)
	mustOpen(t, k2, "Patient", "p0", 1, FieldResource, g, []byte("group"))
	mustOpen(t, k2, "Patient", "p1", 1, FieldResource, f1, []byte("one"))
	mustOpen(t, k2, "Patient", "p1", 2, FieldResource, f1b, []byte("one bis"))
	mustOpen(t, k2, "Patient", "p2", 1, FieldResource, f2, []byte("two"))
	if !k2.Has("F1") || !k2.Has("F2") || k2.Has("F3") {
		t.Error("second keyring's Has disagrees")
	}
	if n := keyNum(mustSeal(t, k2, "Patient", "p1", 3, "F1", FieldResource, []byte("x"))); n != keyNum(f1) {
		t.Errorf("second keyring seals F1 with key %d, first with %d", n, keyNum(f1))
	}

	// Ensure makes missing keys once, deduplicated, and keeps existing ones.
	puts := st.puts
	if err := k.Ensure(ctx, "F1", "F3", "F4", "F3", GroupScope); err != nil {
		t.Fatal(err)
	}
	if st.puts != puts+1 {
		t.Errorf("Ensure stored keys in %d calls, want 1", st.puts-puts)
	}
	rows = st.rows()
	for _, sc := range []string{"F1", "F3", "F4", GroupScope} {
		if rs := scopeRows(rows, sc); len(rs) != 1 || rs[0].Retired {
			t.Errorf("after Ensure, keys of scope %q: %+v", sc, rs)
		}
	}
	if !k.Current(f1) {
		t.Error("Ensure replaced F1's key")
	}
	puts = st.puts
	if err := k.Ensure(ctx, "F1", "F3"); err != nil || st.puts != puts {
		t.Errorf("Ensure of existing scopes: %v, %d puts", err, st.puts-puts)
	}
	if err := k.Ensure(ctx); err != nil {
		t.Errorf("Ensure(): %v", err)
	}
	// The second keyring learns F3 on meeting a value sealed with it.
	f3 := mustSeal(t, k, "Patient", "p3", 1, "F3", FieldResource, []byte("three"))
	mustOpen(t, k2, "Patient", "p3", 1, FieldResource, f3, []byte("three"))
}

// Sealing with the index scope must not use the HMAC key as a data key
// nor crash.
func TestSealIndexScope(t *testing.T) {
	k := openRing(t, newMemStore(), newKeyFile(t))
	var (
		b   []byte
		err error
	)
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
				t.Errorf("Seal with scope %q panicked: %v", IndexScope, r)
			}
		}()
		b, err = k.Seal(context.Background(), "Patient", "p1", 1, IndexScope, FieldResource, []byte("x"))
	}()
	if err == nil {
		// Acceptable only if it opens again.
		mustOpen(t, k, "Patient", "p1", 1, FieldResource, b, []byte("x"))
	}
}

func TestSealStoreFailure(t *testing.T) {
	ctx := context.Background()
	st, kek := newMemStore(), newKeyFile(t)
	k := openRing(t, st, kek)
	st.setFail(true, false)
	if _, err := k.Seal(ctx, "Patient", "p1", 1, "F1", FieldResource, []byte("x")); !errors.Is(err, errStoreDown) {
		t.Fatalf("Seal with a new scope and a failing store: %v, want the store's error", err)
	}
	if k.Has("F1") {
		t.Error("Has(F1) after its key failed to be stored")
	}
	if err := k.Ensure(ctx, "F2"); !errors.Is(err, errStoreDown) {
		t.Errorf("Ensure with a failing store: %v", err)
	}
	if k.Has("F2") {
		t.Error("Has(F2) after its key failed to be stored")
	}
	// Existing keys keep working while the store is down.
	g := mustSeal(t, k, "Patient", "p0", 1, GroupScope, FieldResource, []byte("g"))
	st.setFail(false, false)
	b := mustSeal(t, k, "Patient", "p1", 1, "F1", FieldResource, []byte("x"))
	k2 := openRing(t, st, kek)
	mustOpen(t, k2, "Patient", "p1", 1, FieldResource, b, []byte("x"))
	mustOpen(t, k2, "Patient", "p0", 1, FieldResource, g, []byte("g"))
}

// When the store is wholly down (keys can be neither stored nor reread),
// a key that was not stored must not be used: what is sealed with it
// would be lost with the process.
func TestSealStoreDownKeyNotPersistedNotUsed(t *testing.T) {
	ctx := context.Background()
	st, kek := newMemStore(), newKeyFile(t)
	k := openRing(t, st, kek)
	st.setFail(true, true)
	if _, err := k.Seal(ctx, "Patient", "p1", 1, "F1", FieldResource, []byte("x")); err == nil {
		t.Fatal("Seal with a new scope and the store down succeeded")
	}
	if k.Has("F1") {
		t.Error("Has(F1) true though F1's key was never stored")
	}
	st.setFail(false, false)
	b, err := k.Seal(ctx, "Patient", "p1", 1, "F1", FieldResource, []byte("x"))
	if err != nil {
		t.Fatalf("Seal once the store is back: %v", err)
	}
	k2 := openRing(t, st, kek)
	if got, err := k2.Open("Patient", "p1", 1, FieldResource, b); err != nil || string(got) != "x" {
		t.Errorf("value sealed after the outage does not open from the store's keys: %q, %v", got, err)
	}
}

func TestBlind(t *testing.T) {
	st, kek := newMemStore(), newKeyFile(t)
	k := openRing(t, st, kek)
	a := k.Blind("=", "dupont")
	if a != k.Blind("=", "dupont") {
		t.Error("Blind is not deterministic")
	}
	if !strings.HasPrefix(a, "=") || len(a) != 1+16 {
		t.Errorf("Blind = %q, want the kind then 16 base64url (96 bits) characters", a)
	}
	if strings.Contains(a, "dupont") {
		t.Errorf("Blind %q contains the value", a)
	}
	seen := map[string]string{}
	for _, kind := range []string{"=", "^", "3", "t"} {
		for _, v := range []string{"", "d", "dupont", "Dupont", "dupont ", "dup"} {
			b := k.Blind(kind, v)
			if !strings.HasPrefix(b, kind) {
				t.Errorf("Blind(%q, %q) = %q lacks the kind prefix", kind, v, b)
			}
			if len(v) > 1 && strings.Contains(b[len(kind):], v) {
				t.Errorf("Blind(%q, %q) = %q contains the value", kind, v, b)
			}
			if prev, ok := seen[b]; ok {
				t.Errorf("Blind(%q, %q) = Blind(%s) = %q", kind, v, prev, b)
			}
			seen[b] = fmt.Sprintf("%q, %q", kind, v)
		}
	}
	// The hash itself depends on the kind (a prefix hash does not reveal
	// the equal trigram or token hash).
	hashes := map[string]string{}
	for _, kind := range []string{"=", "^", "3", "t"} {
		h := k.Blind(kind, "dup")[len(kind):]
		if prev, ok := hashes[h]; ok {
			t.Errorf("kinds %q and %q give the same hash of one value", prev, kind)
		}
		hashes[h] = kind
	}
	// Kind and value are separated: ("3", "x") is not ("", "3x") etc.
	if k.Blind("3", "x")[1:] == k.Blind("3x", "")[2:] {
		t.Error("Blind does not separate kind and value")
	}
	// Same store, same index key; another store, another index key.
	if b := openRing(t, st, kek).Blind("=", "dupont"); b != a {
		t.Errorf("reopened keyring blinds %q, was %q", b, a)
	}
	if b := openRing(t, newMemStore(), kek).Blind("=", "dupont"); b == a {
		t.Error("two stores share an index key")
	}
}

func TestRotate(t *testing.T) {
	ctx := context.Background()
	st, oldKEK, newKEK := newMemStore(), newKeyFile(t), newKeyFile(t)
	k := openRing(t, st, oldKEK)
	// b: opened before the rotation, rereads the key file on an unknown key.
	b := openRing(t, st, oldKEK)
	b.ReloadWith(func() (KEK, error) { return newKEK, nil })
	// c: opened before, without a way to reread the key file.
	c := openRing(t, st, oldKEK)

	og := mustSeal(t, k, "Patient", "p0", 1, GroupScope, FieldResource, []byte("old group"))
	of := mustSeal(t, k, "Patient", "p1", 1, "F1", FieldResource, []byte("old F1"))
	blinds := []string{k.Blind("=", "dupont"), k.Blind("3", "dup"), k.Blind("t", "123")}
	_, before := k.Status()

	if err := k.Rotate(ctx, newKEK); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	id, after := k.Status()
	if id != newKEK.ID() {
		t.Errorf("Status KEK after rotation = %s, want %s", id, newKEK.ID())
	}
	rows := st.rows()
	for _, r := range rows {
		if r.KEK != newKEK.ID() {
			t.Errorf("stored key %d (%q) still wrapped by %s", r.Num, r.Scope, r.KEK)
		}
	}
	if len(after) != len(before)+2 || len(rows) != len(after) {
		t.Errorf("after rotation: %d keys in Status, %d stored; want %d (a new group and F1 key)", len(after), len(rows), len(before)+2)
	}
	for _, sc := range []string{GroupScope, "F1", IndexScope} {
		cur := 0
		for _, r := range scopeRows(rows, sc) {
			if !r.Retired {
				cur++
			}
		}
		if cur != 1 {
			t.Errorf("scope %q has %d current keys: %+v", sc, cur, scopeRows(rows, sc))
		}
	}
	if n := len(scopeRows(rows, IndexScope)); n != 1 {
		t.Errorf("%d index keys after rotation, want 1 (kept)", n)
	}

	// Old values still open but are no longer current.
	mustOpen(t, k, "Patient", "p0", 1, FieldResource, og, []byte("old group"))
	mustOpen(t, k, "Patient", "p1", 1, FieldResource, of, []byte("old F1"))
	if k.Current(og) || k.Current(of) {
		t.Error("values sealed before the rotation are still Current")
	}
	ng := mustSeal(t, k, "Patient", "p0", 2, GroupScope, FieldResource, []byte("new group"))
	nf := mustSeal(t, k, "Patient", "p1", 2, "F1", FieldResource, []byte("new F1"))
	if !k.Current(ng) || !k.Current(nf) {
		t.Error("values sealed after the rotation are not Current")
	}
	if keyNum(ng) == keyNum(og) || keyNum(nf) == keyNum(of) {
		t.Error("new values sealed with the old keys")
	}
	for i, v := range []string{k.Blind("=", "dupont"), k.Blind("3", "dup"), k.Blind("t", "123")} {
		if v != blinds[i] {
			t.Errorf("blind value %d changed by the rotation: %q, was %q", i, v, blinds[i])
		}
	}

	// The store now needs the new key file.
	if _, err := Open(ctx, st, oldKEK); err == nil || !strings.Contains(err.Error(), newKEK.ID()) {
		t.Errorf("Open with the old key file after rotation: %v, want a refusal naming %s", err, newKEK.ID())
	}
	f := openRing(t, st, newKEK)
	for _, v := range []struct {
		id      string
		ver     int
		b, want []byte
	}{{"p0", 1, og, []byte("old group")}, {"p1", 1, of, []byte("old F1")}, {"p0", 2, ng, []byte("new group")}, {"p1", 2, nf, []byte("new F1")}} {
		mustOpen(t, f, "Patient", v.id, v.ver, FieldResource, v.b, v.want)
	}
	if f.Current(og) || !f.Current(ng) || !f.Current(nf) {
		t.Error("fresh keyring disagrees on Current")
	}
	if got := f.Blind("=", "dupont"); got != blinds[0] {
		t.Errorf("fresh keyring blinds %q, was %q", got, blinds[0])
	}

	// The keyring opened before rotation rereads the key file on meeting
	// the new keys.
	mustOpen(t, b, "Patient", "p1", 1, FieldResource, of, []byte("old F1"))
	mustOpen(t, b, "Patient", "p1", 2, FieldResource, nf, []byte("new F1"))
	mustOpen(t, b, "Patient", "p0", 2, FieldResource, ng, []byte("new group"))
	if id, _ := b.Status(); id != newKEK.ID() {
		t.Errorf("reloaded keyring's KEK = %s, want %s", id, newKEK.ID())
	}
	if !b.Current(nf) || b.Current(of) {
		t.Error("reloaded keyring disagrees on Current")
	}
	if got := b.Blind("=", "dupont"); got != blinds[0] {
		t.Errorf("reloaded keyring blinds %q, was %q", got, blinds[0])
	}
	// Without ReloadWith, the keys c had still open, and a key it never
	// had is refused with a clear error (and no panic).
	mustOpen(t, c, "Patient", "p0", 1, FieldResource, og, []byte("old group"))
	if _, err := c.Open("Patient", "p1", 2, FieldResource, nf); !errors.Is(err, ErrOpen) || !strings.Contains(err.Error(), newKEK.ID()) {
		t.Errorf("keyring without ReloadWith opening a post-rotation value: %v, want ErrOpen naming %s", err, newKEK.ID())
	}

	// A second rotation.
	third := newKeyFile(t)
	if err := k.Rotate(ctx, third); err != nil {
		t.Fatalf("second Rotate: %v", err)
	}
	g := openRing(t, st, third)
	mustOpen(t, g, "Patient", "p1", 1, FieldResource, of, []byte("old F1"))
	mustOpen(t, g, "Patient", "p1", 2, FieldResource, nf, []byte("new F1"))
	if g.Current(nf) {
		t.Error("value sealed before the second rotation still Current")
	}
	if g.Blind("=", "dupont") != blinds[0] {
		t.Error("second rotation changed the index key")
	}
}

func TestRotateFailureKeepsOldKey(t *testing.T) {
	ctx := context.Background()
	st, oldKEK, newKEK := newMemStore(), newKeyFile(t), newKeyFile(t)
	k := openRing(t, st, oldKEK)
	v := mustSeal(t, k, "Patient", "p1", 1, "F1", FieldResource, []byte("x"))
	st.setFail(true, false)
	if err := k.Rotate(ctx, newKEK); err == nil {
		t.Fatal("Rotate with a failing store succeeded")
	}
	st.setFail(false, false)
	if id, _ := k.Status(); id != oldKEK.ID() {
		t.Errorf("failed rotation switched the keyring to %s", id)
	}
	if !k.Current(v) {
		t.Error("failed rotation retired keys")
	}
	f := openRing(t, st, oldKEK)
	mustOpen(t, f, "Patient", "p1", 1, FieldResource, v, []byte("x"))
	w := mustSeal(t, k, "Patient", "p1", 2, "F1", FieldResource, []byte("y"))
	mustOpen(t, f, "Patient", "p1", 2, FieldResource, w, []byte("y"))
}

// A data key made while a rotation rewraps the others (a first seal for a
// new facility) must end up wrapped by the new key-encryption key too,
// else the store cannot be opened with the new key file alone.
func TestRotateConcurrentNewScope(t *testing.T) {
	ctx := context.Background()
	st, oldKEK := newMemStore(), newKeyFile(t)
	k := openRing(t, st, oldKEK)
	var mid []byte
	var sealErr error
	done := make(chan struct{})
	var once sync.Once
	next := &hookKEK{KEK: newKeyFile(t)}
	next.onWrap = func() {
		// Rotate is between its snapshot of the keys and storing them: a
		// first seal for a new facility starts now, and waits for the
		// rotation (key creation is serialised with it).
		once.Do(func() {
			go func() {
				defer close(done)
				mid, sealErr = k.Seal(ctx, "Patient", "p9", 1, "F9", FieldResource, []byte("made mid-rotation"))
			}()
			time.Sleep(20 * time.Millisecond)
		})
	}
	err := k.Rotate(ctx, next)
	<-done
	if sealErr != nil {
		t.Fatalf("seal during the rotation: %v", sealErr)
	}
	if err != nil {
		t.Errorf("Rotate: %v", err)
		// Whatever failed, the store must still open with one key file.
		_, eOld := Open(ctx, st, oldKEK)
		_, eNew := Open(ctx, st, next)
		if eOld != nil && eNew != nil {
			t.Errorf("after the failed rotation the store opens with neither key file:\nold: %v\nnew: %v\nkeys: %s", eOld, eNew, describe(st.rows()))
		}
		t.FailNow()
	}
	mustOpen(t, k, "Patient", "p9", 1, FieldResource, mid, []byte("made mid-rotation"))
	for _, r := range st.rows() {
		if r.KEK != next.ID() {
			t.Errorf("stored key %d (scope %q) still wrapped by the old key %s after rotation", r.Num, r.Scope, r.KEK)
		}
	}
	_, rows := k.Status()
	if len(scopeRows(rows, "F9")) == 0 {
		t.Errorf("keyring forgot F9's key after rotation: %+v", rows)
	}
	f, err := Open(ctx, st, next)
	if err != nil {
		t.Fatalf("Open with the new key file after rotation: %v", err)
	}
	mustOpen(t, f, "Patient", "p9", 1, FieldResource, mid, []byte("made mid-rotation"))
}

// A reload that read the store just before this keyring made a key must
// not make the keyring forget that key.
func TestReloadConcurrentNewScope(t *testing.T) {
	ctx := context.Background()
	st, kek := newMemStore(), newKeyFile(t)
	k := openRing(t, st, kek)
	var mid []byte
	var sealErr error
	done := make(chan struct{})
	var once sync.Once
	st.mu.Lock()
	st.afterGet = func() {
		// The reload has read the table: a first seal for a new facility
		// starts now (and waits for the reload to install its view).
		once.Do(func() {
			go func() {
				defer close(done)
				mid, sealErr = k.Seal(ctx, "Patient", "p9", 1, "F9", FieldResource, []byte("made mid-reload"))
			}()
			time.Sleep(20 * time.Millisecond)
		})
	}
	st.mu.Unlock()
	if err := k.Reload(ctx); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	<-done
	if sealErr != nil {
		t.Fatalf("seal during the reload: %v", sealErr)
	}
	if !k.Has("F9") {
		t.Error("Has(F9) false after a concurrent reload")
	}
	if !k.Current(mid) {
		t.Error("value sealed during a reload not Current")
	}
	// Sealing again with F9 reuses its key: no second current key.
	again := mustSeal(t, k, "Patient", "p9", 2, "F9", FieldResource, []byte("again"))
	if got, err := k.Open("Patient", "p9", 1, FieldResource, mid); err != nil || string(got) != "made mid-reload" {
		t.Errorf("Open of a value this keyring sealed during a reload: %q, %v", got, err)
	}
	if keyNum(again) != keyNum(mid) {
		t.Errorf("F9 sealed with key %d, then %d", keyNum(mid), keyNum(again))
	}
	cur := currentRows(st.rows(), "F9")
	if cur != 1 {
		t.Errorf("scope F9 has %d current stored keys, want 1", cur)
	}
}

func TestReloadNewScopeFromOtherKeyring(t *testing.T) {
	st, kek := newMemStore(), newKeyFile(t)
	a := openRing(t, st, kek)
	b := openRing(t, st, kek)
	v := mustSeal(t, a, "Patient", "p1", 1, "F1", FieldResource, []byte("x"))
	if b.Has("F1") {
		t.Fatal("b knows F1 before reloading")
	}
	mustOpen(t, b, "Patient", "p1", 1, FieldResource, v, []byte("x"))
	if !b.Has("F1") || !b.Current(v) {
		t.Error("b did not learn F1 from its reload")
	}
}

func TestConcurrentSealOpenRotate(t *testing.T) {
	ctx := context.Background()
	st, oldKEK, newKEK := newMemStore(), newKeyFile(t), newKeyFile(t)
	k := openRing(t, st, oldKEK)
	scopes := []string{GroupScope, "F1", "F2", "F3"}
	if err := k.Ensure(ctx, scopes...); err != nil {
		t.Fatal(err)
	}
	blind := k.Blind("=", "dupont")

	type sealed struct {
		id    string
		ver   int
		plain []byte
		b     []byte
	}
	const workers, per = 16, 60
	results := make([][]sealed, workers)
	var wg sync.WaitGroup
	var started atomic.Int32
	startRotate := make(chan struct{})
	var rotErr error
	rotated := make(chan struct{})
	go func() {
		defer close(rotated)
		<-startRotate
		rotErr = k.Rotate(ctx, newKEK)
	}()
	var errs atomic.Int32
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				if i == per/3 && started.Add(1) == workers/2 {
					close(startRotate)
				}
				id := fmt.Sprintf("p%d", w)
				plain := []byte(fmt.Sprintf(`{"w":%d,"i":%d,"pad":%q}`, w, i, strings.Repeat("z", i*w%97)))
				b, err := k.Seal(ctx, "Patient", id, i, scopes[(w+i)%len(scopes)], FieldResource, plain)
				if err != nil {
					t.Errorf("Seal %s v%d: %v", id, i, err)
					errs.Add(1)
					return
				}
				results[w] = append(results[w], sealed{id, i, plain, b})
				// Reopen a few earlier values, sealed before or after the
				// rotation.
				for _, j := range []int{i, i / 2, 0} {
					r := results[w][j]
					got, err := k.Open("Patient", r.id, r.ver, FieldResource, r.b)
					if err != nil || !bytes.Equal(got, r.plain) {
						t.Errorf("Open %s v%d: %q, %v", r.id, r.ver, got, err)
						errs.Add(1)
						return
					}
				}
				if got := k.Blind("=", "dupont"); got != blind {
					t.Errorf("Blind changed during rotation: %q", got)
				}
				k.Current(b)
				k.Has(scopes[i%len(scopes)])
				k.Status()
			}
		})
	}
	wg.Wait()
	<-rotated
	if rotErr != nil {
		t.Fatalf("Rotate: %v", rotErr)
	}
	if errs.Load() > 0 {
		t.FailNow()
	}
	f := openRing(t, st, newKEK)
	nOld, nNew := 0, 0
	for _, rs := range results {
		for _, r := range rs {
			mustOpen(t, k, "Patient", r.id, r.ver, FieldResource, r.b, r.plain)
			mustOpen(t, f, "Patient", r.id, r.ver, FieldResource, r.b, r.plain)
			if f.Current(r.b) {
				nNew++
			} else {
				nOld++
			}
		}
	}
	if nOld == 0 || nNew == 0 {
		t.Logf("seals before rotation %d, after %d (the rotation did not overlap the seals)", nOld, nNew)
	}
	for _, r := range st.rows() {
		if r.KEK != newKEK.ID() {
			t.Errorf("stored key %d (%q) wrapped by %s after rotation", r.Num, r.Scope, r.KEK)
		}
	}
	if _, err := Open(ctx, st, oldKEK); err == nil {
		t.Error("old key file still opens the store after rotation")
	}
	if f.Blind("=", "dupont") != blind {
		t.Error("rotation changed the index key")
	}
}

// Many goroutines meeting a new scope at once: every value opens, from
// this keyring and from the store.
func TestConcurrentFirstSealOfScope(t *testing.T) {
	ctx := context.Background()
	st, kek := newMemStore(), newKeyFile(t)
	k := openRing(t, st, kek)
	const n = 32
	out := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			b, err := k.Seal(ctx, "Patient", "p", i, "NEW", FieldResource, []byte{byte(i)})
			if err != nil {
				t.Errorf("Seal %d: %v", i, err)
				return
			}
			out[i] = b
		})
	}
	wg.Wait()
	f := openRing(t, st, kek)
	for i, b := range out {
		if b == nil {
			continue
		}
		mustOpen(t, k, "Patient", "p", i, FieldResource, b, []byte{byte(i)})
		mustOpen(t, f, "Patient", "p", i, FieldResource, b, []byte{byte(i)})
	}
	cur := currentRows(st.rows(), "NEW")
	if cur != 1 {
		t.Errorf("scope NEW has %d current keys", cur)
	}
}

// Two keyrings on one store (two instances) both making a key: the second
// takes a number the first has just used; it must not overwrite the first's
// key (whose values would be lost) but take another number.
func TestKeyNumberCollision(t *testing.T) {
	st, kek := newMemStore(), newKeyFile(t)
	a := openRing(t, st, kek)
	b := openRing(t, st, kek)
	va := mustSeal(t, a, "Patient", "pa", 1, "FA", FieldResource, []byte("from a"))
	vb := mustSeal(t, b, "Patient", "pb", 1, "FB", FieldResource, []byte("from b"))
	if keyNum(va) == keyNum(vb) {
		t.Fatalf("two instances sealed with key number %d", keyNum(va))
	}
	if st.conflicts == 0 {
		t.Log("no number conflict happened (b knew a's key)")
	}
	rows := st.rows()
	if len(scopeRows(rows, "FA")) != 1 || len(scopeRows(rows, "FB")) != 1 {
		t.Errorf("stored keys: %+v, want one FA and one FB key", rows)
	}
	for _, k := range []*Keyring{a, b, openRing(t, st, kek)} {
		mustOpen(t, k, "Patient", "pa", 1, FieldResource, va, []byte("from a"))
		mustOpen(t, k, "Patient", "pb", 1, FieldResource, vb, []byte("from b"))
	}
	// Both rotate-free instances keep sealing with their scopes' keys.
	if n := keyNum(mustSeal(t, b, "Patient", "pa", 2, "FA", FieldResource, nil)); n != keyNum(va) {
		t.Errorf("b seals FA with key %d, a did with %d", n, keyNum(va))
	}
}

// A store whose every put is refused as a taken number: creation gives up
// with an error instead of looping.
func TestKeyNumberCollisionGivesUp(t *testing.T) {
	st, kek := newMemStore(), newKeyFile(t)
	k := openRing(t, st, kek)
	ls := &conflictStore{memStore: st}
	k.st = ls
	_, err := k.Seal(context.Background(), "Patient", "p", 1, "F1", FieldResource, []byte("x"))
	if err == nil || !errors.Is(err, store.ErrExists) {
		t.Errorf("Seal with every number taken: %v, want ErrExists", err)
	}
	if ls.n.Load() > 20 {
		t.Errorf("%d attempts", ls.n.Load())
	}
	if k.Has("F1") {
		t.Error("Has(F1) after its key could not be stored")
	}
}

type conflictStore struct {
	*memStore
	n atomic.Int32
}

func (c *conflictStore) PutSealKeys(ctx context.Context, keys []store.SealKey) error {
	c.n.Add(1)
	return fmt.Errorf("conflict: %w", store.ErrExists)
}

// Reloads (another instance's keys met) while this keyring makes keys for
// new facilities: no Seal may crash or fail, and every value opens.
func TestConcurrentReloadAndNewScopes(t *testing.T) {
	ctx := context.Background()
	st, kek := newMemStore(), newKeyFile(t)
	k := openRing(t, st, kek)
	var stop atomic.Bool
	var reloads sync.WaitGroup
	reloads.Go(func() {
		for !stop.Load() {
			if err := k.Reload(ctx); err != nil {
				t.Errorf("Reload: %v", err)
				return
			}
		}
	})
	type sealed struct {
		id string
		b  []byte
	}
	// Runs for up to a second, or until the first panic (the window is
	// small: without -race it is met within ~50ms here).
	deadline := time.Now().Add(time.Second)
	const workers = 8
	results := make([][]sealed, workers)
	var panics atomic.Int32
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline) && panics.Load() == 0; i++ {
				id := fmt.Sprintf("p%d-%d", w, i)
				func() {
					defer func() {
						if r := recover(); r != nil {
							if panics.Add(1) == 1 {
								t.Errorf("Seal for a new scope panicked during a reload: %v", r)
							}
						}
					}()
					b, err := k.Seal(ctx, "Patient", id, 1, "S"+id, FieldResource, []byte(id))
					if err != nil {
						t.Errorf("Seal %s: %v", id, err)
						return
					}
					results[w] = append(results[w], sealed{id, b})
				}()
			}
		})
	}
	wg.Wait()
	stop.Store(true)
	reloads.Wait()
	if n := panics.Load(); n > 0 {
		t.Errorf("%d Seals panicked", n)
	}
	f := openRing(t, st, kek)
	for _, rs := range results {
		for _, r := range rs {
			mustOpen(t, k, "Patient", r.id, 1, FieldResource, r.b, []byte(r.id))
			mustOpen(t, f, "Patient", r.id, 1, FieldResource, r.b, []byte(r.id))
		}
	}
}

// A rotation rewraps every key in the store, also those another instance
// made since this keyring last read them.
func TestRotateRewrapsOtherInstancesKeys(t *testing.T) {
	ctx := context.Background()
	st, oldKEK, newKEK := newMemStore(), newKeyFile(t), newKeyFile(t)
	a := openRing(t, st, oldKEK)
	b := openRing(t, st, oldKEK)
	vb := mustSeal(t, b, "Patient", "pb", 1, "FB", FieldResource, []byte("from b"))
	if err := a.Rotate(ctx, newKEK); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	for _, r := range st.rows() {
		if r.KEK != newKEK.ID() {
			t.Errorf("key %d (%q) made by another instance not rewrapped: %s", r.Num, r.Scope, r.KEK)
		}
	}
	f := openRing(t, st, newKEK)
	mustOpen(t, f, "Patient", "pb", 1, FieldResource, vb, []byte("from b"))
	if f.Current(vb) {
		t.Error("other instance's FB key not retired by the rotation")
	}
	mustOpen(t, a, "Patient", "pb", 1, FieldResource, vb, []byte("from b"))
}

// currentRows counts the stored keys of scope that are not retired.
func currentRows(rows []store.SealKey, scope string) int {
	n := 0
	for _, r := range scopeRows(rows, scope) {
		if !r.Retired {
			n++
		}
	}
	return n
}
