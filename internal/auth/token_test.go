package auth

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestNewToken(t *testing.T) {
	for _, prefix := range []string{AccessTokenPrefix, RefreshTokenPrefix} {
		tok, hash, err := NewToken(prefix)
		if err != nil {
			t.Fatal(err)
		}
		body, ok := strings.CutPrefix(tok, prefix)
		if !ok {
			t.Fatalf("token %q lacks prefix %q", tok, prefix)
		}
		raw, err := base64.RawURLEncoding.DecodeString(body)
		if err != nil || len(raw) != 32 || len(body) != 43 {
			t.Fatalf("token body %q: %d bytes, %v", body, len(raw), err)
		}
		if hash != HashToken(tok) || len(hash) != 64 {
			t.Fatalf("hash %q does not match HashToken", hash)
		}
		if hash == HashToken(body) {
			t.Fatal("hash must cover the prefix")
		}
		tok2, hash2, _ := NewToken(prefix)
		if tok2 == tok || hash2 == hash {
			t.Fatal("two tokens are equal")
		}
	}
}

func TestHashToken(t *testing.T) {
	// SHA-256("abc")
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := HashToken("abc"); got != want {
		t.Fatalf("HashToken(abc) = %s", got)
	}
}
