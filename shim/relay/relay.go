// Package relay is smtpshim's one delivery unit: it decides, for a message a
// client is handing over, whether it goes to the provider while the client
// waits, or into the queue, and what the client hears.
//
// The failure model comes first. Every upstream error is sorted by
// upstream.Classify:
//   - permanent (the provider's 5xx to MAIL, RCPT or DATA): the client hears
//     the provider's own reply, unchanged, and keeps its copy;
//   - temporary (4xx, no connection, a provider slower than sync_wait): the
//     message is made durable and the client hears 250 queued;
//   - credential refused (535 to AUTH, a revoked token): not the message's
//     fault. It is made durable and the client hears 250 queued with the
//     reason, as Postfix's smtp_sasl_auth_soft_bounce does; the account's
//     mail is held until the credential is fixed.
//
// Two local conditions are told to the client at once (454) instead of
// being queued through: a provider whose TLS identity cannot be verified,
// and an account with no password stored.
//
// A Delivery runs one transaction, in the style of maddy's delivery
// targets: Start with an account and a sender, AddRcpt for each recipient,
// Body to stream the message (to the spool and the provider at once) and
// commit it, or Abort. It knows nothing of SMTP sessions or sockets: the
// listener and "smtpshim send" both drive it.
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/events"
	"github.com/smtpshim/smtpshim/shim/hints"
	"github.com/smtpshim/smtpshim/shim/queue"
	"github.com/smtpshim/smtpshim/shim/spool"
	"github.com/smtpshim/smtpshim/shim/upstream"
)

// Options wires a Relay to the engine.
type Options struct {
	// Pool returns the upstream pool of an account key, or nil when the
	// account no longer exists.
	Pool  func(account string) *upstream.Pool
	Queue *queue.Queue
	Spool *spool.Spool
	Bus   *events.Bus
	// Logger receives delivery decisions; never secrets.
	Logger *slog.Logger
	// SyncWait is how long a client waits for the provider's answer before
	// the message is queued and the client hears 250 queued.
	SyncWait time.Duration
	// Paused, when it returns true, holds delivery: new mail is made
	// durable and answered "queued (smtpshim is paused)", and nothing goes
	// upstream.
	Paused func() bool
}

// Relay starts deliveries and owns what outlives them: a MAIL FROM sent
// ahead of the client's RCPT, and a provider's late answer after the
// client was told "queued". Close ends both.
type Relay struct {
	o   Options
	log *slog.Logger

	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex
	closed   bool
	inflight int
}

// New returns a relay.
func New(o Options) *Relay {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Bus == nil {
		o.Bus = &events.Bus{}
	}
	if o.SyncWait <= 0 {
		o.SyncWait = config.DefaultSyncWait
	}
	if o.Paused == nil {
		o.Paused = func() bool { return false }
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Relay{o: o, log: o.Logger, ctx: ctx, cancel: cancel}
}

// goTracked runs fn in a goroutine Close waits for; after Close it runs fn
// at once in the caller, so nothing escapes.
func (r *Relay) goTracked(fn func()) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		fn()
		return
	}
	r.wg.Add(1)
	r.inflight++
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		defer func() {
			r.mu.Lock()
			r.inflight--
			r.mu.Unlock()
		}()
		fn()
	}()
}

// InFlight returns how many background parts of deliveries (early MAIL
// FROMs, late answers) are running, for the shutdown log.
func (r *Relay) InFlight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inflight
}

// Close cuts the provider connections of late answers and early MAIL
// FROMs and waits for them: a late answer that did not come counts as not
// delivered and the message stays queued. After Close returns, the relay
// touches neither the spool nor the pools.
func (r *Relay) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}

// Receipt is a message the relay took responsibility for.
type Receipt struct {
	// Queued: the message is in the spool (ID), not yet at the provider.
	Queued bool
	ID     string
	// Text is what the client hears after "250 2.0.0".
	Text string
}

// Reply is the receipt as an SMTP reply.
func (r *Receipt) Reply() *smtp.SMTPError {
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: r.Text}
}

// ReadError is a failure to read the client's message: nothing of it was
// delivered or kept.
type ReadError struct{ Err error }

func (e *ReadError) Error() string { return "reading the message: " + e.Err.Error() }
func (e *ReadError) Unwrap() error { return e.Err }

