// Package upstreamsim is a small mail provider for the demo, tests and
// benchmarks: it demands AUTH over STARTTLS (or implicit TLS), records what
// it receives, and can be told to misbehave like real providers do.
package upstreamsim

import (
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/localcert"
	"github.com/smtpshim/smtpshim/shim/loginauth"
)

// Fault is a way to misbehave.
type Fault int

// Faults.
const (
	None             Fault = iota
	Refuse                 // close every new connection at once
	TempFail               // 451 at MAIL FROM
	PermFail               // 554 at end of DATA
	TempFailData           // 451 at end of DATA
	DropMidData            // hang up in the middle of DATA
	Stall                  // never answer the end of DATA
	RejectSomeRcpt         // 550 for recipients starting with "reject"
	TempFailSomeRcpt       // 450 for recipients starting with "later"
	// StopReading answers DATA with 354 and then never reads the body,
	// like a provider whose end of the connection froze. Healing hangs up
	// on those connections; nothing of them is recorded.
	StopReading
)

// Message is one accepted message.
type Message struct {
	From   string
	To     []string
	Data   []byte // nil when Options.HashOnly
	Size   int64
	SHA256 [32]byte
	// Raw is the DATA part exactly as the client sent it on the wire,
	// dot-stuffing and the final ".\r\n" line included (Options.RawLog);
	// for a message sent with BDAT, its BDAT commands and chunks.
	Raw []byte
	// Chunked: the message came with BDAT (Options.Chunking), not DATA.
	Chunked    bool
	User       string
	Mechanism  string
	TLSVersion string
}

// Options configures a Server.
type Options struct {
	// Users maps logins to passwords.
	Users map[string]string
	// ImplicitTLS serves TLS from the first byte instead of STARTTLS.
	ImplicitTLS bool
	// NoTLS offers no STARTTLS at all (and AUTH in the clear).
	NoTLS bool
	// HashOnly keeps only each message's size and hash, for benchmarks.
	HashOnly bool
	// Mechanisms limits the AUTH mechanisms offered; default PLAIN LOGIN.
	Mechanisms []string
	// RawLog records what clients send as read off the connection, before
	// any SMTP parsing or dot-unstuffing: see Message.Raw and RawInput.
	// It sees plaintext with NoTLS or ImplicitTLS; after STARTTLS it would
	// see only ciphertext, so Message.Raw stays nil there.
	RawLog bool
	// Tokens, when set, checks OAuth2 access tokens for XOAUTH2 and
	// OAUTHBEARER (list them in Mechanisms): it returns the user a live
	// token belongs to (oauthsim.Server.Validate fits).
	Tokens func(token string) (user string, ok bool)
	// Chunking offers CHUNKING (RFC 3030: BDAT), as Gmail and Microsoft
	// do; without it the simulated provider takes DATA only.
	Chunking bool
	// MaxTLSVersion, when set, caps the TLS version offered, like an
	// outdated provider (e.g. tls.VersionTLS11).
	MaxTLSVersion uint16
}

// Server is a running simulated provider.
type Server struct {
	Addr string
	// Cert is the CA and server certificate; clients trust Cert.Pool.
	Cert *localcert.Pair

	o   Options
	srv *smtp.Server
	ln  net.Listener

	mu       sync.Mutex
	msgs     []Message
	fault    Fault
	conns    int
	refused  int
	authFail int
	stall    chan struct{}
	raw      []byte        // Options.RawLog: every byte read, all connections
	delay    time.Duration // SetDataDelay
}

