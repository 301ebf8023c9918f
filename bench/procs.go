package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// server is a child process serving HTTP (carnet serve or the peer).
type server struct {
	name    string
	cmd     *exec.Cmd
	base    string // base URL, e.g. http://127.0.0.1:8080/fhir
	logPath string
	done    chan struct{}
	err     error
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startServer runs cmd, copying stdout and stderr to logPath, and waits until
// a stdout line matches ready (whose first submatch, or whole match, is the
// base URL) or the timeout passes.
func startServer(ctx context.Context, name string, cmd *exec.Cmd, logPath string, ready *regexp.Regexp, timeout time.Duration) (*server, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	urlc := make(chan string, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		found := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if !found {
				if m := ready.FindStringSubmatch(line); m != nil {
					found = true
					u := m[0]
					if len(m) > 1 {
						u = m[1]
					}
					urlc <- u
				}
			}
		}
		io.Copy(io.Discard, out)
	}()
	go func() {
		<-copied
		s.err = cmd.Wait()
		logf.Close()
		close(s.done)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case u := <-urlc:
		s.base = strings.TrimRight(u, "/")
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("%s exited before it was ready (%v); log %s:\n%s", name, s.err, logPath, tailFile(logPath, 20))
	case <-t.C:
		s.stop()
		return nil, fmt.Errorf("%s not ready after %v; log %s:\n%s", name, timeout, logPath, tailFile(logPath, 20))
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
}

// stop sends SIGINT, then SIGKILL if the process has not exited in 15s.
func (s *server) stop() {
	if s == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

func (s *server) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// exited is the error of a server that exited during a run (with its log's
// tail); nil while it runs.
func (s *server) exited() error {
	if s.alive() {
		return nil
	}
	return fmt.Errorf("%s exited during the run: %v; log %s:\n%s", s.name, s.err, s.logPath, tailFile(s.logPath, 20))
}

// runLogged runs cmd with stdout and stderr appended to logPath and returns
// the wall time. On failure the error carries the log's tail.
//
// When stall > 0 and the log has not grown for that long, the process is sent
// SIGQUIT (a Go program then writes its goroutines to the log) and the run
// fails as stalled.
func runLogged(ctx context.Context, cmd *exec.Cmd, logPath string, stall time.Duration) (time.Duration, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("%s: %w", strings.Join(cmd.Args, " "), err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	// end stops the process with sig, then SIGKILL after 10s.
	end := func(sig os.Signal) error {
		cmd.Process.Signal(sig)
		select {
		case err := <-waited:
			return err
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			return <-waited
		}
	}
	var tick <-chan time.Time
	if stall > 0 {
		tk := time.NewTicker(min(stall/4, 10*time.Second))
		defer tk.Stop()
		tick = tk.C
	}
	lastSize, lastGrowth := int64(-1), time.Now()
	for done := false; !done; {
		select {
		case err = <-waited:
			done = true
		case <-tick:
			if fi, serr := os.Stat(logPath); serr == nil && fi.Size() != lastSize {
				lastSize, lastGrowth = fi.Size(), time.Now()
			}
			if time.Since(lastGrowth) >= stall {
				end(syscall.SIGQUIT)
				err = fmt.Errorf("stalled: no output for %v (goroutine dump in the log)", stall)
				done = true
			}
		case <-ctx.Done():
			if err = end(os.Interrupt); err == nil {
				err = ctx.Err()
			}
			done = true
		}
	}
	d := time.Since(t0)
	if err != nil {
		return d, fmt.Errorf("%s: %w; log %s:\n%s", filepath.Base(cmd.Args[0])+" "+cmd.Args[1], err, logPath, tailFile(logPath, 20))
	}
	return d, nil
}

// tailFile returns the interesting end of a log: from the start of a Go
// panic or goroutine dump when there is one (its first n lines), else the
// last n lines. Progress lines written with \r count as separate lines.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	b = bytes.ReplaceAll(b, []byte("\r"), []byte("\n"))
	var keep []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) != "" {
			keep = append(keep, l)
		}
	}
	for i, l := range keep {
		if strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "fatal error:") || strings.HasPrefix(l, "SIGQUIT") {
			keep = keep[i:min(len(keep), i+n)]
			return "    " + strings.Join(keep, "\n    ")
		}
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	return "    " + strings.Join(keep, "\n    ")
}

// output runs a short command and returns its trimmed stdout.
func output(dir string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
