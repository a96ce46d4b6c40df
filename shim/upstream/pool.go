package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/secrets"
)

// ErrAccountDown is returned without dialing while an account's server is
// known to be unreachable, so a dead upstream is not hit once per message.
var ErrAccountDown = errors.New("the account's server was unreachable moments ago; not retrying yet")

// ErrPoolClosed is returned by a pool that a reload replaced or a
// shutdown closed: the attempt is tried again later, with the account's
// current settings.
var ErrPoolClosed = errors.New("the account's settings changed or smtpshim is stopping; not connecting with the old settings")

// Health is an account's upstream state.
type Health struct {
	// Healthy: the server was reachable at the last attempt.
	Healthy   bool
	LastError error
	Failures  int       // consecutive connection failures
	NextProbe time.Time // no new connection before this, while unhealthy
	// Problem names credential trouble that needs a person ("password
	// rejected", "keychain unavailable", ...; see CredentialProblem), ""
	// for a plain outage.
	Problem string
	// Held: the provider refused the credential. No connection is tried
	// and the account's mail waits until CredentialChanged.
	Held bool
}

// Attention reports whether a person must act (fix a password, unlock
// the keychain) before the account works again.
func (h Health) Attention() bool {
	// A token endpoint that does not answer needs no person: it is
	// retried like a server that is down.
	return h.Problem != "" && h.Problem != ProblemTokenUnavailable
}

// Pool keeps authenticated connections to one account's server and caps
// how many are open at once.
type Pool struct {
	acct    *config.Account
	opts    Options
	auth    Authenticator
	authErr error // from building auth; every dial reports it
	sem     chan struct{}

	// pipelining: the server offered PIPELINING on the latest connection.
	pipelining atomic.Bool

	mu     sync.Mutex
	idle   []*Conn
	health Health
	timer  *time.Timer
	closed bool
	notify func(Health)
	// notifyMu keeps notifications in the order of the changes: it is
	// held from a change through its notification.
	notifyMu sync.Mutex
	// bgN counts connections closing in the background (bgMu).
	bgMu   sync.Mutex
	bgN    int
	bgIdle *sync.Cond
}

// NewPool returns a pool for acct. notify, if not nil, is called (outside
// locks) whenever the account's health changes.
func NewPool(acct *config.Account, o Options, notify func(Health)) *Pool {
	p := &Pool{
		acct:   acct,
		opts:   o.withDefaults(),
		sem:    make(chan struct{}, acct.PoolSize()),
		health: Health{Healthy: true},
		notify: notify,
	}
	p.auth, p.authErr = p.opts.Authenticator(acct)
	return p
}

// Authenticator returns the account's credential (nil if it could not be
// built; Dial then reports why).
func (p *Pool) Authenticator() Authenticator { return p.auth }

// CheckCredential gets the account's credential once, without connecting,
// so that a locked keychain or a failing password_command is found at
// start rather than by the first message. The failure is returned as a
// *DialError at StepCredential, and recorded in the account's health,
// except a password that is simply not stored (yet): that account stays
// unused until mail for it arrives, which then hears what to do.
func (p *Pool) CheckCredential(ctx context.Context) error {
	err := p.authErr
	mech := ""
	if err == nil {
		mechs := p.auth.Mechanisms()
		if len(mechs) == 0 {
			return nil
		}
		mech = mechs[0]
		_, err = p.auth.Client(ctx, mech)
	}
	if err == nil {
		return nil
	}
	de := &DialError{Server: p.acct.Server, Step: StepCredential, Mechanism: mech, Err: err}
	if !errors.Is(err, secrets.ErrNotFound) {
		p.record(de)
	}
	return de
}

// CredentialChanged lifts a hold or a credential problem: the credential
// may have been fixed (a new password, an unlocked keychain), so the next
// attempt tries it. It reports whether there was something to lift.
//
// Idle connections are closed: they logged in with the old credential,
// and a new one must take effect (and be refused, if it is wrong) with the
// next message, not only once those connections time out.
func (p *Pool) CredentialChanged() bool {
	p.notifyMu.Lock()
	defer p.notifyMu.Unlock()
	p.mu.Lock()
	for _, c := range p.idle {
		p.closeLater(c)
	}
	p.idle = nil
	had := p.health.Problem != ""
	if had {
		p.health = Health{Healthy: true}
	}
	h := p.health
	p.mu.Unlock()
	if !had {
		return false
	}
	if p.auth != nil {
		p.auth.Refused()
	}
	if p.notify != nil {
		p.notify(h)
	}
	return true
}

// Account returns the pool's account.
func (p *Pool) Account() *config.Account { return p.acct }