// Delivery is one message on its way: one account, one sender.
type Delivery struct {
	r      *Relay
	acct   *config.Account
	pool   *upstream.Pool
	from   string
	opts   smtp.MailOptions
	client string

	tx       *upstream.Tx
	live     []string // recipients the upstream accepted
	deferred []string // recipients to queue
	refused  []string // recipients the upstream refused, for the log
	deferErr error    // why they are queued
	// held: the provider refused the account's credential; paused: the
	// user paused delivery. Both queue the message with their own reply.
	held   bool
	paused bool
	// pending is a MAIL FROM sent upstream ahead of the first AddRcpt;
	// lazy: MAIL FROM goes with the first AddRcpt, pipelined. mailErr is
	// what the client hears for every recipient once it failed.
	pending  chan beginResult
	lazy     bool
	mailErr  error
	done     bool
	syncWait time.Duration
}

// Rcpts returns how many recipients the delivery has taken so far.
func (d *Delivery) Rcpts() int { return len(d.live) + len(d.deferred) }

// StartOptions describe the message at MAIL FROM.
type StartOptions struct {
	UTF8 bool
	Size int64
	// Client names who handed the message over, for the log and the queue
	// ("127.0.0.1:50123", "smtpshim send").
	Client string
	// SyncWait, when set, replaces Options.SyncWait for this message (a
	// reload may have changed it).
	SyncWait time.Duration
}

func smtpErr(code int, enh smtp.EnhancedCode, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

// Start begins a delivery for acct from sender from. An error is the
// reply for the client's MAIL (the provider's own refusal, or a local
// problem the user must fix); then there is no delivery.
func (r *Relay) Start(acct *config.Account, from string, so StartOptions) (*Delivery, error) {
	d := &Delivery{r: r, acct: acct, from: from, client: so.Client,
		opts: smtp.MailOptions{UTF8: so.UTF8, Size: so.Size}, syncWait: so.SyncWait}
	if d.syncWait <= 0 {
		d.syncWait = r.o.SyncWait
	}
	d.pool = r.o.Pool(acct.Key())
	if d.pool == nil {
		// The accounts were reloaded between the lookup and now.
		return nil, smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "smtpshim's accounts just changed; try again")
	}
	if r.o.Paused() {
		d.paused = true
		return d, nil
	}
	if !d.pool.Available(time.Now()) {
		h := d.pool.Health()
		if h.Held {
			d.held = true
			d.deferErr = h.LastError
			return d, nil
		}
		if tellNow(h.LastError) {
			// Not an outage to queue through: every client hears the
			// same 454 as the one whose attempt found the problem.
			return nil, d.failure(h.LastError)
		}
		d.deferErr = fmt.Errorf("%w: %v", upstream.ErrAccountDown, h.LastError)
		if h.Problem != "" {
			// The credential could not be read (a locked keychain, a
			// failing password_command): not an unreachable server.
			d.deferErr = h.LastError
		}
		return d, nil
	}
	if d.pool.Warm() {
		// A logged-in connection is waiting, so only the provider's
		// verdict on the sender can fail now, and the client hears it,
		// unchanged, at RCPT. A provider that offers PIPELINING gets
		// MAIL FROM together with the first RCPT TO; another gets it
		// while the client sends its first RCPT. Either way a round trip
		// per message is saved.
		if d.pool.Pipelining() {
			d.lazy = true
		} else {
			d.pending = d.beginAsync()
		}
		return d, nil
	}
	ctx, cancel := context.WithTimeout(r.ctx, d.beginWait())
	defer cancel()
	tx, err := d.pool.Begin(ctx, from, &d.opts)
	if err == nil {
		d.tx = tx
		return d, nil
	}
	if err := d.failure(err); err != nil {
		return nil, err
	}
	return d, nil
}

// tellNow reports a failure a waiting client must hear at once rather
// than have its message queued: an untrusted provider, or no password.
func tellNow(err error) bool {
	return upstream.TrustProblem(err) || upstream.IsCredentialMissing(err)
}

func (d *Delivery) beginWait() time.Duration { return min(d.syncWait, 30*time.Second) }

type beginResult struct {
	tx  *upstream.Tx
	err error
}

func (d *Delivery) beginAsync() chan beginResult {
	ch := make(chan beginResult, 1)
	pool, from, opts, wait, rctx := d.pool, d.from, d.opts, d.beginWait(), d.r.ctx
	d.r.goTracked(func() {
		ctx, cancel := context.WithTimeout(rctx, wait)
		defer cancel()
		tx, err := pool.Begin(ctx, from, &opts)
		ch <- beginResult{tx, err}
	})
	return ch
}

