package seal

import (
	"context"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"sync"
	"time"

	"carnet/internal/store"
)

// KeyStore keeps the wrapped data keys (with the data: they are useless
// without the KEK).
type KeyStore interface {
	SealKeys(ctx context.Context) ([]store.SealKey, error)
	PutSealKeys(ctx context.Context, keys []store.SealKey) error
}

// Scopes of data keys besides facilities.
const (
	// GroupScope seals what belongs to no facility.
	GroupScope = ""
	// IndexScope is the blind-index key (HMAC), separate from every data
	// key. It is rewrapped by a rotation but never replaced: its hashes
	// are in the index.
	IndexScope = "#index"
)

// Format of a sealed value: formatV1, the data key number (4 bytes, big
// endian), the AES-GCM nonce and ciphertext.
const formatV1 = 0x01

// ErrOpen: a sealed value did not open (wrong record or field, tampered,
// unknown key).
var ErrOpen = errors.New("seal: cannot open")

// Keyring holds the unwrapped data keys in memory.
type Keyring struct {
	st  KeyStore
	kek KEK
	// reloadKEK, when set, rereads the key-encryption key (the key file
	// after another process rotated it): the candidates, in order.
	reloadKEK func() ([]KEK, error)
	reloadMu  sync.Mutex
	createMu  sync.Mutex

	mu      sync.RWMutex
	keys    map[uint32]cipher.AEAD
	current map[string]uint32 // scope -> key number new data is sealed with
	rows    []store.SealKey
	next    uint32
	index   *blinder // blind-index HMAC key
}

