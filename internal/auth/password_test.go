package auth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

func TestHashVerifyRoundTrip(t *testing.T) {
	const pw = "correct horse battery staple"
	h, err := HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("unexpected encoding %q", h)
	}
	parts := strings.Split(h, "$")
	if salt, _ := base64.RawStdEncoding.DecodeString(parts[4]); len(salt) != 16 {
		t.Errorf("salt length %d, want 16", len(salt))
	}
	if key, _ := base64.RawStdEncoding.DecodeString(parts[5]); len(key) != 32 {
		t.Errorf("key length %d, want 32", len(key))
	}
	ok, err := VerifyPassword(h, pw)
	if err != nil || !ok {
		t.Fatalf("VerifyPassword(right) = %v, %v", ok, err)
	}
	ok, err = VerifyPassword(h, pw+"x")
	if err != nil || ok {
		t.Fatalf("VerifyPassword(wrong) = %v, %v", ok, err)
	}
	ok, err = VerifyPassword(h, "")
	if err != nil || ok {
		t.Fatalf("VerifyPassword(empty) = %v, %v", ok, err)
	}
}

func TestHashesDifferBySalt(t *testing.T) {
	a, err := HashPassword("same password here")
	if err != nil {
		t.Fatal(err)
	}
	b, err := HashPassword("same password here")
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("two hashes of the same password are equal")
	}
}

func TestVerifyParamsFromString(t *testing.T) {
	// A hash made by hand with other parameters, salt and key sizes must
	// still verify: parameters come from the string.
	salt := make([]byte, 12)
	rand.Read(salt)
	const pw = "an older password hash"
	key := argon2.IDKey([]byte(pw), salt, 3, 8192, 2, 24)
	enc := encodePHC(8192, 3, 2, salt, key)
	if !strings.Contains(enc, "$m=8192,t=3,p=2$") {
		t.Fatalf("encoding %q", enc)
	}
	ok, err := VerifyPassword(enc, pw)
	if err != nil || !ok {
		t.Fatalf("VerifyPassword(old params) = %v, %v", ok, err)
	}
	ok, err = VerifyPassword(enc, "not it")
	if err != nil || ok {
		t.Fatalf("VerifyPassword(old params, wrong) = %v, %v", ok, err)
	}
}

func TestVerifyTampered(t *testing.T) {
	const pw = "tamper-proof password"
	h, err := HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(h, "$")
	salt, key := parts[4], parts[5]

	// Changed key or salt bytes that still parse: false, no error.
	flip := func(s string) string {
		b, _ := base64.RawStdEncoding.DecodeString(s)
		b[0] ^= 1
		return base64.RawStdEncoding.EncodeToString(b)
	}
	for name, enc := range map[string]string{
		"key":    "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + flip(key),
		"salt":   "$argon2id$v=19$m=19456,t=2,p=1$" + flip(salt) + "$" + key,
		"params": "$argon2id$v=19$m=19456,t=3,p=1$" + salt + "$" + key,
	} {
		ok, err := VerifyPassword(enc, pw)
		if err != nil || ok {
			t.Errorf("%s tampered: VerifyPassword = %v, %v; want false, nil", name, ok, err)
		}
	}

	// Malformed strings: error wrapping ErrMalformedHash.
	for _, enc := range []string{
		"",
		"plaintext",
		"$argon2i$v=19$m=19456,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=16$m=19456,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2$" + salt + "$" + key,
		"$argon2id$v=19$t=2,m=19456,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=0,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=-1,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=abc,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key + "$",
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key[:len(key)-1] + "!",
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key + "==",
		"$argon2id$v=19$m=19456,t=2,p=1$$" + key,
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$",
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key[:8],
		// Absurd parameters are refused before any work is done.
		"$argon2id$v=19$m=1048577,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=101,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2,p=17$" + salt + "$" + key,
		"$argon2id$v=19$m=99999999999,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=8,t=2,p=2$" + salt + "$" + key,
	} {
		ok, err := VerifyPassword(enc, pw)
		if ok || !errors.Is(err, ErrMalformedHash) {
			t.Errorf("VerifyPassword(%q) = %v, %v; want false, ErrMalformedHash", enc, ok, err)
		}
		if err != nil && strings.Contains(err.Error(), pw) {
			t.Errorf("error %q contains the password", err)
		}
	}
}

