// Package listener is smtpshim's SMTP server for local clients.
//
// It is lenient with what legacy clients send (HELO only, AUTH they were
// configured to send, bare LF line endings, 8-bit bodies) and strict about
// who may use it: loopback and explicitly allowed networks only, and only
// for senders that have an account.
package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/crlf"
	"github.com/smtpshim/smtpshim/shim/events"
	"github.com/smtpshim/smtpshim/shim/hints"
	"github.com/smtpshim/smtpshim/shim/loginauth"
	"github.com/smtpshim/smtpshim/shim/queue"
	"github.com/smtpshim/smtpshim/shim/route"
	"github.com/smtpshim/smtpshim/shim/spool"
	"github.com/smtpshim/smtpshim/shim/trace"
	"github.com/smtpshim/smtpshim/shim/upstream"
)

// Options wires a Server to the engine.
type Options struct {
	Config *config.Config
	// Routes returns the current routing table; it may change on reload.
	Routes func() *route.Table
	// Pool returns the upstream pool for an account key.
	Pool   func(account string) *upstream.Pool
	Queue  *queue.Queue
	Spool  *spool.Spool
	Bus    *events.Bus
	Logger *slog.Logger
	// LocalAuth, when set, is required before MAIL; when nil, any AUTH a
	// client sends is accepted and ignored.
	LocalAuth CheckFunc
	// Allowed decides which client addresses may connect; nil means
	// loopback only.
	Allowed func(netip.Addr) bool
	// TLSConfig, when set, is offered with STARTTLS and used by ServeTLS.
	TLSConfig *tls.Config
	// Trace, when set, receives protocol traces with credentials masked.
	Trace io.Writer
	// Paused, when set and true, keeps new mail from going upstream: it
	// is queued, and the client hears that smtpshim is paused.
	Paused func() bool
}

// Server serves local SMTP clients.
type Server struct {
	o     Options
	srv   *smtp.Server
	live  atomic.Pointer[settings] // what a reload may change
	idle  time.Duration
	conns atomic.Int64
	// waiting: the open connections, for the overload rules (overload.go)
	waiting waiters
	log     *slog.Logger
	// authGuard slows local password guessing (see checkLocal).
	authGuard *authGuard

	ipMu    sync.Mutex
	ipConns map[netip.Addr]int

	mu        sync.Mutex
	listeners []net.Listener
}

// New returns a server; call Serve for each listener.
func New(o Options) *Server {
	cfg := o.Config
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Bus == nil {
		o.Bus = &events.Bus{}
	}
	s := &Server{
		o:       o,
		log:     o.Logger,
		idle:    cfg.EffectiveIdleTimeout(),
		ipConns: map[netip.Addr]int{},
	}
	s.authGuard = newAuthGuard()
	s.Apply(cfg, Live{LocalAuth: o.LocalAuth, Allowed: o.Allowed})
	srv := smtp.NewServer(s)
	srv.Domain = cfg.HostnameOrDefault()
	srv.MaxMessageBytes = cfg.EffectiveMaxMessageSize()
	// The recipient limit is checked in Rcpt, against the live settings;
	// go-smtp's would need a restart to change.
	srv.MaxLineLength = cfg.EffectiveMaxLineLength()
	// Local clients send AUTH in the clear on loopback; it is either
	// ignored or checked against a local password, never the real one.
	srv.AllowInsecureAuth = true
	srv.EnableSMTPUTF8 = true
	// idle_timeout bounds each command line here, and each read inside
	// DATA in countedConn; it is fixed for the server's life.
	srv.ReadTimeout = s.idle
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = slogPrinter{o.Logger}
	srv.TLSConfig = o.TLSConfig
	if o.Trace != nil {
		// One writer for every client: see trace.NewShared.
		srv.Debug = trace.NewShared(o.Trace, "local: ")
	}
	s.srv = srv
	return s
}

type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Printf(format string, v ...any) { p.l.Debug(fmt.Sprintf(format, v...)) }
func (p slogPrinter) Println(v ...any)               { p.l.Debug(fmt.Sprint(v...)) }

