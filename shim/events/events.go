// Package events is the engine's status stream: the tray, the settings
// page, the CLI and the log subscribe to it, and the engine never learns
// who listens.
//
// The Bus keeps the current status (engine state, every configured
// account with its health, counters) and numbers every event. Watch hands
// a subscriber the status and the events after it, registered under the
// same lock as Publish, as Tailscale's WatchNotifications does: a watcher
// misses nothing and sees nothing twice. A watcher that does not keep up
// is cut off (its channel closes, Lost reports it) rather than silently
// skipping events; it watches again and gets a fresh status.
package events

import (
	"slices"
	"sync"
	"time"

	"github.com/smtpshim/smtpshim/shim/api"
)

// Kind names what happened.
type Kind string

// Event kinds.
const (
	Delivered      Kind = "delivered"       // accepted upstream
	Queued         Kind = "queued"          // kept on disk for a retry
	Deferred       Kind = "deferred"        // a retry failed temporarily
	Bounced        Kind = "bounced"         // refused permanently after 250; a bounce went to the sender
	Rejected       Kind = "rejected"        // refused while the client waited
	AccountHealth  Kind = "account_health"  // an account's upstream went down or came back, or needs the user
	Problem        Kind = "problem"         // something the user should know, e.g. the spool is not writable
	Deleted        Kind = "deleted"         // a queued message was deleted
	Retry          Kind = "retry"           // a retry was requested
	State          Kind = "state"           // the engine state changed (pause, resume, stopping)
	Reloaded       Kind = "reloaded"        // the configuration was reloaded
	QueueChanged   Kind = "queue"           // the number of queued messages changed
	AccountAdded   Kind = "account_added"   // a reload added an account
	AccountRemoved Kind = "account_removed" // a reload removed an account
)

// Event is one status change.
type Event struct {
	// Seq is set by Publish: one more than the event before it.
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
	Kind      Kind      `json:"kind"`
	Account   string    `json:"account,omitempty"`
	MessageID string    `json:"message_id,omitempty"`
	Rcpts     []string  `json:"rcpts,omitempty"`
	Error     string    `json:"error,omitempty"`
	Hint      string    `json:"hint,omitempty"`
	Healthy   bool      `json:"healthy,omitempty"`
	// Problem is a short label of an AccountHealth event, e.g.
	// "password rejected", "keychain unavailable", "sign-in needed".
	Problem string `json:"problem,omitempty"`
	// Attention marks an AccountHealth event that only the user can fix;
	// the account's mail is held until then.
	Attention bool `json:"attention,omitempty"`
	// State is the new engine state of a State event.
	State api.EngineState `json:"state,omitempty"`
	// Queued is the queue length of a QueueChanged event.
	Queued int `json:"queued,omitempty"`
	// Count is how many messages a Retry event made due.
	Count int `json:"count,omitempty"`
	// Reload is what a Reloaded event applied.
	Reload *api.ReloadResult `json:"reload,omitempty"`

	// account is the account's state after this event, when it changed.
	account *api.Account
}

// AccountState returns the account's state after the event, when the
// event changed it.
func (e Event) AccountState() *api.Account { return e.account }

// apiKinds maps kinds whose wire name differs.
var apiKinds = map[Kind]api.EventKind{AccountHealth: api.EventAccount}

// API returns the event as the status API shows it.
func (e Event) API() api.Event {
	k, ok := apiKinds[e.Kind]
	if !ok {
		k = api.EventKind(e.Kind)
	}
	return api.Event{
		Seq: e.Seq, Time: e.Time, Kind: k, Account: e.Account, MessageID: e.MessageID,
		Rcpts: e.Rcpts, Error: e.Error, Hint: e.Hint, State: e.State,
		AccountState: e.account, Queued: e.Queued, Count: e.Count, Reload: e.Reload,
	}
}

// AccountInfo is what the configuration says about an account.
type AccountInfo struct {
	Key    string
	Server string
	Auth   string // "password" or "oauth2"
}

// Bus fans events out to subscribers and keeps the status. The zero value
// is ready to use.
type Bus struct {
	mu       sync.Mutex
	seq      uint64
	subs     map[chan Event]struct{}
	watchers map[*Watcher]struct{}
	status   api.Status
	accounts []*api.Account // config order
	ended    bool           // EndWatches was called
}

// Publish records e and hands it to every subscriber. A subscriber that
// does not keep up loses events (Subscribe) or is cut off (Watch) rather
// than stalling mail delivery; the status is always complete.
func (b *Bus) Publish(e Event) {
	b.mu.Lock()
	b.publishLocked(e)
	b.mu.Unlock()
}

