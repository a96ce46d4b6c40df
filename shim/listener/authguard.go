package listener

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Local password guessing is slowed and capped, as Postfix's
// smtpd_error_sleep_time and anvil's auth rate limit do: go-smtp counts no
// failed AUTH as a protocol error, and a check without delay takes
// thousands of guesses a second on one connection.
const (
	// maxAuthFailures ends a connection at its third failed AUTH.
	maxAuthFailures = 3
	// Each failure from an address waits authDelayBase, doubled per
	// earlier failure from that address, up to authDelayMax.
	authDelayBase = 250 * time.Millisecond
	authDelayMax  = 8 * time.Second
	// After authLockout failures from one address within authWindow
	// of each other, AUTH from it is refused until authWindow has passed
	// since the last one; a success forgets the address's failures.
	authLockout = 10
	authWindow  = 15 * time.Minute
)

// authGuard counts failed local AUTH per client address.
type authGuard struct {
	now func() time.Time

	mu     sync.Mutex
	peers  map[netip.Addr]*authFailures
	tokens map[string]tokenGrant // see IssueAuthToken
}

type authFailures struct {
	n    int
	last time.Time
}

func newAuthGuard() *authGuard {
	return &authGuard{now: time.Now, peers: map[netip.Addr]*authFailures{}, tokens: map[string]tokenGrant{}}
}

// blocked reports how long AUTH from ip stays refused, or 0.
func (g *authGuard) blocked(ip netip.Addr) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.current(ip)
	if f == nil || f.n < authLockout {
		return 0
	}
	return authWindow - g.now().Sub(f.last)
}

// failed counts a failure from ip and returns how long to wait before
// answering it.
func (g *authGuard) failed(ip netip.Addr) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.current(ip)
	if f == nil {
		if len(g.peers) > 10000 {
			g.prune()
		}
		f = &authFailures{}
		g.peers[ip] = f
	}
	f.n++
	f.last = g.now()
	d := authDelayBase
	for i := 1; i < f.n && d < authDelayMax; i++ {
		d *= 2
	}
	return min(d, authDelayMax)
}

func (g *authGuard) succeeded(ip netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.peers, ip)
}

// current is ip's failures, forgotten once authWindow has passed.
func (g *authGuard) current(ip netip.Addr) *authFailures {
	f := g.peers[ip]
	if f != nil && g.now().Sub(f.last) >= authWindow {
		delete(g.peers, ip)
		return nil
	}
	return f
}

func (g *authGuard) prune() {
	now := g.now()
	for ip, f := range g.peers {
		if now.Sub(f.last) >= authWindow {
			delete(g.peers, ip)
		}
	}
}

// checkLocal checks local AUTH credentials for the session, with the
// delays and limits above, and logs every failure with the client.
func (s *session) checkLocal(live *settings, user, pass string) error {
	ip := s.ip
	g := s.s.authGuard
	if user == TokenUser && g.takeToken(pass, s.remote) {
		s.authed, s.authGen = true, live.authGen
		return nil
	}
	if wait := g.blocked(ip); wait > 0 {
		s.authFails++
		s.s.log.Warn("local AUTH refused: too many failures from this address", "client", s.remote, "retry_in", wait.Round(time.Second).String())
		if s.authFails >= maxAuthFailures {
			s.closeAfterReply()
		}
		return smtpErr(454, smtp.EnhancedCode{4, 7, 0}, fmt.Sprintf("too many failed logins from your address; try again in %d minutes", int(wait.Minutes())+1))
	}
	if err := live.localAuth(user, pass); err != nil {
		s.authFails++
		delay := g.failed(ip)
		s.s.log.Warn("local AUTH failed", "client", s.remote, "failures_on_connection", s.authFails, "delay", delay.String())
		time.Sleep(delay)
		if s.authFails >= maxAuthFailures {
			s.closeAfterReply()
			return smtpErr(421, smtp.EnhancedCode{4, 7, 0}, "too many failed logins; closing the connection")
		}
		return err
	}
	g.succeeded(ip)
	s.authed, s.authGen = true, live.authGen
	return nil
}

// closeAfterReply ends the connection once the reply being prepared has
// been written.
func (s *session) closeAfterReply() {
	if s.cc != nil {
		s.cc.closeAfterReply.Store(true)
		return
	}
	s.c.Conn().Close()
}

// Write sends go-smtp's replies through the reply watch (see replyWatch),
// and closes the connection after a reply when closeAfterReply asks for
// it: go-smtp writes each reply with one Write.
func (c *clientConn) Write(p []byte) (int, error) {
	var n int
	var err error
	if c.watch != nil {
		n, err = c.watch.write(c.Conn, p)
	} else {
		n, err = c.Conn.Write(p)
	}
	if c.closeAfterReply.Load() {
		c.Close()
	}
	return n, err
}

// errAuthNeedsTLS is RFC 4954's answer to AUTH that must wait for TLS.
var errAuthNeedsTLS = smtpErr(538, smtp.EnhancedCode{5, 7, 11}, "Encryption required: start TLS (STARTTLS, or the implicit-TLS port) before logging in to smtpshim from another computer")

// authNeedsTLS reports whether require_tls_for_auth keeps this client
// from AUTH until it has started TLS; loopback never leaves the machine.
func (s *session) authNeedsTLS() bool {
	if !s.s.cur().tlsForAuth || s.ip.IsLoopback() {
		return false
	}
	_, isTLS := s.c.TLSConnectionState()
	return !isTLS
}