// Start listens on 127.0.0.1 on a free port.
func Start(o Options) (*Server, error) {
	pair, err := localcert.Generate("smtpshim demo provider", []string{"localhost", "127.0.0.1"}, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	if len(o.Mechanisms) == 0 {
		o.Mechanisms = []string{sasl.Plain, sasl.Login}
	}
	s := &Server{Cert: pair, o: o, stall: make(chan struct{})}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = "localhost"
	srv.MaxMessageBytes = 200 << 20
	srv.MaxRecipients = 1000
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = nopLogger{}
	srv.DisableCHUNKING = !o.Chunking
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{pair.Cert}, MinVersion: tls.VersionTLS12}
	if o.MaxTLSVersion != 0 {
		tlsCfg.MinVersion = min(tlsCfg.MinVersion, o.MaxTLSVersion)
		tlsCfg.MaxVersion = o.MaxTLSVersion
	}
	if !o.NoTLS {
		srv.TLSConfig = tlsCfg
	} else {
		srv.AllowInsecureAuth = true
	}
	if o.RawLog && o.ImplicitTLS {
		// The raw log's wrapper hides the *tls.Conn from go-smtp, which
		// would then offer STARTTLS again and withhold AUTH.
		srv.TLSConfig = nil
		srv.AllowInsecureAuth = true
	}
	s.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if o.ImplicitTLS {
		ln = tls.NewListener(ln, tlsCfg)
	}
	s.ln = &faultListener{Listener: ln, s: s}
	s.Addr = ln.Addr().String()
	go srv.Serve(s.ln)
	return s, nil
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

type faultListener struct {
	net.Listener
	s *Server
}

func (l *faultListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.s.Fault() == Refuse {
			l.s.mu.Lock()
			l.s.refused++
			l.s.mu.Unlock()
			c.Close()
			continue
		}
		l.s.mu.Lock()
		l.s.conns++
		l.s.mu.Unlock()
		if l.s.o.RawLog {
			c = &rawConn{Conn: c, s: l.s}
		}
		return c, nil
	}
}

// rawConn records what is read from a connection (Options.RawLog). Under
// implicit TLS it wraps the *tls.Conn, so it sees plaintext.
type rawConn struct {
	net.Conn
	s  *Server
	mu sync.Mutex
	in []byte
}

func (c *rawConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.in = append(c.in, p[:n]...)
		c.mu.Unlock()
		c.s.mu.Lock()
		c.s.raw = append(c.s.raw, p[:n]...)
		c.s.mu.Unlock()
	}
	return n, err
}

func (c *rawConn) read() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.in
}

// RawInput returns every byte clients sent so far, as read (Options.RawLog).
func (s *Server) RawInput() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.raw...)
}

// Close stops the server.
func (s *Server) Close() error {
	s.SetFault(None)
	return s.srv.Close()
}

// SetFault switches the misbehaviour; None heals, and releases stalls.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if (s.fault == Stall || s.fault == StopReading) && f != s.fault {
		close(s.stall)
		s.stall = make(chan struct{})
	}
	s.fault = f
}

// SetDataDelay makes the server wait d after receiving a whole message
// before it answers the end of DATA, like a slow provider; 0 answers at
// once. It combines with any fault.
func (s *Server) SetDataDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Fault returns the current misbehaviour.
func (s *Server) Fault() Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fault
}

// SetTokens replaces the OAuth2 token check (Options.Tokens) for the
// connections that start AUTH from now on.
func (s *Server) SetTokens(check func(token string) (user string, ok bool)) {
	s.mu.Lock()
	s.o.Tokens = check
	s.mu.Unlock()
}

// Messages returns what was accepted so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Connections returns how many connections were accepted.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Refused returns how many connections Refuse closed unanswered.
func (s *Server) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// AuthFailures returns how many AUTH attempts failed.
func (s *Server) AuthFailures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authFail
}

// Reset forgets the messages received.
func (s *Server) Reset() {
	s.mu.Lock()
	s.msgs = nil
	s.mu.Unlock()
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{s: s, c: c}, nil
}

type session struct {
	s    *Server
	c    *smtp.Conn
	user string
	mech string
	from string
	to   []string
	// rawRcpt: how much of the connection was read at the last RCPT, where
	// the raw log of a BDAT message starts (Options.RawLog).
	rawRcpt int
}

var (
	errTemp     = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary local problem, try again later"}
	errPerm     = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Message refused by policy"}
	errRcpt     = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown"}
	errRcptTemp = &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "Mailbox busy, try again later"}
)

func (se *session) AuthMechanisms() []string { return se.s.o.Mechanisms }

