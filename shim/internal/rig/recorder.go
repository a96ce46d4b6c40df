package rig

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/events"
)

// Recorder keeps every event published on a bus after Record.
type Recorder struct {
	mu  sync.Mutex
	evs []events.Event
	// sync asks the recording goroutine, the channel's only reader, to
	// take in everything already published before All looks, so an event
	// that was published is never missed.
	sync chan chan struct{}
	done chan struct{}
}

// Record subscribes to bus; call it before the action whose events count.
func Record(tb testing.TB, bus *events.Bus) *Recorder {
	r := &Recorder{sync: make(chan chan struct{}), done: make(chan struct{})}
	ch, cancel := bus.Subscribe(4096)
	add := func(e events.Event) {
		r.mu.Lock()
		r.evs = append(r.evs, e)
		r.mu.Unlock()
	}
	go func() {
		defer close(r.done)
		for {
			select {
			case e, ok := <-ch:
				if !ok {
					return
				}
				add(e)
			case synced := <-r.sync:
				for drained := false; !drained; {
					select {
					case e, ok := <-ch:
						if !ok {
							close(synced)
							return
						}
						add(e)
					default:
						drained = true
					}
				}
				close(synced)
			}
		}
	}()
	tb.Cleanup(func() { cancel(); <-r.done })
	return r
}

// All returns every event published so far, in order.
func (r *Recorder) All() []events.Event {
	synced := make(chan struct{})
	select {
	case r.sync <- synced:
		<-synced
	case <-r.done:
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.evs)
}

// Find returns the index of the first event that matches, or -1.
func (r *Recorder) Find(pred func(events.Event) bool) (int, bool) {
	for i, e := range r.All() {
		if pred(e) {
			return i, true
		}
	}
	return -1, false
}

// Count returns how many events match.
func (r *Recorder) Count(pred func(events.Event) bool) int {
	n := 0
	for _, e := range r.All() {
		if pred(e) {
			n++
		}
	}
	return n
}

// WaitFor waits up to d for an event that matches and returns it.
func (r *Recorder) WaitFor(tb testing.TB, d time.Duration, what string, pred func(events.Event) bool) events.Event {
	tb.Helper()
	var ev events.Event
	WaitUntil(tb, d, what, func() bool {
		for _, e := range r.All() {
			if pred(e) {
				ev = e
				return true
			}
		}
		return false
	})
	return ev
}

// IsEvent matches events of kind for message id ("" for any message).
func IsEvent(kind events.Kind, id string) func(events.Event) bool {
	return func(e events.Event) bool { return e.Kind == kind && (id == "" || e.MessageID == id) }
}
