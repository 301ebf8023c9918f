package web_test

// The browser harness of the end-to-end tests (e2e_test.go): one headless
// Chromium for the whole test binary, a fresh browser context (its own
// cookies, like a private window) and tab per test, and on every tab a
// record of what the page did that a test may not see: each HTML document's
// status and Content-Security-Policy header, console messages, uncaught
// exceptions, CSP violations and JavaScript dialogs. A tab's cleanup fails
// the test when a document of the application came without the CSP header,
// when the browser reported a CSP violation or a script error, or when an
// alert() opened.
//
// Chromium is found at $CHROMIUM, /usr/bin/chromium or as chromium in PATH;
// scripts/test installs Debian's package when it is missing. Without it the
// browser tests fail (they never skip).

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"carnet/internal/web"
)

// Screen size of the browser and of the screenshots.
const screenW, screenH = 1366, 768

// actionTimeout bounds one browser step (a navigation, a click and the page
// it loads, a query).
const actionTimeout = 30 * time.Second

var (
	chromeOnce sync.Once
	chromeCtx  context.Context // the browser's first tab; every test's tab is a child
	chromeErr  error
	chromeStop = func() {}
)

func TestMain(m *testing.M) {
	code := m.Run()
	chromeStop()
	if world != nil {
		world.Close() // its temporary store folder
	}
	if shotsPath != "" && os.Getenv("CARNET_SCREENSHOTS") != "1" {
		os.RemoveAll(shotsPath)
	}
	os.Exit(code)
}

// chromiumPath finds the browser.
func chromiumPath() (string, error) {
	if p := os.Getenv("CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("CHROMIUM=%s: %v", p, err)
		}
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium", nil
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p, nil
	}
	return "", errors.New("no Chromium: not at $CHROMIUM, /usr/bin/chromium or in PATH")
}

// browserContext starts the shared browser once.
func browserContext(t testing.TB) context.Context {
	t.Helper()
	chromeOnce.Do(func() {
		path, err := chromiumPath()
		if err != nil {
			chromeErr = err
			return
		}
		dir, err := os.MkdirTemp("", "carnet-chromium-")
		if err != nil {
			chromeErr = err
			return
		}
		allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
			chromedp.ExecPath(path),
			chromedp.Flag("headless", true),
			chromedp.Flag("no-sandbox", true),
			chromedp.Flag("disable-gpu", true),
			chromedp.Flag("no-first-run", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("disable-quic", true),
			chromedp.UserDataDir(filepath.Join(dir, "profile")),
			// Its own temporary files go with the profile, removed at the end.
			chromedp.Env("TMPDIR="+dir),
			chromedp.WindowSize(screenW, screenH),
		)
		ctx, cancelCtx := chromedp.NewContext(allocCtx)
		chromeStop = func() {
			cancelCtx()
			cancelAlloc()
			os.RemoveAll(dir)
		}
		start, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// The first Do starts the process; its life is bound to ctx, not to
		// this timeout.
		done := make(chan error, 1)
		go func() { done <- chromedp.Do(ctx) }()
		select {
		case chromeErr = <-done:
		case <-start.Done():
			chromeErr = errors.New("Chromium did not start within a minute")
		}
		if chromeErr == nil {
			chromeCtx = ctx
		}
	})
	if chromeErr != nil {
		t.Fatalf("the browser tests need Chromium (scripts/test installs Debian's chromium package): %v", chromeErr)
	}
	return chromeCtx
}

// docResponse is one HTML document the tab received.
type docResponse struct {
	URL    string
	Status int64
	CSP    string
}

// tab is one test's browser tab, signed out, in its own browser context.
type tab struct {
	t   testing.TB
	a   *app
	ctx context.Context

	mu       sync.Mutex
	docs     []docResponse
	console  []string // console calls, log entries, exceptions
	dialogs  []string // "type: message"
	confirms bool     // answer confirm() dialogs with OK
}

// syncClockJS sets the page's Date.now to the server's simulated clock
// (the test world's "today" is in the past), so that carnet.js's session
// expiry warning, which compares the session's end (server time) with
// Date.now(), does not see every session as long over.
const syncClockJS = `(function(){var off=%d;var now=Date.now;Date.now=function(){return now.call(Date)+off;};})();`

