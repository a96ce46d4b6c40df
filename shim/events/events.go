// Package events is the engine's status stream: the tray, the settings
// page and the log subscribe to it, and the engine never learns who
// listens.
package events

import (
	"sync"
	"time"
)

// Kind names what happened.
type Kind string

// Event kinds.
const (
	Delivered     Kind = "delivered"      // accepted upstream
	Queued        Kind = "queued"         // kept on disk for a retry
	Deferred      Kind = "deferred"       // a retry failed temporarily
	Bounced       Kind = "bounced"        // refused permanently after 250; a bounce went to the sender
	Rejected      Kind = "rejected"       // refused while the client waited
	AccountHealth Kind = "account_health" // an account's upstream went down or came back
	Problem       Kind = "problem"        // something the user should know, e.g. the spool is not writable
)

// Event is one status change.
type Event struct {
	Time      time.Time `json:"time"`
	Kind      Kind      `json:"kind"`
	Account   string    `json:"account,omitempty"`
	MessageID string    `json:"message_id,omitempty"`
	Rcpts     []string  `json:"rcpts,omitempty"`
	Error     string    `json:"error,omitempty"`
	Hint      string    `json:"hint,omitempty"`
	Healthy   bool      `json:"healthy,omitempty"`
	// Problem names credential trouble at an AccountHealth event
	// ("password rejected", "keychain unavailable", "sign-in needed").
	Problem string `json:"problem,omitempty"`
	// Attention: the account needs a person before it works again; its
	// mail is kept meanwhile.
	Attention bool `json:"attention,omitempty"`
}

// AccountStatus is one account's current state.
type AccountStatus struct {
	Healthy   bool      `json:"healthy"`
	LastError string    `json:"last_error,omitempty"`
	Hint      string    `json:"hint,omitempty"`
	Since     time.Time `json:"since"`
	Problem   string    `json:"problem,omitempty"`
	Attention bool      `json:"attention,omitempty"`
}

// Status is the current summary a tray icon shows.
type Status struct {
	Queued    int                      `json:"queued"`
	Delivered uint64                   `json:"delivered"`
	Bounced   uint64                   `json:"bounced"`
	Accounts  map[string]AccountStatus `json:"accounts"`
	LastError *Event                   `json:"last_error,omitempty"`
}

// Bus fans events out to subscribers and keeps the summary. The zero
// value is ready to use.
type Bus struct {
	mu     sync.Mutex
	subs   map[chan Event]struct{}
	status Status
}

// Publish records e and hands it to every subscriber. A subscriber that
// does not keep up loses events rather than stalling mail delivery; the
// summary from Status is always complete.
func (b *Bus) Publish(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	b.mu.Lock()
	switch e.Kind {
	case Delivered:
		b.status.Delivered++
	case Bounced:
		b.status.Bounced++
	case AccountHealth:
		if b.status.Accounts == nil {
			b.status.Accounts = map[string]AccountStatus{}
		}
		b.status.Accounts[e.Account] = AccountStatus{Healthy: e.Healthy, LastError: e.Error, Hint: e.Hint, Since: e.Time, Problem: e.Problem, Attention: e.Attention}
	}
	if e.Error != "" && e.Kind != Delivered {
		ev := e
		b.status.LastError = &ev
	}
	for ch := range b.subs {
		select {
		case ch <- e:
		default:
		}
	}
	b.mu.Unlock()
}

// SetQueued records the number of queued messages.
func (b *Bus) SetQueued(n int) {
	b.mu.Lock()
	b.status.Queued = n
	b.mu.Unlock()
}

// Status returns a copy of the summary.
func (b *Bus) Status() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.status
	s.Accounts = make(map[string]AccountStatus, len(b.status.Accounts))
	for k, v := range b.status.Accounts {
		s.Accounts[k] = v
	}
	return s
}

// Subscribe returns a channel of events and a function that ends the
// subscription.
func (b *Bus) Subscribe(buffer int) (<-chan Event, func()) {
	ch := make(chan Event, max(buffer, 1))
	b.mu.Lock()
	if b.subs == nil {
		b.subs = map[chan Event]struct{}{}
	}
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		if _, ok := b.subs[ch]; ok {
			delete(b.subs, ch)
			close(ch)
		}
		b.mu.Unlock()
	}
}
