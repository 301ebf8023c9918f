package sqlite

import (
	"testing"
)

// TestCommitsAreDurable: both database files (records and audit log) are
// fsync'd on every commit. The driver's build makes synchronous=NORMAL
// the default in WAL mode, under which a commit reaches the disk only at
// the next checkpoint: an acknowledged audit entry could be lost with the
// power.
func TestCommitsAreDurable(t *testing.T) {
	st, err := Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, db := range []string{"main", "audit"} {
		var mode string
		if err := st.WriterSetting(t.Context(), "PRAGMA "+db+".journal_mode", &mode); err != nil || mode != "wal" {
			t.Errorf("%s: journal_mode %q, %v; want wal", db, mode, err)
		}
		var sync int
		if err := st.WriterSetting(t.Context(), "PRAGMA "+db+".synchronous", &sync); err != nil || sync != 2 {
			t.Errorf("%s: synchronous = %d, %v; want 2 (FULL)", db, sync, err)
		}
	}
}
