package settings

import (
	"sync"

	"github.com/smtpshim/smtpshim/shim/api"
)

// activity keeps the recent events for the Activity page and hands new
// ones to the pages that watch live.
type activity struct {
	mu     sync.Mutex
	max    int
	events []api.Event // oldest first
	subs   map[chan api.Event]struct{}
	closed bool
}

func newActivity(max int) *activity {
	return &activity{max: max, subs: map[chan api.Event]struct{}{}}
}

func (a *activity) add(e api.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, e)
	if len(a.events) > a.max {
		a.events = a.events[len(a.events)-a.max:]
	}
	for ch := range a.subs {
		select {
		case ch <- e:
		default: // a page that does not keep up misses a line, not the engine
		}
	}
}

// recent returns the events, newest first.
func (a *activity) recent() []api.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]api.Event, len(a.events))
	for i, e := range a.events {
		out[len(a.events)-1-i] = e
	}
	return out
}

func (a *activity) subscribe() (<-chan api.Event, func()) {
	ch := make(chan api.Event, 64)
	a.mu.Lock()
	if a.closed {
		close(ch)
	} else {
		a.subs[ch] = struct{}{}
	}
	a.mu.Unlock()
	return ch, func() {
		a.mu.Lock()
		if _, ok := a.subs[ch]; ok {
			delete(a.subs, ch)
			close(ch)
		}
		a.mu.Unlock()
	}
}

func (a *activity) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	for ch := range a.subs {
		delete(a.subs, ch)
		close(ch)
	}
}
