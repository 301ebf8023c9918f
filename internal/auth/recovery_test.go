package auth

import (
	"regexp"
	"strings"
	"testing"
)

func TestNewRecoveryCodes(t *testing.T) {
	codes, hashes, err := NewRecoveryCodes(10)
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != 10 || len(hashes) != 10 {
		t.Fatalf("got %d codes, %d hashes", len(codes), len(hashes))
	}
	re := regexp.MustCompile(`^[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}$`)
	seen := map[string]bool{}
	for i, c := range codes {
		if !re.MatchString(c) {
			t.Errorf("code %q has the wrong shape", c)
		}
		if seen[c] {
			t.Errorf("duplicate code %q", c)
		}
		seen[c] = true
		if hashes[i] != HashRecoveryCode(c) {
			t.Errorf("hash %d does not match its code", i)
		}
		if !LooksLikeRecoveryCode(c) {
			t.Errorf("LooksLikeRecoveryCode(%q) = false", c)
		}
	}
	for _, n := range []int{0, -1, MaxRecoveryCodes + 1} {
		if _, _, err := NewRecoveryCodes(n); err == nil {
			t.Errorf("NewRecoveryCodes(%d) gave no error", n)
		}
	}
}

func TestHashRecoveryCodeNormalises(t *testing.T) {
	const code = "ABCD-EFGH-2345-67AB"
	h := HashRecoveryCode(code)
	if len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		t.Fatalf("hash %q is not 64 hex chars", h)
	}
	for _, v := range []string{"abcd-efgh-2345-67ab", "ABCDEFGH234567AB", "abcd efgh 2345 67ab", " ABCD-EFGH-2345-67AB "} {
		if HashRecoveryCode(v) != h {
			t.Errorf("HashRecoveryCode(%q) differs", v)
		}
	}
	if HashRecoveryCode("ABCD-EFGH-2345-67AC") == h {
		t.Error("different codes hash the same")
	}
}

func TestLooksLikeRecoveryCode(t *testing.T) {
	for _, s := range []string{"ABCD-EFGH-2345-67AB", "abcdefgh234567ab", "abcd efgh 2345 67ab"} {
		if !LooksLikeRecoveryCode(s) {
			t.Errorf("LooksLikeRecoveryCode(%q) = false", s)
		}
	}
	for _, s := range []string{
		"", "123456", "ABCD-EFGH-2345-67A", "ABCD-EFGH-2345-67ABC",
		"ABCD-EFGH-2345-6781", "ABCD-EFGH-0000-67AB", "ABCD_EFGH_2345_67AB",
		"ÄBCD-EFGH-2345-67AB", strings.Repeat("-", 100) + "ABCDEFGH234567AB",
	} {
		if LooksLikeRecoveryCode(s) {
			t.Errorf("LooksLikeRecoveryCode(%q) = true", s)
		}
	}
}
