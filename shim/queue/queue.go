// Package queue retries spooled messages until the upstream accepts them,
// refuses them for good (then the sender gets a bounce), or they expire.
//
// Retries use exponential backoff with jitter per message, and each
// account's health: while an account's server is down, one probe at a time
// goes out instead of a connection per message.
package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/addr"
	"github.com/smtpshim/smtpshim/shim/dsn"
	"github.com/smtpshim/smtpshim/shim/events"
	"github.com/smtpshim/smtpshim/shim/hints"
	"github.com/smtpshim/smtpshim/shim/route"
	"github.com/smtpshim/smtpshim/shim/spool"
	"github.com/smtpshim/smtpshim/shim/upstream"
)

// Options configures a Queue.
type Options struct {
	Spool *spool.Spool
	// Pool returns the upstream pool of an account key, or nil when the
	// account no longer exists.
	Pool func(account string) *upstream.Pool
	// Routes returns the current routing table. When set, a message's
	// sender must still route to the message's account before each
	// attempt (see recheck); nil skips that check.
	Routes   func() *route.Table
	Bus      *events.Bus
	Logger   *slog.Logger
	Hostname string
	// MaxAge is how long a message is retried before it bounces.
	MaxAge time.Duration
	// RetryMin and RetryMax bound the backoff between attempts.
	RetryMin, RetryMax time.Duration
	// AttemptTimeout bounds one delivery attempt.
	AttemptTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Paused, when set and true, holds every message: no attempt starts
	// until it turns false and the queue is kicked (RetryNow).
	Paused func() bool
}

// Queue owns the spooled messages while the engine runs.
type Queue struct {
	o      Options
	log    *slog.Logger
	timing atomic.Pointer[timing] // what a reload may change

	mu      sync.Mutex
	entries map[string]*entry
	running map[string]int // in-flight attempts per account
	wakeAt  time.Time      // when Run will next look, if nothing kicks it
	wake    chan struct{}
	wg      sync.WaitGroup
	// ready holds, per account, the due entries that the last full scan
	// of dispatch found beyond the account's free attempt slots, oldest
	// first: later dispatches start them without scanning the whole
	// queue again (draining thousands of messages made every finished
	// attempt cost a scan of all of them). readyNext is the earliest due
	// time among the entries that were not due then, lowered whenever an
	// entry's due time is set; once it passes, dispatch scans again.
	ready     map[string][]*entry
	readyNext time.Time
	// addedNext is the earliest due time of the messages added while
	// wakeAt was unset (see Add).
	addedNext time.Time
	scans     int // full scans of the queue so far
}

// readyMax bounds the ready entries kept per account.
const readyMax = 256

// dueAt notes that an entry falls due at t. Called with q.mu held.
func (q *Queue) dueAt(t time.Time) {
	if q.readyNext.IsZero() || t.Before(q.readyNext) {
		q.readyNext = t
	}
}

type entry struct {
	m    *spool.Meta
	busy bool // an attempt (or the client's live attempt) is running
	// retry is a "send now" that arrived during an attempt; it wins over
	// the backoff that attempt's failure would set.
	retry bool
}

// New returns a queue over o.Spool. Call Load, then Run.
func New(o Options) *Queue {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Bus == nil {
		o.Bus = &events.Bus{}
	}
	if o.RetryMin <= 0 {
		o.RetryMin = time.Minute
	}
	if o.RetryMax <= 0 {
		o.RetryMax = time.Hour
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 5 * 24 * time.Hour
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 10 * time.Minute
	}
	q := &Queue{
		o:       o,
		log:     o.Logger,
		entries: map[string]*entry{},
		running: map[string]int{},
		wake:    make(chan struct{}, 1),
	}
	q.timing.Store(&timing{retryMin: o.RetryMin, retryMax: o.RetryMax, maxAge: o.MaxAge})
	return q
}

type timing struct{ retryMin, retryMax, maxAge time.Duration }

