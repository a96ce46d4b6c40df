// Package upstream submits mail to an account's provider: verified TLS
// (STARTTLS or implicit), SMTP AUTH, and a small pool of reusable,
// authenticated connections per account.
package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/secrets"
	"github.com/smtpshim/smtpshim/shim/trace"
)

// Dialer opens network connections; tests swap it.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Options configures connections for every account.
type Options struct {
	// Hostname is the EHLO name.
	Hostname string
	// Secrets supplies passwords for accounts without a password_command.
	Secrets secrets.Store
	// Authenticator builds an account's credential; nil means a password
	// from the account's password_command or Secrets.
	Authenticator func(*config.Account) (Authenticator, error)
	// Dialer opens TCP connections; nil means a net.Dialer.
	Dialer Dialer
	// ConnectTimeout bounds TCP connect, TLS handshake, EHLO and AUTH.
	ConnectTimeout time.Duration
	// CommandTimeout bounds each command's reply.
	CommandTimeout time.Duration
	// SubmissionTimeout bounds the reply to the end of DATA.
	SubmissionTimeout time.Duration
	// IdleTimeout closes a pooled connection unused for this long.
	IdleTimeout time.Duration
	// MaxReuse closes a connection after this many messages.
	MaxReuse int
	// KeychainTimeout bounds a password_command.
	KeychainTimeout time.Duration
	// Logger receives connection events; never secrets.
	Logger *slog.Logger
	// Trace, when set, receives protocol traces with credentials masked.
	Trace io.Writer
	// TLSConfig, if set, is cloned as the base of every upstream TLS
	// config (tests use it for RootCAs).
	TLSConfig *tls.Config
}

func (o *Options) withDefaults() Options {
	v := *o
	if v.Dialer == nil {
		v.Dialer = &net.Dialer{KeepAlive: 30 * time.Second}
	}
	if v.Hostname == "" {
		v.Hostname = "localhost"
	}
	if v.ConnectTimeout <= 0 {
		v.ConnectTimeout = 20 * time.Second
	}
	if v.CommandTimeout <= 0 {
		v.CommandTimeout = 2 * time.Minute
	}
	if v.SubmissionTimeout <= 0 {
		v.SubmissionTimeout = 10 * time.Minute
	}
	if v.IdleTimeout <= 0 {
		v.IdleTimeout = 60 * time.Second
	}
	if v.MaxReuse <= 0 {
		v.MaxReuse = 10000
	}
	if v.KeychainTimeout <= 0 {
		v.KeychainTimeout = config.DefaultKeychainTimeout
	}
	if v.Logger == nil {
		v.Logger = slog.New(slog.DiscardHandler)
	}
	if v.Authenticator == nil {
		store, timeout := v.Secrets, v.KeychainTimeout
		v.Authenticator = func(a *config.Account) (Authenticator, error) {
			return NewPasswordAuth(a, store, timeout), nil
		}
	}
	return v
}

// Step names the stage of a connection attempt that failed.
type Step string

// Connection stages.
const (
	StepConnect  Step = "connect"
	StepTLS      Step = "tls"
	StepGreeting Step = "greeting"
	StepStartTLS Step = "starttls"
	// StepCredential is getting the credential: the keychain is locked or
	// missing, the password_command failed, a token endpoint is down. It
	// says nothing about the server.
	StepCredential Step = "credential"
	StepAuth       Step = "auth"
)

// DialError is a failed connection attempt, with the stage it failed in.
type DialError struct {
	Server string
	Step   Step
	// Mechanism is the AUTH mechanism tried, at StepAuth and
	// StepCredential.
	Mechanism string
	Err       error
}

// Error says which server and stage failed.
func (e *DialError) Error() string {
	switch e.Step {
	case StepCredential:
		return e.Err.Error()
	case StepAuth:
		return fmt.Sprintf("%s: authentication failed: %v", e.Server, e.Err)
	case StepTLS:
		return fmt.Sprintf("%s: TLS handshake failed: %s", e.Server, strings.TrimPrefix(e.Err.Error(), "tls: "))
	}
	return fmt.Sprintf("%s: %s: %v", e.Server, e.Step, e.Err)
}

// Unwrap returns the underlying error.
func (e *DialError) Unwrap() error { return e.Err }

