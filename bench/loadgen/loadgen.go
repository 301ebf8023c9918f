// Package loadgen is a lean closed-loop HTTP/1.1 load generator.
//
// It speaks HTTP/1.1 over raw net.Conn and bufio, without net/http, so that
// on a small machine shared with the server under test the generator costs as
// little CPU as possible. Each of Conns workers owns one keep-alive
// connection and sends one request at a time (closed loop): it writes the
// request, reads the whole response (status line, headers, then a
// Content-Length, chunked or read-until-close body), records the latency and
// sends the next one. Requests that start during the warm-up, or that finish
// after the measured window, are not recorded.
package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Request is one HTTP request to send. Path is the request target, with its
// query string ("/fhir/Patient?family=Smith").
type Request struct {
	Method      string // GET when empty
	Path        string
	ContentType string // sent with a body
	Body        []byte
}

// Source yields the next request of one worker. It is called from that
// worker's goroutine only, so it needs no locking.
type Source func() Request

// Config describes one run.
type Config struct {
	Addr     string        // host:port to dial
	Host     string        // Host header; Addr when empty
	Conns    int           // concurrent connections (workers); 1 when < 1
	Warmup   time.Duration // run but do not record for this long first
	Duration time.Duration // measured window
	Timeout  time.Duration // per request; 10s when zero
	// Grace is how long a request in flight when the window closes may
	// still take before its connection is dropped (1s when zero). Such a
	// response is never recorded; one not even finished then counts as
	// Unfinished.
	Grace     time.Duration
	NewSource func(worker int) Source
	// Header lines added to every request, e.g. "Accept: application/fhir+json".
	Header []string
	// ExpectLatencies sizes each worker's latency slice up front (total
	// across workers); 0 picks a default.
	ExpectLatencies int
}

// Result of one run. Latencies and counts cover the measured window only.
type Result struct {
	Conns      int
	Elapsed    time.Duration // measured window
	Requests   int64         // responses completed in the window, any status
	OK         int64         // status 1xx-3xx
	Errors     int64         // status >= 400 plus transport errors
	ByStatus   map[int]int64 // every status seen
	Transport  int64         // connection/protocol errors (no status)
	Reconnects int64         // connections (re)opened, including the first ones
	Unfinished int64         // requests still unanswered Grace after the window
	BodyBytes  int64
	Throughput float64 // Requests / Elapsed seconds
	Mean       time.Duration
	P50        time.Duration
	P90        time.Duration
	P99        time.Duration
	Max        time.Duration
	FirstError string // one example of a transport error, for reports
}

// ErrorSummary renders the errors as "404:12 conn:3", or "0".
func (r *Result) ErrorSummary() string {
	if r.Errors == 0 {
		return "0"
	}
	var codes []int
	for c := range r.ByStatus {
		if c >= 400 {
			codes = append(codes, c)
		}
	}
	sort.Ints(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%d:%d", c, r.ByStatus[c]))
	}
	if r.Transport > 0 {
		parts = append(parts, fmt.Sprintf("conn:%d", r.Transport))
	}
	return strings.Join(parts, " ")
}

type worker struct {
	id         int
	cfg        *Config
	src        Source
	header     []byte     // "Host: ...\r\n" + extra headers
	mu         sync.Mutex // guards conn against the cancel hook
	conn       net.Conn
	br         *bufio.Reader
	bw         *bufio.Writer
	fresh      bool // connection has not served a response yet
	lat        []time.Duration
	status     map[int]int64
	trans      int64
	reconn     int64
	bytes      int64
	body       int64 // body bytes of the last response
	unfinished int64
	firstEr    string
}

