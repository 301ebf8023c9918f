package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// Token prefixes, so a leaked token is recognisable (e.g. by secret
// scanners) and an access token cannot be mistaken for a refresh token.
const (
	AccessTokenPrefix  = "cat_"
	RefreshTokenPrefix = "crt_"
)

// NewToken returns a new opaque bearer token, prefix followed by 32 random
// bytes in unpadded base64url (43 characters), and its HashToken hash. Give
// the token to the client and store only the hash.
func NewToken(prefix string) (token string, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("auth: reading random token: %w", err)
	}
	token = prefix + base64.RawURLEncoding.EncodeToString(b)
	return token, HashToken(token), nil
}

// HashToken returns the hex SHA-256 of the whole token, prefix included,
// for storage and lookup. Tokens carry 256 random bits, so a fast hash is
// enough.
func HashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}