// Info describes an established upstream connection.
type Info struct {
	Server     string
	TLSVersion string // "" without TLS
	Mechanism  string // AUTH mechanism used
	Username   string
}

// Conn is one authenticated upstream connection.
type Conn struct {
	c        *smtp.Client
	raw      net.Conn
	info     Info
	lastUsed time.Time
	uses     int
}

// Info returns what was negotiated.
func (c *Conn) Info() Info { return c.info }

// Client returns the underlying SMTP client.
func (c *Conn) Client() *smtp.Client { return c.c }

// Close ends the session politely when it can, and always closes.
func (c *Conn) Close() error {
	c.raw.SetDeadline(time.Now().Add(2 * time.Second))
	c.c.Quit()
	return c.c.Close()
}

func (c *Conn) abort() { c.c.Close() }

// smtputf8 reports whether the server takes internationalized addresses.
func (c *Conn) smtputf8() bool {
	ok, _ := c.c.Extension("SMTPUTF8")
	return ok
}

// ErrNoTLS says the server offered no STARTTLS, so credentials were
// withheld.
var ErrNoTLS = errors.New("the server does not offer STARTTLS, so smtpshim will not send the password over an unencrypted connection (if this is really a server on a trusted network, set security = \"insecure\")")

// ErrCAFile marks an account's ca_file that cannot be read or holds no
// certificate. The error around it names the file: that is for the log
// and the user, not for a mail client.
var ErrCAFile = errors.New("the account's ca_file cannot be used")

// TLSConfigFor builds the verified TLS config for an account.
func TLSConfigFor(a *config.Account, base *tls.Config) (*tls.Config, error) {
	var cfg *tls.Config
	if base != nil {
		cfg = base.Clone()
	} else {
		cfg = &tls.Config{}
	}
	cfg.ServerName = a.Host()
	// The upstream carries the user's password: never below TLS 1.2.
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	cfg.InsecureSkipVerify = false
	if a.CAFile != "" {
		pem, err := os.ReadFile(a.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCAFile, err)
		}
		pool := cfg.RootCAs
		if pool == nil {
			pool, err = x509.SystemCertPool()
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
		} else {
			pool = pool.Clone()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: %s has no PEM certificates", ErrCAFile, a.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// Dial connects to the account's server, secures the connection as
// configured, and authenticates with the credential o.Authenticator builds.
func Dial(ctx context.Context, a *config.Account, o Options) (*Conn, error) {
	o = o.withDefaults()
	auth, err := o.Authenticator(a)
	if err != nil {
		return nil, &DialError{Server: a.Server, Step: StepCredential, Err: err}
	}
	return dial(ctx, a, auth, o)
}

// ErrCredentialHeld is returned without dialing while the provider's last
// answer to the account's credential was a refusal: trying the same
// credential again would only be refused again (and some providers lock
// an account after a few tries). A reload with a new credential lifts it.
var ErrCredentialHeld = errors.New("the provider refused this account's credential; its mail is held until the credential is updated")

func dial(ctx context.Context, a *config.Account, auth Authenticator, o Options) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	defer cancel()
	mode := a.SecurityMode()
	fail := func(step Step, err error) error {
		if isTLSError(err) {
			// After STARTTLS the handshake happens on the first EHLO.
			step = StepTLS
		}
		return &DialError{Server: a.Server, Step: step, Err: err}
	}

	tlsCfg, err := TLSConfigFor(a, o.TLSConfig)
	if err != nil {
		return nil, fail(StepTLS, err)
	}
	tcp, err := o.Dialer.DialContext(ctx, "tcp", a.Server)
	if err != nil {
		return nil, fail(StepConnect, err)
	}
	raw := net.Conn(newCoalescingConn(tcp))
	ok := false
	defer func() {
		if !ok {
			raw.Close()
		}
	}()
	// One deadline covers the whole setup; commands get their own later.
	if dl, has := ctx.Deadline(); has {
		raw.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Now()) })
	defer stop()

	conn := raw
	if mode == config.SecurityTLS {
		tc := tls.Client(raw, tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fail(StepTLS, err)
		}
		conn = tc
	}
	var c *smtp.Client
	if mode == config.SecurityStartTLS {
		// go-smtp's EHLO before STARTTLS says "localhost"; the real name
		// goes in the EHLO after it, where no one on the path can read it.
		c, err = smtp.NewClientStartTLS(conn, tlsCfg)
		if err != nil {
			// go-smtp has no typed error for a server without STARTTLS
			// (and no exported StartTLS to check the extension first), so
			// its text is the only way to know.
			if strings.Contains(err.Error(), "doesn't support STARTTLS") {
				return nil, fail(StepStartTLS, ErrNoTLS)
			}
			return nil, fail(StepStartTLS, err)
		}
	} else {
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = o.CommandTimeout
	c.SubmissionTimeout = o.SubmissionTimeout
	if o.Trace != nil {
		c.DebugWriter = trace.New(o.Trace, "upstream "+a.Server+": ")
	}
	if err := c.Hello(o.Hostname); err != nil {
		return nil, fail(StepGreeting, err)
	}
	info := Info{Server: a.Server, Username: a.Login()}
	if st, isTLS := c.TLSConnectionState(); isTLS {
		info.TLSVersion = tls.VersionName(st.Version)
	}
	_, advertised := c.Extension("AUTH")
	mech, err := ChooseMechanismFor(advertised, info.TLSVersion != "", a.Auth, auth.Mechanisms())
	if err != nil {
		return nil, fail(StepAuth, err)
	}
	for attempt := 0; ; attempt++ {
		sc, err := auth.Client(ctx, mech)
		if err != nil {
			return nil, &DialError{Server: a.Server, Step: StepCredential, Mechanism: mech, Err: err}
		}
		err = c.Auth(sc)
		if err == nil {
			break
		}
		if s, ok := sc.(Scrubber); ok {
			err = s.Scrub(err)
		}
		if d, ok := sc.(Detailer); ok {
			err = d.Detail(err)
		}
		if attempt > 0 {
			// Said in words, so that the hint can tell a refused grant
			// (SMTP AUTH off, a missing permission) from an expired token.
			err = fmt.Errorf("the server refused a newly issued token too: %w", err)
		}
		de := &DialError{Server: a.Server, Step: StepAuth, Mechanism: mech, Err: err}
		if isTLSError(err) {
			de.Step = StepTLS
		}
		if Classify(de) != CredentialRefused {
			return nil, de
		}
		auth.Refused()
		// A bearer token can be revoked or expire early: a credential
		// that can be renewed gets one new try on the same connection
		// (a second AUTH after a failed one is allowed). If the new one
		// is refused too, or cannot be had, the account needs a person.
		if r, ok := auth.(Renewer); !ok || attempt > 0 || !r.Renewable() {
			return nil, de
		}
	}
	info.Mechanism = mech
	raw.SetDeadline(time.Time{})
	ok = true
	return &Conn{c: c, raw: raw, info: info, lastUsed: time.Now()}, nil
}

