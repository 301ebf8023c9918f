package audit

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"carnet/internal/store"
)

// Origin names the log in its signed checkpoints.
const Origin = "carnet-audit"

// Store is what the log keeps in the database.
type Store interface {
	AppendAudit(ctx context.Context, recs ...*store.AuditRecord) error
	AuditEntries(ctx context.Context, from, to int64, fn func(idx int64, entry []byte) error) error
	AuditSize(ctx context.Context) (int64, error)
	AddCheckpoint(ctx context.Context, c *store.Checkpoint) error
	Checkpoints(ctx context.Context) ([]store.Checkpoint, error)
}

var hasher = rfc6962.DefaultHasher

// LeafHash is the RFC 6962 hash of an entry.
func LeafHash(entry []byte) []byte { return hasher.HashLeaf(entry) }

// Witness files, in a directory outside the database.
const (
	keyFile         = "audit-signing.key" // Ed25519 signer key (note format), 0600
	pubFile         = "audit-signing.pub" // its verifier key
	leavesFile      = "leaves"            // every leaf hash, 32 bytes each, in index order
	checkpointsFile = "checkpoints"       // one line per checkpoint: size root-base64 note-base64
)

// Witness is the directory that keeps the signing key and copies of the
// leaf hashes and checkpoints outside the database.
type Witness struct {
	Dir      string
	signer   note.Signer
	verifier note.Verifier
}