// Serve accepts clients on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	gl := &guardListener{Listener: l, s: s}
	s.mu.Lock()
	s.listeners = append(s.listeners, gl)
	s.mu.Unlock()
	err := s.srv.Serve(gl)
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// ServeTLS accepts clients that speak TLS from the first byte (the
// "SMTPS" of old clients) on l.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.o.TLSConfig == nil {
		return errors.New("no TLS configuration for the implicit-TLS listener")
	}
	gl := &guardListener{Listener: l, s: s, tls: true}
	s.mu.Lock()
	s.listeners = append(s.listeners, gl)
	s.mu.Unlock()
	err := s.srv.Serve(tls.NewListener(gl, s.o.TLSConfig))
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting and waits for sessions to end, or for ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	if err != nil {
		s.srv.Close()
	}
	return err
}

// guardListener refuses clients from disallowed addresses and beyond the
// connection cap before go-smtp sees them, with a reply instead of a hang.
type guardListener struct {
	net.Listener
	s   *Server
	tls bool // implicit TLS: clients speak TLS from the first byte
}

func (g *guardListener) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := remoteIP(c)
		live := g.s.cur()
		if !live.allowed(addr) {
			g.s.log.Warn("refused a client from a network that is not allowed", "client", c.RemoteAddr().String())
			go refuse(c, "554 5.7.1 smtpshim accepts connections only from this computer (and networks listed in allow_networks)")
			continue
		}
		if g.s.conns.Add(1) > live.maxConns {
			g.s.conns.Add(-1)
			// At the cap: a client that speaks takes the place of the
			// connection that has been idle longest.
			if g.s.relieve(live.maxConns, true) && g.s.conns.Add(1) <= live.maxConns {
				return g.s.accepted(c, addr, g.tls), nil
			}
			g.s.log.Warn("too many connections; refused a client", "client", c.RemoteAddr().String(), "limit", live.maxConns)
			go refuse(c, "421 4.7.0 too many connections to smtpshim, try again later")
			continue
		}
		if !addr.IsLoopback() && !g.s.takeIP(addr, live.perIP) {
			g.s.conns.Add(-1)
			g.s.log.Warn("too many connections from one client; refused", "client", c.RemoteAddr().String(), "limit", live.perIP)
			go refuse(c, "421 4.7.0 too many connections from your address, try again later")
			continue
		}
		g.s.relieve(live.maxConns, false)
		return g.s.accepted(c, addr, g.tls), nil
	}
}

func (s *Server) accepted(c net.Conn, addr netip.Addr, tls bool) *countedConn {
	cc := &countedConn{Conn: c, s: s, ip: addr, tls: tls, lineStart: true}
	s.waiting.add(cc)
	return cc
}

func refuse(c net.Conn, reply string) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, reply+"\r\n")
	c.Close()
}

type countedConn struct {
	net.Conn
	s    *Server
	ip   netip.Addr
	once sync.Once

	// dataEnd, while a DATA phase runs, is when data_timeout ends it
	// (UnixNano; 0 outside DATA).
	dataEnd  atomic.Int64
	timedOut atomic.Bool
	// closeAfterReply ends the connection after the next write.
	closeAfterReply atomic.Bool
	idle            idleState
	// Only Read touches these.
	lineStart bool // the last byte read ended a line
	tls       bool // the client speaks TLS: no plaintext reply possible
	// ahead holds bytes read from the socket but not yet handed out:
	// go-smtp reads 4 KB at a time, and a larger read saves the system
	// calls that dominate relaying small messages.
	ahead    []byte
	aheadAt  int
	aheadErr error // the socket's error that came with buffered bytes
}

const readAhead = 32 << 10