func (se *session) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		want, ok := se.s.o.Users[user]
		if !ok || want != pass {
			se.s.mu.Lock()
			se.s.authFail++
			se.s.mu.Unlock()
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Username and Password not accepted"}
		}
		se.user, se.mech = user, mech
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, u, p string) error { return check(u, p) }), nil
	case sasl.Login:
		return loginauth.NewServer(check), nil
	case XOAUTH2, OAUTHBEARER:
		se.s.mu.Lock()
		tokens := se.s.o.Tokens
		se.s.mu.Unlock()
		if tokens == nil {
			break
		}
		return &bearerServer{mech: mech, check: func(user, token string) error {
			owner, ok := tokens(token)
			if !ok || !strings.EqualFold(owner, user) {
				se.s.mu.Lock()
				se.s.authFail++
				se.s.mu.Unlock()
				return errTokenRefused
			}
			se.user, se.mech = user, mech
			return nil
		}}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (se *session) Mail(from string, _ *smtp.MailOptions) error {
	if se.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	if se.s.Fault() == TempFail {
		return errTemp
	}
	se.from = from
	return nil
}

func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	switch f := se.s.Fault(); {
	case f == RejectSomeRcpt && strings.HasPrefix(to, "reject"):
		return errRcpt
	case f == TempFailSomeRcpt && strings.HasPrefix(to, "later"):
		return errRcptTemp
	}
	se.to = append(se.to, to)
	if rc, ok := se.c.Conn().(*rawConn); ok {
		se.rawRcpt = len(rc.read())
	}
	return nil
}

func (se *session) Data(r io.Reader) error {
	f := se.s.Fault()
	h := sha256.New()
	var keep []byte
	var w io.Writer = h
	var buf *growBuf
	if !se.s.o.HashOnly {
		buf = &growBuf{}
		w = io.MultiWriter(h, buf)
	}
	if f == StopReading {
		se.s.mu.Lock()
		ch, still := se.s.stall, se.s.fault == StopReading
		se.s.mu.Unlock()
		if still { // else healed since f was read
			<-ch
		}
		se.c.Close()
		return errors.New("stopped reading")
	}
	if f == DropMidData {
		io.CopyN(w, r, 100)
		se.c.Close()
		return errors.New("dropped")
	}
	// The client sends its body only after the 354 reply, so what the
	// connection has read so far ends with the DATA command.
	rc, _ := se.c.Conn().(*rawConn)
	var rawStart int
	if rc != nil {
		rawStart = len(rc.read())
	}
	n, err := io.Copy(w, r)
	if err != nil {
		return err
	}
	se.s.mu.Lock()
	delay := se.s.delay
	se.s.mu.Unlock()
	time.Sleep(delay)
	switch f {
	case PermFail:
		return errPerm
	case TempFailData:
		return errTemp
	case Stall:
		se.s.mu.Lock()
		ch := se.s.stall
		se.s.mu.Unlock()
		<-ch
		return errTemp
	}
	if buf != nil {
		keep = buf.b
	}
	m := Message{From: se.from, To: se.to, Data: keep, Size: n, User: se.user, Mechanism: se.mech}
	copy(m.SHA256[:], h.Sum(nil))
	if st, ok := se.c.TLSConnectionState(); ok {
		m.TLSVersion = tls.VersionName(st.Version)
	}
	_, bdat := r.(*io.PipeReader)
	m.Chunked = bdat
	if bdat && rc != nil {
		// go-smtp hands over a BDAT body once its first chunk is under
		// way, so the raw log starts after the last RCPT instead: exact
		// for a client that waits for the RCPT replies, as a relay does.
		rawStart = se.rawRcpt
	}
	if rc != nil {
		m.Raw = append([]byte(nil), rc.read()[rawStart:]...)
		if tc, ok := rc.Conn.(*tls.Conn); ok {
			m.TLSVersion = tls.VersionName(tc.ConnectionState().Version)
		}
	}
	se.s.mu.Lock()
	se.s.msgs = append(se.s.msgs, m)
	id := len(se.s.msgs)
	se.s.mu.Unlock()
	// Like a real provider, answer with a queue ID the client can quote.
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: fmt.Sprintf("Ok: queued as SIM%05d", id)}
}

type growBuf struct{ b []byte }

func (g *growBuf) Write(p []byte) (int, error) { g.b = append(g.b, p...); return len(p), nil }

func (se *session) Reset() { se.from, se.to = "", nil }

func (se *session) Logout() error { return nil }
