package audit

import "crypto/sha256"

// RFC 6962 hashing without the per-hash digest allocation of the generic
// hasher: the same bytes (leaf: SHA-256(0x00 || entry); node: SHA-256(0x01
// || left || right)), checked against rfc6962.DefaultHasher by the tests.

// leafHash hashes entry using buf as scratch space (returned for reuse).
func leafHash(buf, entry []byte) ([]byte, []byte) {
	buf = append(append(buf[:0], 0), entry...)
	h := sha256.Sum256(buf)
	return h[:], buf
}

// hashChildren is the RFC 6962 node hash.
func hashChildren(l, r []byte) []byte {
	var b [1 + 2*sha256.Size]byte
	b[0] = 1
	copy(b[1:], l)
	copy(b[1+sha256.Size:], r)
	h := sha256.Sum256(b[:])
	return h[:]
}