// join waits for a MAIL FROM sent ahead and returns what the client must
// hear for the rest of the transaction.
func (d *Delivery) join() error {
	if d.pending == nil {
		return d.mailErr
	}
	res := <-d.pending
	d.pending = nil
	if res.err == nil {
		d.tx = res.tx
		return nil
	}
	d.mailErr = d.failure(res.err)
	return d.mailErr
}

// failure decides what a client hears when opening the upstream
// transaction failed: the upstream's own refusal, a local problem the user
// must fix, or nothing at all (the message will be queued).
func (d *Delivery) failure(err error) error {
	acct := d.acct.Key()
	switch upstream.Classify(err) {
	case upstream.Permanent:
		d.logRefusal("the upstream refused the sender", err)
		se, _ := upstream.SMTPError(err)
		return se // unchanged: the client hears the provider's own words
	case upstream.CredentialRefused:
		d.r.log.Warn("the provider refused the account's credential; the message will be held", "account", acct, "client", d.client, "err", err)
		d.held = true
		d.deferErr = err
		return nil
	}
	if upstream.IsCredentialMissing(err) {
		d.r.log.Error("no password stored for the account", "account", acct)
		return smtpErr(454, smtp.EnhancedCode{4, 7, 0}, fmt.Sprintf("smtpshim has no password for account %s: run \"smtpshim account add %s\"", acct, acct))
	}
	if upstream.TrustProblem(err) {
		d.logRefusal("the upstream's TLS could not be verified", err)
		msg := "smtpshim refused to send the password: " + oneLine(err.Error())
		if errors.Is(err, upstream.ErrCAFile) {
			// Its text names a file on this computer: the log has it.
			msg = "smtpshim refused to send the password: " + upstream.ErrCAFile.Error() + " (smtpshim's log says why)"
		} else if h := hints.ForAccount(err, d.acct.Key()); h != "" {
			msg += " (" + h + ")"
		}
		return smtpErr(454, smtp.EnhancedCode{4, 7, 0}, msg)
	}
	d.r.log.Info("upstream not reachable now; the message will be queued", "account", acct, "err", err)
	d.deferErr = err
	return nil
}

func (d *Delivery) logRefusal(what string, err error, attrs ...any) {
	h := hints.ForAccount(err, d.acct.Key())
	d.r.log.Warn(what, append([]any{"client", d.client, "account", d.acct.Key(), "from", d.from}, append(attrs, "err", err, "hint", h)...)...)
	d.r.o.Bus.Publish(events.Event{Kind: events.Rejected, Account: d.acct.Key(), Error: err.Error(), Hint: h})
}

// AddRcpt adds a recipient. An error is the provider's refusal of it
// (or of the sender, sent ahead), for the client's RCPT, unchanged.
func (d *Delivery) AddRcpt(to string) error {
	if d.lazy {
		d.lazy = false
		ctx, cancel := context.WithTimeout(d.r.ctx, d.beginWait())
		tx, rcptErr, err := d.pool.BeginRcpt(ctx, d.from, &d.opts, to)
		cancel()
		if err != nil {
			if d.mailErr = d.failure(err); d.mailErr != nil {
				return d.mailErr
			}
			d.deferred = append(d.deferred, to)
			return nil
		}
		d.tx = tx
		return d.rcptResult(to, rcptErr)
	}
	if err := d.join(); err != nil {
		return err
	}
	if d.tx == nil {
		d.deferred = append(d.deferred, to)
		return nil
	}
	return d.rcptResult(to, d.tx.Rcpt(to, nil))
}

// rcptResult settles a recipient by the provider's answer to its RCPT.
func (d *Delivery) rcptResult(to string, err error) error {
	_, isSMTP := upstream.SMTPError(err)
	switch v := upstream.Classify(err); {
	case v == upstream.Delivered:
		d.live = append(d.live, to)
	case v == upstream.Permanent:
		d.logRefusal("the upstream refused a recipient", err, "rcpt", to)
		d.refused = append(d.refused, to)
		se, _ := upstream.SMTPError(err)
		return se
	case isSMTP:
		d.r.log.Info("the upstream deferred a recipient; it will be queued", "rcpt", to, "err", err)
		d.deferred = append(d.deferred, to)
		d.deferErr = err
	default:
		d.r.log.Info("the upstream connection failed; the message will be queued", "account", d.acct.Key(), "err", err)
		d.tx.Abort()
		d.tx = nil
		d.deferred = append(append(d.deferred, d.live...), to)
		d.live = nil
		d.deferErr = err
	}
	return nil
}