// Open unwraps the store's data keys with kek, creating the group and
// index keys on first use. A KEK that did not wrap them is refused with a
// clear error.
func Open(ctx context.Context, st KeyStore, kek KEK) (*Keyring, error) {
	k := &Keyring{st: st, kek: kek}
	if err := k.load(ctx); err != nil {
		return nil, err
	}
	var missing []string
	for _, sc := range []string{GroupScope, IndexScope} {
		if _, ok := k.current[sc]; !ok {
			missing = append(missing, sc)
		}
	}
	if len(missing) > 0 {
		if err := k.create(ctx, false, missing...); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func wrapAD(num uint32, scope string) []byte {
	return []byte("carnet data key\x00" + strconv.FormatUint(uint64(num), 10) + "\x00" + scope)
}

// ReloadWith makes the keyring reread its keys when it meets a data key it
// does not know (another process rotated or resealed), rereading the
// key-encryption key with kek when the stored keys were rewrapped.
func (k *Keyring) ReloadWith(kek func() (KEK, error)) {
	k.reloadKEK = func() ([]KEK, error) {
		c, err := kek()
		if err != nil {
			return nil, err
		}
		return []KEK{c}, nil
	}
}

// ReloadWithAny is ReloadWith with several candidate key-encryption keys,
// tried in order (KeyFileCandidates: the key file, and the new one of a
// rotation under way).
func (k *Keyring) ReloadWithAny(keks func() ([]KEK, error)) { k.reloadKEK = keks }

// KeyFileCandidates reads the key file at path and, while a rotation is
// under way, the new key file beside it (carnet keys rotate writes
// PATH.next, rewraps the data keys with it, then moves it to PATH): another
// instance that meets the rewrapped keys in between opens them with it.
func KeyFileCandidates(path string) func() ([]KEK, error) {
	return func() ([]KEK, error) {
		var out []KEK
		var errs []error
		for _, p := range []string{path, path + ".next"} {
			kek, err := LoadKeyFile(p)
			switch {
			case err == nil:
				out = append(out, kek)
			case p == path || !errors.Is(err, ErrNoKeyFile):
				errs = append(errs, err)
			}
		}
		if len(out) == 0 {
			return nil, errors.Join(errs...)
		}
		return out, nil
	}
}

// Reload rereads the data keys from the store, and the key-encryption key
// when the stored keys were rewrapped by another process.
func (k *Keyring) Reload(ctx context.Context) error {
	k.reloadMu.Lock()
	defer k.reloadMu.Unlock()
	return k.reload(ctx)
}

func (k *Keyring) reload(ctx context.Context) error {
	// Serialised with key creation: a reread that started before a new key
	// was stored must not install its older view after it.
	k.createMu.Lock()
	defer k.createMu.Unlock()
	return k.reloadLocked(ctx)
}

// reloadLocked is reload with createMu held.
func (k *Keyring) reloadLocked(ctx context.Context) error {
	err := k.load(ctx)
	if err != nil && k.reloadKEK != nil {
		keks, kerr := k.reloadKEK()
		if kerr != nil {
			return errors.Join(err, kerr)
		}
		k.mu.RLock()
		old := k.kek
		k.mu.RUnlock()
		for _, kek := range keks {
			k.mu.Lock()
			k.kek = kek
			k.mu.Unlock()
			if err = k.load(ctx); err == nil {
				return nil
			}
		}
		// None fits: keep the key-encryption key that opened the keys held.
		k.mu.Lock()
		k.kek = old
		k.mu.Unlock()
	}
	return err
}

// keyFor returns data key num, rereading the keys once if another process
// made it since (concurrent readers wait for one reread).
func (k *Keyring) keyFor(ctx context.Context, num uint32) (cipher.AEAD, error) {
	k.mu.RLock()
	a := k.keys[num]
	k.mu.RUnlock()
	if a != nil {
		return a, nil
	}
	k.reloadMu.Lock()
	defer k.reloadMu.Unlock()
	k.mu.RLock()
	a = k.keys[num]
	k.mu.RUnlock()
	if a != nil {
		return a, nil
	}
	if err := k.reload(ctx); err != nil {
		return nil, err
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.keys[num], nil
}

func (k *Keyring) load(ctx context.Context) error {
	rows, err := k.st.SealKeys(ctx)
	if err != nil {
		return fmt.Errorf("seal: keys: %w", err)
	}
	k.mu.RLock()
	kek := k.kek
	k.mu.RUnlock()
	keys := map[uint32]cipher.AEAD{}
	current := map[string]uint32{}
	var index *blinder
	var next uint32 = 1
	for _, r := range rows {
		if r.KEK != kek.ID() {
			return fmt.Errorf("seal: this store's data keys are wrapped by key %s, not by the given key file (%s): start with the key file the store was sealed with", r.KEK, kek.ID())
		}
		raw, err := kek.Unwrap(r.Wrapped, wrapAD(r.Num, r.Scope))
		if err != nil {
			return fmt.Errorf("seal: data key %d does not unwrap with key %s: the key file is wrong or the key table was altered", r.Num, kek.ID())
		}
		if r.Scope == IndexScope {
			index = newBlinder(raw)
		} else if keys[r.Num], err = newAEAD(raw); err != nil {
			return err
		}
		if !r.Retired {
			current[r.Scope] = r.Num
		}
		next = max(next, r.Num+1)
	}
	k.mu.Lock()
	k.keys, k.current, k.rows, k.next, k.index = keys, current, rows, next, index
	k.mu.Unlock()
	return nil
}

// Status describes the keys (for `carnet keys status`).
func (k *Keyring) Status() (kek string, keys []store.SealKey) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := make([]store.SealKey, len(k.rows))
	copy(out, k.rows)
	for i := range out {
		out[i].Wrapped = nil
	}
	return k.kek.ID(), out
}

// create makes new current keys for scopes (retiring their previous ones;
// without replace, scopes that have a key by now are left alone) and stores
// them wrapped. Numbers are taken from the store's: when another instance
// took the same number first, the keys are reread and the creation retried.
func (k *Keyring) create(ctx context.Context, replace bool, scopes ...string) error {
	k.createMu.Lock()
	defer k.createMu.Unlock()
	return k.createLocked(ctx, replace, scopes...)
}

// createLocked is create with createMu held.
func (k *Keyring) createLocked(ctx context.Context, replace bool, scopes ...string) error {
	for attempt := 0; ; attempt++ {
		k.mu.RLock()
		next, kek := k.next, k.kek
		var put []store.SealKey
		var todo []string
		for _, sc := range scopes {
			old, ok := k.current[sc]
			if ok && !replace {
				continue
			}
			todo = append(todo, sc)
			for _, r := range k.rows {
				if ok && r.Num == old {
					r.Retired = true
					r.Wrapped = slices.Clone(r.Wrapped)
					put = append(put, r)
				}
			}
		}
		k.mu.RUnlock()
		if len(todo) == 0 {
			return nil
		}
		now := time.Now().UTC()
		for _, sc := range todo {
			raw := make([]byte, 32)
			if _, err := rand.Read(raw); err != nil {
				return err
			}
			w, err := kek.Wrap(raw, wrapAD(next, sc))
			if err != nil {
				return fmt.Errorf("seal: wrap: %w", err)
			}
			put = append(put, store.SealKey{Num: next, Scope: sc, KEK: kek.ID(), Wrapped: w, Created: now})
			next++
		}
		err := k.st.PutSealKeys(ctx, put)
		if errors.Is(err, store.ErrExists) && attempt < 10 {
			if err := k.load(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("seal: store keys: %w", err)
		}
		// The new keys, and whatever other instances made meanwhile.
		return k.load(ctx)
	}
}

// ad binds a sealed value to its record and field.
func ad(typ, id string, ver int, field string) []byte {
	b := make([]byte, 0, 32+len(typ)+len(id)+len(field))
	b = append(b, "carnet/v1\x00"...)
	b = append(b, typ...)
	b = append(b, 0)
	b = append(b, id...)
	b = append(b, 0)
	b = strconv.AppendInt(b, int64(ver), 10)
	b = append(b, 0)
	return append(b, field...)
}

// FieldResource names the whole resource body as a sealed field.
const FieldResource = "resource"

// Seal encrypts plain as field of version ver of typ/id, with the current
// data key of scope (a facility id; "" or a facility without a key yet
// gets one made on first use).
func (k *Keyring) Seal(ctx context.Context, typ, id string, ver int, scope, field string, plain []byte) ([]byte, error) {
	if scope == IndexScope {
		return nil, fmt.Errorf("seal: %q is the blind-index key's scope, not a facility", scope)
	}
	k.mu.RLock()
	num, ok := k.current[scope]
	a := k.keys[num]
	k.mu.RUnlock()
	if !ok || a == nil {
		if err := k.create(ctx, false, scope); err != nil {
			return nil, err
		}
		k.mu.RLock()
		num = k.current[scope]
		a = k.keys[num]
		k.mu.RUnlock()
		if a == nil {
			return nil, fmt.Errorf("seal: no data key for scope %q", scope)
		}
	}
	out := make([]byte, 5, 5+a.NonceSize()+len(plain)+a.Overhead())
	out[0] = formatV1
	binary.BigEndian.PutUint32(out[1:], num)
	nonce := out[len(out) : len(out)+a.NonceSize()]
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out = out[:5+a.NonceSize()]
	return a.Seal(out, nonce, plain, ad(typ, id, ver, field)), nil
}

// Open decrypts a value sealed by Seal for the same record, version and
// field. Anything else (another record's or field's ciphertext, a
// tampered one, a clear value) is refused with a clear error.
func (k *Keyring) Open(typ, id string, ver int, field string, sealed []byte) ([]byte, error) {
	if len(sealed) < 5 || sealed[0] != formatV1 {
		return nil, fmt.Errorf("%w %s/%s version %d (%s): not a sealed value", ErrOpen, typ, id, ver, field)
	}
	num := binary.BigEndian.Uint32(sealed[1:5])
	a, err := k.keyFor(context.Background(), num)
	if err != nil {
		return nil, fmt.Errorf("%w %s/%s version %d (%s): data key %d: %w", ErrOpen, typ, id, ver, field, num, err)
	}
	if a == nil {
		return nil, fmt.Errorf("%w %s/%s version %d (%s): unknown data key %d", ErrOpen, typ, id, ver, field, num)
	}
	plain, err := openAEAD(a, sealed[5:], ad(typ, id, ver, field))
	if err != nil {
		return nil, fmt.Errorf("%w %s/%s version %d (%s): it was not sealed for this record and field, or was altered", ErrOpen, typ, id, ver, field)
	}
	return plain, nil
}

// Has reports whether scope has a current data key.
func (k *Keyring) Has(scope string) bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	_, ok := k.current[scope]
	return ok
}

// Ensure makes data keys for the scopes that have none (before a bulk
// load, which seals with the group key where a facility has no key).
func (k *Keyring) Ensure(ctx context.Context, scopes ...string) error {
	var missing []string
	for _, sc := range scopes {
		if !k.Has(sc) && !slices.Contains(missing, sc) {
			missing = append(missing, sc)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return k.create(ctx, false, missing...)
}

// Current reports whether a sealed value uses the current key of its
// scope (false: a reseal would re-encrypt it).
func (k *Keyring) Current(sealed []byte) bool {
	if len(sealed) < 5 || sealed[0] != formatV1 {
		return false
	}
	num := binary.BigEndian.Uint32(sealed[1:5])
	k.mu.RLock()
	defer k.mu.RUnlock()
	for _, r := range k.rows {
		if r.Num == num {
			return !r.Retired
		}
	}
	return false
}

// Blind is the blind-index value of v (already normalised) under kind (a
// short tag: "=" whole value, "^" prefix, "3" trigram, "t" token): 96 bits
// of HMAC-SHA-256, base64url (16 characters: two values of a group share
// one by chance with a probability far below 10^-12).
func (k *Keyring) Blind(kind, v string) string {
	k.mu.RLock()
	b := k.index
	k.mu.RUnlock()
	h := b.pool.Get().(hash.Hash)
	h.Reset()
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write([]byte(v))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	b.pool.Put(h)
	return kind + base64.RawURLEncoding.EncodeToString(sum[:12])
}

// blinder keeps HMAC states of the index key for reuse (hmac.New costs
// more than hashing a name).
type blinder struct{ pool sync.Pool }

func newBlinder(key []byte) *blinder {
	b := &blinder{}
	b.pool.New = func() any { return hmac.New(sha256.New, key) }
	return b
}

// Rotate wraps every data key with next (the new key file) and makes new
// current data keys for every scope but the index: new data is sealed
// with them at once, old data stays readable until a reseal.
func (k *Keyring) Rotate(ctx context.Context, next KEK) error {
	k.createMu.Lock()
	defer k.createMu.Unlock()
	if err := k.reloadLocked(ctx); err != nil {
		return err
	}
	k.mu.RLock()
	old := k.kek
	k.mu.RUnlock()
	// Rewrap every row of the table, again until none is left under the
	// old key (another instance may make a key meanwhile).
	for attempt := 0; ; attempt++ {
		rows, err := k.st.SealKeys(ctx)
		if err != nil {
			return fmt.Errorf("seal: rotate: %w", err)
		}
		var put []store.SealKey
		for _, r := range rows {
			if r.KEK == next.ID() {
				continue
			}
			raw, err := old.Unwrap(r.Wrapped, wrapAD(r.Num, r.Scope))
			if err != nil {
				return fmt.Errorf("seal: rotate: data key %d does not unwrap with key %s: %w", r.Num, old.ID(), err)
			}
			if r.Wrapped, err = next.Wrap(raw, wrapAD(r.Num, r.Scope)); err != nil {
				return fmt.Errorf("seal: rotate: %w", err)
			}
			r.KEK = next.ID()
			put = append(put, r)
		}
		if len(put) == 0 {
			break
		}
		if attempt == 10 {
			return fmt.Errorf("seal: rotate: keys keep appearing under the old key")
		}
		if err := k.st.PutSealKeys(ctx, put); err != nil {
			return fmt.Errorf("seal: rotate: %w", err)
		}
	}
	k.mu.Lock()
	k.kek = next
	k.mu.Unlock()
	if err := k.load(ctx); err != nil {
		return err
	}
	k.mu.RLock()
	var scopes []string
	for sc := range k.current {
		if sc != IndexScope {
			scopes = append(scopes, sc)
		}
	}
	k.mu.RUnlock()
	return k.createLocked(ctx, true, scopes...)
}
