package store_test

import (
	"testing"
	"time"

	"carnet/internal/store"
)

func TestScratchSameResourceTwice(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := t.Context()
		now := time.Now().UTC().Truncate(time.Millisecond)
		err := st.Commit(ctx, []store.Write{mkWrite(t, parse(t, patientJSON("twice", "Un", "A", "")), 1, 0, true, now)})
		t.Logf("create: %v", err)
		err = st.Commit(ctx, []store.Write{
			mkWrite(t, parse(t, patientJSON("twice", "Deux", "A", "")), 2, 1, false, now),
			mkWrite(t, parse(t, patientJSON("twice", "Trois", "B", "")), 3, 2, false, now),
		})
		t.Logf("two updates in one commit: %v", err)
		r, _ := st.Read(ctx, "Patient", "twice")
		t.Logf("read v%d %s", r.Version, r.Data)
		for _, q := range []string{"family=un", "family=deux", "family=trois"} {
			t.Logf("%s -> %d", q, search(t, st, "Patient", q).Total)
		}
		// same values in both versions
		err = st.Commit(ctx, []store.Write{
			mkWrite(t, parse(t, patientJSON("twice", "Quatre", "B", "")), 4, 3, false, now),
			mkWrite(t, parse(t, patientJSON("twice", "Quatre", "C", "")), 5, 4, false, now),
		})
		t.Logf("two updates sharing a family: %v", err)
		r, _ = st.Read(ctx, "Patient", "twice")
		t.Logf("read v%d", r.Version)
		// create and update in one commit
		err = st.Commit(ctx, []store.Write{
			mkWrite(t, parse(t, patientJSON("cu", "Cinq", "B", "")), 1, 0, true, now),
			mkWrite(t, parse(t, patientJSON("cu", "Six", "C", "")), 2, 1, false, now),
		})
		t.Logf("create+update: %v", err)
		for _, q := range []string{"family=cinq", "family=six"} {
			t.Logf("%s -> %d", q, search(t, st, "Patient", q).Total)
		}
	})
}