func isTLSError(err error) bool {
	var (
		cv  *tls.CertificateVerificationError
		rh  tls.RecordHeaderError
		al  tls.AlertError
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		inv x509.CertificateInvalidError
	)
	if errors.As(err, &cv) || errors.As(err, &rh) || errors.As(err, &al) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &inv) {
		return true
	}
	// A TLS alert from the server, such as "protocol version" from one
	// that stops at TLS 1.1, arrives as a *net.OpError "remote error"
	// (tls.AlertError is only for QUIC); crypto/tls's own handshake
	// failures, such as a server choosing TLS 1.1, start with "tls: ":
	// crypto/tls has no typed error for them, so the text is all there is.
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" {
		return true
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if strings.HasPrefix(e.Error(), "tls: ") {
			return true
		}
	}
	return false
}

// scrub makes sure an error text never carries the password, whatever a
// server echoes back.
func scrub(err error, pw string) error {
	if pw == "" || err == nil || !strings.Contains(err.Error(), pw) {
		return err
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		c := *se
		c.Message = strings.ReplaceAll(c.Message, pw, "***")
		return &c
	}
	return errors.New(strings.ReplaceAll(err.Error(), pw, "***"))
}

// SMTPError returns the upstream's SMTP reply inside err, if any.
func SMTPError(err error) (*smtp.SMTPError, bool) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se, true
	}
	return nil, false
}

// IsCredentialMissing reports whether err says no password is stored.
func IsCredentialMissing(err error) bool {
	return errors.Is(err, secrets.ErrNotFound)
}
