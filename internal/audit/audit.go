// Package audit is Carnet's tamper-evident audit log (DESIGN.md §4).
//
// Every request that touches patient data or security state becomes one
// Entry, appended durably to the store before the response leaves. Entries
// are the leaves of a Merkle tree in the style of RFC 6962
// (transparency-dev/merkle): leaf hash SHA-256(0x00 || entry), node hash
// SHA-256(0x01 || left || right). A checkpointer periodically signs the
// tree's size and root with Ed25519 (golang.org/x/mod/sumdb/note) and writes
// the checkpoint to the database and to a witness directory outside it,
// together with a copy of every leaf hash. Verify recomputes everything and
// names the first entry that does not match.
//
// Entries hold patient ids, never names or other identity fields: the log
// must not become a copy of the patient base.
package audit

import (
	"encoding/json"
	"time"
)

// Entry is one audited request. Its JSON encoding (encoding/json of this
// struct: fields in declaration order) is what the tree hashes.
type Entry struct {
	Time     time.Time `json:"time"`
	Account  string    `json:"account,omitempty"`  // account id ("" when unknown: a failed login)
	Username string    `json:"username,omitempty"` // as typed for logins; the account's otherwise
	Roles    []string  `json:"roles,omitempty"`
	Client   string    `json:"client"`            // client address
	Session  string    `json:"session,omitempty"` // token session
	Action   string    `json:"action"`            // read, search, create, update, delete, login, ...
	Method   string    `json:"method,omitempty"`  // HTTP method and route pattern
	Route    string    `json:"route,omitempty"`
	Patients []string  `json:"patients,omitempty"` // every patient id disclosed or written
	// Disclosed maps each resource type disclosed or written to the
	// patients whose resources of that type it carried ("" for resources
	// of no patient).
	Disclosed map[string][]string `json:"disclosed,omitempty"`
	Purpose   string              `json:"purpose,omitempty"` // care, facility, break-the-glass:<grant>, approval:<id>
	Subject   string              `json:"subject,omitempty"` // the account or grant a security action is about
	Outcome   int                 `json:"outcome"`           // HTTP status
	// Guard is what the exfiltration guard decided when it did more than
	// allow: "step-up: ...", "suspend: ...", "flag: ...", "throttle: ...".
	Guard string `json:"guard,omitempty"`
}

// Encode returns the canonical bytes of e.
func (e *Entry) Encode() []byte {
	b, _ := json.Marshal(e)
	return b
}

// Decode parses an entry.
func Decode(b []byte) (*Entry, error) {
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, err
	}
	return &e, nil
}