func TestDummyVerify(t *testing.T) {
	ap, err := parsePHC(dummyHash)
	if err != nil {
		t.Fatal(err)
	}
	if ap.m != argonMemoryKiB || ap.t != argonTime || ap.p != argonThreads ||
		len(ap.salt) != argonSaltLen || len(ap.key) != argonKeyLen {
		t.Fatalf("dummy hash parameters %+v differ from the current ones", ap)
	}
	DummyVerify("anything at all")
}

func TestCommonPasswordList(t *testing.T) {
	list := commonPasswords()
	if len(list) != 10000 {
		t.Fatalf("len(list) = %d, want 10000", len(list))
	}
	if n := strings.Count(commonPasswordsTxt, "\n"); n != 10000 {
		t.Errorf("file has %d lines, want 10000", n)
	}
	for _, p := range []string{"123456", "password", "qwerty", "letmein"} {
		if _, ok := list[p]; !ok {
			t.Errorf("%q missing from list", p)
		}
	}
	var long []string
	for p := range list {
		if p == "" || p != strings.ToLower(p) {
			t.Errorf("bad entry %q", p)
		}
		if utf8.RuneCountInString(p) >= MinPasswordRunes && len(p) <= MaxPasswordBytes {
			long = append(long, p)
		}
	}
	if len(long) == 0 {
		t.Fatal("no common password of 12 or more characters in the list")
	}
	for _, p := range long {
		err := CheckPasswordPolicy(p, "someone")
		if !errors.Is(err, ErrWeakPassword) || !strings.Contains(err.Error(), "common") {
			t.Errorf("common password %q: CheckPasswordPolicy = %v", p, err)
		}
		// Case does not help.
		if err := CheckPasswordPolicy(strings.ToUpper(p), "someone"); !errors.Is(err, ErrWeakPassword) {
			t.Errorf("upper-cased common password %q accepted", p)
		}
	}
	t.Logf("%d common passwords of %d+ characters, e.g. %q", len(long), MinPasswordRunes, long[0])
}

func TestCheckPasswordPolicy(t *testing.T) {
	random := make([]byte, 18)
	rand.Read(random)
	strong := base64.RawURLEncoding.EncodeToString(random)

	accept := []struct{ pw, user string }{
		{strong, "alice"},
		{"Tr0ub4dor&3-horse-Staple", "bob"},
		{"ünïcödé-pässwörd", "carol"},    // 16 runes
		{"my cat is called abc!", "abc"}, // username < 4 chars may appear
		{strings.Repeat("x", 12), ""},    // not in the list, no username
		{strings.Repeat("é", 512), "dave"},
	}
	for _, c := range accept {
		if err := CheckPasswordPolicy(c.pw, c.user); err != nil {
			t.Errorf("CheckPasswordPolicy(%q, %q) = %v, want nil", c.pw, c.user, err)
		}
	}

	reject := []struct{ pw, user, why string }{
		{"", "alice", "at least 12"},
		{"Sh0rt!pass", "alice", "at least 12"},
		{"ééééééééééé", "alice", "at least 12"}, // 11 runes, 22 bytes
		{strings.Repeat("a", 1025), "alice", "at most 1024"},
		{strings.Repeat("é", 513), "alice", "at most 1024"}, // 513 runes, 1026 bytes
		{"Administrator", "administrator", "username"},
		{"abc", "ABC", "at least 12"},
		{"xyzxyzxyz-dr.jones-2024", "Dr.Jones", "username"},
		{"QWERTY123456", "alice", "common"},
		{"1qaz2wsx3edc", "alice", "common"},
	}
	for _, c := range reject {
		err := CheckPasswordPolicy(c.pw, c.user)
		if !errors.Is(err, ErrWeakPassword) {
			t.Errorf("CheckPasswordPolicy(%q, %q) = %v, want ErrWeakPassword", c.pw, c.user, err)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.why) {
			t.Errorf("CheckPasswordPolicy(%q, %q) = %q, want mention of %q", c.pw, c.user, msg, c.why)
		}
		if c.pw != "" && strings.Contains(msg, c.pw) {
			t.Errorf("error %q contains the password", msg)
		}
	}
}

func ExampleCheckPasswordPolicy() {
	fmt.Println(CheckPasswordPolicy("short", "alice"))
	fmt.Println(CheckPasswordPolicy("alice-in-wonderland", "Alice"))
	fmt.Println(CheckPasswordPolicy("LeaveMeAlone", "alice"))
	// Output:
	// weak password: password must be at least 12 characters long
	// weak password: password must not contain the username
	// weak password: password is one of the most commonly used passwords; choose another
}