// newTab opens a tab whose Accept-Language is acceptLanguage ("" leaves
// Chromium's own).
func (a *app) newTab(t testing.TB, acceptLanguage string) *tab {
	t.Helper()
	parent := browserContext(t)
	ctx, cancel := chromedp.NewContext(parent, chromedp.WithNewBrowserContext())
	tb := &tab{t: t, a: a, ctx: ctx, confirms: true}
	t.Cleanup(func() {
		cancel()
		tb.check()
	})
	// Open the tab (no deadline on the first call: it binds the tab's life).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	if err := chromedp.Listen(ctx, tb.listen); err != nil {
		t.Fatal(err)
	}
	offset := a.Clock.Now().UnixMilli() - time.Now().UnixMilli()
	tb.do(chromedp.Func(func(ctx context.Context, target *chromedp.Target) error {
		if acceptLanguage != "" {
			if _, err := cdp.Call(ctx, target, network.SetExtraHTTPHeaders,
				network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Accept-Language": acceptLanguage}}); err != nil {
				return err
			}
		}
		_, err := cdp.Call(ctx, target, page.AddScriptToEvaluateOnNewDocument,
			page.AddScriptToEvaluateOnNewDocumentParams{Source: fmt.Sprintf(syncClockJS, offset)})
		return err
	}), chromedp.EmulateViewport(screenW, screenH))
	return tb
}

// listen runs in the tab's event loop: it records and never blocks.
func (tb *tab) listen(ev any) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventResponseReceived:
		if ev.Type == network.ResourceTypeDocument && ev.Response != nil {
			d := docResponse{URL: ev.Response.URL, Status: ev.Response.Status}
			for k, v := range ev.Response.Headers {
				if strings.EqualFold(k, "Content-Security-Policy") {
					d.CSP = fmt.Sprint(v)
				}
			}
			tb.docs = append(tb.docs, d)
		}
	case *cdpruntime.EventConsoleAPICalled:
		var parts []string
		for _, a := range ev.Args {
			if len(a.Value) > 0 {
				parts = append(parts, string(a.Value))
			} else {
				parts = append(parts, a.Description)
			}
		}
		tb.console = append(tb.console, "console."+string(ev.Type)+": "+strings.Join(parts, " "))
	case *cdpruntime.EventExceptionThrown:
		msg := ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			msg += " " + ev.ExceptionDetails.Exception.Description
		}
		tb.console = append(tb.console, "exception: "+msg)
	case *cdplog.EventEntryAdded:
		if ev.Entry != nil {
			tb.console = append(tb.console, fmt.Sprintf("log %s/%s: %s (%s)", ev.Entry.Source, ev.Entry.Level, ev.Entry.Text, ev.Entry.URL))
		}
	case *page.EventJavascriptDialogOpening:
		tb.dialogs = append(tb.dialogs, string(ev.Type)+": "+ev.Message)
		accept := ev.Type == page.DialogTypeConfirm && tb.confirms
		// A dialog blocks the page: answer it from outside the event loop.
		go chromedp.Call(tb.ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: accept})
	}
}

// check is the tab's cleanup: every document of the application had the
// CSP header, and the browser reported no CSP violation, no script error
// and no alert.
func (tb *tab) check() {
	tb.t.Helper()
	for _, d := range tb.documents() {
		if strings.HasPrefix(d.URL, tb.a.URL+"/app/") && d.CSP != web.CSP {
			tb.t.Errorf("%s (%d): Content-Security-Policy %q", d.URL, d.Status, d.CSP)
		}
	}
	for _, v := range tb.cspViolations() {
		tb.t.Errorf("CSP violation reported: %s", v)
	}
	for _, m := range tb.messages() {
		if strings.HasPrefix(m, "exception:") {
			tb.t.Errorf("script error: %s", m)
		}
	}
	for _, d := range tb.dialogList() {
		if !strings.HasPrefix(d, string(page.DialogTypeConfirm)) {
			tb.t.Errorf("a JavaScript dialog opened: %s", d)
		}
	}
}

func (tb *tab) documents() []docResponse {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]docResponse(nil), tb.docs...)
}

func (tb *tab) messages() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.console...)
}