// Run executes the configured load and returns the merged result. It returns
// early (with what was measured so far) when ctx is cancelled.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Addr == "" {
		return nil, errors.New("loadgen: empty Addr")
	}
	if cfg.NewSource == nil {
		return nil, errors.New("loadgen: nil NewSource")
	}
	if cfg.Conns < 1 {
		cfg.Conns = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Grace <= 0 {
		cfg.Grace = time.Second
	}
	if cfg.Duration <= 0 {
		return nil, errors.New("loadgen: Duration must be > 0")
	}
	host := cfg.Host
	if host == "" {
		host = cfg.Addr
	}
	var hb bytes.Buffer
	hb.WriteString("Host: ")
	hb.WriteString(host)
	hb.WriteString("\r\n")
	for _, h := range cfg.Header {
		hb.WriteString(h)
		hb.WriteString("\r\n")
	}
	per := cfg.ExpectLatencies / cfg.Conns
	if per <= 0 {
		per = 1 << 17 / cfg.Conns
	}
	per = max(per, 1024)

	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	until := measureFrom.Add(cfg.Duration)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	workers := make([]*worker, cfg.Conns)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{
			id:     i,
			cfg:    &cfg,
			src:    cfg.NewSource(i),
			header: hb.Bytes(),
			lat:    make([]time.Duration, 0, per),
			status: make(map[int]int64, 4),
		}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(ctx, measureFrom, until)
		}()
	}
	// Unblock workers stuck in a read when the context ends.
	stop := context.AfterFunc(ctx, func() {
		for _, w := range workers {
			w.mu.Lock()
			if w.conn != nil {
				w.conn.SetDeadline(time.Now())
			}
			w.mu.Unlock()
		}
	})
	wg.Wait()
	stop()

	end := time.Now()
	if end.After(until) {
		end = until
	}
	res := &Result{Conns: cfg.Conns, ByStatus: map[int]int64{}}
	res.Elapsed = end.Sub(measureFrom)
	if res.Elapsed <= 0 {
		res.Elapsed = 0
	}
	var all []time.Duration
	n := 0
	for _, w := range workers {
		n += len(w.lat)
	}
	all = make([]time.Duration, 0, n)
	for _, w := range workers {
		all = append(all, w.lat...)
		for c, k := range w.status {
			res.ByStatus[c] += k
			if c >= 400 {
				res.Errors += k
			} else {
				res.OK += k
			}
			res.Requests += k
		}
		res.Transport += w.trans
		res.Errors += w.trans
		res.Reconnects += w.reconn
		res.Unfinished += w.unfinished
		res.BodyBytes += w.bytes
		if res.FirstError == "" {
			res.FirstError = w.firstEr
		}
	}
	slices.Sort(all)
	if len(all) > 0 {
		var sum time.Duration
		for _, d := range all {
			sum += d
		}
		res.Mean = sum / time.Duration(len(all))
		res.P50 = Percentile(all, 50)
		res.P90 = Percentile(all, 90)
		res.P99 = Percentile(all, 99)
		res.Max = all[len(all)-1]
	}
	if res.Elapsed > 0 {
		res.Throughput = float64(res.Requests) / res.Elapsed.Seconds()
	}
	return res, ctx.Err()
}

// Percentile returns the nearest-rank p-th percentile of sorted durations.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999999) - 1
	rank = min(max(rank, 0), len(sorted)-1)
	return sorted[rank]
}

func (w *worker) loop(ctx context.Context, measureFrom, until time.Time) {
	defer w.close()
	for ctx.Err() == nil {
		now := time.Now()
		if !now.Before(until) {
			return
		}
		req := w.src()
		t0 := time.Now()
		status, err := w.do(ctx, req, until)
		t1 := time.Now()
		record := !t0.Before(measureFrom) && !t1.After(until)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// A deadline hit because the window closed is not an error.
			if t1.After(until) {
				if t1.Sub(until) >= w.cfg.Grace {
					w.unfinished++
				}
				return
			}
			if record {
				w.trans++
				if w.firstEr == "" {
					w.firstEr = err.Error()
				}
			}
			w.close()
			continue
		}
		if record {
			w.status[status]++
			w.lat = append(w.lat, t1.Sub(t0))
			w.bytes += w.body
		}
	}
}

func (w *worker) close() {
	if w.conn != nil {
		w.conn.Close()
		w.mu.Lock()
		w.conn = nil
		w.mu.Unlock()
	}
}

