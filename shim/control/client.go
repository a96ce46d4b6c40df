package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/smtpshim/smtpshim/shim/api"
)

// ErrNotRunning means no engine answers on the socket.
var ErrNotRunning = errors.New("smtpshim is not running")

// Client talks to a running engine. It is safe for concurrent use.
type Client struct {
	hc     *http.Client // requests with a reply
	stream *http.Client // GET /v1/watch: no overall timeout
}

// Dial returns a client for the engine owning spoolDir, or ErrNotRunning.
func Dial(spoolDir string) (*Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	c, err := dialSocket(ctx, spoolDir)
	cancel()
	if err != nil {
		return nil, ErrNotRunning
	}
	c.Close()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialSocket(ctx, spoolDir)
	}}
	return &Client{
		hc:     &http.Client{Transport: tr, Timeout: 30 * time.Second},
		stream: &http.Client{Transport: tr},
	}, nil
}

// Close releases the client's idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

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
		return replyError(resp)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

func replyError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	msg := strings.TrimSpace(string(b))
	if msg == "" {
		msg = "the running smtpshim answered " + resp.Status
	}
	return errors.New(msg)
}

// Status returns the engine's status.
func (c *Client) Status() (api.Status, error) {
	var s api.Status
	return s, c.do("GET", "/v1/status", &s)
}

// Watch calls fn with the engine's status, then with every event as it
// happens, until ctx ends, fn returns an error, or the stream ends (the
// engine stopped, or this watcher fell too far behind). It returns
// ctx.Err(), fn's error, or an error saying why the stream ended; to go
// on, call Watch again: it starts with a fresh status.
func (c *Client) Watch(ctx context.Context, fn func(api.WatchItem) error) error {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://smtpshim/v1/watch", nil)
	if err != nil {
		return err
	}
	resp, err := c.stream.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("talking to the running smtpshim: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return replyError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var it api.WatchItem
		if err := json.Unmarshal(sc.Bytes(), &it); err != nil {
			return fmt.Errorf("reading the status stream: %w", err)
		}
		if err := fn(it); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := sc.Err(); err != nil {
		// A stopping engine closes the connection mid-stream.
		return fmt.Errorf("%w: %v", ErrStreamEnded, err)
	}
	return ErrStreamEnded
}

// ErrStreamEnded is returned by Watch when the engine ended the stream:
// it stopped (or the connection broke), or the watcher fell behind.
var ErrStreamEnded = errors.New("the running smtpshim ended the status stream")

// Queue returns the queued messages, oldest first.
func (c *Client) Queue() ([]api.QueueEntry, error) {
	var l []api.QueueEntry
	return l, c.do("GET", "/v1/queue", &l)
}

// List is Queue.
func (c *Client) List() ([]api.QueueEntry, error) { return c.Queue() }

// Get returns one queued message.
func (c *Client) Get(id string) (api.QueueEntry, error) {
	var m api.QueueEntry
	return m, c.do("GET", "/v1/queue/"+url.PathEscape(id), &m)
}

// Retry makes a message (or, with id "", all) due now, and returns how
// many it found.
func (c *Client) Retry(id string) (int, error) {
	var out api.RetryResult
	path := "/v1/queue/retry"
	if id != "" {
		path += "?id=" + url.QueryEscape(id)
	}
	return out.Count, c.do("POST", path, &out)
}

// Delete removes a queued message without sending it.
func (c *Client) Delete(id string) error {
	return c.do("DELETE", "/v1/queue/"+url.PathEscape(id), nil)
}

// Pause holds delivery (mail is still accepted and queued) and returns
// the status after it.
func (c *Client) Pause() (api.Status, error) {
	var s api.Status
	return s, c.do("POST", "/v1/pause", &s)
}

// Resume ends a pause, sends the queue at once, and returns the status
// after it.
func (c *Client) Resume() (api.Status, error) {
	var s api.Status
	return s, c.do("POST", "/v1/resume", &s)
}

// Reload makes the engine re-read its config file; the result says what
// took effect and what needs a restart.
func (c *Client) Reload() (api.ReloadResult, error) {
	var r api.ReloadResult
	return r, c.do("POST", "/v1/reload", &r)
}