// Read bounds the client's silence, and ends the session on a timeout
// itself, with a 421 and a close, rather than leaving it to go-smtp:
// textproto hands a command line cut short by the timeout to go-smtp as a
// complete one, which it runs (golang/go#56390), and after a DATA phase
// that timed out go-smtp reads on and takes the rest of the body for
// commands (emersion/go-smtp#196).
//
// Inside DATA the deadline is refreshed on every read from the network,
// so a slow but steady upload is bounded only by data_timeout; go-smtp's
// DATA reader fills a whole buffer per Read, so refreshing it a layer up
// would cut off a client that sends less than a buffer per idle_timeout.
func (c *countedConn) Read(p []byte) (int, error) {
	if c.aheadAt < len(c.ahead) {
		n := copy(p, c.ahead[c.aheadAt:])
		c.aheadAt += n
		c.track(p[:n])
		return n, nil
	}
	if err := c.aheadErr; err != nil {
		c.aheadErr = nil
		return 0, err
	}
	if end := c.dataEnd.Load(); end != 0 {
		c.Conn.SetReadDeadline(time.Unix(0, min(time.Now().Add(c.s.idle).UnixNano(), end)))
	}
	var n int
	var err error
	if c.dataEnd.Load() == 0 {
		c.beginWait()
		defer c.endWait()
	}
	if len(p) >= readAhead {
		n, err = c.Conn.Read(p)
	} else {
		if c.ahead == nil {
			c.ahead = make([]byte, readAhead)
		}
		var m int
		m, err = c.Conn.Read(c.ahead[:cap(c.ahead)])
		c.ahead = c.ahead[:m]
		n = copy(p, c.ahead)
		c.aheadAt = n
		if err != nil && n < m {
			// Hand out the bytes first; the error comes after them.
			c.aheadErr, err = err, nil
		}
	}
	c.track(p[:n])
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && !c.timedOut.Swap(true) {
		if !c.tls {
			msg := "421 4.4.2 smtpshim timed out waiting for the client; closing the connection\r\n"
			if c.dataEnd.Load() != 0 {
				msg = "421 4.4.2 timed out while receiving the message; it was not sent\r\n"
			} else if c.idle.evicted.Load() {
				msg = busyReply
			}
			c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c.Conn, msg)
		}
		c.Close()
	}
	return n, err
}

// track notes where lines start, to spot a TLS handshake.
func (c *countedConn) track(p []byte) {
	n := len(p)
	if n > 0 {
		// A TLS record (after STARTTLS) starts where a line would.
		if c.lineStart && p[0] == 0x16 {
			c.tls = true
		}
		c.lineStart = p[n-1] == '\n'
	}
}

// countedOf returns the countedConn under c, which may be wrapped in TLS.
func countedOf(c net.Conn) *countedConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	cc, _ := c.(*countedConn)
	return cc
}

func (c *countedConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// release gives up the connection's place in the limits, once.
func (c *countedConn) release() {
	c.once.Do(func() {
		c.s.waiting.remove(c)
		c.s.conns.Add(-1)
		if !c.ip.IsLoopback() {
			c.s.releaseIP(c.ip)
		}
	})
}

// remoteIP is the client's address; an unparsable one counts as not
// loopback, so it is never trusted by accident.
func remoteIP(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.IPv4Unspecified()
}

func (s *Server) takeIP(a netip.Addr, limit int) bool {
	s.ipMu.Lock()
	defer s.ipMu.Unlock()
	if s.ipConns[a] >= limit {
		return false
	}
	s.ipConns[a]++
	return true
}

func (s *Server) releaseIP(a netip.Addr) {
	s.ipMu.Lock()
	defer s.ipMu.Unlock()
	if s.ipConns[a]--; s.ipConns[a] <= 0 {
		delete(s.ipConns, a)
	}
}

// NewSession implements smtp.Backend.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	ip := remoteIP(c.Conn())
	return &session{s: s, c: c, cc: countedOf(c.Conn()), remote: c.Conn().RemoteAddr().String(), ip: ip}, nil
}