// Abort ends the delivery without sending or keeping anything.
func (d *Delivery) Abort() {
	if d.done {
		return
	}
	d.done = true
	if d.pending != nil {
		ch := d.pending
		d.pending = nil
		d.r.goTracked(func() {
			if res := <-ch; res.tx != nil {
				res.tx.Abort()
			}
		})
	}
	if d.tx != nil {
		d.tx.Abort()
		d.tx = nil
	}
}

// tee writes the body to the spool and the live upstream together; a
// failure of one leg lets the other carry on.
type tee struct {
	spool   *spool.Writer
	up      io.Writer
	upErr   error
	spoolOK bool
}

var errBothLegsFailed = errors.New("both the spool and the upstream failed")

func (t *tee) Write(p []byte) (int, error) {
	if t.spoolOK {
		if _, err := t.spool.Write(p); err != nil {
			t.spoolOK = false
		}
	}
	if t.up != nil && t.upErr == nil {
		if _, err := t.up.Write(p); err != nil {
			t.upErr = err
		}
	}
	if !t.spoolOK && (t.up == nil || t.upErr != nil) {
		return 0, errBothLegsFailed
	}
	return len(p), nil
}

// srcReader notes a read error of the client's body inside io.Copy, to
// tell it from a failure of both legs.
type srcReader struct {
	r   io.Reader
	err error
}

