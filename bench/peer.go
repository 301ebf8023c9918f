package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// findPeerDir returns the peer's source folder: the -peer-dir flag, else
// shared/peer beside the repository, else /work/shared/peer.
func findPeerDir(flagDir, root string) (string, error) {
	cands := []string{flagDir}
	if flagDir == "" {
		cands = []string{filepath.Join(root, "..", "shared", "peer"), "/work/shared/peer"}
	}
	for _, d := range cands {
		if _, err := os.Stat(filepath.Join(d, "server.cjs")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("peer sources (server.cjs) not found in %v", cands)
}

// installPeer copies the peer into a cache folder keyed by its lock file and
// runs npm install there once; later runs reuse it.
func installPeer(ctx context.Context, src string, logPath string) (string, error) {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("%s not found", tool)
		}
	}
	lock, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
	if err != nil {
		return "", err
	}
	pkg, err := os.ReadFile(filepath.Join(src, "package.json"))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(append(append([]byte{}, pkg...), lock...))
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "carnet-bench", "peer-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for _, f := range []string{"package.json", "package-lock.json", "server.cjs"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			return "", err
		}
	}
	marker := filepath.Join(dir, ".installed")
	if _, err := os.Stat(marker); err == nil {
		return dir, nil
	}
	fmt.Printf("  npm install in %s (once; cached)\n", dir)
	ictx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.Command("npm", "install", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if _, err := runLogged(ictx, cmd, logPath, 0); err != nil {
		return "", err
	}
	if err := os.WriteFile(marker, []byte(time.Now().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return "", err
	}
	return dir, nil
}

var peerReady = regexp.MustCompile(`on (127\.0\.0\.1:[0-9]+/fhir/R4)`)

func startPeer(ctx context.Context, dir, logPath string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("node", "server.cjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port))
	s, err := startServer(ctx, "peer", cmd, logPath, peerReady, 3*time.Minute)
	if err != nil {
		return nil, err
	}
	s.base = "http://" + s.base
	return s, nil
}

// seedPeer loads the empty peer over HTTP: patients, and for about 80% of
// them 1 to 4 encounters referencing them. It returns the workload inputs.
func seedPeer(ctx context.Context, c *apiClient, patients int, seedVal int64) (*inputs, time.Duration, int64, error) {
	t0 := time.Now()
	const workers = 8
	jobs := make(chan int)
	var mu sync.Mutex
	in := &inputs{}
	famCount := map[string]int{}
	var resources, done atomic.Int64
	var firstErr error
	var errOnce sync.Once
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				rng := rand.New(rand.NewPCG(uint64(seedVal), uint64(i)))
				p := newPatient(rng, fmt.Sprintf("P%08d", i))
				id, err := c.post(ctx, "Patient", p.Body)
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				resources.Add(1)
				nEnc := 0
				if rng.IntN(5) != 0 {
					nEnc = 1 + rng.IntN(4)
				}
				for range nEnc {
					if _, err := c.post(ctx, "Encounter", newEncounter(rng, "Patient/"+id)); err != nil {
						errOnce.Do(func() { firstErr = err; cancel() })
						return
					}
					resources.Add(1)
				}
				mu.Lock()
				in.patientIDs = append(in.patientIDs, id)
				famCount[p.Family]++
				if nEnc > 0 {
					in.encPatients = append(in.encPatients, id)
				}
				mu.Unlock()
				if n := done.Add(1); n%5000 == 0 {
					fmt.Printf("  peer seed: %d/%d patients\n", n, patients)
				}
			}
		}()
	}
feed:
	for i := range patients {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return nil, time.Since(t0), resources.Load(), firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, time.Since(t0), resources.Load(), err
	}
	wall := time.Since(t0)
	// Deterministic order for the workloads' random picks.
	slices.Sort(in.patientIDs)
	slices.Sort(in.encPatients)
	if len(in.patientIDs) > wantPatientIDs {
		in.patientIDs = in.patientIDs[:wantPatientIDs]
	}
	if len(in.encPatients) > wantEncPatients {
		in.encPatients = in.encPatients[:wantEncPatients]
	}
	var fams []string
	for f, n := range famCount {
		if n >= minFamily {
			fams = append(fams, f)
		}
	}
	slices.Sort(fams)
	var err error
	in.families, in.familyMinHit, err = pickFamilies(ctx, c, fams, func(f string) string {
		return "/Patient?family=" + f + "&_count=20"
	})
	if err != nil {
		return nil, wall, resources.Load(), err
	}
	return in, wall, resources.Load(), nil
}