func (w *worker) dial(ctx context.Context) error {
	d := net.Dialer{Timeout: w.cfg.Timeout, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, "tcp", w.cfg.Addr)
	if err != nil {
		// Do not spin on a refused connection.
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
		return err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	w.reconn++
	w.mu.Lock()
	w.conn = c
	w.mu.Unlock()
	if w.br == nil {
		w.br = bufio.NewReaderSize(c, 32<<10)
		w.bw = bufio.NewWriterSize(c, 8<<10)
	} else {
		w.br.Reset(c)
		w.bw.Reset(c)
	}
	w.fresh = true
	return nil
}

// do sends req and reads its response. A request that fails on a reused
// connection before any byte of the response arrived (the server closed an
// idle keep-alive connection) is retried once on a new connection.
func (w *worker) do(ctx context.Context, req Request, until time.Time) (int, error) {
	for attempt := 0; ; attempt++ {
		if w.conn == nil {
			if err := w.dial(ctx); err != nil {
				return 0, err
			}
		}
		reused := !w.fresh
		deadline := time.Now().Add(w.cfg.Timeout)
		if lim := until.Add(w.cfg.Grace); deadline.After(lim) {
			// Past the window, give slow responses Grace, then give up.
			deadline = lim
		}
		w.conn.SetDeadline(deadline)
		if err := w.write(req); err != nil {
			w.close()
			if reused && attempt == 0 {
				continue
			}
			return 0, err
		}
		status, keep, got, err := w.read(req.Method == "HEAD")
		if err != nil {
			w.close()
			if reused && !got && attempt == 0 {
				continue
			}
			return 0, err
		}
		w.fresh = false
		if !keep {
			w.close()
		}
		return status, nil
	}
}

func (w *worker) write(req Request) error {
	m := req.Method
	if m == "" {
		m = "GET"
	}
	bw := w.bw
	bw.WriteString(m)
	bw.WriteByte(' ')
	if req.Path == "" {
		bw.WriteByte('/')
	} else {
		bw.WriteString(req.Path)
	}
	bw.WriteString(" HTTP/1.1\r\n")
	bw.Write(w.header)
	if req.Body != nil || m == "POST" || m == "PUT" || m == "PATCH" {
		if req.ContentType != "" {
			bw.WriteString("Content-Type: ")
			bw.WriteString(req.ContentType)
			bw.WriteString("\r\n")
		}
		bw.WriteString("Content-Length: ")
		var nb [20]byte
		bw.Write(strconv.AppendInt(nb[:0], int64(len(req.Body)), 10))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	bw.Write(req.Body)
	return bw.Flush()
}

var errProto = errors.New("loadgen: malformed response")

// read consumes one response. got reports whether any byte of it arrived.
func (w *worker) read(head bool) (status int, keep, got bool, err error) {
	br := w.br
	w.body = 0
	line, err := readLine(br)
	if err != nil {
		return 0, false, len(line) > 0, err
	}
	got = true
	// HTTP/1.1 200 OK
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, got, fmt.Errorf("%w: status line %q", errProto, trim(line))
	}
	http10 := line[7] == '0'
	status = atoi3(line[9:12])
	if status < 100 {
		return 0, false, got, fmt.Errorf("%w: status line %q", errProto, trim(line))
	}
	contentLength := int64(-1)
	chunked := false
	keep = !http10
	for {
		line, err = readLine(br)
		if err != nil {
			return status, false, got, err
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		name := line[:colon]
		val := bytes.TrimSpace(line[colon+1:])
		switch {
		case asciiEqualFold(name, "content-length"):
			n, perr := strconv.ParseInt(string(val), 10, 64)
			if perr != nil || n < 0 {
				return status, false, got, fmt.Errorf("%w: content-length %q", errProto, val)
			}
			contentLength = n
		case asciiEqualFold(name, "transfer-encoding"):
			if containsFold(val, "chunked") {
				chunked = true
			}
		case asciiEqualFold(name, "connection"):
			if containsFold(val, "close") {
				keep = false
			} else if containsFold(val, "keep-alive") {
				keep = true
			}
		}
	}
	if status >= 100 && status < 200 {
		// Interim response (100 Continue): the real one follows.
		return w.read(head)
	}
	switch {
	case head || status == 204 || status == 304:
	case chunked:
		err = w.readChunked()
	case contentLength >= 0:
		var n int
		n, err = br.Discard(int(contentLength))
		w.body += int64(n)
	default:
		// No length: the body runs to the end of the connection.
		var n int64
		n, err = io.Copy(io.Discard, br)
		w.body += n
		keep = false
	}
	if err != nil {
		return status, false, got, err
	}
	return status, keep, got, nil
}

func (w *worker) readChunked() error {
	br := w.br
	for {
		line, err := readLine(br)
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil || size < 0 {
			return fmt.Errorf("%w: chunk size %q", errProto, trim(line))
		}
		if size == 0 {
			// Trailers, then an empty line.
			for {
				line, err = readLine(br)
				if err != nil {
					return err
				}
				if len(line) == 0 {
					return nil
				}
			}
		}
		n, err := br.Discard(int(size))
		w.body += int64(n)
		if err != nil {
			return err
		}
		line, err = readLine(br)
		if err != nil {
			return err
		}
		if len(line) != 0 {
			return fmt.Errorf("%w: no CRLF after chunk", errProto)
		}
	}
}

// readLine returns one line without its CRLF. The slice is only valid until
// the next read. Lines longer than the buffer are an error.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: header line too long", errProto)
		}
		if errors.Is(err, io.EOF) && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return line, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

func atoi3(b []byte) int {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func containsFold(b []byte, s string) bool {
	return strings.Contains(strings.ToLower(string(b)), s)
}

func trim(b []byte) string {
	if len(b) > 80 {
		b = b[:80]
	}
	return string(b)
}
