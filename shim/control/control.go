// Package control is the local command channel between a running
// smtpshim and its command-line tools (and later the tray): HTTP over a
// Unix socket in the spool directory, which only the owning user can open
// (a named pipe on Windows; see transport_windows.go).
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/smtpshim/smtpshim/shim/events"
	"github.com/smtpshim/smtpshim/shim/spool"
)

// Commands is what the running engine offers.
type Commands interface {
	List() []spool.Meta
	Get(id string) (spool.Meta, bool)
	RetryNow(id string) int
	Delete(id string) error
	Status() events.Status
	Reload() error
}

// Handler serves the control API.
func Handler(c Commands) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, c.Status()) })
	mux.HandleFunc("GET /v1/queue", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, c.List()) })
	mux.HandleFunc("GET /v1/queue/{id}", func(w http.ResponseWriter, r *http.Request) {
		m, ok := c.Get(r.PathValue("id"))
		if !ok {
			http.Error(w, "no queued message "+r.PathValue("id"), http.StatusNotFound)
			return
		}
		writeJSON(w, m)
	})
	mux.HandleFunc("POST /v1/queue/retry", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		n := c.RetryNow(id)
		if id != "" && n == 0 {
			http.Error(w, "no queued message "+id, http.StatusNotFound)
			return
		}
		writeJSON(w, map[string]int{"count": n})
	})
	mux.HandleFunc("DELETE /v1/queue/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := c.Delete(r.PathValue("id")); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, r *http.Request) {
		if err := c.Reload(); err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// ErrNotRunning means no engine answers on the socket.
var ErrNotRunning = errors.New("smtpshim is not running")

// Client talks to a running engine.
type Client struct {
	hc *http.Client
}

// Dial returns a client for the engine owning spoolDir, or ErrNotRunning.
func Dial(spoolDir string) (*Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	c, err := dialControl(ctx, spoolDir)
	cancel()
	if err != nil {
		return nil, ErrNotRunning
	}
	c.Close()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialControl(ctx, spoolDir)
	}}
	return &Client{hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

func (c *Client) do(method, path string, out any) error {
	req, err := http.NewRequest(method, "http://smtpshim"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("talking to the running smtpshim: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return errors.New(string(bytesTrim(b)))
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

func bytesTrim(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// Status returns the engine's status summary.
func (c *Client) Status() (events.Status, error) {
	var s events.Status
	return s, c.do("GET", "/v1/status", &s)
}

// List returns the queue.
func (c *Client) List() ([]spool.Meta, error) {
	var l []spool.Meta
	return l, c.do("GET", "/v1/queue", &l)
}

// Get returns one queued message.
func (c *Client) Get(id string) (spool.Meta, error) {
	var m spool.Meta
	return m, c.do("GET", "/v1/queue/"+id, &m)
}

// Retry makes a message (or, with id "", all) due now.
func (c *Client) Retry(id string) (int, error) {
	var out struct{ Count int }
	path := "/v1/queue/retry"
	if id != "" {
		path += "?id=" + id
	}
	return out.Count, c.do("POST", path, &out)
}

// Delete removes a queued message.
func (c *Client) Delete(id string) error { return c.do("DELETE", "/v1/queue/"+id, nil) }

// Reload makes the engine re-read its config.
func (c *Client) Reload() error { return c.do("POST", "/v1/reload", nil) }