// SetTiming changes the backoff bounds and the maximum age (a reload);
// zero keeps a value. Waits already scheduled keep their time.
func (q *Queue) SetTiming(retryMin, retryMax, maxAge time.Duration) {
	t := *q.timing.Load()
	if retryMin > 0 {
		t.retryMin = retryMin
	}
	if retryMax > 0 {
		t.retryMax = retryMax
	}
	if maxAge > 0 {
		t.maxAge = maxAge
	}
	q.timing.Store(&t)
}

// Load reads the spool. Every message found is due at once: after a
// restart the first thing to do is try again.
func (q *Queue) Load() error {
	metas, err := q.o.Spool.List()
	now := q.o.Now()
	q.mu.Lock()
	for _, m := range metas {
		m.NextTry = now
		q.entries[m.ID] = &entry{m: m}
	}
	q.ready = nil
	n := len(q.entries)
	q.mu.Unlock()
	q.o.Bus.SetQueued(n)
	if n > 0 {
		q.log.Info("queued messages found", "count", n)
	}
	q.kick()
	return err
}

func (q *Queue) kick() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Backoff returns the wait before attempt n+1: RetryMin doubling up to
// RetryMax, with ±25% jitter so a batch doesn't retry in lock-step.
func (q *Queue) Backoff(attempts int) time.Duration {
	t := q.timing.Load()
	d := t.retryMin
	for i := 1; i < attempts && d < t.retryMax; i++ {
		d *= 2
	}
	d = min(d, t.retryMax)
	j := d / 4
	if j > 0 {
		d += rand.N(2*j+1) - j
	}
	return d
}

// Add makes a spooled body durable and queues it. With busy set, the
// caller is still attempting delivery and must call Settle.
func (q *Queue) Add(w *spool.Writer, m *spool.Meta, busy bool) error {
	now := q.o.Now()
	if m.Created.IsZero() {
		m.Created = now
	}
	if m.NextTry.IsZero() {
		m.NextTry = now.Add(q.Backoff(max(m.Attempts, 1)))
	}
	// While the account's server is down, a new message waits for the
	// account's next probe like the queued ones: otherwise every message
	// arriving during an outage would make its own connection attempt,
	// and each failure would push the probe after recovery further out.
	if q.o.Pool != nil {
		if p := q.o.Pool(m.Account); p != nil {
			// A message whose attempt just failed is the account's next
			// probe: it is tried when the log says the server is tried
			// again, not a backoff later.
			if h := p.Health(); !h.Healthy && (h.NextProbe.After(m.NextTry) || m.Attempts > 0) {
				m.NextTry = h.NextProbe
			}
		}
	}
	if err := q.o.Spool.Commit(w, m); err != nil {
		q.o.Bus.Publish(events.Event{Kind: events.Problem, Error: err.Error(),
			Hint: "smtpshim could not write its spool directory; free disk space or fix its permissions (see smtpshim doctor)"})
		return err
	}
	q.mu.Lock()
	q.entries[m.ID] = &entry{m: m, busy: busy}
	q.dueAt(m.NextTry)
	if !m.NextTry.After(now) {
		q.ready = nil // due now: the next dispatch must see it
	}
	n := len(q.entries)
	q.mu.Unlock()
	q.o.Bus.SetQueued(n)
	q.o.Bus.Publish(events.Event{Kind: events.Queued, Account: m.Account, MessageID: m.ID, Rcpts: m.Rcpts, Error: m.LastError, Hint: m.LastHint})
	q.log.Info("message queued", "id", m.ID, "account", m.Account, "rcpts", len(m.Rcpts), "reason", m.LastError)
	// Wake the scheduler only when this message is due before it would
	// look anyway: under an outage, messages arrive far faster than they
	// fall due, and each wake-up scans the whole queue.
	q.mu.Lock()
	early := false
	switch {
	case busy:
	case q.wakeAt.IsZero():
		// A dispatch is under way and may have passed over this message:
		// Run counts its due time in when it sets the next wake-up, and
		// only a message due at once needs another dispatch right away.
		// (Kicking for each one made a burst of queued mail keep the
		// scheduler scanning the queue back to back.)
		if q.addedNext.IsZero() || m.NextTry.Before(q.addedNext) {
			q.addedNext = m.NextTry
		}
		early = !m.NextTry.After(now)
	default:
		early = m.NextTry.Before(q.wakeAt)
	}
	q.mu.Unlock()
	if early {
		q.kick()
	}
	return nil
}