// Health returns the account's upstream state.
func (p *Pool) Health() Health {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.health
}

// Warm reports whether a logged-in connection is waiting in the pool, so
// a transaction can start without a connection set-up that could fail.
func (p *Pool) Warm() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle) > 0 && p.health.Healthy
}

// Available reports whether a new attempt may be made now.
func (p *Pool) Available(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.health.Held && (p.health.Healthy || !now.Before(p.health.NextProbe))
}

// Held reports whether the account's mail is held because the provider
// refused its credential.
func (p *Pool) Held() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.health.Held
}

// healthBackoff is the wait after n consecutive connection failures:
// 5 s doubling to 5 min, with jitter so many shims don't retry in step.
func healthBackoff(n int) time.Duration {
	d := 5 * time.Second << min(n-1, 6)
	d = min(d, 5*time.Minute)
	return d/2 + rand.N(d/2+1)
}

// record notes the result of a connection attempt in the account's
// health. A refused credential holds the account (no backoff: nothing is
// tried until the credential changes); a credential that could not be read
// and a server that could not be reached back off, 5 s doubling to 5 min.
func (p *Pool) record(err error) {
	p.notifyMu.Lock()
	defer p.notifyMu.Unlock()
	p.mu.Lock()
	old := p.health
	switch {
	case err == nil:
		p.health = Health{Healthy: true}
	case Classify(err) == CredentialRefused:
		// The server is fine (it answered); the credential is not.
		p.health = Health{Healthy: true, LastError: err, Problem: CredentialProblem(err), Held: true}
	default:
		p.health.Healthy = false
		p.health.Held = false
		p.health.LastError = err
		p.health.Problem = CredentialProblem(err)
		p.health.Failures++
		p.health.NextProbe = time.Now().Add(healthBackoff(p.health.Failures))
	}
	h := p.health
	p.mu.Unlock()
	if p.notify != nil && (old.Healthy != h.Healthy || err != nil) {
		p.notify(h)
	}
}

// countsAgainstHealth reports whether a dial error says something about
// the account (its server, its credential), not only this one attempt.
func countsAgainstHealth(err error) bool {
	var de *DialError
	if errors.As(err, &de) && de.Step == StepAuth {
		// A server that hangs up during AUTH is down for us; one that
		// answers 4xx to it is busy, not down; one that answers 5xx
		// refused the credential.
		if se, isSMTP := SMTPError(err); isSMTP {
			return se.Code >= 500
		}
	}
	return true
}

// acquire returns a connection, reusing an idle one when possible.
func (p *Pool) acquire(ctx context.Context, allowDown bool) (*Conn, bool, error) {
	if h := p.Health(); h.Held {
		return nil, false, fmt.Errorf("%w (%w)", ErrCredentialHeld, h.LastError)
	}
	if !allowDown && !p.Available(time.Now()) {
		return nil, false, ErrAccountDown
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.sem
		return nil, false, ErrPoolClosed
	}
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if time.Since(c.lastUsed) < p.opts.IdleTimeout {
			p.mu.Unlock()
			return c, true, nil
		}
		p.closeLater(c)
	}
	p.mu.Unlock()
	var c *Conn
	var err error
	if p.authErr != nil {
		err = &DialError{Server: p.acct.Server, Step: StepCredential, Err: p.authErr}
	} else {
		c, err = dial(ctx, p.acct, p.auth, p.opts)
	}
	if err != nil {
		<-p.sem
		if countsAgainstHealth(err) {
			p.record(err)
		}
		return nil, false, err
	}
	p.record(nil)
	ok, _ := c.c.Extension("PIPELINING")
	p.pipelining.Store(ok)
	return c, false, nil
}

// release returns c to the pool, or closes it when it can't be reused.
func (p *Pool) release(c *Conn, reusable bool) {
	defer func() { <-p.sem }()
	c.uses++
	c.lastUsed = time.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		// Close has returned and waits for nothing more: close it here,
		// in the caller's goroutine, which its owner waits for.
		c.Close()
		return
	}
	if !reusable || c.uses >= p.opts.MaxReuse {
		p.mu.Unlock()
		p.closeLater(c)
		return
	}
	p.idle = append(p.idle, c)
	if p.timer == nil {
		p.timer = time.AfterFunc(p.opts.IdleTimeout, p.reapIdle)
	}
	p.mu.Unlock()
}