func (tb *tab) dialogList() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.dialogs...)
}

// cspViolations are the console and log messages reporting one.
func (tb *tab) cspViolations() []string {
	var out []string
	for _, m := range tb.messages() {
		if strings.Contains(m, "Content Security Policy") || strings.Contains(m, "Content-Security-Policy") {
			out = append(out, m)
		}
	}
	return out
}

// do runs steps, each bounded by actionTimeout, failing the test on error.
func (tb *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	for _, s := range steps {
		ctx, cancel := context.WithTimeout(tb.ctx, actionTimeout)
		err := chromedp.Do(ctx, s)
		cancel()
		if err != nil {
			tb.t.Fatalf("browser step failed at %s: %v", tb.location(), err)
		}
	}
}

// load runs steps that navigate and waits for the new page, returning
// its HTTP status.
func (tb *tab) load(steps ...chromedp.Action[chromedp.Void]) int64 {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, actionTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, steps...)
	if err != nil {
		tb.t.Fatalf("browser navigation failed at %s: %v", tb.location(), err)
	}
	if resp == nil {
		return 0
	}
	return resp.Status
}

// open navigates to a path of the application.
func (tb *tab) open(path string) int64 {
	tb.t.Helper()
	return tb.load(chromedp.Navigate(tb.a.URL + path))
}

// location is the tab's URL ("?" when unknown).
func (tb *tab) location() string {
	ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "?"
	}
	return loc
}

// path is the tab's path and query.
func (tb *tab) path() string {
	u, err := url.Parse(tb.location())
	if err != nil {
		return "?"
	}
	return u.RequestURI()
}

// text is the textContent of the first element sel matches (waiting for it).
func (tb *tab) text(sel string) string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, actionTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		tb.t.Fatalf("no %s on %s: %v", sel, tb.location(), err)
	}
	return s
}

// eval evaluates a JavaScript expression in the page.
func evalIn[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, actionTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.t.Fatalf("evaluating %s on %s: %v", expr, tb.location(), err)
	}
	return v
}

// count is how many elements sel matches now.
func (tb *tab) count(sel string) int {
	tb.t.Helper()
	return evalIn[int](tb, fmt.Sprintf("document.querySelectorAll(%q).length", sel))
}

// body is the page's visible text.
func (tb *tab) body() string {
	tb.t.Helper()
	return evalIn[string](tb, "document.body.innerText")
}

// shotsDir is where screenshots go: docs/screenshots with
// CARNET_SCREENSHOTS=1 (to regenerate the committed ones), else a
// temporary folder, so that a test run leaves the tree clean.
var (
	shotsOnce sync.Once
	shotsPath string
)

func shotsDir(t testing.TB) string {
	shotsOnce.Do(func() {
		if os.Getenv("CARNET_SCREENSHOTS") == "1" {
			shotsPath = filepath.Join("..", "..", "docs", "screenshots")
		} else {
			shotsPath, _ = os.MkdirTemp("", "carnet-screenshots-")
		}
		os.MkdirAll(shotsPath, 0o755)
	})
	return shotsPath
}

// shot saves the viewport as NAME.LANG.png (LANG: the page's language).
func (tb *tab) shot(name string) {
	tb.t.Helper()
	lang := evalIn[string](tb, "document.documentElement.lang")
	// Let fonts and images settle; blur the focused field so that no
	// caret blinks into the picture.
	tb.do(chromedp.Evaluate[chromedp.Void](`document.activeElement && document.activeElement.blur && document.activeElement.blur()`),
		chromedp.Sleep(100*time.Millisecond))
	ctx, cancel := context.WithTimeout(tb.ctx, actionTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tb.t.Fatalf("screenshot %s: %v", name, err)
	}
	file := filepath.Join(shotsDir(tb.t), name+"."+lang+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

// shotBoth saves the page in its language, then (through the header's
// language switch, which comes back to the same page) in the other, and
// switches back.
func (tb *tab) shotBoth(name string) {
	tb.t.Helper()
	tb.shot(name)
	tb.load(chromedp.Click(chromedp.CSS(`header .tools a[hreflang]`)))
	tb.shot(name)
	tb.load(chromedp.Click(chromedp.CSS(`header .tools a[hreflang]`)))
}
