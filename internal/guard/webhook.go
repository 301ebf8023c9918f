package guard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"carnet/internal/store"
)

// Webhook posts every alert as JSON to a URL (the security officer's
// paging or SIEM endpoint), off the request path: a queue of 1,000 alerts,
// three attempts each with back-off. An alert that cannot be delivered is
// still in the alert queue of the API and in the log.
type Webhook struct {
	url    string
	client *http.Client
	log    *slog.Logger
	q      chan *store.Alert
	wg     sync.WaitGroup
	once   sync.Once
}

// NewWebhook starts delivering to url.
func NewWebhook(url string, client *http.Client, log *slog.Logger) *Webhook {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Webhook{url: url, client: client, log: log, q: make(chan *store.Alert, 1000)}
	w.wg.Add(1)
	go w.run()
	return w
}

// Notify queues a (never blocks; a full queue drops and logs).
func (w *Webhook) Notify(a *store.Alert) {
	select {
	case w.q <- a:
	default:
		w.log.Error("guard webhook queue full: alert not posted", "alert", a.ID)
	}
}

// Close delivers what is queued and stops.
func (w *Webhook) Close() {
	w.once.Do(func() { close(w.q) })
	w.wg.Wait()
}

// AlertJSON is the webhook's and the API's view of an alert.
type AlertJSON struct {
	ID         string    `json:"id"`
	At         time.Time `json:"at"`
	Account    string    `json:"account"`
	Username   string    `json:"username"`
	Severity   string    `json:"severity"`
	Action     string    `json:"action"`
	Reason     string    `json:"reason"`
	Detail     string    `json:"detail,omitempty"`
	Status     string    `json:"status"`
	ReviewedBy string    `json:"reviewed_by,omitempty"`
	Reviewed   time.Time `json:"reviewed,omitzero"`
	Note       string    `json:"note,omitempty"`
	// AccountStatus is the account's status now (in the alert queue's
	// answers, not in webhooks): a suspended account stays so until the
	// security officer enables it, whatever its alerts' status.
	AccountStatus string `json:"account_status,omitempty"`
}

// View returns the JSON view of a.
func View(a *store.Alert) AlertJSON {
	return AlertJSON{ID: a.ID, At: a.At, Account: a.Account, Username: a.Username, Severity: a.Severity, Action: a.Action,
		Reason: a.Reason, Detail: a.Detail, Status: a.Status, ReviewedBy: a.ReviewedBy, Reviewed: a.Reviewed, Note: a.Note}
}

func (w *Webhook) run() {
	defer w.wg.Done()
	for a := range w.q {
		body, _ := json.Marshal(View(a))
		var err error
		for attempt := range 3 {
			if attempt > 0 {
				time.Sleep(time.Duration(attempt) * time.Second)
			}
			if err = w.post(body); err == nil {
				break
			}
		}
		if err != nil {
			w.log.Error("guard webhook: alert not delivered", "alert", a.ID, "err", err)
		}
	}
}

func (w *Webhook) post(body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}