// Outcome is the result of one delivery attempt.
type Outcome struct {
	Delivered []string
	Temp      []string         // still to deliver
	Failed    []spool.Failure  // refused for good
	Err       error            // the error behind Temp, for the log
	Remote    string           // the upstream server
	Health    *upstream.Health // set when the account's server failed
	// Held means the message must wait for the user: the provider refused
	// the account's credential, or the message must not go out as it is
	// (see recheck). It is not retried on a schedule and never expires
	// into a bounce, which would go out on the same doubtful account.
	Held bool
}

// Settle applies the outcome of an attempt on a busy entry.
func (q *Queue) Settle(id string, o Outcome) {
	q.mu.Lock()
	e := q.entries[id]
	q.mu.Unlock()
	if e == nil {
		return // deleted meanwhile
	}
	q.settle(e, o)
}

func (q *Queue) settle(e *entry, o Outcome) {
	now := q.o.Now()
	// e.m is shared with List, Get and RetryNow, which hold q.mu: it
	// changes only under q.mu, and the rest of settle reads a snapshot.
	q.mu.Lock()
	m := e.m
	attempts := m.Attempts + 1
	m.Failed = append(m.Failed, o.Failed...)
	m.Rcpts = o.Temp
	m.Attempts++
	maxAge := q.timing.Load().maxAge
	if len(m.Rcpts) > 0 && !o.Held && now.Sub(m.Created) >= maxAge {
		reason := statusExpired
		diag := fmt.Sprintf("smtpshim gave up after %s of retries", maxAge)
		if o.Err != nil {
			diag += "; last error: " + o.Err.Error()
		}
		for _, r := range m.Rcpts {
			m.Failed = append(m.Failed, spool.Failure{Rcpt: r, Status: reason, Diagnostic: diag})
		}
		m.Rcpts = nil
	}
	if len(m.Rcpts) > 0 {
		m.LastError = ""
		m.LastHint = ""
		if o.Err != nil {
			m.LastError = o.Err.Error()
			m.LastHint = hints.ForAccount(o.Err, m.Account)
		}
		m.NextTry = now.Add(q.Backoff(m.Attempts))
		if o.Held {
			// Nothing is tried while the account is held; the fix of the
			// credential makes the message due at once.
			m.NextTry = now.Add(q.timing.Load().retryMax)
		}
		if o.Health != nil && !o.Health.Healthy && o.Health.NextProbe.After(m.NextTry) {
			m.NextTry = o.Health.NextProbe
		}
		if e.retry {
			m.NextTry = now
		}
		q.dueAt(m.NextTry)
	}
	e.retry = false
	snap := *m
	q.mu.Unlock()
	m = &snap
	if len(o.Delivered) > 0 {
		q.o.Bus.Publish(events.Event{Kind: events.Delivered, Account: m.Account, MessageID: m.ID, Rcpts: o.Delivered})
		q.log.Info("delivered from queue", "id", m.ID, "client", m.ClientAddr, "from", m.From, "account", m.Account, "rcpts", len(o.Delivered), "attempts", attempts)
	}
	if len(m.Rcpts) == 0 {
		// Done with this message. A bounce is made durable before the
		// original goes, so a crash between the two duplicates, never loses.
		if len(m.Failed) > 0 {
			if err := q.bounce(m); err != nil {
				q.keepForBounce(e, err, now)
				return
			}
		}
		if err := q.o.Spool.Remove(m.ID); err != nil {
			q.log.Error("removing a finished message from the spool", "id", m.ID, "err", err)
		}
		q.mu.Lock()
		delete(q.entries, m.ID)
		n := len(q.entries)
		q.mu.Unlock()
		q.o.Bus.SetQueued(n)
		q.kick()
		return
	}
	if err := q.o.Spool.Update(m); err != nil {
		q.log.Error("updating a queued message", "id", m.ID, "err", err)
	}
	q.o.Bus.Publish(events.Event{Kind: events.Deferred, Account: m.Account, MessageID: m.ID, Rcpts: m.Rcpts, Error: m.LastError, Hint: m.LastHint})
	q.log.Warn("delivery deferred", "id", m.ID, "account", m.Account, "attempts", m.Attempts, "next_try", m.NextTry.Format(time.RFC3339), "err", m.LastError)
	q.mu.Lock()
	e.busy = false
	q.mu.Unlock()
	q.kick()
}