// session is one client connection.
type session struct {
	s       *Server
	c       *smtp.Conn
	cc      *countedConn // nil only for connections not from Serve
	remote  string
	ip      netip.Addr
	authed  bool
	authGen uint64 // the local_auth generation authed was set under
	// authFails counts failed AUTH on this connection (see checkLocal).
	authFails int

	acct     *config.Account
	pool     *upstream.Pool
	from     string
	opts     smtp.MailOptions
	tx       *upstream.Tx
	live     []string // recipients the upstream accepted in this session
	deferred []string // recipients to queue
	deferErr error    // why they are queued
	// pending is a MAIL FROM sent upstream ahead of the client's RCPT;
	// mailErr is the provider's refusal of it, repeated for every RCPT.
	pending chan beginResult
	mailErr error
	dataMu  sync.Mutex // held while a message body is received
}

func smtpErr(code int, enh smtp.EnhancedCode, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

func (s *session) AuthMechanisms() []string {
	if s.authNeedsTLS() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	if s.authNeedsTLS() {
		return nil, errAuthNeedsTLS
	}
	check := func(user, pass string) error {
		live := s.s.cur()
		if live.localAuth == nil {
			// Legacy clients configured with a password keep working:
			// the password is neither checked nor forwarded.
			s.authed, s.authGen = true, live.authGen
			return nil
		}
		return s.checkLocal(live, user, pass)
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, user, pass string) error { return check(user, pass) }), nil
	case sasl.Login:
		return loginauth.NewServer(check), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// Reset, Logout and Mail wait for a message body still being received:
// with BDAT, go-smtp runs Data in its own goroutine and goes on reading
// commands (it closes the body's pipe first, so Data ends promptly).
func (s *session) Reset() {
	s.dataMu.Lock()
	defer s.dataMu.Unlock()
	s.abort()
}

func (s *session) Logout() error {
	s.dataMu.Lock()
	defer s.dataMu.Unlock()
	s.abort()
	return nil
}

func (s *session) abort() {
	if s.pending != nil {
		go func(ch chan beginResult) {
			if r := <-ch; r.tx != nil {
				r.tx.Abort()
			}
		}(s.pending)
		s.pending = nil
	}
	s.mailErr = nil
	if s.tx != nil {
		s.tx.Abort()
		s.tx = nil
	}
	s.acct, s.pool, s.from = nil, nil, ""
	s.live, s.deferred, s.deferErr = nil, nil, nil
}

// errCutShort answers a command go-smtp parsed from a line the idle
// timeout cut short: it must not run (the client never finished it), and
// the connection is already closed.
var errCutShort = smtpErr(421, smtp.EnhancedCode{4, 4, 2}, "timed out")

func (s *session) cutShort() bool { return s.cc != nil && s.cc.timedOut.Load() }

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.dataMu.Lock()
	defer s.dataMu.Unlock()
	s.abort()
	if s.cutShort() {
		return errCutShort
	}
	live := s.s.cur()
	if !live.allowed(s.ip) {
		// allow_networks changed since this client connected.
		s.s.log.Warn("refused a client from a network that is no longer allowed", "client", s.remote)
		return smtpErr(554, smtp.EnhancedCode{5, 7, 1}, "smtpshim accepts mail only from this computer (and networks listed in allow_networks)")
	}
	if live.localAuth != nil && (!s.authed || s.authGen != live.authGen) {
		return smtpErr(530, smtp.EnhancedCode{5, 7, 0}, "Authentication required: configure your mail client with the local smtpshim user name and password")
	}
	if err := checkSender(from); err != nil {
		return err
	}
	if err := s.checkFreeSpace(live); err != nil {
		return err
	}
	acct, err := s.s.o.Routes().Lookup(from)
	if err != nil {
		s.s.log.Warn("refused sender without an account", "client", s.remote, "from", from)
		return smtpErr(550, smtp.EnhancedCode{5, 7, 1}, err.Error())
	}
	s.acct, s.from = acct, from
	if s.limited(live) {
		if over := live.rate.check(s.rateKey(), time.Now()); over != "" {
			s.s.log.Warn("sender over its rate limit", "client", s.remote, "from", from, "account", acct.Key(), "limit", over)
			s.acct, s.from = nil, ""
			return smtpErr(451, smtp.EnhancedCode{4, 7, 1}, fmt.Sprintf("your address has reached its limit of messages %s for account %s; try again later", over, acct.Key()))
		}
	}
	s.pool = s.s.o.Pool(acct.Key())
	if s.pool == nil {
		// The accounts were reloaded between the lookup and now.
		s.acct = nil
		return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "smtpshim's accounts just changed; try again")
	}
	if opts != nil {
		s.opts = smtp.MailOptions{UTF8: opts.UTF8, Size: opts.Size}
	}
	if s.s.o.Paused != nil && s.s.o.Paused() {
		s.deferErr = ErrPaused
		return nil
	}
	if !s.pool.Available(time.Now()) {
		last := s.pool.Health().LastError
		if isTLSTrustProblem(last) {
			// Not an outage to queue through: every client hears the
			// same 454 as the one whose attempt found the problem.
			return s.liveFailure(last)
		}
		s.deferErr = fmt.Errorf("%w: %v", upstream.ErrAccountDown, last)
		return nil
	}
	if s.pool.Warm() {
		// A logged-in connection is waiting: its MAIL FROM goes out while
		// the client sends its first RCPT, which saves a round trip per
		// message. Only the provider's verdict on the sender can fail
		// now, and the client hears it, unchanged, at RCPT.
		s.pending = s.beginAsync(from)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.beginWait())
	defer cancel()
	tx, err := s.pool.Begin(ctx, from, &s.opts)
	if err == nil {
		s.tx = tx
		return nil
	}
	return s.liveFailure(err)
}