// reapIdle closes connections idle too long; it reschedules itself only
// while connections remain, so an idle process has no timers running.
func (p *Pool) reapIdle() {
	p.mu.Lock()
	p.timer = nil
	keep := p.idle[:0]
	var drop []*Conn
	now := time.Now()
	var oldest time.Time
	for _, c := range p.idle {
		if now.Sub(c.lastUsed) >= p.opts.IdleTimeout {
			drop = append(drop, c)
			continue
		}
		if oldest.IsZero() || c.lastUsed.Before(oldest) {
			oldest = c.lastUsed
		}
		keep = append(keep, c)
	}
	p.idle = keep
	if len(keep) > 0 && !p.closed {
		p.timer = time.AfterFunc(p.opts.IdleTimeout-now.Sub(oldest)+10*time.Millisecond, p.reapIdle)
	}
	// Counted under p.mu, so a Close that comes after waits for them.
	for _, c := range drop {
		p.closeLater(c)
	}
	p.mu.Unlock()
}

// closeLater ends c in the background (QUIT has a 2 s deadline); Close
// waits for it. It may be called with p.mu held.
func (p *Pool) closeLater(c *Conn) {
	p.bgMu.Lock()
	p.bgN++
	p.bgMu.Unlock()
	go func() {
		c.Close()
		p.bgMu.Lock()
		p.bgN--
		if p.bgN == 0 && p.bgIdle != nil {
			p.bgIdle.Broadcast()
		}
		p.bgMu.Unlock()
	}()
}

// waitClosing waits until no connection is closing in the background.
func (p *Pool) waitClosing() {
	p.bgMu.Lock()
	defer p.bgMu.Unlock()
	if p.bgIdle == nil {
		p.bgIdle = sync.NewCond(&p.bgMu)
	}
	for p.bgN > 0 {
		p.bgIdle.Wait()
	}
}

// CloseIdle closes the connections waiting in the pool; the pool stays
// open, and the next transaction opens (and authenticates) a new one.
func (p *Pool) CloseIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// Close closes idle connections and waits for connections being closed;
// busy ones close when released.
func (p *Pool) Close() {
	defer p.waitClosing()
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// Tx is one mail transaction on an upstream connection.
type Tx struct {
	p    *Pool
	c    *Conn
	data *smtp.DataCommand
	done bool
	// unwatch stops AbortWhenDone's watch; it runs before the connection
	// goes back to the pool, where it may serve someone else.
	unwatch func() bool
}

// ErrNoSMTPUTF8 refuses an internationalized address the provider cannot
// take; retrying would not help.
var ErrNoSMTPUTF8 = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
	Message: "the provider does not accept internationalized (non-ASCII) addresses (no SMTPUTF8)"}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// Begin opens a transaction: it takes a connection and sends MAIL FROM.
// A reused connection that turns out to be dead is replaced once. Errors
// are *smtp.SMTPError for upstream refusals, *DialError for connection
// set-up, ErrAccountDown, or network errors.
func (p *Pool) Begin(ctx context.Context, from string, opts *smtp.MailOptions) (*Tx, error) {
	return p.begin(ctx, from, opts, false)
}

// BeginProbe is Begin, but it also tries an account marked down: the
// retry queue uses it as the probe that finds the server back.
func (p *Pool) BeginProbe(ctx context.Context, from string, opts *smtp.MailOptions) (*Tx, error) {
	return p.begin(ctx, from, opts, true)
}

// BeginRcpt is Begin followed by the transaction's first Rcpt. On a
// server that offers PIPELINING (RFC 2920) MAIL FROM and RCPT TO go out in
// one write and their replies come back together: one round trip instead
// of two. err is Begin's error, and then there is no transaction; rcptErr
// is Rcpt's, for an open transaction.
func (p *Pool) BeginRcpt(ctx context.Context, from string, opts *smtp.MailOptions, to string) (tx *Tx, rcptErr, err error) {
	tx, err = p.beginWith(ctx, from, opts, false, to, &rcptErr)
	return tx, rcptErr, err
}

func (p *Pool) begin(ctx context.Context, from string, opts *smtp.MailOptions, allowDown bool) (*Tx, error) {
	return p.beginWith(ctx, from, opts, allowDown, "", nil)
}

// Pipelining reports whether the account's server offered PIPELINING on
// the connection most recently made (false before the first).
func (p *Pool) Pipelining() bool { return p.pipelining.Load() }