// statusExpired is the DSN status of a message that ran out of retries.
const statusExpired = "4.4.7"

// keepForBounce keeps a finished message whose bounce could not be made
// durable (a full disk, most likely): removing it would lose the only
// record of the failure. It is tried again with backoff; attempt sees no
// recipients left and goes straight back to the bounce.
func (q *Queue) keepForBounce(e *entry, err error, now time.Time) {
	q.mu.Lock()
	e.m.LastError = "the bounce to the sender could not be written, so the message is kept and the bounce tried again: " + err.Error()
	e.m.LastHint = "free disk space on the spool's disk (smtpshim doctor shows where it is)"
	e.m.NextTry = now.Add(q.Backoff(e.m.Attempts))
	q.dueAt(e.m.NextTry)
	snap := *e.m
	q.mu.Unlock()
	if uerr := q.o.Spool.Update(&snap); uerr != nil {
		q.log.Error("updating a message whose bounce failed", "id", snap.ID, "err", uerr)
	}
	q.o.Bus.Publish(events.Event{Kind: events.Problem, Account: snap.Account, MessageID: snap.ID, Error: snap.LastError, Hint: snap.LastHint})
	q.log.Error("a bounce could not be written; keeping the message", "id", snap.ID, "err", err, "next_try", snap.NextTry.Format(time.RFC3339))
	q.mu.Lock()
	e.busy = false
	q.mu.Unlock()
	q.kick()
}

// bounce queues a delivery status notification to the sender. It fails
// only when the bounce could not be made durable; the caller then keeps
// the original.
func (q *Queue) bounce(m *spool.Meta) error {
	ev := events.Event{Kind: events.Bounced, Account: m.Account, MessageID: m.ID}
	for _, f := range m.Failed {
		ev.Rcpts = append(ev.Rcpts, f.Rcpt)
	}
	ev.Error = m.Failed[0].Diagnostic
	ev.Hint = hints.ForAccount(errors.New(m.Failed[0].Diagnostic), m.Account)
	if m.Bounce || m.From == "" {
		// No one is told by mail: say it where the user looks.
		ev.Kind = events.Problem
		ev.Error = "a bounce to " + strings.Join(ev.Rcpts, ", ") + " could not be delivered and was dropped: " + ev.Error
		q.o.Bus.Publish(ev)
		q.log.Error("a bounce could not be delivered; dropping it (bounces are never bounced)", "id", m.ID, "to", ev.Rcpts, "err", m.Failed[0].Diagnostic)
		return nil
	}
	q.log.Warn("message refused permanently; bouncing to the sender", "id", m.ID, "from", m.From, "failed", len(m.Failed), "err", ev.Error)
	body, err := q.o.Spool.Body(m.ID)
	if err != nil {
		q.o.Bus.Publish(ev)
		q.log.Error("opening the refused message to bounce it", "id", m.ID, "err", err)
		return nil // nothing to bounce with, now or later
	}
	defer body.Close()
	w, err := q.o.Spool.Create()
	if err != nil {
		return fmt.Errorf("creating the bounce: %w", err)
	}
	// The bounce goes out through the sender's account, so its From is an
	// address that account may send as: a provider that checks From
	// against the login would refuse anything else, and a refused bounce
	// is lost. dsn adds the "Mail Delivery System" display name.
	from := m.From
	if !strings.HasPrefix(m.Account, "@") && m.Account != "" {
		from = m.Account // a user-level account's key is its address
	}
	rep := dsn.Report{
		ReportingMTA: q.o.Hostname,
		From:         from,
		To:           m.From,
		ArrivalDate:  m.Created,
		Date:         q.o.Now(),
		Reason:       "smtpshim accepted your message, but the provider refused it for the recipients below.",
		Hint:         ev.Hint,
	}
	for _, f := range m.Failed {
		rep.Recipients = append(rep.Recipients, dsn.Recipient{Address: f.Rcpt, Action: "failed", Status: f.Status, Diagnostic: f.Diagnostic})
		if f.Status == statusExpired {
			rep.Reason = fmt.Sprintf("smtpshim accepted your message, but could not deliver it to the recipients below within %s: the provider was unreachable or kept deferring it.", q.timing.Load().maxAge)
		}
	}
	if err := dsn.Build(w, rep, body); err != nil {
		w.Discard()
		return fmt.Errorf("writing the bounce: %w", err)
	}
	bm := &spool.Meta{Account: m.Account, From: m.From, Rcpts: []string{m.From}, Bounce: true, NextTry: q.o.Now()}
	if err := q.Add(w, bm, false); err != nil {
		return fmt.Errorf("queueing the bounce: %w", err)
	}
	q.o.Bus.Publish(ev)
	return nil
}