func (s *session) beginWait() time.Duration { return min(s.s.cur().syncWait, 30*time.Second) }

// limited reports whether the sender rate limits apply to this client.
func (s *session) limited(live *settings) bool { return !s.ip.IsLoopback() || live.rateLocal }

// ErrPaused is why a message is queued without an attempt while smtpshim
// is paused.
var ErrPaused = errors.New("smtpshim is paused")

type beginResult struct {
	tx  *upstream.Tx
	err error
}

func (s *session) beginAsync(from string) chan beginResult {
	ch := make(chan beginResult, 1)
	pool, opts, wait := s.pool, s.opts, s.beginWait()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		tx, err := pool.Begin(ctx, from, &opts)
		ch <- beginResult{tx, err}
	}()
	return ch
}

// joinBegin waits for a MAIL FROM sent ahead and returns what the client
// must hear for the rest of the transaction.
func (s *session) joinBegin() error {
	if s.pending == nil {
		return s.mailErr
	}
	r := <-s.pending
	s.pending = nil
	if r.err == nil {
		s.tx = r.tx
		return nil
	}
	s.mailErr = s.liveFailure(r.err)
	return s.mailErr
}

// liveFailure decides what a client hears when opening the upstream
// transaction failed: the upstream's own refusal, a local problem the user
// must fix, or nothing at all (the message will be queued).
func (s *session) liveFailure(err error) error {
	acct := s.acct.Key()
	if se, ok := upstream.SMTPError(err); ok && se.Code >= 500 {
		s.logRefusal("the upstream refused the sender", err)
		return se // unchanged: the client hears the provider's own words
	}
	if upstream.IsCredentialMissing(err) {
		s.s.log.Error("no password stored for the account", "account", acct)
		return smtpErr(454, smtp.EnhancedCode{4, 7, 0}, fmt.Sprintf("smtpshim has no password for account %s: run \"smtpshim account add %s\"", acct, acct))
	}
	if isTLSTrustProblem(err) {
		s.logRefusal("the upstream's TLS could not be verified", err)
		// TLS's own words (a version or certificate problem of the
		// provider's) are the provider's truth, not local detail.
		msg := "smtpshim refused to send the password: " + oneLine(err.Error())
		if h := hints.For(err); h != "" {
			msg += " (" + h + ")"
		}
		return smtpErr(454, smtp.EnhancedCode{4, 7, 0}, msg)
	}
	s.s.log.Info("upstream not reachable now; the message will be queued", "account", acct, "err", err)
	s.deferErr = err
	return nil
}

