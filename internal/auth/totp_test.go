package auth

import (
	"encoding/base32"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
)

// RFC 6238 Appendix B SHA1 secret: ASCII "12345678901234567890".
var rfcSecret = base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString([]byte("12345678901234567890"))

var rfcVectors = []struct {
	unix int64
	code string // last 6 digits of the RFC's 8-digit value
}{
	{59, "287082"},         // 94287082
	{1111111109, "081804"}, // 07081804
	{1111111111, "050471"}, // 14050471
	{1234567890, "005924"}, // 89005924
	{2000000000, "279037"}, // 69279037
}

func TestTOTPRFC6238Vectors(t *testing.T) {
	if rfcSecret != "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" {
		t.Fatalf("secret %q", rfcSecret)
	}
	for _, v := range rfcVectors {
		tm := time.Unix(v.unix, 0)
		got, err := TOTPCode(rfcSecret, tm)
		if err != nil || got != v.code {
			t.Errorf("TOTPCode(t=%d) = %q, %v; want %q", v.unix, got, err, v.code)
		}
		step, ok := CheckTOTP(rfcSecret, v.code, tm)
		if !ok || step != v.unix/30 {
			t.Errorf("CheckTOTP(t=%d) = %d, %v; want %d, true", v.unix, step, ok, v.unix/30)
		}
	}
}

func TestCheckTOTPSkew(t *testing.T) {
	secret, err := NewTOTPSecret()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_015, 0) // middle of step 56666667
	cur := now.Unix() / 30
	for d := int64(-3); d <= 3; d++ {
		code, err := TOTPCode(secret, now.Add(time.Duration(d)*30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		step, ok := CheckTOTP(secret, code, now)
		want := d >= -1 && d <= 1
		if ok != want {
			// A code from a far step may collide with a near one by chance
			// (1 in 10^6 per step); only report a real mismatch.
			if near, _ := TOTPCode(secret, now); !(ok && code == near) {
				t.Errorf("offset %d steps: ok = %v, want %v", d, ok, want)
			}
			continue
		}
		if ok && step != cur+d {
			t.Errorf("offset %d steps: step = %d, want %d", d, step, cur+d)
		}
	}
}

func TestCheckTOTPRejectsGarbage(t *testing.T) {
	tm := time.Unix(59, 0)
	for _, code := range []string{
		"", "28708", "2870822", "28708a", " 287082", "287082 ", "28 082",
		"２８７０８２", "-28708", "+28708", "0x1234", "94287082",
	} {
		if _, ok := CheckTOTP(rfcSecret, code, tm); ok {
			t.Errorf("CheckTOTP accepted %q", code)
		}
	}
	if _, ok := CheckTOTP(rfcSecret, "000000", tm); ok {
		t.Error("CheckTOTP accepted a wrong code")
	}
	if _, ok := CheckTOTP("not base32!!", "287082", tm); ok {
		t.Error("CheckTOTP accepted with an invalid secret")
	}
	if _, err := TOTPCode("not base32!!", tm); err == nil {
		t.Error("TOTPCode accepted an invalid secret")
	}
}

func TestTOTPReplayViaStep(t *testing.T) {
	// The same code checked again gives the same step, so a caller that
	// requires step > lastUsed refuses the replay.
	tm := time.Unix(1111111111, 0)
	code, _ := TOTPCode(rfcSecret, tm)
	s1, ok1 := CheckTOTP(rfcSecret, code, tm)
	s2, ok2 := CheckTOTP(rfcSecret, code, tm.Add(20*time.Second))
	if !ok1 || !ok2 || s1 != s2 {
		t.Fatalf("steps %d/%v and %d/%v", s1, ok1, s2, ok2)
	}
}

func TestNewTOTPSecret(t *testing.T) {
	a, err := NewTOTPSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewTOTPSecret()
	if a == b {
		t.Fatal("two secrets are equal")
	}
	if len(a) != 32 || strings.ToUpper(a) != a || strings.Contains(a, "=") {
		t.Fatalf("secret %q: want 32 upper-case base32 chars, no padding", a)
	}
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(a)
	if err != nil || len(raw) != 20 {
		t.Fatalf("decode: %d bytes, %v", len(raw), err)
	}
}

func TestTOTPURI(t *testing.T) {
	got := TOTPURI("Carnet", "alice@example.org", "JBSWY3DPEHPK3PXP")
	want := "otpauth://totp/Carnet:alice%40example.org?secret=JBSWY3DPEHPK3PXP&issuer=Carnet&algorithm=SHA1&digits=6&period=30"
	if got != want {
		t.Errorf("TOTPURI = %q\nwant      %q", got, want)
	}

	uri := TOTPURI("Carnet Clinic & Co", "dr jones:x", "JBSWY3DPEHPK3PXP")
	if strings.ContainsAny(strings.TrimPrefix(uri, "otpauth://totp/"), " +") {
		t.Errorf("unescaped space or plus in %q", uri)
	}
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("issuer") != "Carnet Clinic & Co" || q.Get("secret") != "JBSWY3DPEHPK3PXP" {
		t.Errorf("query %v", q)
	}
	key, err := otp.NewKeyFromURL(uri)
	if err != nil {
		t.Fatal(err)
	}
	if key.Issuer() != "Carnet Clinic & Co" || key.AccountName() != "dr jones:x" ||
		key.Secret() != "JBSWY3DPEHPK3PXP" || key.Period() != 30 ||
		key.Digits() != otp.DigitsSix || key.Algorithm() != otp.AlgorithmSHA1 {
		t.Errorf("key parsed back as issuer=%q account=%q secret=%q period=%d digits=%v alg=%v",
			key.Issuer(), key.AccountName(), key.Secret(), key.Period(), key.Digits(), key.Algorithm())
	}
}
