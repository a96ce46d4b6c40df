package tray

import (
	"context"
	"sync"

	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/control"
)

// Client is the running engine's status API over the control socket (a
// control.Client), shaped for the tray and the settings page. It dials
// on first use, so it can be made before the engine listens; after that
// each request opens the socket again, so it outlives an engine restart.
type Client struct {
	spoolDir string

	mu sync.Mutex
	c  *control.Client
}

// NewClient returns a client for the engine that runs with cfg.
func NewClient(cfg *config.Config) (*Client, error) {
	dir, err := cfg.EffectiveSpoolDir()
	if err != nil {
		return nil, err
	}
	return &Client{spoolDir: dir}, nil
}

func (e *Client) client() (*control.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.c != nil {
		return e.c, nil
	}
	c, err := control.Dial(e.spoolDir)
	if err != nil {
		return nil, err
	}
	e.c = c
	return c, nil
}

// Status returns the engine's snapshot.
func (e *Client) Status(ctx context.Context) (api.Status, error) {
	c, err := e.client()
	if err != nil {
		return api.Status{}, err
	}
	s, err := c.Status()
	return s, err
}

// Watch follows the engine's status stream until ctx ends or it breaks.
func (e *Client) Watch(ctx context.Context, fn func(api.WatchItem)) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	return c.Watch(ctx, func(it api.WatchItem) error { fn(it); return nil })
}

// Queue returns the outbox.
func (e *Client) Queue(ctx context.Context) ([]api.QueueEntry, error) {
	c, err := e.client()
	if err != nil {
		return nil, err
	}
	q, err := c.Queue()
	return q, err
}

// Retry makes one message, or with id "" all, due now.
func (e *Client) Retry(ctx context.Context, id string) (int, error) {
	c, err := e.client()
	if err != nil {
		return 0, err
	}
	n, err := c.Retry(id)
	return n, err
}

// Delete removes a waiting message.
func (e *Client) Delete(ctx context.Context, id string) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	return c.Delete(id)
}

// Reload makes the engine read its config again.
func (e *Client) Reload(ctx context.Context) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	_, err = c.Reload()
	return err
}

// Pause holds delivery; mail is still accepted and kept.
func (e *Client) Pause(ctx context.Context) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	_, err = c.Pause()
	return err
}

// Resume sends again.
func (e *Client) Resume(ctx context.Context) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	_, err = c.Resume()
	return err
}

// ForTray narrows the client to the tray's Engine.
func (e *Client) ForTray() Engine { return trayEngine{e} }

type trayEngine struct{ *Client }

func (t trayEngine) Retry(ctx context.Context) error {
	_, err := t.Client.Retry(ctx, "")
	return err
}
