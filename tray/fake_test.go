package tray

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/smtpshim/smtpshim/shim/api"
)

// fakeEngine is an in-memory engine: a status that commands change, and
// a watch stream the test feeds.
type fakeEngine struct {
	mu      sync.Mutex
	st      api.Status
	calls   []string
	watches int
	stream  chan api.WatchItem
	failN   int // fail the first failN Watch calls
}

func newFakeEngine(st api.Status) *fakeEngine {
	return &fakeEngine{st: st, stream: make(chan api.WatchItem, 16)}
}

func (f *fakeEngine) record(c string) {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
}

func (f *fakeEngine) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// snapshot copies the status, as the wire would.
func (f *fakeEngine) snapshot() api.Status {
	s := f.st
	s.Accounts = slices.Clone(s.Accounts)
	return s
}

func (f *fakeEngine) set(fn func(*api.Status)) {
	f.mu.Lock()
	fn(&f.st)
	f.mu.Unlock()
}

func (f *fakeEngine) Status(ctx context.Context) (api.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snapshot(), nil
}

func (f *fakeEngine) Watch(ctx context.Context, fn func(api.WatchItem)) error {
	f.mu.Lock()
	f.watches++
	if f.failN > 0 {
		f.failN--
		f.mu.Unlock()
		return errors.New("connection refused")
	}
	st := f.snapshot()
	f.mu.Unlock()
	fn(api.WatchItem{Status: &st})
	for {
		select {
		case it := <-f.stream:
			fn(it)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *fakeEngine) Retry(ctx context.Context) error { f.record("retry"); return nil }
func (f *fakeEngine) Pause(ctx context.Context) error {
	f.record("pause")
	f.set(func(s *api.Status) { s.State = api.Paused })
	return nil
}
func (f *fakeEngine) Resume(ctx context.Context) error {
	f.record("resume")
	f.set(func(s *api.Status) { s.State = api.Running })
	return nil
}

// fakeUI records what the controller shows.
type fakeUI struct {
	mu        sync.Mutex
	views     []View
	autostart *bool
	quits     int
	changed   chan struct{}
}

func newFakeUI() *fakeUI { return &fakeUI{changed: make(chan struct{}, 100)} }

func (u *fakeUI) apply(v View) {
	u.mu.Lock()
	u.views = append(u.views, v)
	u.mu.Unlock()
	select {
	case u.changed <- struct{}{}:
	default:
	}
}
func (u *fakeUI) setAutostart(on bool) { u.mu.Lock(); u.autostart = &on; u.mu.Unlock() }
func (u *fakeUI) quit()                { u.mu.Lock(); u.quits++; u.mu.Unlock() }

func (u *fakeUI) last() (View, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.views) == 0 {
		return View{}, false
	}
	return u.views[len(u.views)-1], true
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

type fakePages struct {
	mu     sync.Mutex
	opened []string
}

func (p *fakePages) Open(path string) error {
	p.mu.Lock()
	p.opened = append(p.opened, path)
	p.mu.Unlock()
	return nil
}

func (p *fakePages) Opened() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.opened...)
}

type fakeAutostart struct {
	mu sync.Mutex
	on bool
}

func (a *fakeAutostart) Enabled() (bool, error) { a.mu.Lock(); defer a.mu.Unlock(); return a.on, nil }
func (a *fakeAutostart) Set(on bool) error      { a.mu.Lock(); a.on = on; a.mu.Unlock(); return nil }
