package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
)

// TOTP parameters (RFC 6238 defaults, what authenticator apps expect).
const (
	TOTPPeriod     = 30 // seconds per time step
	TOTPDigits     = 6
	TOTPSkew       = 1 // steps accepted either side of the current one
	totpSecretSize = 20
)

var totpB32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewTOTPSecret returns a new random 160-bit TOTP secret encoded as
// upper-case base32 without padding (32 characters), as pquerna/otp's
// generator and authenticator apps use.
func NewTOTPSecret() (string, error) {
	b := make([]byte, totpSecretSize)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("auth: reading random TOTP secret: %w", err)
	}
	return totpB32.EncodeToString(b), nil
}

// uriEscape escapes s for a Key URI label or query value: like
// url.QueryEscape but with spaces as %20, which authenticator apps expect.
func uriEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// TOTPURI returns the otpauth:// Key URI for enrolling secret in an
// authenticator app (usually shown as a QR code):
//
//	otpauth://totp/Issuer:account?secret=...&issuer=Issuer&algorithm=SHA1&digits=6&period=30
//
// Issuer and account are percent-escaped.
func TOTPURI(issuer, account, secret string) string {
	return "otpauth://totp/" + uriEscape(issuer) + ":" + uriEscape(account) +
		"?secret=" + uriEscape(secret) +
		"&issuer=" + uriEscape(issuer) +
		"&algorithm=SHA1" +
		fmt.Sprintf("&digits=%d&period=%d", TOTPDigits, TOTPPeriod)
}

var hotpOpts = hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// TOTPCode returns the 6-digit TOTP code for secret (base32) at time t.
func TOTPCode(secret string, t time.Time) (string, error) {
	return totp.GenerateCodeCustom(secret, t, totp.ValidateOpts{
		Period:    TOTPPeriod,
		Digits:    otp.DigitsSix,
		Algorithm: otp.AlgorithmSHA1,
	})
}

// TOTPStep returns the RFC 6238 time step (Unix seconds / 30) containing t.
func TOTPStep(t time.Time) int64 {
	u := t.Unix()
	s := u / TOTPPeriod
	if u < 0 && u%TOTPPeriod != 0 {
		s-- // floor for times before 1970
	}
	return s
}

// CheckTOTP reports whether code is the valid 6-digit TOTP code for secret
// at time t, allowing one step of clock skew either way, and returns the
// time step the code belongs to. To refuse replays the caller stores the
// last accepted step and accepts a code only if step > last. Input that is
// not exactly 6 ASCII digits is rejected without computing anything; the
// comparison itself is constant-time and all three candidate steps are
// always computed.
func CheckTOTP(secret, code string, t time.Time) (step int64, ok bool) {
	if len(code) != TOTPDigits {
		return 0, false
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return 0, false
		}
	}
	now := TOTPStep(t)
	for s := now - TOTPSkew; s <= now+TOTPSkew; s++ {
		if s < 0 {
			continue
		}
		want, err := hotp.GenerateCodeCustom(secret, uint64(s), hotpOpts)
		if err != nil {
			return 0, false // secret is not valid base32
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && !ok {
			step, ok = s, true
		}
	}
	return step, ok
}