// OpenWitness opens dir, creating it and a signing key on first use.
func OpenWitness(dir string) (*Witness, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit witness: %w", err)
	}
	kp := filepath.Join(dir, keyFile)
	skey, err := os.ReadFile(kp)
	if errors.Is(err, fs.ErrNotExist) {
		sk, vk, err := note.GenerateKey(rand.Reader, Origin)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(kp, []byte(sk+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("audit witness: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, pubFile), []byte(vk+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("audit witness: %w", err)
		}
		skey = []byte(sk)
	} else if err != nil {
		return nil, fmt.Errorf("audit witness: %w", err)
	}
	w := &Witness{Dir: dir}
	if w.signer, err = note.NewSigner(strings.TrimSpace(string(skey))); err != nil {
		return nil, fmt.Errorf("audit witness: signing key %s unreadable: %w", kp, err)
	}
	if w.verifier, err = loadVerifier(dir); err != nil {
		return nil, err
	}
	return w, nil
}

func loadVerifier(dir string) (note.Verifier, error) {
	vkey, err := os.ReadFile(filepath.Join(dir, pubFile))
	if err != nil {
		return nil, fmt.Errorf("audit witness: %w", err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		return nil, fmt.Errorf("audit witness: verifier key unreadable: %w", err)
	}
	return v, nil
}

// checkpointText is the signed body of a checkpoint.
func checkpointText(size int64, root []byte) string {
	return Origin + "\n" + strconv.FormatInt(size, 10) + "\n" + base64.StdEncoding.EncodeToString(root) + "\n"
}

// Log appends entries and checkpoints the tree.
type Log struct {
	st  Store
	w   *Witness
	log *slog.Logger

	mu     sync.Mutex // checkpointing
	rng    *compact.Range
	leaves *os.File
	signed int64 // size of the last signed checkpoint (-1: none yet)

	signedSize int64 // the last signed checkpoint (for proofs)
	signedRoot []byte
	signedNote string
}

// NewAppender returns a log that only appends: for the instances sharing a
// PostgreSQL database other than the one that checkpoints (one signing key,
// one witness, one checkpointer).
func NewAppender(st Store) *Log { return &Log{st: st} }

// Open returns the log over st with its witness directory. It brings the
// witness up to date with the database (entries committed after the last
// checkpoint, e.g. before a crash) and checkpoints.
func Open(ctx context.Context, st Store, witnessDir string, logger *slog.Logger) (*Log, error) {
	w, err := OpenWitness(witnessDir)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Log{st: st, w: w, log: logger, rng: (&compact.RangeFactory{Hash: hashChildren}).NewEmptyRange(0), signed: -1}
	if wcps, err := readWitness(witnessDir, w.verifier); err != nil {
		return nil, err
	} else if len(wcps) > 0 {
		last := wcps[len(wcps)-1]
		l.signed = last.size
		l.signedSize, l.signedRoot, l.signedNote = last.size, last.root, last.note
	}
	f, err := os.OpenFile(filepath.Join(witnessDir, leavesFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit witness: %w", err)
	}
	l.leaves = f
	// A crash in the middle of writing hashes leaves a partial one: drop it
	// (the entry is in the database and is hashed again below).
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if rem := fi.Size() % 32; rem != 0 {
		logger.Warn("audit witness: dropping a partial leaf hash left by a crash", "file", f.Name())
		if err := f.Truncate(fi.Size() - rem); err != nil {
			return nil, err
		}
	}
	// Rebuild the compact range from the witness's leaf hashes.
	r := bufio.NewReaderSize(f, 1<<20)
	var h [32]byte
	for {
		if _, err := io.ReadFull(r, h[:]); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, err
		}
		if err := l.rng.Append(append([]byte(nil), h[:]...), nil); err != nil {
			return nil, err
		}
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		return nil, err
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// Close stops the log (after a last checkpoint).
func (l *Log) Close(ctx context.Context) error {
	if l.w == nil {
		return nil
	}
	_, err := l.Checkpoint(ctx)
	if cerr := l.leaves.Close(); err == nil {
		err = cerr
	}
	return err
}

// Append records e durably and returns its index.
func (l *Log) Append(ctx context.Context, e *Entry) (int64, error) {
	rec := &store.AuditRecord{At: e.Time, Account: e.Account, Action: e.Action, Client: e.Client, Session: e.Session, Patients: e.Patients, Entry: e.Encode()}
	if err := l.st.AppendAudit(ctx, rec); err != nil {
		return 0, err
	}
	return rec.Index, nil
}

// Size is the number of entries covered by the last signed checkpoint.
func (l *Log) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return max(l.signed, 0)
}

// Checkpoint hashes the entries appended since the last checkpoint into
// the tree, copies their hashes to the witness, signs the new size and root
// and stores the checkpoint in the witness and the database. It returns nil
// if there was nothing new.
func (l *Log) Checkpoint(ctx context.Context) (*store.Checkpoint, error) {
	if l.w == nil {
		return nil, nil // an appender: another instance checkpoints
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	from := int64(l.rng.End())
	buf := bufio.NewWriterSize(l.leaves, 1<<16)
	n := from
	var scratch []byte
	err := l.st.AuditEntries(ctx, from, -1, func(idx int64, entry []byte) error {
		if idx != n {
			return fmt.Errorf("audit: entry %d missing from the database while checkpointing", n)
		}
		var h []byte
		h, scratch = leafHash(scratch, entry)
		if _, err := buf.Write(h); err != nil {
			return err
		}
		n++
		return l.rng.Append(h, nil)
	})
	if ferr := buf.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return nil, err
	}
	if n == l.signed {
		return nil, nil // nothing new, and the current tree is signed
	}
	if err := l.leaves.Sync(); err != nil {
		return nil, err
	}
	root, err := l.rng.GetRootHash(nil)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		root = hasher.EmptyRoot()
	}
	signed, err := note.Sign(&note.Note{Text: checkpointText(n, root)}, l.w.signer)
	if err != nil {
		return nil, err
	}
	cp := &store.Checkpoint{Size: n, Root: root, Note: string(signed), Created: time.Now().UTC()}
	if err := appendCheckpointFile(l.w.Dir, cp); err != nil {
		return nil, err
	}
	if err := l.st.AddCheckpoint(ctx, cp); err != nil {
		return nil, err
	}
	l.signed = n
	l.signedSize, l.signedRoot, l.signedNote = n, root, cp.Note
	return cp, nil
}

func appendCheckpointFile(dir string, cp *store.Checkpoint) error {
	f, err := os.OpenFile(filepath.Join(dir, checkpointsFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	line := fmt.Sprintf("%d %s %s\n", cp.Size, base64.StdEncoding.EncodeToString(cp.Root), base64.StdEncoding.EncodeToString([]byte(cp.Note)))
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Run checkpoints every interval until ctx ends.
func (l *Log) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := l.Checkpoint(ctx); err != nil && ctx.Err() == nil {
				l.log.ErrorContext(ctx, "audit checkpoint failed", "err", err)
			}
		}
	}
}

// Root returns the current checkpointed size and root.
func (l *Log) Root() (int64, []byte, error) {
	if l.w == nil {
		return 0, nil, errors.New("audit: an appender has no tree")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rng.End() == 0 {
		return 0, hasher.EmptyRoot(), nil
	}
	root, err := l.rng.GetRootHash(nil)
	return int64(l.rng.End()), root, err
}
