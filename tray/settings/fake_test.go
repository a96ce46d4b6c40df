package settings

import (
	"context"
	"errors"
	"sync"

	"github.com/smtpshim/smtpshim/shim/api"
)

type fakeEngine struct {
	mu      sync.Mutex
	st      api.Status
	queue   []api.QueueEntry
	calls   []string
	events  chan api.Event
	reloads int
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{st: api.Status{State: api.Running, Listen: []string{"127.0.0.1:2525"}}, events: make(chan api.Event, 16)}
}

func (f *fakeEngine) Status(context.Context) (api.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st, nil
}

func (f *fakeEngine) Watch(ctx context.Context, fn func(api.WatchItem)) error {
	st, _ := f.Status(ctx)
	fn(api.WatchItem{Status: &st})
	for {
		select {
		case e := <-f.events:
			fn(api.WatchItem{Event: &e})
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *fakeEngine) Queue(context.Context) ([]api.QueueEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.QueueEntry(nil), f.queue...), nil
}

func (f *fakeEngine) Retry(_ context.Context, id string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "retry "+id)
	return len(f.queue), nil
}

func (f *fakeEngine) Delete(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, q := range f.queue {
		if q.ID == id {
			f.queue = append(f.queue[:i], f.queue[i+1:]...)
			f.calls = append(f.calls, "delete "+id)
			return nil
		}
	}
	return errors.New("no queued message " + id)
}

func (f *fakeEngine) Reload(context.Context) error {
	f.mu.Lock()
	f.reloads++
	f.mu.Unlock()
	return nil
}