func (s *srcReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// memSpool is how much of a body is held in memory before it goes to a
// spool file; it bounds memory per session while keeping small messages
// off the disk.
const memSpool = 1 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

type commitResult struct {
	resp string
	err  error
}

// Body streams the message (CRLF line endings, no dot-stuffing) to the
// spool and the provider together, and settles it: delivered while the
// client waits, refused (the provider's reply, unchanged), or queued. The
// delivery is over when Body returns. A *ReadError means the client's
// message was incomplete; any other error is the reply for the client.
func (d *Delivery) Body(body io.Reader) (*Receipt, error) {
	defer d.Abort()
	start := time.Now()
	if err := d.join(); err != nil {
		return nil, err
	}
	if !d.paused && d.r.o.Paused() {
		// Paused since MAIL FROM: the message is held like any other.
		if d.tx != nil {
			d.tx.Abort()
			d.tx = nil
		}
		d.deferred = append(d.deferred, d.live...)
		d.live = nil
		d.paused = true
	}
	// The body stays in memory up to memSpool bytes: a message the
	// provider takes at once then never touches the disk.
	sw := d.r.o.Spool.CreateLazy(memSpool)
	t := &tee{spool: sw, spoolOK: true}
	if d.tx != nil && len(d.live) > 0 {
		up, err := d.tx.Data(d.syncWait)
		if err != nil {
			if se, ok := upstream.SMTPError(err); ok && upstream.Classify(err) == upstream.Permanent {
				sw.Discard()
				return nil, se
			}
			d.liveLost(err)
		} else {
			t.up = up
		}
	}
	src := &srcReader{r: body}
	buf := bufPool.Get().(*[]byte)
	_, cerr := io.CopyBuffer(t, src, *buf)
	bufPool.Put(buf)
	if cerr != nil {
		// The client's message is incomplete: deliver nothing of it.
		sw.Discard()
		if src.err == nil && errors.Is(cerr, errBothLegsFailed) {
			d.spoolProblem(sw.Err())
			return nil, errSpool(sw.Err())
		}
		return nil, &ReadError{Err: cerr}
	}
	if t.upErr != nil {
		d.liveLost(t.upErr)
	}
	if !t.spoolOK {
		d.spoolProblem(sw.Err())
	}

	if d.tx != nil && t.up != nil {
		tx := d.tx
		d.tx = nil
		// The commit may outlive the client's wait, so it runs in a
		// tracked goroutine, and Close can cut it.
		stop := tx.AbortWhenDone(d.r.ctx)
		done := make(chan commitResult, 1)
		d.r.goTracked(func() {
			resp, err := tx.Commit()
			stop()
			done <- commitResult{resp, err}
		})
		timer := time.NewTimer(d.syncWait)
		defer timer.Stop()
		select {
		case res := <-done:
			return d.finishLive(sw, t.spoolOK, res, start)
		case <-timer.C:
			return d.queueWhileWaiting(sw, t.spoolOK, done)
		}
	}
	return d.queueAll(sw, t.spoolOK)
}

func (d *Delivery) finishLive(sw *spool.Writer, spoolOK bool, res commitResult, start time.Time) (*Receipt, error) {
	acct := d.acct.Key()
	switch upstream.Classify(res.err) {
	case upstream.Delivered:
		attrs := []any{"client", d.client, "from", d.from, "account", acct, "rcpts", len(d.live), "queue_id", queueID(res.resp)}
		if len(d.refused) > 0 {
			attrs = append(attrs, "refused", strings.Join(d.refused, ","))
		}
		d.r.log.Info("delivered", append(attrs, "ms", time.Since(start).Milliseconds(), "upstream", oneLine(res.resp))...)
		d.r.o.Bus.Publish(events.Event{Kind: events.Delivered, Account: acct, Rcpts: d.live})
		if len(d.deferred) == 0 {
			sw.Discard()
			return &Receipt{Text: okText(res.resp)}, nil
		}
		d.live = nil
		return d.queueAll(sw, spoolOK)
	case upstream.Permanent:
		d.logRefusal("the upstream refused the message", res.err)
		sw.Discard()
		se, _ := upstream.SMTPError(res.err)
		return nil, se
	}
	d.liveLost(res.err)
	return d.queueAll(sw, spoolOK)
}

// liveLost moves the live recipients to the queue.
func (d *Delivery) liveLost(err error) {
	d.r.log.Info("the upstream failed during the message; it will be queued", "account", d.acct.Key(), "err", err)
	if d.tx != nil {
		d.tx.Abort()
		d.tx = nil
	}
	d.deferred = append(d.deferred, d.live...)
	d.live = nil
	d.deferErr = err
}

func (d *Delivery) meta(rcpts []string) *spool.Meta {
	m := &spool.Meta{Account: d.acct.Key(), From: d.from, Rcpts: rcpts, UTF8: d.opts.UTF8, ClientAddr: d.client}
	if d.deferErr != nil {
		m.LastError = d.deferErr.Error()
		m.LastHint = hints.ForAccount(d.deferErr, d.acct.Key())
		if !d.held && !errors.Is(d.deferErr, upstream.ErrAccountDown) {
			// This message's own attempt failed: `queue list` counts it.
			m.Attempts = 1
		}
	}
	return m
}

// queueAll makes the message durable for the deferred recipients and
// tells the client it is queued.
func (d *Delivery) queueAll(sw *spool.Writer, spoolOK bool) (*Receipt, error) {
	if !spoolOK {
		sw.Discard()
		return nil, errSpool(errors.New("the spool could not be written"))
	}
	m := d.meta(d.deferred)
	if err := d.r.o.Queue.Add(sw, m, false); err != nil {
		return nil, errSpool(err)
	}
	return &Receipt{Queued: true, ID: m.ID, Text: d.queuedText(m.ID)}, nil
}

// queueWhileWaiting commits the message when the upstream is slow to
// answer, replies 250, and lets the late answer settle the queue entry.
func (d *Delivery) queueWhileWaiting(sw *spool.Writer, spoolOK bool, done <-chan commitResult) (*Receipt, error) {
	if !spoolOK {
		// Nothing durable to fall back on: keep waiting for the upstream.
		sw.Discard()
		res := <-done
		switch upstream.Classify(res.err) {
		case upstream.Delivered:
			if len(d.deferred) > 0 {
				// Some recipients still need a queued copy, which can't be
				// made: the client must retry (a duplicate for the others
				// beats a silent loss).
				return nil, errSpool(errors.New("the spool could not be written"))
			}
			return &Receipt{Text: okText(res.resp)}, nil
		}
		if se, ok := upstream.SMTPError(res.err); ok {
			return nil, se
		}
		return nil, errSpool(errors.New("the spool could not be written"))
	}
	live := d.live
	m := d.meta(append(append([]string(nil), d.live...), d.deferred...))
	if err := d.r.o.Queue.Add(sw, m, true); err != nil {
		// Not durable: the client must keep its copy. The late upstream
		// answer is only logged.
		d.r.goTracked(func() { <-done })
		return nil, errSpool(err)
	}
	id, q, log := m.ID, d.r.o.Queue, d.r.log
	deferred := d.deferred
	remote := d.acct.Host()
	d.r.goTracked(func() {
		res := <-done
		o := queue.Outcome{Remote: remote, Temp: deferred}
		switch upstream.Classify(res.err) {
		case upstream.Delivered:
			o.Delivered = live
		case upstream.Permanent:
			for _, r := range live {
				o.Failed = append(o.Failed, queue.FailureOf(r, res.err))
			}
		default:
			o.Temp = append(o.Temp, live...)
			o.Err = res.err
		}
		log.Info("late upstream answer", "id", id, "err", res.err)
		q.Settle(id, o)
	})
	d.deferErr = ownWords{fmt.Errorf("the provider did not answer within %s", d.syncWait)}
	return &Receipt{Queued: true, ID: id, Text: d.queuedText(id)}, nil
}

// queuedText is the 250 text of a queued message: why it is queued, in
// words a person can act on.
func (d *Delivery) queuedText(id string) string {
	switch {
	case d.paused:
		return "queued as " + id + " (smtpshim is paused)"
	case d.held:
		key := d.acct.Key()
		if upstream.CredentialProblem(d.deferErr) == upstream.ProblemSignInNeeded {
			return fmt.Sprintf("queued as %s: the provider refused the sign-in for %s; sign in again with \"smtpshim account login %s\"", id, key, key)
		}
		return fmt.Sprintf("queued as %s: the provider refused the password for %s; update it with \"smtpshim account add %s\"", id, key, key)
	case d.deferErr != nil:
		// The log's "message queued" line has the detail under the ID.
		return "queued as " + id + " for a later try (" + publicReason(d.deferErr) + ")"
	}
	return "queued as " + id + ": smtpshim will deliver it when the provider is reachable"
}

// okText passes the upstream's acceptance text (often its queue ID) on
// to the client; go-smtp's client leaves the enhanced code in the text.
func okText(text string) string {
	if len(text) > 6 && text[0] == '2' && text[1] == '.' {
		if sp := strings.IndexByte(text, ' '); sp > 0 {
			text = text[sp+1:]
		}
	}
	return text
}

func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func (d *Delivery) spoolProblem(err error) {
	if err == nil {
		return
	}
	d.r.log.Error("cannot write the spool", "err", err)
	d.r.o.Bus.Publish(events.Event{Kind: events.Problem, Error: err.Error(),
		Hint: "free disk space or fix the permissions of the spool directory (smtpshim doctor shows where it is)"})
}

func errSpool(err error) *smtp.SMTPError {
	msg := "smtpshim cannot store the message right now, try again later"
	if errors.Is(err, os.ErrPermission) {
		msg += " (permission denied on the spool directory)"
	} else if errors.Is(err, syscall.ENOSPC) {
		msg += " (the disk is full)"
	}
	return smtpErr(452, smtp.EnhancedCode{4, 3, 1}, msg)
}

// queueID picks the provider's queue ID out of its reply to the end of
// DATA, as providers word it: "2.0.0 Ok: queued as 4Xk2b", "OK id=1q2w3e",
// "2.0.0 OK  1700000000 x12si345abc - gsmtp", "<id@host> Queued mail for
// delivery". "" when there is none to find.
func queueID(resp string) string {
	text := resp
	if f := strings.Fields(text); len(f) > 0 && strings.Count(f[0], ".") == 2 && len(f[0]) <= 7 {
		text = strings.TrimSpace(text[len(f[0]):]) // the enhanced code
	}
	lower := strings.ToLower(text)
	for _, marker := range []string{"queued as ", "id=", "queued as: "} {
		if i := strings.Index(lower, marker); i >= 0 {
			if f := strings.Fields(text[i+len(marker):]); len(f) > 0 {
				return strings.Trim(f[0], "<>(),;.")
			}
		}
	}
	// Exchange and others: "OK <id>", "<id> Queued mail for delivery".
	for _, f := range strings.Fields(text) {
		if len(f) > 2 && f[0] == '<' && f[len(f)-1] == '>' {
			return f[1 : len(f)-1]
		}
	}
	// Gmail: "OK  <unix time> <id> - gsmtp".
	if f := strings.Fields(text); len(f) >= 3 && strings.EqualFold(f[0], "ok") && f[len(f)-1] == "gsmtp" {
		return f[2]
	}
	return ""
}
