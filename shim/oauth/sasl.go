package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/upstream"
)

// ServerError is the JSON a server sends in a 334 challenge when it refuses
// a token (RFC 7628 section 3.2.2; Google and Microsoft send the same for
// XOAUTH2). The SMTP reply that follows (535, 454) is the real verdict;
// this only says why.
type ServerError struct {
	Status  string `json:"status"`
	Schemes string `json:"schemes,omitempty"`
	Scope   string `json:"scope,omitempty"`
}

// String is a compact, secret-free form for logs and hints.
func (e *ServerError) String() string {
	b, _ := json.Marshal(e)
	return string(b)
}

// challenge records the JSON error a server sent, so it can be attached to
// the SMTP reply that ends the exchange.
type challenge struct {
	mu  sync.Mutex
	err *ServerError
}

func (c *challenge) record(raw []byte) {
	var se ServerError
	if json.Unmarshal(raw, &se) != nil {
		// Not JSON: keep only that there was a challenge, not its bytes,
		// which a broken server might have filled with our own token.
		se = ServerError{Status: "unreadable error challenge"}
	}
	c.mu.Lock()
	c.err = &se
	c.mu.Unlock()
}

// ServerError returns the recorded challenge, if any.
func (c *challenge) ServerError() *ServerError {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

type xoauth2Client struct {
	challenge
	user, token string
	answered    bool
}

// NewXOAUTH2Client returns a SASL XOAUTH2 client (Google's and Microsoft's
// mechanism, a precursor of OAUTHBEARER). The initial response is
// "user=USER^Aauth=Bearer TOKEN^A^A". A server that refuses the token sends
// a 334 with a base64 JSON error; the client answers with an empty line, as
// the mechanism requires, and the server then sends its final 535 or 454.
func NewXOAUTH2Client(user, token string) sasl.Client {
	return &xoauth2Client{user: user, token: token}
}

func (c *xoauth2Client) Start() (string, []byte, error) {
	c.answered = false
	return upstream.MechXOAUTH2, []byte("user=" + c.user + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

func (c *xoauth2Client) Next(ch []byte) ([]byte, error) {
	if c.answered {
		return nil, errors.New("sasl XOAUTH2: the server sent a second challenge")
	}
	c.answered = true
	c.record(ch)
	// An empty (but non-nil) answer makes go-smtp send an empty line.
	return []byte{}, nil
}

type oauthBearerClient struct {
	challenge
	inner    sasl.Client
	token    string
	answered bool
}

// NewOAuthBearerClient returns an OAUTHBEARER client (RFC 7628). go-sasl
// builds the initial response; this wrapper answers an error challenge with
// %x01 as section 3.2.3 requires, instead of aborting the exchange, so the
// server's final reply (with its code) reaches the caller.
func NewOAuthBearerClient(user, token, server string) sasl.Client {
	opts := &sasl.OAuthBearerOptions{Username: user, Token: token}
	if host, port, err := net.SplitHostPort(server); err == nil {
		opts.Host = host
		opts.Port, _ = strconv.Atoi(port)
	}
	return &oauthBearerClient{inner: sasl.NewOAuthBearerClient(opts), token: token}
}

func (c *oauthBearerClient) Start() (string, []byte, error) {
	c.answered = false
	return c.inner.Start()
}

func (c *oauthBearerClient) Next(ch []byte) ([]byte, error) {
	if c.answered {
		return nil, errors.New("sasl OAUTHBEARER: the server sent a second challenge")
	}
	c.answered = true
	c.record(ch)
	return []byte{0x01}, nil
}

// NewSASLClient builds the client for mech (XOAUTH2 or OAUTHBEARER).
func NewSASLClient(mech, user, token, server string) (sasl.Client, error) {
	switch strings.ToUpper(mech) {
	case upstream.MechXOAUTH2:
		return NewXOAUTH2Client(user, token), nil
	case upstream.MechOAuthBearer:
		return NewOAuthBearerClient(user, token, server), nil
	}
	return nil, fmt.Errorf("mechanism %q is not an OAuth2 mechanism", mech)
}

// ChallengeOf returns the JSON error a server sent to c during AUTH, if c is
// one of this package's clients and the server sent one.
func ChallengeOf(c sasl.Client) *ServerError {
	if r, ok := c.(interface{ ServerError() *ServerError }); ok {
		return r.ServerError()
	}
	return nil
}

// AuthError is the server's refusal of a token, with the JSON error it
// sent first. It unwraps to the server's reply (*smtp.SMTPError).
type AuthError struct {
	Err    error
	Detail *ServerError
}

func (e *AuthError) Error() string {
	if e.Detail == nil {
		return e.Err.Error()
	}
	return e.Err.Error() + " (the server's OAuth2 error: " + e.Detail.String() + ")"
}

func (e *AuthError) Unwrap() error { return e.Err }

// WrapAuthError attaches c's recorded challenge to err from an AUTH
// exchange; err comes back unchanged when there is nothing to add.
func WrapAuthError(c sasl.Client, err error) error {
	if err == nil {
		return nil
	}
	if d := ChallengeOf(c); d != nil {
		return &AuthError{Err: err, Detail: d}
	}
	return err
}

// Detail attaches the recorded challenge to err (upstream.Detailer).
func (c *challenge) Detail(err error) error {
	if d := c.ServerError(); d != nil && err != nil {
		return &AuthError{Err: err, Detail: d}
	}
	return err
}

// Scrub removes the access token from an error a server may have echoed it
// into, before the error is logged or shown.
func (c *xoauth2Client) Scrub(err error) error { return scrubToken(err, c.token) }

// Scrub removes the access token from an error; see xoauth2Client.Scrub.
func (c *oauthBearerClient) Scrub(err error) error { return scrubToken(err, c.token) }

func scrubToken(err error, token string) error {
	if err == nil || token == "" || !strings.Contains(err.Error(), token) {
		return err
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		c := *se
		c.Message = strings.ReplaceAll(c.Message, token, "***")
		return &c
	}
	return errors.New(strings.ReplaceAll(err.Error(), token, "***"))
}
