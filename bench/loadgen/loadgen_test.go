package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func addr(ts *httptest.Server) string {
	return strings.TrimPrefix(ts.URL, "http://")
}

func constSource(r Request) func(int) Source {
	return func(int) Source { return func() Request { return r } }
}

func TestContentLength(t *testing.T) {
	body := strings.Repeat("x", 5000)
	var hits atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		io.WriteString(w, body)
	}))
	defer ts.Close()
	res, err := Run(context.Background(), Config{
		Addr: addr(ts), Conns: 4, Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond,
		NewSource: constSource(Request{Path: "/x"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests < 10 || res.Errors != 0 || res.ByStatus[200] != res.Requests {
		t.Fatalf("unexpected result %+v", res)
	}
	if res.BodyBytes != res.Requests*int64(len(body)) {
		t.Fatalf("body bytes %d for %d requests", res.BodyBytes, res.Requests)
	}
	// Warm-up requests were sent but not counted.
	if hits.Load() <= res.Requests {
		t.Fatalf("hits %d <= recorded %d: warm-up not excluded?", hits.Load(), res.Requests)
	}
	// Keep-alive: one connection per worker.
	if res.Reconnects != 4 {
		t.Fatalf("reconnects = %d, want 4 (keep-alive)", res.Reconnects)
	}
	if res.Elapsed < 250*time.Millisecond || res.Elapsed > 400*time.Millisecond {
		t.Fatalf("elapsed %v", res.Elapsed)
	}
	if res.Throughput <= 0 {
		t.Fatal("no throughput")
	}
}

func TestChunked(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// No Content-Length and several flushes: net/http sends chunked.
		f := w.(http.Flusher)
		for i := 0; i < 3; i++ {
			io.WriteString(w, strings.Repeat("y", 100))
			f.Flush()
		}
	}))
	defer ts.Close()
	res, err := Run(context.Background(), Config{
		Addr: addr(ts), Conns: 2, Duration: 200 * time.Millisecond,
		NewSource: constSource(Request{Path: "/c"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests < 5 || res.Errors != 0 {
		t.Fatalf("unexpected result %+v", res)
	}
	if res.BodyBytes != res.Requests*300 {
		t.Fatalf("body bytes %d for %d requests", res.BodyBytes, res.Requests)
	}
	if res.Reconnects != 2 {
		t.Fatalf("reconnects = %d, want 2", res.Reconnects)
	}
}

// A raw server writing chunk extensions and trailers, which net/http does not.
func TestChunkedTrailers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					// Read one request head.
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						if line == "\r\n" {
							break
						}
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"+
						"5;ext=1\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: v\r\n\r\n")
				}
			}()
		}
	}()
	res, err := Run(context.Background(), Config{
		Addr: ln.Addr().String(), Conns: 1, Duration: 100 * time.Millisecond,
		NewSource: constSource(Request{Path: "/"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests < 5 || res.Errors != 0 || res.BodyBytes != res.Requests*31 || res.Reconnects != 1 {
		t.Fatalf("unexpected result %+v (first error %q)", res, res.FirstError)
	}
}

func TestErrorsCountedAndPost(t *testing.T) {
	var bad atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing":
			http.NotFound(w, r)
		case "/post":
			b, _ := io.ReadAll(r.Body)
			if r.Method != "POST" || r.Header.Get("Content-Type") != "application/fhir+json" || string(b) != `{"a":1}` {
				bad.Add(1)
				w.WriteHeader(400)
				return
			}
			w.WriteHeader(201)
			io.WriteString(w, `{"id":"1"}`)
		default:
			io.WriteString(w, "ok")
		}
	}))
	defer ts.Close()
	res, err := Run(context.Background(), Config{
		Addr: addr(ts), Conns: 3, Duration: 200 * time.Millisecond,
		NewSource: func(worker int) Source {
			i := 0
			return func() Request {
				i++
				switch i % 3 {
				case 0:
					return Request{Path: "/missing"}
				case 1:
					return Request{Method: "POST", Path: "/post", ContentType: "application/fhir+json", Body: []byte(`{"a":1}`)}
				}
				return Request{Path: "/ok"}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if bad.Load() != 0 {
		t.Fatalf("%d malformed POSTs", bad.Load())
	}
	if res.ByStatus[404] == 0 || res.ByStatus[201] == 0 || res.ByStatus[200] == 0 {
		t.Fatalf("statuses %v", res.ByStatus)
	}
	if res.Errors != res.ByStatus[404] || res.OK != res.ByStatus[200]+res.ByStatus[201] {
		t.Fatalf("errors %d ok %d statuses %v", res.Errors, res.OK, res.ByStatus)
	}
	if !strings.HasPrefix(res.ErrorSummary(), "404:") {
		t.Fatalf("summary %q", res.ErrorSummary())
	}
}

func TestLatencyPercentiles(t *testing.T) {
	// Every 10th request takes 20ms, the others are immediate.
	var n atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%10 == 0 {
			time.Sleep(20 * time.Millisecond)
		}
		io.WriteString(w, "ok")
	}))
	defer ts.Close()
	res, err := Run(context.Background(), Config{
		Addr: addr(ts), Conns: 1, Duration: 500 * time.Millisecond,
		NewSource: constSource(Request{Path: "/"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests < 20 {
		t.Fatalf("too few requests: %+v", res)
	}
	if !(res.P50 <= res.P90 && res.P90 <= res.P99 && res.P99 <= res.Max) {
		t.Fatalf("percentiles not ordered: %+v", res)
	}
	if res.P50 > 10*time.Millisecond {
		t.Fatalf("p50 %v, want fast", res.P50)
	}
	if res.P99 < 20*time.Millisecond || res.Max > 500*time.Millisecond {
		t.Fatalf("p99 %v max %v, want >= 20ms", res.P99, res.Max)
	}
	// Closed loop with one connection: throughput is bounded by latency.
	if res.Throughput > float64(time.Second)/float64(res.Mean)*1.2 {
		t.Fatalf("throughput %.0f vs mean %v", res.Throughput, res.Mean)
	}
}

func TestReconnectOnClose(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	}))
	defer ts.Close()
	res, err := Run(context.Background(), Config{
		Addr: addr(ts), Conns: 2, Duration: 200 * time.Millisecond,
		NewSource: constSource(Request{Path: "/"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests < 5 || res.Errors != 0 {
		t.Fatalf("unexpected %+v (%s)", res, res.FirstError)
	}
	if res.Reconnects < res.Requests {
		t.Fatalf("reconnects %d < requests %d", res.Reconnects, res.Requests)
	}
}

// The server closes idle keep-alive connections after each response without
// saying so: the request is retried on a new connection, not counted as error.
func TestSilentCloseRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	res, err := Run(context.Background(), Config{
		Addr: ln.Addr().String(), Conns: 1, Duration: 100 * time.Millisecond,
		NewSource: constSource(Request{Path: "/"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests < 5 || res.Errors != 0 {
		t.Fatalf("unexpected %+v (%s)", res, res.FirstError)
	}
}

func TestTransportErrors(t *testing.T) {
	// Nothing listens: every attempt is a transport error, and Run stops.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	res, err := Run(context.Background(), Config{
		Addr: a, Conns: 2, Duration: 100 * time.Millisecond,
		NewSource: constSource(Request{Path: "/"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 0 || res.Transport == 0 || res.Errors != res.Transport || res.FirstError == "" {
		t.Fatalf("unexpected %+v", res)
	}
	if !strings.Contains(res.ErrorSummary(), "conn:") {
		t.Fatalf("summary %q", res.ErrorSummary())
	}
}

func TestCancel(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer ts.Close()
	defer ts.CloseClientConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err := Run(ctx, Config{
		Addr: addr(ts), Conns: 2, Duration: time.Minute,
		NewSource: constSource(Request{Path: "/"}),
	})
	if err == nil {
		t.Fatal("want context error")
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Fatalf("cancel took %v", d)
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i))
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {90, 90}, {99, 99}, {100, 100}, {0, 1}} {
		if got := Percentile(s, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if Percentile(nil, 50) != 0 {
		t.Error("empty")
	}
	if Percentile([]time.Duration{7}, 99) != 7 {
		t.Error("single")
	}
}

func TestUnfinished(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
	}))
	defer ts.Close()
	defer ts.CloseClientConnections()
	t0 := time.Now()
	res, err := Run(context.Background(), Config{
		Addr: addr(ts), Conns: 3, Duration: 100 * time.Millisecond, Grace: 100 * time.Millisecond,
		NewSource: constSource(Request{Path: "/"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 0 || res.Errors != 0 || res.Unfinished != 3 {
		t.Fatalf("unexpected %+v", res)
	}
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("took %v", d)
	}
}

// Header lines (e.g. a bearer token) go with every request, GET and POST.
func TestHeaderLines(t *testing.T) {
	var good, bad atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.Header.Get("Authorization") != "Bearer tok-123" || r.Header.Get("Accept") != "application/fhir+json" {
			bad.Add(1)
			w.WriteHeader(401)
			return
		}
		good.Add(1)
		if r.Method == "POST" {
			w.WriteHeader(201)
		}
		io.WriteString(w, "ok")
	}))
	defer ts.Close()
	res, err := Run(context.Background(), Config{
		Addr: addr(ts), Conns: 2, Duration: 150 * time.Millisecond,
		Header: []string{"Accept: application/fhir+json", "Authorization: Bearer tok-123"},
		NewSource: func(int) Source {
			i := 0
			return func() Request {
				i++
				if i%2 == 0 {
					return Request{Method: "POST", Path: "/o", ContentType: "application/fhir+json", Body: []byte(`{}`)}
				}
				return Request{Path: "/p"}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if bad.Load() != 0 || good.Load() < 4 || res.Errors != 0 || res.ByStatus[201] == 0 || res.ByStatus[200] == 0 {
		t.Fatalf("good %d bad %d, result %+v", good.Load(), bad.Load(), res)
	}
}