// beginWith opens a transaction; with a recipient to, it also sends its
// RCPT, pipelined when the server allows, and stores its result in
// rcptErr.
func (p *Pool) beginWith(ctx context.Context, from string, opts *smtp.MailOptions, allowDown bool, to string, rcptErr *error) (*Tx, error) {
	for attempt := 0; ; attempt++ {
		c, reused, err := p.acquire(ctx, allowDown)
		if err != nil {
			return nil, err
		}
		o := opts
		if o != nil && o.UTF8 {
			if has, _ := c.c.Extension("SMTPUTF8"); !has {
				if !isASCII(from) {
					p.release(c, true)
					return nil, ErrNoSMTPUTF8
				}
				// An ASCII sender needs no SMTPUTF8; a non-ASCII recipient
				// is refused at its RCPT.
				plain := *o
				plain.UTF8 = false
				o = &plain
			}
		}
		if to != "" && (isASCII(to) || c.smtputf8()) {
			var rerr error
			err, rerr = c.c.MailRcpt(from, o, to, nil)
			if err == nil {
				*rcptErr = rerr
				return &Tx{p: p, c: c}, nil
			}
		} else {
			err = c.c.Mail(from, o)
			if err == nil {
				tx := &Tx{p: p, c: c}
				if to != "" {
					*rcptErr = tx.Rcpt(to, nil)
				}
				return tx, nil
			}
		}
		se, isSMTP := SMTPError(err)
		if isSMTP && se.Code != 421 {
			// The server refused this sender; no transaction is open and
			// the connection is fine for the next one.
			p.release(c, true)
			return nil, err
		}
		p.release(c, false)
		if !reused || attempt > 0 {
			return nil, err
		}
		// A pooled connection the server closed while idle: try a new one.
	}
}

// Info describes the connection the transaction runs on.
func (tx *Tx) Info() Info { return tx.c.info }

// Rcpt adds a recipient. An *smtp.SMTPError is a refusal of this
// recipient; any other error means the connection failed.
func (tx *Tx) Rcpt(to string, opts *smtp.RcptOptions) error {
	if !isASCII(to) && !tx.c.smtputf8() {
		return ErrNoSMTPUTF8
	}
	return tx.c.c.Rcpt(to, opts)
}

// Data starts the message body; write it with CRLF line endings only.
// When the server offers CHUNKING (RFC 3030), as Gmail, Microsoft 365 and
// Postfix do, it goes out as BDAT chunks, as written: no DATA round trip
// before it, no dot-stuffing, and a refusal comes with Commit. Otherwise
// it goes out after DATA, dot-stuffed by the writer.
//
// Each write must be taken by the server within timeout: go-smtp sets no
// deadline on the body, and a provider that stops reading would otherwise
// hold the client, and a pool slot, forever.
func (tx *Tx) Data(timeout time.Duration) (io.Writer, error) {
	var d *smtp.DataCommand
	var err error
	if ok, _ := tx.c.c.Extension("CHUNKING"); ok {
		d, err = tx.c.c.Bdat(0)
	} else {
		d, err = tx.c.c.Data()
	}
	if err != nil {
		return nil, err
	}
	tx.data = d
	return &deadlineWriter{w: d, conn: tx.c.raw, timeout: timeout}, nil
}

type deadlineWriter struct {
	w       io.Writer
	conn    net.Conn
	timeout time.Duration
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.conn.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.w.Write(p)
}

func (tx *Tx) stopWatch() {
	if tx.unwatch != nil {
		tx.unwatch()
		tx.unwatch = nil
	}
}

// Commit ends the body and returns the server's final reply text. The
// connection goes back to the pool unless it failed.
func (tx *Tx) Commit() (string, error) {
	if tx.done {
		return "", errors.New("transaction already finished")
	}
	tx.done = true
	resp, err := tx.data.CloseWithResponse()
	tx.c.raw.SetWriteDeadline(time.Time{})
	tx.stopWatch()
	_, isSMTP := SMTPError(err)
	tx.p.release(tx.c, err == nil || isSMTP)
	if err != nil {
		return "", err
	}
	return resp.StatusText, nil
}

// Abort ends the transaction without delivering anything, by dropping the
// connection: inside DATA, ending the body would deliver a truncated
// message, and before it go-smtp's RSET would also repeat EHLO, which some
// servers treat as the end of the authenticated session.
func (tx *Tx) Abort() {
	if tx.done {
		return
	}
	tx.done = true
	tx.c.abort()
	tx.stopWatch()
	tx.p.release(tx.c, false)
}

// AbortWhenDone drops the transaction's connection if ctx ends before the
// returned stop is called, so a server that never answers (e.g. the final
// dot) cannot hold the caller past its deadline or a shutdown. The pending
// call then fails with a network error: the message counts as not
// delivered and is retried later (a duplicate only if the server accepted
// it in that very moment, as after a crash).
func (tx *Tx) AbortWhenDone(ctx context.Context) (stop func() bool) {
	raw := tx.c.raw
	tx.unwatch = context.AfterFunc(ctx, func() { raw.Close() })
	return func() bool { return tx.unwatch != nil && tx.unwatch() }
}
