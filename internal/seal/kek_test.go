package seal

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// newKeyFile makes a key file in a fresh temporary directory.
func newKeyFile(t *testing.T) *FileKEK {
	t.Helper()
	k, err := InitKeyFile(filepath.Join(t.TempDir(), "carnet.key"))
	if err != nil {
		t.Fatalf("InitKeyFile: %v", err)
	}
	return k
}

// writeKeyFile writes content at a fresh path with mode 0600.
func writeKeyFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "carnet.key")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKeyFileInitThenLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys", "nested")
	path := filepath.Join(dir, "carnet.key")
	k, err := InitKeyFile(path)
	if err != nil {
		t.Fatalf("InitKeyFile: %v", err)
	}
	if k.Path() != path {
		t.Errorf("Path() = %q, want %q", k.Path(), path)
	}
	if !strings.HasPrefix(k.ID(), "file:") || len(k.ID()) != len("file:")+12 {
		t.Errorf("ID() = %q, want file: and 12 hex digits", k.ID())
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o600 {
		t.Errorf("key file mode = %v, want 0600", got)
	}
	dst, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := dst.Mode().Perm(); got&0o077 != 0 {
		t.Errorf("key folder mode = %v, want no group/other access", got)
	}

	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || lines[0] != keyFileHeader {
		t.Fatalf("key file content = %q, want header then key", b)
	}
	raw, err := base64.StdEncoding.DecodeString(lines[1])
	if err != nil || len(raw) != 32 {
		t.Fatalf("key line %q: %d bytes, %v; want 32 bytes of base64", lines[1], len(raw), err)
	}

	l, err := LoadKeyFile(path)
	if err != nil {
		t.Fatalf("LoadKeyFile: %v", err)
	}
	if l.ID() != k.ID() {
		t.Errorf("loaded ID %q, init ID %q", l.ID(), k.ID())
	}
	// The loaded key is the same key: it unwraps what the first wrapped.
	w, err := k.Wrap([]byte("data key"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.Unwrap(w, []byte("ad"))
	if err != nil || string(p) != "data key" {
		t.Errorf("Unwrap with loaded key = %q, %v", p, err)
	}
}

func TestKeyFileIDsDiffer(t *testing.T) {
	a, b := newKeyFile(t), newKeyFile(t)
	if a.ID() == b.ID() {
		t.Errorf("two new key files share ID %q", a.ID())
	}
}

func TestKeyFileInitRefusesOverwrite(t *testing.T) {
	k := newKeyFile(t)
	before, err := os.ReadFile(k.Path())
	if err != nil {
		t.Fatal(err)
	}
	k2, err := InitKeyFile(k.Path())
	if err == nil {
		t.Fatalf("second InitKeyFile succeeded (ID %s): it must refuse to overwrite", k2.ID())
	}
	if !strings.Contains(err.Error(), k.Path()) || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("error %q should name the path and say it already exists", err)
	}
	after, err := os.ReadFile(k.Path())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Errorf("key file changed by the refused init:\n%q\n%q", before, after)
	}
	l, err := LoadKeyFile(k.Path())
	if err != nil || l.ID() != k.ID() {
		t.Errorf("after refused init: LoadKeyFile = %v, %v; want ID %s", l, err, k.ID())
	}

	// An existing non-key file is not overwritten either.
	p := writeKeyFile(t, "precious\n")
	if _, err := InitKeyFile(p); err == nil {
		t.Error("InitKeyFile over an existing file succeeded")
	}
	if b, _ := os.ReadFile(p); string(b) != "precious\n" {
		t.Errorf("existing file overwritten: %q", b)
	}
}

func TestKeyFileLoadMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope", "carnet.key")
	k, err := LoadKeyFile(path)
	if err == nil {
		t.Fatalf("LoadKeyFile of a missing file = %v, want error", k)
	}
	if !errors.Is(err, ErrNoKeyFile) {
		t.Errorf("error %q does not wrap ErrNoKeyFile", err)
	}
	for _, want := range []string{path, "carnet keys init"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestKeyFileLoadRefusesOpenMode(t *testing.T) {
	k := newKeyFile(t)
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o666, 0o700 | 0o007} {
		if err := os.Chmod(k.Path(), mode); err != nil {
			t.Fatal(err)
		}
		l, err := LoadKeyFile(k.Path())
		if err == nil {
			t.Errorf("mode %v: LoadKeyFile = %s, want refusal", mode, l.ID())
			continue
		}
		if errors.Is(err, ErrNoKeyFile) {
			t.Errorf("mode %v: error %q wraps ErrNoKeyFile", mode, err)
		}
		if !strings.Contains(err.Error(), "chmod") || !strings.Contains(err.Error(), k.Path()) {
			t.Errorf("mode %v: error %q should name the file and say chmod", mode, err)
		}
	}
	// Owner-only modes are fine.
	for _, mode := range []os.FileMode{0o600, 0o400} {
		if err := os.Chmod(k.Path(), mode); err != nil {
			t.Fatal(err)
		}
		if l, err := LoadKeyFile(k.Path()); err != nil || l.ID() != k.ID() {
			t.Errorf("mode %v: LoadKeyFile = %v, %v", mode, l, err)
		}
	}
}

func TestKeyFileLoadMalformed(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	short := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 16))
	long := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 33))
	for name, content := range map[string]string{
		"empty":          "",
		"garbage":        "\x00\x01\x02 not a key file at all",
		"key only":       key + "\n",
		"header only":    keyFileHeader + "\n",
		"wrong header":   "carnet key-encryption key v2\n" + key + "\n",
		"other header":   "-----BEGIN PRIVATE KEY-----\n" + key + "\n",
		"short key":      keyFileHeader + "\n" + short + "\n",
		"long key":       keyFileHeader + "\n" + long + "\n",
		"not base64":     keyFileHeader + "\n" + strings.Repeat("!", 44) + "\n",
		"extra line":     keyFileHeader + "\n" + key + "\n" + key + "\n",
		"swapped":        key + "\n" + keyFileHeader + "\n",
		"empty key line": keyFileHeader + "\n\n",
	} {
		t.Run(name, func(t *testing.T) {
			p := writeKeyFile(t, content)
			k, err := LoadKeyFile(p)
			if err == nil {
				t.Fatalf("LoadKeyFile(%q) = %s, want error", content, k.ID())
			}
			if errors.Is(err, ErrNoKeyFile) {
				t.Errorf("error %q wraps ErrNoKeyFile for an existing file", err)
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}

	// A well-formed file written by hand loads (CRLF and surrounding
	// blanks tolerated), and its ID depends only on the key.
	a, err := LoadKeyFile(writeKeyFile(t, keyFileHeader+"\n"+key+"\n"))
	if err != nil {
		t.Fatalf("LoadKeyFile of a valid file: %v", err)
	}
	b, err := LoadKeyFile(writeKeyFile(t, "\n"+keyFileHeader+"\r\n"+key+"\r\n\n"))
	if err != nil {
		t.Fatalf("LoadKeyFile of a valid CRLF file: %v", err)
	}
	if a.ID() != b.ID() {
		t.Errorf("same key, IDs %s and %s", a.ID(), b.ID())
	}
}

func TestFileKEKWrapUnwrap(t *testing.T) {
	k, other := newKeyFile(t), newKeyFile(t)
	plain := bytes.Repeat([]byte{0xAB}, 32)
	ad := []byte("carnet data key\x001\x00")
	w1, err := k.Wrap(plain, ad)
	if err != nil {
		t.Fatal(err)
	}
	w2, _ := k.Wrap(plain, ad)
	if bytes.Equal(w1, w2) {
		t.Error("two wraps of the same key are equal (nonce reused)")
	}
	if bytes.Contains(w1, plain) {
		t.Error("wrapped key contains the plain key")
	}
	if got, err := k.Unwrap(w1, ad); err != nil || !bytes.Equal(got, plain) {
		t.Errorf("Unwrap = %x, %v", got, err)
	}
	if _, err := k.Unwrap(w1, []byte("carnet data key\x002\x00")); err == nil {
		t.Error("Unwrap with other associated data succeeded")
	}
	if _, err := other.Unwrap(w1, ad); err == nil {
		t.Error("Unwrap with another key file succeeded")
	}
	for i := range w1 {
		bad := bytes.Clone(w1)
		bad[i] ^= 0x01
		if _, err := k.Unwrap(bad, ad); err == nil {
			t.Errorf("Unwrap of wrapped key with byte %d flipped succeeded", i)
		}
	}
	for n := range len(w1) {
		if _, err := k.Unwrap(w1[:n], ad); err == nil {
			t.Errorf("Unwrap of wrapped key truncated to %d bytes succeeded", n)
		}
	}
}