func (s *session) logRefusal(what string, err error) {
	s.s.log.Warn(what, "client", s.remote, "account", s.acct.Key(), "err", err, "hint", hints.For(err))
	s.s.o.Bus.Publish(events.Event{Kind: events.Rejected, Account: s.acct.Key(), Error: err.Error(), Hint: hints.For(err)})
}

// isTLSTrustProblem is true when the upstream's identity could not be
// verified or it would not encrypt: retrying blindly could hand the
// password to an impostor, so the client is told at once.
func isTLSTrustProblem(err error) bool {
	if errors.Is(err, upstream.ErrNoTLS) {
		return true
	}
	var de *upstream.DialError
	if !errors.As(err, &de) || (de.Step != upstream.StepTLS && de.Step != upstream.StepStartTLS) {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "x509:") || strings.Contains(msg, "certificate") || strings.Contains(msg, "protocol version")
}

func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.cutShort() {
		return errCutShort
	}
	if s.acct == nil {
		return errNoSender
	}
	if err := checkRecipient(to); err != nil {
		return err
	}
	if max := s.s.cur().maxRcpts; max > 0 && len(s.live)+len(s.deferred) >= max {
		return smtpErr(452, smtp.EnhancedCode{4, 5, 3}, fmt.Sprintf("Maximum limit of %v recipients reached", max))
	}
	if err := s.joinBegin(); err != nil {
		return err
	}
	if s.tx == nil {
		s.deferred = append(s.deferred, to)
		return nil
	}
	err := s.tx.Rcpt(to, nil)
	switch se, isSMTP := upstream.SMTPError(err); {
	case err == nil:
		s.live = append(s.live, to)
	case isSMTP && se.Code >= 500:
		s.logRefusal("the upstream refused a recipient", err)
		return se
	case isSMTP:
		s.s.log.Info("the upstream deferred a recipient; it will be queued", "rcpt", to, "err", err)
		s.deferred = append(s.deferred, to)
		s.deferErr = err
	default:
		s.s.log.Info("the upstream connection failed; the message will be queued", "account", s.acct.Key(), "err", err)
		s.tx.Abort()
		s.tx = nil
		s.deferred = append(append(s.deferred, s.live...), to)
		s.live = nil
		s.deferErr = err
	}
	return nil
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

// memSpool is how much of a body is held in memory before it goes to a
// spool file; it bounds memory per session while keeping small messages
// off the disk.
const memSpool = 1 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

type commitResult struct {
	resp string
	err  error
}

func (s *session) Data(r io.Reader) error {
	s.dataMu.Lock()
	defer s.dataMu.Unlock()
	if s.acct == nil {
		return errNoSender
	}
	key := s.rateKey() // data ends the transaction and forgets it
	err := s.data(r)
	if live := s.s.cur(); s.limited(live) {
		if se, ok := err.(*smtp.SMTPError); ok && se.Code == 250 {
			live.rate.record(key, time.Now())
		}
	}
	return err
}

