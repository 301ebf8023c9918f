// Package seal is Carnet's encryption at rest: envelope encryption of every
// stored resource (AES-256-GCM data keys per facility and one for the group,
// wrapped by a key-encryption key that never lives with the data) and blind
// indexes (HMAC-SHA-256) so that sealed fields stay searchable. Only the Go
// standard library's AES-GCM, HMAC, SHA-256 and HKDF are used; see
// docs/encryption.md for the design and what stays in clear.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KEK is a key-encryption key: it wraps and unwraps data keys. The key
// file implements it; a KMS (Vault transit, a cloud KMS, PKCS#11) can too.
type KEK interface {
	// ID names the key (not secret): stored with each wrapped data key, so
	// that a wrong key is named as such.
	ID() string
	Wrap(plain, ad []byte) ([]byte, error)
	Unwrap(wrapped, ad []byte) ([]byte, error)
}

// keyFileHeader is the first line of a key file.
const keyFileHeader = "carnet key-encryption key v1"

// ErrNoKeyFile: the key file does not exist.
var ErrNoKeyFile = errors.New("seal: no key file")

// FileKEK is a 256-bit key-encryption key kept in a file (0600), outside the
// data directory.
type FileKEK struct {
	path string
	id   string
	aead cipher.AEAD
}

// InitKeyFile creates a new key file at path (0600, its folder 0700). It
// refuses to replace an existing file: losing a key loses the data.
func InitKeyFile(path string) (*FileKEK, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("seal: key file: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("seal: %s already exists: a key file is never overwritten (losing it loses the data it protects)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("seal: key file: %w", err)
	}
	_, err = fmt.Fprintf(f, "%s\n%s\n", keyFileHeader, base64.StdEncoding.EncodeToString(key))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("seal: key file: %w", err)
	}
	return newFileKEK(path, key)
}

// LoadKeyFile reads the key file at path, with a clear error when it is
// missing, readable by others or malformed.
func LoadKeyFile(path string) (*FileKEK, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s: create one with `carnet keys init --key-file %s` (or give --key-file)", ErrNoKeyFile, path, path)
	}
	if err != nil {
		return nil, fmt.Errorf("seal: key file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("seal: key file %s is readable by others (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("seal: key file: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || strings.TrimSpace(lines[0]) != keyFileHeader {
		return nil, fmt.Errorf("seal: %s is not a Carnet key file (want the line %q, then the key)", path, keyFileHeader)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(lines[1]))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("seal: %s: the key is not 32 bytes of base64", path)
	}
	return newFileKEK(path, key)
}

func newFileKEK(path string, key []byte) (*FileKEK, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte("carnet kek id\x00"), key...))
	return &FileKEK{path: path, id: "file:" + hex.EncodeToString(sum[:6]), aead: aead}, nil
}

// ID is "file:" and 12 hex digits of a hash of the key.
func (k *FileKEK) ID() string { return k.id }

// Path is where the key file is.
func (k *FileKEK) Path() string { return k.path }

// Wrap seals a data key under the KEK.
func (k *FileKEK) Wrap(plain, ad []byte) ([]byte, error) { return sealAEAD(k.aead, plain, ad), nil }

// Unwrap opens a data key wrapped by Wrap.
func (k *FileKEK) Unwrap(wrapped, ad []byte) ([]byte, error) { return openAEAD(k.aead, wrapped, ad) }

func newAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// sealAEAD returns nonce || ciphertext, with a random 96-bit nonce.
func sealAEAD(a cipher.AEAD, plain, ad []byte) []byte {
	out := make([]byte, a.NonceSize(), a.NonceSize()+len(plain)+a.Overhead())
	if _, err := rand.Read(out); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return a.Seal(out, out, plain, ad)
}

func openAEAD(a cipher.AEAD, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < a.NonceSize()+a.Overhead() {
		return nil, errors.New("too short")
	}
	return a.Open(nil, sealed[:a.NonceSize()], sealed[a.NonceSize():], ad)
}
