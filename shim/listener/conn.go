// Package listener is smtpshim's SMTP server for local clients: the
// go-smtp adapter in front of the relay.
//
// It is lenient with what legacy clients send (HELO only, AUTH they were
// configured to send, bare LF line endings, 8-bit bodies) and strict about
// who may use it: loopback and explicitly allowed networks only, and only
// for senders that have an account. It guards and parses (access, limits,
// deadlines, local AUTH, syntax); what happens to a message is the relay's
// decision (package relay).
//
// conn.go holds the server and the connection guard; session.go holds the
// SMTP session that drives a relay delivery.
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

	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/events"
	"github.com/smtpshim/smtpshim/shim/relay"
	"github.com/smtpshim/smtpshim/shim/route"
	"github.com/smtpshim/smtpshim/shim/spool"
	"github.com/smtpshim/smtpshim/shim/trace"
)

// Options wires a Server to the engine.
type Options struct {
	Config *config.Config
	// Routes returns the current routing table; it may change on reload.
	Routes func() *route.Table
	// Relay delivers what clients hand over.
	Relay *relay.Relay
	// Spool and Bus serve the free-space floor only: new mail is refused
	// while the spool's disk is nearly full, and the user is told.
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
}

// Server serves local SMTP clients.
type Server struct {
	o     Options
	srv   *smtp.Server
	live  atomic.Pointer[settings] // what a reload may change
	idle  time.Duration
	conns atomic.Int64
	log   *slog.Logger
	// authGuard slows local password guessing (see checkLocal).
	authGuard *authGuard
	// disk is the last reading of the spool's free space (checkFreeSpace).
	disk freeSpaceCache

	ipMu    sync.Mutex
	ipConns map[netip.Addr]int

	mu        sync.Mutex
	listeners []net.Listener
	open      map[*clientConn]struct{}
	closing   bool
	refusing  sync.WaitGroup // refusals being written
	// sessions counts SMTP sessions from NewSession to Logout: one may
	// outlive its connection while it settles a message (WaitSessions).
	sessions int
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
	// DATA in clientConn; it is fixed for the server's life.
	srv.ReadTimeout = s.idle
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = slogPrinter{o.Logger}
	srv.TLSConfig = o.TLSConfig
	s.srv = srv
	return s
}

type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Printf(format string, v ...any) { p.l.Debug(fmt.Sprintf(format, v...)) }
func (p slogPrinter) Println(v ...any)               { p.l.Debug(fmt.Sprint(v...)) }

// Serve accepts clients on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	gl := &guardListener{Listener: l, s: s}
	if !s.addListener(gl) {
		return nil
	}
	return s.served(s.srv.Serve(gl))
}

// ServeTLS accepts clients that speak TLS from the first byte (the
// "SMTPS" of old clients) on l.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.o.TLSConfig == nil {
		return errors.New("no TLS configuration for the implicit-TLS listener")
	}
	gl := &guardListener{Listener: l, s: s, tls: true}
	if !s.addListener(gl) {
		return nil
	}
	return s.served(s.srv.Serve(tls.NewListener(gl, s.o.TLSConfig)))
}

// served is what a Serve reports when go-smtp's returns err: nothing after
// a Shutdown. Shutdown closes the listeners before go-smtp learns of it,
// so go-smtp may see its listener closed and say so.
func (s *Server) served(err error) error {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if errors.Is(err, smtp.ErrServerClosed) || closing && errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// addListener registers l for Shutdown, or closes it and reports false
// when the server is already shutting down. go-smtp closes only the
// listeners its Serve has registered, and a Shutdown that comes before a
// Serve's first line would otherwise leave that listener open for good.
func (s *Server) addListener(l net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		l.Close()
		return false
	}
	s.listeners = append(s.listeners, l)
	return true
}

// shutdownReply is what connected clients hear when smtpshim stops: a
// temporary failure, so they try again later.
const shutdownReply = "421 4.3.2 smtpshim is shutting down\r\n"

// Sessions returns the number of connected clients.
func (s *Server) Sessions() int { return int(s.conns.Load()) }

// Shutdown stops accepting and ends the sessions: a client waiting for
// its next command hears "421 4.3.2 smtpshim is shutting down" at once; one
// sending a message finishes it (and hears the reply) first. It waits for
// the sessions to end, or for ctx, and then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for _, l := range s.listeners {
		l.Close()
	}
	open := make([]*clientConn, 0, len(s.open))
	for c := range s.open {
		open = append(open, c)
	}
	s.mu.Unlock()
	res := make(chan error, 1)
	go func() { res <- s.srv.Shutdown(ctx) }()
	for _, c := range open {
		c.shutdown()
	}
	err := <-res
	// go-smtp closes the listeners again and reports that they were
	// closed already: that is no failure to shut down.
	if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		err = nil
	}
	if err != nil {
		// go-smtp's Close does nothing once its Shutdown has begun, so
		// the sessions still open are closed here.
		s.mu.Lock()
		left := make([]*clientConn, 0, len(s.open))
		for c := range s.open {
			left = append(left, c)
		}
		s.mu.Unlock()
		for _, c := range left {
			c.Close()
		}
	}
	s.refusing.Wait()
	return err
}

