package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"
)

// Report is the outcome of Verify.
type Report struct {
	Entries     int64 // entries in the database
	Checkpoints int   // checkpoints checked (database and witness)
	Witnessed   int64 // size of the latest witness checkpoint
	// OK: every entry and checkpoint is intact. Otherwise BadIndex is the
	// first entry found wrong (-1 if the problem is not one entry's) and
	// Problem says what is wrong.
	OK       bool
	BadIndex int64
	Problem  string
}

func (r *Report) fail(idx int64, format string, args ...any) *Report {
	r.OK, r.BadIndex, r.Problem = false, idx, fmt.Sprintf(format, args...)
	return r
}

type witnessCheckpoint struct {
	size int64
	root []byte
	note string
}

// readWitness loads and checks the witness's checkpoints.
func readWitness(dir string, v note.Verifier) ([]witnessCheckpoint, error) {
	f, err := os.Open(filepath.Join(dir, checkpointsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []witnessCheckpoint
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		parts := strings.Fields(sc.Text())
		if len(parts) != 3 {
			return nil, fmt.Errorf("witness checkpoints line %d: malformed", line)
		}
		size, err1 := strconv.ParseInt(parts[0], 10, 64)
		root, err2 := base64.StdEncoding.DecodeString(parts[1])
		msg, err3 := base64.StdEncoding.DecodeString(parts[2])
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("witness checkpoints line %d: malformed", line)
		}
		n, err := note.Open(msg, note.VerifierList(v))
		if err != nil || n.Text != checkpointText(size, root) {
			return nil, fmt.Errorf("witness checkpoint at size %d: signature or content invalid", size)
		}
		out = append(out, witnessCheckpoint{size, root, string(msg)})
	}
	return out, sc.Err()
}

// Verify recomputes the tree from the database's entries and checks it
// against every checkpoint (signatures by the witness's key, roots) and
// every leaf hash the witness copied. progress, if not nil, is called with
// the number of entries verified so far.
func Verify(ctx context.Context, st Store, witnessDir string, progress func(done int64)) (*Report, error) {
	rep := &Report{OK: true, BadIndex: -1}
	v, err := loadVerifier(witnessDir)
	if err != nil {
		return nil, fmt.Errorf("%w (give the witness directory with --witness)", err)
	}
	wcps, err := readWitness(witnessDir, v)
	if err != nil {
		return rep.fail(-1, "%v", err), nil
	}
	// Database checkpoints: each must be signed by the witness's key and
	// agree with the witness's copy of the same size.
	dbcps, err := st.Checkpoints(ctx)
	if err != nil {
		return nil, err
	}
	wroot := map[int64][]byte{}
	for _, c := range wcps {
		wroot[c.size] = c.root
		rep.Witnessed = max(rep.Witnessed, c.size)
	}
	roots := map[int64][]byte{}
	for _, c := range dbcps {
		n, err := note.Open([]byte(c.Note), note.VerifierList(v))
		if err != nil || n.Text != checkpointText(c.Size, c.Root) {
			return rep.fail(-1, "database checkpoint at size %d is not signed by the witness key (forged or rebuilt log)", c.Size), nil
		}
		if w, ok := wroot[c.Size]; ok && !bytes.Equal(w, c.Root) {
			return rep.fail(-1, "database checkpoint at size %d differs from the witness copy", c.Size), nil
		}
		roots[c.Size] = c.Root
	}
	for _, c := range wcps {
		roots[c.size] = c.root
	}
	rep.Checkpoints = len(dbcps) + len(wcps)
	// The witness's leaf hashes.
	lf, err := os.Open(filepath.Join(witnessDir, leavesFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var leaves *bufio.Reader
	if lf != nil {
		defer lf.Close()
		leaves = bufio.NewReaderSize(lf, 1<<20)
	}
	rng := (&compact.RangeFactory{Hash: hashChildren}).NewEmptyRange(0)
	var next, lastCP int64
	var wh [32]byte
	witnessEnded := leaves == nil
	var bad *Report
	// Chunks of entries are fetched and leaf-hashed by several goroutines
	// at once (each its own range query), and checked here in order.
	type hashed struct {
		idx  int64
		hash []byte
	}
	const chunk = 16384
	workers := max(2, runtime.GOMAXPROCS(0))
	vctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		hs  []hashed
		err error
	}
	chunks := make(chan chan result, workers*2)
	size, serr := st.AuditSize(ctx)
	if serr != nil {
		return nil, serr
	}
	// Fetch up to the highest idx present (gaps are found by the check).
	go func() {
		defer close(chunks)
		sem := make(chan struct{}, workers)
		for from := int64(0); from < size; from += chunk {
			out := make(chan result, 1)
			select {
			case chunks <- out:
			case <-vctx.Done():
				return
			}
			select {
			case sem <- struct{}{}:
			case <-vctx.Done():
				out <- result{err: vctx.Err()}
				return
			}
			go func(from int64) {
				defer func() { <-sem }()
				var buf []byte
				hs := make([]hashed, 0, chunk)
				err := st.AuditEntries(vctx, from, from+chunk, func(idx int64, entry []byte) error {
					var h []byte
					h, buf = leafHash(buf, entry)
					hs = append(hs, hashed{idx, h})
					return nil
				})
				out <- result{hs, err}
			}(from)
		}
	}()
	check := func(idx int64, h []byte) error {
		if idx != next {
			bad = rep.fail(next, "entry %d is missing (deleted, or the log was renumbered)", next)
			return errStop
		}
		if !witnessEnded {
			if _, err := io.ReadFull(leaves, wh[:]); err != nil {
				witnessEnded = true
			} else if !bytes.Equal(wh[:], h) {
				bad = rep.fail(idx, "entry %d does not match the hash the witness recorded for it (edited, replaced, inserted or moved)", idx)
				return errStop
			}
		}
		if err := rng.Append(h, nil); err != nil {
			return err
		}
		next++
		if root, ok := roots[next]; ok {
			got, err := rng.GetRootHash(nil)
			if err != nil {
				return err
			}
			if !bytes.Equal(got, root) {
				// Entry and witness hash were both rewritten: only the
				// signed root tells, and it covers a range.
				bad = rep.fail(lastCP, "the tree of the first %d entries does not match its signed checkpoint: one of entries %d to %d was changed (with its witness hash)", next, lastCP, idx)
				return errStop
			}
			lastCP = next
		}
		if progress != nil && next%65536 == 0 {
			progress(next)
		}
		return nil
	}
	err = nil
	for out := range chunks {
		res := <-out
		if err != nil {
			continue
		}
		if res.err != nil {
			err = res.err
			cancel()
			continue
		}
		for _, x := range res.hs {
			if err = check(x.idx, x.hash); err != nil {
				cancel()
				break
			}
		}
	}
	if errors.Is(err, errStop) {
		err = nil
	}
	if bad != nil {
		return bad, nil
	}
	if err != nil {
		return nil, err
	}
	if progress != nil {
		progress(next)
	}
	rep.Entries = next
	var maxSigned int64
	for size := range roots {
		maxSigned = max(maxSigned, size)
	}
	if maxSigned > next {
		return rep.fail(next, "the log ends at entry %d but a signed checkpoint covers %d entries: entries %d to %d were removed", next, maxSigned, next, maxSigned-1), nil
	}
	if !witnessEnded {
		if _, err := io.ReadFull(leaves, wh[:]); err == nil {
			return rep.fail(next, "the witness recorded entry %d, which the database no longer has (log truncated)", next), nil
		}
	}
	return rep, nil
}

var errStop = errors.New("stop")
