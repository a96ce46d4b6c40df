package tray

import (
	"context"
	"errors"
	"time"

	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/control"
)

// Client is the running engine's status API over the control socket, for
// the tray and the settings page.
type Client struct {
	spoolDir string
	cfg      *config.Config
	version  string
}

// NewClient returns a client for the engine that runs with cfg.
func NewClient(cfg *config.Config, version string) (*Client, error) {
	dir, err := cfg.EffectiveSpoolDir()
	if err != nil {
		return nil, err
	}
	return &Client{spoolDir: dir, cfg: cfg, version: version}, nil
}

func (e *Client) client() (*control.Client, error) { return control.Dial(e.spoolDir) }

func (e *Client) Status(ctx context.Context) (api.Status, error) {
	c, err := e.client()
	if err != nil {
		return api.Status{}, err
	}
	s, err := c.Status()
	if err != nil {
		return api.Status{}, err
	}
	out := api.Status{State: api.Running, Version: e.version, Listen: e.cfg.ListenAddrs(),
		Queued: s.Queued, Delivered: s.Delivered, Bounced: s.Bounced}
	// The accounts as configured now, not as at start.
	cfg, err := config.Load(e.cfg.Path())
	if err != nil {
		cfg = e.cfg
	}
	for _, a := range cfg.Accounts {
		acc := api.Account{Key: a.Key(), Server: a.Server, Auth: "password", State: api.AccountUnused}
		if h, ok := s.Accounts[a.Key()]; ok {
			acc.State, acc.Since = api.AccountOK, h.Since
			if !h.Healthy {
				acc.State, acc.Problem, acc.LastError, acc.Hint = api.AccountFailing, "server unreachable", h.LastError, h.Hint
			}
		}
		out.Accounts = append(out.Accounts, acc)
	}
	if q, err := c.List(); err == nil {
		for _, m := range q {
			if out.OldestQueued.IsZero() || m.Created.Before(out.OldestQueued) {
				out.OldestQueued = m.Created
			}
		}
	}
	return out, nil
}

// Watch polls until the engine's event stream is available to clients.
func (e *Client) Watch(ctx context.Context, fn func(api.WatchItem)) error {
	var last api.Status
	for first := true; ; first = false {
		s, err := e.Status(ctx)
		if err != nil {
			return err
		}
		if first {
			fn(api.WatchItem{Status: &s})
		} else if s.Queued != last.Queued || s.Delivered != last.Delivered || s.Bounced != last.Bounced {
			fn(api.WatchItem{Event: &api.Event{Time: time.Now(), Kind: api.EventQueueChanged, Queued: s.Queued}})
		}
		last = s
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func (e *Client) Queue(ctx context.Context) ([]api.QueueEntry, error) {
	c, err := e.client()
	if err != nil {
		return nil, err
	}
	q, err := c.List()
	var out []api.QueueEntry
	for _, m := range q {
		out = append(out, api.QueueEntry{ID: m.ID, Account: m.Account, From: m.From, Rcpts: m.Rcpts, Size: m.Size,
			Created: m.Created, Attempts: m.Attempts, NextTry: m.NextTry, LastError: m.LastError, Hint: m.LastHint})
	}
	return out, err
}

func (e *Client) Retry(ctx context.Context, id string) (int, error) {
	c, err := e.client()
	if err != nil {
		return 0, err
	}
	return c.Retry(id)
}

func (e *Client) Delete(ctx context.Context, id string) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	return c.Delete(id)
}

func (e *Client) Reload(ctx context.Context) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	return c.Reload()
}

var errNoPause = errors.New("this relay cannot pause yet")

func (e *Client) Pause(ctx context.Context) error  { return errNoPause }
func (e *Client) Resume(ctx context.Context) error { return errNoPause }

// ForTray narrows the client to the tray's Engine.
func (e *Client) ForTray() Engine { return trayEngine{e} }

type trayEngine struct{ *Client }

func (t trayEngine) Retry(ctx context.Context) error {
	_, err := t.Client.Retry(ctx, "")
	return err
}
