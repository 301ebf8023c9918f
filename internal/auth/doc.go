// Package auth handles staff identity: passwords, MFA, tokens and login
// throttling.
//
// The building blocks here are pure functions with no database access:
//
//   - passwords: argon2id hashing in PHC string form (HashPassword,
//     VerifyPassword, DummyVerify) and a password policy
//     (CheckPasswordPolicy) that refuses short passwords, passwords built
//     from the username and the 10,000 most common passwords;
//   - MFA: RFC 6238 TOTP secrets, otpauth:// URIs and code checks that
//     return the matched time step so callers can refuse replays
//     (NewTOTPSecret, TOTPURI, TOTPCode, CheckTOTP), plus one-time
//     recovery codes (NewRecoveryCodes, HashRecoveryCode,
//     LooksLikeRecoveryCode);
//   - tokens: random opaque access and refresh tokens of which only a
//     SHA-256 hash is stored (NewToken, HashToken).
//
// Nothing in this package logs, and no error it returns contains a
// password, a code or a token.
package auth