// WaitSessions waits until every session has ended, or ctx ends. Call it
// after Shutdown and after the relay's Close, which cuts what a session
// may still wait for: a session whose connection Shutdown closed can still
// be settling its message into the queue.
func (s *Server) WaitSessions(ctx context.Context) error {
	for {
		s.mu.Lock()
		n := s.sessions
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d client sessions still running: %w", n, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (s *Server) sessionDone() {
	s.mu.Lock()
	s.sessions--
	s.mu.Unlock()
}

// track adds c to the live connections, or reports false when the server
// is shutting down.
func (s *Server) track(c *clientConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	if s.open == nil {
		s.open = map[*clientConn]struct{}{}
	}
	s.open[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *clientConn) {
	s.mu.Lock()
	delete(s.open, c)
	s.mu.Unlock()
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
			g.s.refuse(c, "554 5.7.1 smtpshim accepts connections only from this computer (and networks listed in allow_networks)")
			continue
		}
		if !g.s.takePlace(live.maxConns) {
			g.s.log.Warn("too many connections; refused a client", "client", c.RemoteAddr().String(), "limit", live.maxConns)
			g.s.refuse(c, "421 4.7.0 too many connections to smtpshim, try again later")
			continue
		}
		if !addr.IsLoopback() && !g.s.takeIP(addr, live.perIP) {
			g.s.conns.Add(-1)
			g.s.log.Warn("too many connections from one client; refused", "client", c.RemoteAddr().String(), "limit", live.perIP)
			g.s.refuse(c, "421 4.7.0 too many connections from your address, try again later")
			continue
		}
		if g.s.o.Trace != nil {
			// One trace session per client, of what crosses the wire.
			c = trace.WrapConn(c, g.s.o.Trace, g.tls)
		}
		cc := &clientConn{Conn: c, s: g.s, ip: addr, tls: g.tls, lineStart: true,
			watch: &replyWatch{log: g.s.log, client: c.RemoteAddr().String()}}
		if !g.s.track(cc) {
			// Give back its place in the limits and tell the client why;
			// refuse closes the connection after the reply.
			g.s.conns.Add(-1)
			if !addr.IsLoopback() {
				g.s.releaseIP(addr)
			}
			g.s.refuse(c, strings.TrimSuffix(shutdownReply, "\r\n"))
			continue
		}
		return cc, nil
	}
}

// refuse answers a client that may not start a session, in the
// background (bounded by a 5 s deadline); Shutdown waits for it.
func (s *Server) refuse(c net.Conn, reply string) {
	s.refusing.Add(1)
	go func() {
		defer s.refusing.Done()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, reply+"\r\n")
		c.Close()
	}()
}

// clientConn is one accepted client connection. It holds the
// connection's place in the connection limits until it closes, bounds the
// client's silence (idle_timeout) and a message's upload (data_timeout)
// itself, answers a timeout or a shutdown with a 421, and reads ahead.
type clientConn struct {
	net.Conn
	s     *Server
	ip    netip.Addr
	once  sync.Once
	watch *replyWatch // rewrites stock replies, logs refusals

	// dataEnd, while a DATA phase runs, is when data_timeout ends it
	// (UnixNano; 0 outside DATA).
	dataEnd  atomic.Int64
	timedOut atomic.Bool
	// closeAfterReply ends the connection after the next write.
	closeAfterReply atomic.Bool
	// stopping: smtpshim is shutting down; saidBye: the 421 went out.
	stopping atomic.Bool
	saidBye  atomic.Bool
	idle     idleState // overload.go
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
func (c *clientConn) Read(p []byte) (int, error) {
	if c.stopping.Load() && c.dataEnd.Load() == 0 {
		// Between commands while smtpshim shuts down: say so and end.
		c.sayShutdown()
		return 0, io.EOF
	}
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
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && c.stopping.Load() && c.dataEnd.Load() == 0 {
		c.sayShutdown()
		return n, io.EOF
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && !c.timedOut.Swap(true) {
		msg := "421 4.4.2 smtpshim timed out waiting for the client; closing the connection\r\n"
		if c.dataEnd.Load() != 0 {
			msg = "421 4.4.2 timed out while receiving the message; it was not sent\r\n"
		} else if c.idle.evicted.Load() {
			msg = busyReply
		}
		if c.watch != nil && (c.tls || c.dataEnd.Load() == 0) && c.watch.sender() != "" {
			// A message was under way: say in the log why it was not sent.
			// (Inside DATA on a plaintext session, the reply to the
			// cut-off body is logged on its way out instead.)
			c.watch.refused(strings.TrimSuffix(msg, "\r\n"))
		}
		if !c.tls {
			c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c.Conn, msg)
		}
		c.Close()
	}
	return n, err
}

// track notes where lines start, to spot a TLS handshake.
func (c *clientConn) track(p []byte) {
	n := len(p)
	if n > 0 {
		// A TLS record (after STARTTLS) starts where a line would.
		if c.lineStart && p[0] == 0x16 {
			c.tls = true
		}
		c.lineStart = p[n-1] == '\n'
	}
}

// clientConnOf returns the clientConn under c, which may be wrapped in TLS.
func clientConnOf(c net.Conn) *clientConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	cc, _ := c.(*clientConn)
	return cc
}

// shutdown ends the session at its next command: a read waiting for one
// returns at once. A message being received is not cut: inside DATA each
// read sets its own deadline.
func (c *clientConn) shutdown() {
	c.stopping.Store(true)
	if c.dataEnd.Load() == 0 {
		c.Conn.SetReadDeadline(time.Now())
	}
}

// sayShutdown tells the client, once, and closes. Over TLS no plaintext
// reply is possible, so the connection just closes.
func (c *clientConn) sayShutdown() {
	if c.saidBye.Swap(true) {
		return
	}
	if !c.tls {
		c.Conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(c.Conn, shutdownReply)
	}
	c.Close()
}

func (c *clientConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// release gives up the connection's place in the limits, once.
func (c *clientConn) release() {
	c.once.Do(func() {
		c.s.untrack(c)
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
