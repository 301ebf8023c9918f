package audit

import (
	"errors"
	"fmt"
	"io"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
)

// ErrBeyondCheckpoint: a proof was asked for a tree larger than the last
// signed checkpoint.
var ErrBeyondCheckpoint = errors.New("audit: size beyond the last signed checkpoint")

// Latest returns the last signed checkpoint: size, root and signed note.
func (l *Log) Latest() (int64, []byte, string, error) {
	if l.w == nil {
		return 0, nil, "", errors.New("audit: an appender has no tree")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.signedSize, l.signedRoot, l.signedNote, nil
}

// nodeHash is the hash of a perfect subtree, from the witness's leaf hashes.
func (l *Log) nodeHash(id compact.NodeID) ([]byte, error) {
	begin := id.Index << id.Level
	n := uint64(1) << id.Level
	buf := make([]byte, 32*n)
	if _, err := l.leaves.ReadAt(buf, int64(begin)*32); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	// A perfect subtree: hash pairs level by level.
	level := make([][]byte, n)
	for i := range level {
		level[i] = buf[i*32 : (i+1)*32]
	}
	for len(level) > 1 {
		for i := 0; i < len(level)/2; i++ {
			level[i] = hashChildren(level[2*i], level[2*i+1])
		}
		level = level[:len(level)/2]
	}
	return level[0], nil
}

func (l *Log) hashes(nodes proof.Nodes) ([][]byte, error) {
	hs := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		h, err := l.nodeHash(id)
		if err != nil {
			return nil, err
		}
		hs[i] = h
	}
	return nodes.Rehash(hs, hashChildren)
}

// InclusionProof proves that entry index is in the tree of size (a signed
// checkpoint's size), RFC 6962 §2.1.1.
func (l *Log) InclusionProof(index, size int64) ([][]byte, error) {
	if l.w == nil {
		return nil, errors.New("audit: an appender has no tree")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if size > l.signedSize {
		return nil, ErrBeyondCheckpoint
	}
	if index < 0 || index >= size {
		return nil, fmt.Errorf("audit: index %d is not in a tree of %d entries", index, size)
	}
	nodes, err := proof.Inclusion(uint64(index), uint64(size))
	if err != nil {
		return nil, err
	}
	return l.hashes(nodes)
}

// ConsistencyProof proves that the tree of size1 is a prefix of the tree
// of size2 (RFC 6962 §2.1.2): nothing was rewritten in between.
func (l *Log) ConsistencyProof(size1, size2 int64) ([][]byte, error) {
	if l.w == nil {
		return nil, errors.New("audit: an appender has no tree")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if size2 > l.signedSize {
		return nil, ErrBeyondCheckpoint
	}
	if size1 < 0 || size1 > size2 {
		return nil, fmt.Errorf("audit: sizes %d and %d: want 0 <= from <= to", size1, size2)
	}
	nodes, err := proof.Consistency(uint64(size1), uint64(size2))
	if err != nil {
		return nil, err
	}
	return l.hashes(nodes)
}
