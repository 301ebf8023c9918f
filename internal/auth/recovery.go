package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"strings"
)

// MaxRecoveryCodes bounds how many codes NewRecoveryCodes makes at once.
const MaxRecoveryCodes = 100

const recoveryCodeLen = 16 // base32 characters: 16 * 5 = 80 bits

var recoveryB32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewRecoveryCodes makes n one-time MFA recovery codes. Each code is 16
// characters of the base32 alphabet (A-Z, 2-7; 80 random bits), shown
// grouped as XXXX-XXXX-XXXX-XXXX. hashes[i] is HashRecoveryCode(codes[i]):
// store the hashes and show the codes to the user once.
func NewRecoveryCodes(n int) (codes []string, hashes []string, err error) {
	if n < 1 || n > MaxRecoveryCodes {
		return nil, nil, fmt.Errorf("auth: recovery code count must be 1..%d", MaxRecoveryCodes)
	}
	codes = make([]string, n)
	hashes = make([]string, n)
	buf := make([]byte, 10)
	for i := range n {
		if _, err := rand.Read(buf); err != nil {
			return nil, nil, fmt.Errorf("auth: reading random recovery code: %w", err)
		}
		s := recoveryB32.EncodeToString(buf)
		codes[i] = s[0:4] + "-" + s[4:8] + "-" + s[8:12] + "-" + s[12:16]
		hashes[i] = HashRecoveryCode(codes[i])
	}
	return codes, hashes, nil
}

// normalizeRecoveryCode upper-cases s and drops dashes and spaces.
func normalizeRecoveryCode(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == ' ' {
			return -1
		}
		if r >= 'a' && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}, s)
}

// HashRecoveryCode normalises code (upper case, no dashes or spaces) and
// returns the hex SHA-256 of the result. A fast unsalted hash is enough
// here: a code carries 80 random bits, so brute-forcing a stolen hash is
// infeasible, unlike a human-chosen password.
func HashRecoveryCode(code string) string {
	sum := sha256.Sum256([]byte(normalizeRecoveryCode(code)))
	return hex.EncodeToString(sum[:])
}

// LooksLikeRecoveryCode reports whether s, once normalised, is 16 base32
// characters, so a single login field can take either a 6-digit TOTP code
// or a recovery code.
func LooksLikeRecoveryCode(s string) bool {
	if len(s) > 64 {
		return false
	}
	n := normalizeRecoveryCode(s)
	if len(n) != recoveryCodeLen {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'A' && c <= 'Z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}