func (s *session) data(r io.Reader) error {
	start := time.Now()
	live := s.s.cur()
	if err := s.joinBegin(); err != nil {
		s.abort()
		return err
	}
	// The body stays in memory up to memSpool bytes: a message the
	// provider takes at once then never touches the disk.
	sw := s.s.o.Spool.CreateLazy(memSpool)
	t := &tee{spool: sw, spoolOK: true}
	if s.tx != nil && len(s.live) > 0 {
		up, err := s.tx.Data(live.syncWait)
		if err != nil {
			if se, ok := upstream.SMTPError(err); ok && se.Code >= 500 {
				s.discard(sw)
				s.abort()
				return se
			}
			s.liveLost(err)
		} else {
			t.up = up
		}
	}
	// go-smtp's ReadTimeout would bound the whole body; a large message on
	// a slow link must only be bounded by silence (idle, refreshed on each
	// network read by countedConn) and by data_timeout.
	if s.cc != nil {
		s.cc.dataEnd.Store(start.Add(live.dataLimit).UnixNano())
		defer s.cc.dataEnd.Store(0)
	} else {
		s.c.Conn().SetReadDeadline(start.Add(live.dataLimit))
	}
	var src io.Reader
	if _, bdat := r.(*io.PipeReader); bdat {
		// BDAT chunks are not dot-stuffed: a leading dot is content.
		src = crlf.NewReader(r)
	} else {
		src = crlf.NewDataReader(r)
	}
	buf := bufPool.Get().(*[]byte)
	_, rerr := io.CopyBuffer(t, src, *buf)
	bufPool.Put(buf)
	if rerr != nil {
		// The client's message is incomplete: deliver nothing of it.
		s.discard(sw)
		s.abort()
		if errors.Is(rerr, errBothLegsFailed) {
			s.spoolProblem(sw.Err())
			return errSpool(sw.Err())
		}
		return clientDataError(rerr, s.s.srv.MaxLineLength)
	}
	if t.upErr != nil {
		s.liveLost(t.upErr)
	}
	if !t.spoolOK {
		s.spoolProblem(sw.Err())
	}

	if s.tx != nil && t.up != nil {
		tx := s.tx
		s.tx = nil
		done := make(chan commitResult, 1)
		go func() {
			resp, err := tx.Commit()
			done <- commitResult{resp, err}
		}()
		timer := time.NewTimer(live.syncWait)
		defer timer.Stop()
		select {
		case res := <-done:
			return s.finishLive(sw, t.spoolOK, res, start)
		case <-timer.C:
			return s.queueWhileWaiting(sw, t.spoolOK, done, live.syncWait)
		}
	}
	return s.queueAll(sw, t.spoolOK)
}

func (s *session) finishLive(sw *spool.Writer, spoolOK bool, res commitResult, start time.Time) error {
	acct := s.acct.Key()
	if res.err == nil {
		s.s.log.Info("delivered", "account", acct, "from", s.from, "rcpts", len(s.live), "ms", time.Since(start).Milliseconds(), "upstream", oneLine(res.resp))
		s.s.o.Bus.Publish(events.Event{Kind: events.Delivered, Account: acct, Rcpts: s.live})
		if len(s.deferred) == 0 {
			s.discard(sw)
			s.abort()
			return okReply(res.resp)
		}
		s.live = nil
		return s.queueAll(sw, spoolOK)
	}
	if se, ok := upstream.SMTPError(res.err); ok && se.Code >= 500 {
		s.logRefusal("the upstream refused the message", res.err)
		s.discard(sw)
		s.abort()
		return se
	}
	s.liveLost(res.err)
	return s.queueAll(sw, spoolOK)
}

// liveLost moves the live recipients to the queue.
func (s *session) liveLost(err error) {
	s.s.log.Info("the upstream failed during the message; it will be queued", "account", s.acct.Key(), "err", err)
	if s.tx != nil {
		s.tx.Abort()
		s.tx = nil
	}
	s.deferred = append(s.deferred, s.live...)
	s.live = nil
	s.deferErr = err
}

func (s *session) meta(rcpts []string) *spool.Meta {
	m := &spool.Meta{Account: s.acct.Key(), From: s.from, Rcpts: rcpts, UTF8: s.opts.UTF8, ClientAddr: s.remote}
	if s.deferErr != nil && !errors.Is(s.deferErr, ErrPaused) {
		m.LastError = s.deferErr.Error()
		m.LastHint = hints.For(s.deferErr)
	}
	return m
}

// queueAll makes the message durable for the deferred recipients and
// tells the client it is queued.
func (s *session) queueAll(sw *spool.Writer, spoolOK bool) error {
	defer s.abort()
	if sw == nil || !spoolOK {
		s.discard(sw)
		return errSpool(errors.New("the spool could not be written"))
	}
	m := s.meta(s.deferred)
	if err := s.s.o.Queue.Add(sw, m, false); err != nil {
		return errSpool(err)
	}
	return queuedReply(m.ID, s.deferErr)
}