// Run delivers due messages until ctx ends, then waits for attempts in
// flight.
func (q *Queue) Run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := q.dispatch(ctx)
		q.mu.Lock()
		if a := q.addedNext; !a.IsZero() && (next.IsZero() || a.Before(next)) {
			next = a
		}
		q.addedNext = time.Time{}
		// wakeAt is next itself, not now plus the wait: a message added
		// with the same due time must not count as earlier and kick.
		now := time.Now()
		wakeAt := next
		if next.IsZero() {
			wakeAt = now.Add(time.Hour)
		}
		wakeAt = later(wakeAt, now.Add(10*time.Millisecond))
		q.wakeAt = wakeAt
		q.mu.Unlock()
		timer.Reset(wakeAt.Sub(now))
		select {
		case <-ctx.Done():
			q.wg.Wait()
			return
		case <-q.wake:
		case <-timer.C:
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// dispatch starts attempts for due entries and returns when the next
// entry falls due (zero when none waits).
func (q *Queue) dispatch(ctx context.Context) time.Time {
	now := q.o.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	// Until Run sets the next wake-up, Add notes the due times of new
	// messages in addedNext: this scan may already have passed over them.
	q.wakeAt = time.Time{}
	q.addedNext = time.Time{}
	if q.o.Paused != nil && q.o.Paused() {
		q.ready = nil
		return time.Time{} // nothing goes out; resuming kicks the queue
	}
	if next, ok := q.dispatchReady(ctx, now); ok {
		return next
	}
	// Per account, keep only the oldest due entries that fit its free
	// attempt slots and its ready list: a long queue is scanned once,
	// never sorted whole.
	type slots struct {
		pool *upstream.Pool
		free int
		pick []*entry // sorted by ID, at most free+readyMax long
	}
	accounts := map[string]*slots{}
	var next time.Time
	q.scans++
	for _, e := range q.entries {
		if e.busy {
			continue
		}
		if e.m.NextTry.After(now) {
			if next.IsZero() || e.m.NextTry.Before(next) {
				next = e.m.NextTry
			}
			continue
		}
		a := accounts[e.m.Account]
		if a == nil {
			pool := q.o.Pool(e.m.Account)
			a = &slots{pool: pool, free: q.limit(pool) - q.running[e.m.Account]}
			accounts[e.m.Account] = a
		}
		if a.free <= 0 {
			continue // its next finished attempt makes dispatch scan again
		}
		keep := a.free + readyMax
		i, _ := slices.BinarySearchFunc(a.pick, e.m.ID, func(x *entry, id string) int { return strings.Compare(x.m.ID, id) })
		if i >= keep {
			continue
		}
		a.pick = slices.Insert(a.pick, i, e)
		if len(a.pick) > keep {
			a.pick = a.pick[:keep]
		}
	}
	q.ready = map[string][]*entry{}
	q.readyNext = next
	for acct, a := range accounts {
		n := min(a.free, len(a.pick))
		for _, e := range a.pick[:n] {
			q.start(ctx, acct, e, a.pool)
		}
		if rest := a.pick[n:]; len(rest) > 0 {
			q.ready[acct] = rest
		}
	}
	return next
}

// dispatchReady starts attempts from the ready lists of the last scan.
// It reports false when a full scan is needed instead: an entry fell due
// since, or an account with free slots has no ready entries left. (An
// account without a list gets a scan when its attempt ends, see attempt.)
// Called with q.mu held.
func (q *Queue) dispatchReady(ctx context.Context, now time.Time) (time.Time, bool) {
	if len(q.ready) == 0 || !q.readyNext.IsZero() && !q.readyNext.After(now) {
		return time.Time{}, false
	}
	for acct, list := range q.ready {
		pool := q.o.Pool(acct)
		free := q.limit(pool) - q.running[acct]
		for free > 0 && len(list) > 0 {
			e := list[0]
			list = list[1:]
			if q.entries[e.m.ID] != e || e.busy || e.m.NextTry.After(now) {
				continue // deleted, started, or put off since the scan
			}
			q.start(ctx, acct, e, pool)
			free--
		}
		if len(list) == 0 {
			delete(q.ready, acct)
			if free > 0 {
				return time.Time{}, false
			}
			continue
		}
		q.ready[acct] = list
	}
	return q.readyNext, true
}

// limit is how many attempts an account may have running: its pool size
// while its server is healthy, one probe while it is not, none while the
// provider refuses its credential. Called with q.mu held.
func (q *Queue) limit(pool *upstream.Pool) int {
	if pool == nil {
		return 1
	}
	if pool.Held() {
		// The provider refused the credential: the account's mail waits
		// for a new one (see upstream.ErrCredentialHeld).
		return 0
	}
	if pool.Health().Healthy {
		return pool.Account().PoolSize()
	}
	return 1
}

// start runs an attempt for e. Called with q.mu held.
func (q *Queue) start(ctx context.Context, acct string, e *entry, pool *upstream.Pool) {
	e.busy = true
	q.running[acct]++
	q.wg.Add(1)
	go q.attempt(ctx, e, pool)
}

func (q *Queue) attempt(ctx context.Context, e *entry, pool *upstream.Pool) {
	defer q.wg.Done()
	var o Outcome
	if len(e.m.Rcpts) == 0 {
		// Every recipient is settled; only the bounce is left to write
		// (see keepForBounce).
	} else if pool == nil {
		o = Outcome{Temp: e.m.Rcpts, Err: fmt.Errorf("account %s is no longer configured: add it again, or delete the message with \"smtpshim queue delete %s\"", e.m.Account, e.m.ID)}
	} else if err := q.recheck(e.m); err != nil {
		q.log.Error("queued message held", "id", e.m.ID, "account", e.m.Account, "err", err)
		o = Outcome{Temp: e.m.Rcpts, Err: err, Held: true}
	} else {
		actx, cancel := context.WithTimeout(ctx, q.o.AttemptTimeout)
		o = q.deliver(actx, e.m, pool)
		cancel()
	}
	q.mu.Lock()
	q.running[e.m.Account]--
	if _, ok := q.ready[e.m.Account]; !ok {
		// A slot is free for an account with no ready entries: the next
		// dispatch must scan.
		q.ready = nil
	}
	gone := q.entries[e.m.ID] != e
	q.mu.Unlock()
	if gone {
		return // deleted while we tried
	}
	if ctx.Err() != nil && len(o.Delivered) == 0 && len(o.Failed) == 0 {
		q.mu.Lock()
		e.busy = false
		q.mu.Unlock()
		return // shutting down: try again after the restart
	}
	// A server that dropped us, or was down, shares the news with the
	// account's other messages, which wait for its probe.
	if o.Health != nil && !o.Health.Healthy {
		q.deferAccount(e.m.Account, o.Health.NextProbe)
	}
	q.settle(e, o)
}

// recheck refuses to send a queued message whose envelope the listener
// would not have accepted: the spool is checked at start-up (see
// spool.Open), but what a message says about itself is still not taken on
// trust. Its sender must route to the account it names, as the accounts
// are now, and every address must pass addr.Parse, so nothing a metadata
// file says can choose another account's login or inject SMTP parameters.
func (q *Queue) recheck(m *spool.Meta) error {
	held := func(format string, v ...any) error {
		return fmt.Errorf("held, not sent: "+format+"; fix the accounts, or delete the message with \"smtpshim queue delete %s\"", append(v, m.ID)...)
	}
	if _, err := addr.Parse(m.From); err != nil {
		return held("the sender %v", err)
	}
	for _, r := range m.Rcpts {
		if _, err := addr.Parse(r); err != nil {
			return held("the recipient %v", err)
		}
	}
	if q.o.Routes == nil {
		return nil
	}
	acct, err := q.o.Routes().Lookup(m.From)
	if err != nil {
		return held("the sender <%s> no longer has an account", m.From)
	}
	if acct.Key() != m.Account {
		return held("the sender <%s> is now sent through account %s, not %s", m.From, acct.Key(), m.Account)
	}
	return nil
}

// deferAccount pushes an account's due messages back to its next probe.
func (q *Queue) deferAccount(account string, until time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, e := range q.entries {
		if !e.busy && e.m.Account == account && e.m.NextTry.Before(until) {
			e.m.NextTry = until
		}
	}
}

// Deliver runs one attempt for m over pool; the listener uses it for the
// late end of a live attempt too.
func (q *Queue) deliver(ctx context.Context, m *spool.Meta, pool *upstream.Pool) Outcome {
	body, err := q.o.Spool.Body(m.ID)
	if err != nil {
		return Outcome{Temp: m.Rcpts, Err: err}
	}
	defer body.Close()
	return Deliver(ctx, pool, m.From, m.Rcpts, &smtp.MailOptions{UTF8: m.UTF8, Size: m.Size}, body)
}

// Deliver sends one message over pool and sorts its recipients into
// delivered, temporarily failed and permanently failed.
func Deliver(ctx context.Context, pool *upstream.Pool, from string, rcpts []string, opts *smtp.MailOptions, body io.Reader) Outcome {
	o := Outcome{Remote: pool.Account().Host()}
	tempAll := func(err error) Outcome {
		o.Temp = append(o.Temp[:0], rcpts...)
		o.Delivered = nil
		o.Err = err
		if h := pool.Health(); !h.Healthy {
			o.Health = &h
		}
		return o
	}
	tx, err := pool.BeginProbe(ctx, from, opts)
	if err != nil {
		switch upstream.Classify(err) {
		case upstream.Permanent:
			for _, r := range rcpts {
				o.Failed = append(o.Failed, FailureOf(r, err))
			}
			return o
		case upstream.CredentialRefused:
			// Not the message's fault: keep it, as Postfix's
			// smtp_sasl_auth_soft_bounce does, until the user fixes the
			// credential.
			o = tempAll(err)
			o.Held = true
			return o
		}
		return tempAll(err)
	}
	// ctx bounds the whole transaction, not only its start: a server that
	// never answers the final dot must not hold up a shutdown for the
	// 10-minute submission timeout.
	stop := tx.AbortWhenDone(ctx)
	defer stop()
	var accepted []string
	for _, r := range rcpts {
		err := tx.Rcpt(r, nil)
		switch {
		case err == nil:
			accepted = append(accepted, r)
		case upstream.Classify(err) == upstream.Permanent:
			o.Failed = append(o.Failed, FailureOf(r, err))
		default:
			if _, isSMTP := upstream.SMTPError(err); !isSMTP {
				tx.Abort()
				failed := o.Failed
				o = tempAll(err)
				o.Failed = failed
				o.Temp = subtract(rcpts, failed)
				return o
			}
			o.Temp = append(o.Temp, r)
			o.Err = err
		}
	}
	if len(accepted) == 0 {
		tx.Abort()
		return o
	}
	w, err := tx.Data(bodyWriteTimeout)
	if err == nil {
		buf := copyBufPool.Get().(*[]byte)
		_, err = io.CopyBuffer(w, body, *buf)
		copyBufPool.Put(buf)
		if err == nil {
			_, err = tx.Commit()
		}
	}
	if err != nil {
		tx.Abort()
		if upstream.Classify(err) == upstream.Permanent {
			for _, r := range accepted {
				o.Failed = append(o.Failed, FailureOf(r, err))
			}
			return o
		}
		o.Temp = append(o.Temp, accepted...)
		o.Err = err
		return o
	}
	o.Delivered = accepted
	return o
}

// bodyWriteTimeout bounds how long the provider may take to accept each
// piece of a queued message's body.
const bodyWriteTimeout = 2 * time.Minute

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// FailureOf records a permanent refusal of rcpt for the bounce.
func FailureOf(rcpt string, err error) spool.Failure {
	f := spool.Failure{Rcpt: rcpt, Status: "5.0.0", Diagnostic: err.Error()}
	if se, ok := upstream.SMTPError(err); ok {
		if se.EnhancedCode != smtp.NoEnhancedCode && se.EnhancedCode != smtp.EnhancedCodeNotSet {
			f.Status = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		} else {
			f.Status = fmt.Sprintf("%d.0.0", se.Code/100)
		}
		f.Diagnostic = fmt.Sprintf("%d %s %s", se.Code, f.Status, se.Message)
	}
	return f
}

func subtract(all []string, failed []spool.Failure) []string {
	var out []string
	for _, r := range all {
		gone := false
		for _, f := range failed {
			if strings.EqualFold(f.Rcpt, r) {
				gone = true
				break
			}
		}
		if !gone {
			out = append(out, r)
		}
	}
	return out
}

// List returns a snapshot of the queued messages, oldest first.
func (q *Queue) List() []spool.Meta {
	q.mu.Lock()
	out := make([]spool.Meta, 0, len(q.entries))
	for _, e := range q.entries {
		out = append(out, *e.m)
	}
	q.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Get returns one queued message.
func (q *Queue) Get(id string) (spool.Meta, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e := q.entries[id]
	if e == nil {
		return spool.Meta{}, false
	}
	return *e.m, true
}

// RetryNow makes one message (id != "") or all of them due now. It
// returns how many it found.
func (q *Queue) RetryNow(id string) int {
	now := q.o.Now()
	n := 0
	q.mu.Lock()
	for _, e := range q.entries {
		if id == "" || e.m.ID == id {
			e.m.NextTry = now
			e.retry = e.busy
			n++
		}
	}
	q.ready = nil
	q.mu.Unlock()
	q.kick()
	return n
}

// Delete removes a message from the queue without sending it.
func (q *Queue) Delete(id string) error {
	q.mu.Lock()
	e := q.entries[id]
	if e == nil {
		q.mu.Unlock()
		return fmt.Errorf("no queued message %s", id)
	}
	delete(q.entries, id)
	n := len(q.entries)
	q.mu.Unlock()
	q.o.Bus.SetQueued(n)
	q.log.Info("message deleted from the queue", "id", id)
	return q.o.Spool.Remove(id)
}

// Len returns the number of queued messages.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.entries)
}

// Counts returns how many messages each account has queued, and when the
// oldest of them all was accepted.
func (q *Queue) Counts() (map[string]int, time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	counts := map[string]int{}
	var oldest time.Time
	for _, e := range q.entries {
		counts[e.m.Account]++
		if oldest.IsZero() || e.m.Created.Before(oldest) {
			oldest = e.m.Created
		}
	}
	return counts, oldest
}
