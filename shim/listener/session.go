package listener

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/crlf"
	"github.com/smtpshim/smtpshim/shim/loginauth"
	"github.com/smtpshim/smtpshim/shim/relay"
)

// NewSession implements smtp.Backend.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	ip := remoteIP(c.Conn())
	s.mu.Lock()
	s.sessions++
	s.mu.Unlock()
	return &session{s: s, c: c, cc: clientConnOf(c.Conn()), remote: c.Conn().RemoteAddr().String(), ip: ip}, nil
}

// session is one client connection.
type session struct {
	s       *Server
	c       *smtp.Conn
	cc      *clientConn // nil only for connections not from Serve
	remote  string
	ip      netip.Addr
	authed  bool
	authGen uint64 // the local_auth generation authed was set under
	// authFails counts failed AUTH on this connection (see checkLocal).
	authFails int

	ended  bool            // Logout ran
	acct   *config.Account // the sender's account, from MAIL FROM
	from   string
	d      *relay.Delivery // the transaction since MAIL FROM
	dataMu sync.Mutex      // held while a message body is received
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
	s.watchFrom("")
}

// watchFrom tells the reply watch the sender its log lines name: the
// transaction's, until the reply to its end is written.
func (s *session) watchFrom(from string) {
	if s.cc != nil && s.cc.watch != nil {
		s.cc.watch.setFrom(from)
	}
}

func (s *session) Logout() error {
	s.dataMu.Lock()
	defer s.dataMu.Unlock()
	s.abort()
	if !s.ended {
		s.ended = true
		s.s.sessionDone()
	}
	return nil
}

func (s *session) abort() {
	if s.d != nil {
		s.d.Abort()
		s.d = nil
	}
	s.acct, s.from = nil, ""
}

// limited reports whether the sender rate limits apply to this client.
func (s *session) limited(live *settings) bool { return !s.ip.IsLoopback() || live.rateLocal }

// errCutShort answers a command go-smtp parsed from a line the idle
// timeout cut short: it must not run (the client never finished it), and
// the connection is already closed.
var errCutShort = smtpErr(421, smtp.EnhancedCode{4, 4, 2}, "timed out")

func (s *session) cutShort() bool { return s.cc != nil && s.cc.timedOut.Load() }

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.dataMu.Lock()
	defer s.dataMu.Unlock()
	s.abort()
	s.watchFrom(from)
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
	so := relay.StartOptions{Client: s.remote, SyncWait: live.syncWait}
	if opts != nil {
		so.UTF8, so.Size = opts.UTF8, opts.Size
	}
	d, err := s.s.o.Relay.Start(acct, from, so)
	if err != nil {
		s.acct, s.from = nil, ""
		return err
	}
	s.d = d
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.cutShort() {
		return errCutShort
	}
	if s.acct == nil || s.d == nil {
		return errNoSender
	}
	if err := checkRecipient(to); err != nil {
		return err
	}
	if max := s.s.cur().maxRcpts; max > 0 && s.d.Rcpts() >= max {
		return smtpErr(452, smtp.EnhancedCode{4, 5, 3}, fmt.Sprintf("Maximum limit of %v recipients reached", max))
	}
	return s.d.AddRcpt(to)
}

func (s *session) Data(r io.Reader) error {
	s.dataMu.Lock()
	defer s.dataMu.Unlock()
	if s.acct == nil || s.d == nil {
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
	d := s.d
	s.d = nil // the delivery ends with this body, whatever happens
	defer s.abort()
	// go-smtp's ReadTimeout would bound the whole body; a large message on
	// a slow link must only be bounded by silence (idle, refreshed on each
	// network read by clientConn) and by data_timeout.
	start := time.Now()
	limit := s.s.cur().dataLimit
	if s.cc != nil {
		s.cc.dataEnd.Store(start.Add(limit).UnixNano())
		defer s.cc.dataEnd.Store(0)
	} else {
		s.c.Conn().SetReadDeadline(start.Add(limit))
	}
	var body *crlf.Reader
	if _, bdat := r.(*io.PipeReader); bdat {
		// BDAT chunks are not dot-stuffed: a leading dot is content.
		body = crlf.NewReader(r)
	} else {
		body = crlf.NewDataReader(r)
	}
	defer body.Release()
	rec, err := d.Body(body)
	var re *relay.ReadError
	switch {
	case errors.As(err, &re):
		return clientDataError(re.Err, s.s.srv.MaxLineLength)
	case err != nil:
		return err
	}
	return rec.Reply()
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