// queueWhileWaiting commits the message when the upstream is slow to
// answer, replies 250, and lets the late answer settle the queue entry.
func (s *session) queueWhileWaiting(sw *spool.Writer, spoolOK bool, done <-chan commitResult, waited time.Duration) error {
	defer s.abort()
	if sw == nil || !spoolOK {
		// Nothing durable to fall back on: keep waiting for the upstream.
		s.discard(sw)
		res := <-done
		if res.err == nil {
			if len(s.deferred) > 0 {
				// Some recipients still need a queued copy, which can't be
				// made: the client must retry (a duplicate for the others
				// beats a silent loss).
				return errSpool(errors.New("the spool could not be written"))
			}
			return okReply(res.resp)
		}
		if se, ok := upstream.SMTPError(res.err); ok {
			return se
		}
		return errSpool(errors.New("the spool could not be written"))
	}
	live := s.live
	m := s.meta(append(append([]string(nil), s.live...), s.deferred...))
	if err := s.s.o.Queue.Add(sw, m, true); err != nil {
		// Not durable: the client must keep its copy. The late upstream
		// answer is only logged.
		go func() { <-done }()
		return errSpool(err)
	}
	id, q, log := m.ID, s.s.o.Queue, s.s.log
	deferred := s.deferred
	remote := s.acct.Host()
	go func() {
		res := <-done
		o := queue.Outcome{Remote: remote, Temp: deferred}
		switch se, isSMTP := upstream.SMTPError(res.err); {
		case res.err == nil:
			o.Delivered = live
		case isSMTP && se.Code >= 500:
			for _, r := range live {
				o.Failed = append(o.Failed, queue.FailureOf(r, res.err))
			}
		default:
			o.Temp = append(o.Temp, live...)
			o.Err = res.err
		}
		log.Info("late upstream answer", "id", id, "err", res.err)
		q.Settle(id, o)
	}()
	return queuedReply(id, ownWords{fmt.Errorf("the provider did not answer within %s", waited)})
}

// okReply passes the upstream's acceptance text (often its queue ID) on
// to the client; go-smtp's client leaves the enhanced code in the text.
func okReply(text string) error {
	if len(text) > 6 && text[0] == '2' && text[1] == '.' {
		if sp := strings.IndexByte(text, ' '); sp > 0 {
			text = text[sp+1:]
		}
	}
	return smtpErr(250, smtp.EnhancedCode{2, 0, 0}, text)
}

func queuedReply(id string, why error) error {
	msg := "queued as " + id + ": smtpshim will deliver it when the provider is reachable"
	if errors.Is(why, ErrPaused) {
		msg = "queued as " + id + " (smtpshim is paused)"
	} else if why != nil {
		// The log's "message queued" line has the detail under the ID.
		msg = "queued as " + id + " for a later try (" + publicReason(why) + ")"
	}
	return smtpErr(250, smtp.EnhancedCode{2, 0, 0}, msg)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func (s *session) discard(sw *spool.Writer) {
	if sw != nil {
		sw.Discard()
	}
}

func (s *session) spoolProblem(err error) {
	if err == nil {
		return
	}
	s.s.log.Error("cannot write the spool", "err", err)
	s.s.o.Bus.Publish(events.Event{Kind: events.Problem, Error: err.Error(),
		Hint: "free disk space or fix the permissions of the spool directory (smtpshim doctor shows where it is)"})
}

func errSpool(err error) *smtp.SMTPError {
	msg := "smtpshim cannot store the message right now, try again later"
	if errors.Is(err, os.ErrPermission) {
		msg += " (permission denied on the spool directory)"
	} else if err != nil && strings.Contains(err.Error(), "no space") {
		msg += " (the disk is full)"
	}
	return smtpErr(452, smtp.EnhancedCode{4, 3, 1}, msg)
}

// clientDataError turns a failure to read the client's message into a
// reply; a size overrun keeps go-smtp's 552 5.3.4.
func clientDataError(err error, maxLine int) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	if errors.Is(err, smtp.ErrTooLongLine) {
		return smtpErr(500, smtp.EnhancedCode{5, 5, 2}, fmt.Sprintf("line too long (over %d bytes); the message was not sent", maxLine))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return smtpErr(421, smtp.EnhancedCode{4, 4, 2}, "timed out while receiving the message; it was not sent")
	}
	return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "the message was not received completely; it was not sent")
}