func (b *Bus) publishLocked(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	b.seq++
	e.Seq = b.seq
	e.account = nil
	switch e.Kind {
	case Delivered:
		b.status.Delivered++
		if a := b.find(e.Account); a != nil {
			a.Delivered++
			if a.State != api.AccountOK {
				// A delivery proves the account works, whatever it was.
				setAccount(a, api.AccountOK, "", "", "", e.Time)
			}
			e.account = copyAccount(a)
		}
	case Bounced:
		b.status.Bounced++
	case AccountAdded:
		// New, or started over after its server changed.
		if a := b.find(e.Account); a != nil {
			e.account = copyAccount(a)
		}
	case AccountHealth:
		if a := b.find(e.Account); a != nil {
			switch {
			case e.Attention:
				setAccount(a, api.AccountNeedsAttention, e.Problem, e.Error, e.Hint, e.Time)
			case e.Healthy:
				setAccount(a, api.AccountOK, "", "", "", e.Time)
			default:
				problem := e.Problem
				if problem == "" {
					problem = "server unreachable"
				}
				setAccount(a, api.AccountFailing, problem, e.Error, e.Hint, e.Time)
			}
			e.account = copyAccount(a)
		}
	case State:
		b.status.State = e.State
	case QueueChanged:
		b.status.Queued = e.Queued
	}
	if e.Error != "" && e.Kind != Delivered {
		ae := e.API()
		b.status.LastError = &ae
	}
	b.status.Seq = e.Seq
	for ch := range b.subs {
		select {
		case ch <- e:
		default:
		}
	}
	for w := range b.watchers {
		select {
		case w.ch <- e:
		default:
			// Cut off, never skipped: the watcher learns it fell behind
			// and can start over from a fresh status.
			w.lost = true
			delete(b.watchers, w)
			close(w.ch)
		}
	}
}

func setAccount(a *api.Account, s api.AccountState, problem, lastErr, hint string, t time.Time) {
	if a.State != s {
		a.Since = t
	}
	a.State, a.Problem, a.LastError, a.Hint = s, problem, lastErr, hint
}

func (b *Bus) find(key string) *api.Account {
	for _, a := range b.accounts {
		if a.Key == key {
			return a
		}
	}
	return nil
}

func copyAccount(a *api.Account) *api.Account {
	c := *a
	return &c
}

// SetQueued records the number of queued messages; a change is an event.
func (b *Bus) SetQueued(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.status.Queued != n {
		b.publishLocked(Event{Kind: QueueChanged, Queued: n})
	}
}

// SetState records the engine state; a change is an event.
func (b *Bus) SetState(s api.EngineState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.status.State != s {
		b.publishLocked(Event{Kind: State, State: s})
	}
}

// SetInfo records what the status says about the engine itself.
func (b *Bus) SetInfo(version string, listen []string) {
	b.mu.Lock()
	b.status.Version = version
	b.status.Listen = slices.Clone(listen)
	b.mu.Unlock()
}

// SetAccounts installs the configured accounts, in config order. An
// account whose server and kind stay the same keeps its state and
// counters; a new or changed one starts as unused; one no longer
// configured leaves the status. Additions and removals are events.
func (b *Bus) SetAccounts(list []AccountInfo) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.accounts
	next := make([]*api.Account, 0, len(list))
	keep := map[string]bool{}
	var added []string
	for _, in := range list {
		if a := b.find(in.Key); a != nil && a.Server == in.Server && a.Auth == in.Auth {
			next = append(next, a)
			keep[in.Key] = true
			continue
		}
		next = append(next, &api.Account{Key: in.Key, Server: in.Server, Auth: in.Auth, State: api.AccountUnused})
		added = append(added, in.Key)
	}
	b.accounts = next
	for _, a := range old {
		if !keep[a.Key] && !slices.Contains(added, a.Key) {
			b.publishLocked(Event{Kind: AccountRemoved, Account: a.Key})
		}
	}
	for _, k := range added {
		b.publishLocked(Event{Kind: AccountAdded, Account: k})
	}
}

// Status returns a copy of the current status.
func (b *Bus) Status() api.Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.statusLocked()
}

func (b *Bus) statusLocked() api.Status {
	s := b.status
	s.Listen = slices.Clone(b.status.Listen)
	s.Accounts = make([]api.Account, len(b.accounts))
	for i, a := range b.accounts {
		s.Accounts[i] = *a
	}
	if s.LastError != nil {
		le := *s.LastError
		s.LastError = &le
	}
	return s
}

// Subscribe returns a channel of events and a function that ends the
// subscription. Events that do not fit in the buffer are dropped for this
// subscriber; use Watch where nothing may be missed.
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

// Watcher is one subscriber of Watch.
type Watcher struct {
	// Status is the status when the watch began; C carries every event
	// after it, starting with Seq Status.Seq+1.
	Status api.Status
	C      <-chan Event

	b    *Bus
	ch   chan Event
	lost bool
}

// Watch returns the current status and every later event. buffer events
// may wait unread; one more ends the watch (C closes, Lost is true).
func (b *Bus) Watch(buffer int) *Watcher {
	ch := make(chan Event, max(buffer, 1))
	w := &Watcher{b: b, ch: ch, C: ch}
	b.mu.Lock()
	if b.watchers == nil {
		b.watchers = map[*Watcher]struct{}{}
	}
	w.Status = b.statusLocked()
	if b.ended {
		close(ch)
	} else {
		b.watchers[w] = struct{}{}
	}
	b.mu.Unlock()
	return w
}

// EndWatches ends every watch, now and later: their channels close after
// the events already sent. The engine calls it when it stops, so that
// watchers see the last events and then a clean end.
func (b *Bus) EndWatches() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ended = true
	for w := range b.watchers {
		delete(b.watchers, w)
		close(w.ch)
	}
}

// Stop ends the watch; C closes. It is safe to call more than once.
func (w *Watcher) Stop() {
	w.b.mu.Lock()
	if _, ok := w.b.watchers[w]; ok {
		delete(w.b.watchers, w)
		close(w.ch)
	}
	w.b.mu.Unlock()
}

// Lost reports whether the watch ended because the watcher fell behind.
func (w *Watcher) Lost() bool {
	w.b.mu.Lock()
	defer w.b.mu.Unlock()
	return w.lost
}
