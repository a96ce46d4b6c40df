package upstream

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-sasl"
)

// Mechanism names, spelled as they appear in the EHLO AUTH parameter.
const (
	// MechPlain is SASL PLAIN (RFC 4616).
	MechPlain = "PLAIN"
	// MechLogin is the non-standard but ubiquitous SASL LOGIN.
	MechLogin = "LOGIN"
	// MechCRAMMD5 is SASL CRAM-MD5 (RFC 2195).
	MechCRAMMD5 = "CRAM-MD5"
	// MechXOAUTH2 is Google's and Microsoft's XOAUTH2 (a bearer token).
	MechXOAUTH2 = "XOAUTH2"
	// MechOAuthBearer is SASL OAUTHBEARER (RFC 7628).
	MechOAuthBearer = "OAUTHBEARER"
)

// knownMechanisms is every mechanism name smtpshim knows, for parsing
// configured and advertised names.
var knownMechanisms = []string{MechPlain, MechLogin, MechCRAMMD5, MechXOAUTH2, MechOAuthBearer}

// PasswordMechanisms are the mechanisms a password can do, best first
// over TLS.
var PasswordMechanisms = []string{MechPlain, MechLogin, MechCRAMMD5}

// revealsSecret reports whether a mechanism sends the secret itself (or a
// bearer token that works as one), so that it comes last without TLS.
func revealsSecret(mech string) bool { return mech != MechCRAMMD5 }

// ErrNoAuth is returned by ChooseMechanism when the server advertises no AUTH
// mechanisms at all, so callers can tell "wrong port or server" apart from
// "no mechanism in common".
var ErrNoAuth = errors.New("the server does not offer SMTP AUTH")

// loginStep is what a LOGIN challenge asks for.
type loginStep int

const (
	loginUnknown loginStep = iota
	loginUsername
	loginPassword
)

// loginClient is a forgiving SASL LOGIN client. go-sasl's insists on the
// exact challenge "Password:" and sends the username as an initial
// response, which several real servers (and some appliances) reject.
type loginClient struct {
	username, password string
	challenges         int
}

// NewLoginClient returns a SASL LOGIN client that works with servers that
// prompt "Username:" first, and with ones that send any other or empty
// challenge text: it answers by challenge text when it is recognisable
// ("Username:", "User Name", "Password:", case-insensitive), otherwise by
// order (first challenge → username, second → password). It sends no initial
// response, because servers that expect a prompt first treat one as a
// protocol error. A third challenge is an error.
func NewLoginClient(username, password string) sasl.Client {
	return &loginClient{username: username, password: password}
}

// Start implements sasl.Client; it resets the step count so a client can be
// reused after a failed attempt.
func (c *loginClient) Start() (string, []byte, error) {
	c.challenges = 0
	return MechLogin, nil, nil
}

// Next implements sasl.Client.
func (c *loginClient) Next(challenge []byte) ([]byte, error) {
	c.challenges++
	if c.challenges > 2 {
		// The challenge text is deliberately left out: a hostile or broken
		// server could echo the password back in it.
		return nil, errors.New("sasl LOGIN: server sent a third challenge; only username and password are expected")
	}
	switch classifyLoginChallenge(challenge) {
	case loginUsername:
		return []byte(c.username), nil
	case loginPassword:
		return []byte(c.password), nil
	}
	if c.challenges == 1 {
		return []byte(c.username), nil
	}
	return []byte(c.password), nil
}

// classifyLoginChallenge recognises the prompt texts seen in the wild,
// including servers that base64-encode the prompt twice (the client has
// already removed one layer).
func classifyLoginChallenge(challenge []byte) loginStep {
	if step := classifyLoginText(string(challenge)); step != loginUnknown {
		return step
	}
	if dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(challenge))); err == nil {
		return classifyLoginText(string(dec))
	}
	return loginUnknown
}

func classifyLoginText(s string) loginStep {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimSuffix(s, ":")
	s = strings.ReplaceAll(s, " ", "")
	switch s {
	case "username", "user":
		return loginUsername
	case "password":
		return loginPassword
	}
	return loginUnknown
}

// cramMD5Client implements RFC 2195, which go-sasl lacks but older private
// servers still prefer because it keeps the password off the wire.
type cramMD5Client struct {
	username, password string
	answered           bool
}

// NewCRAMMD5Client returns a SASL CRAM-MD5 client (RFC 2195): the response is
// the username, a space, and the lowercase hex HMAC-MD5 of the server's
// challenge keyed with the password.
func NewCRAMMD5Client(username, password string) sasl.Client {
	return &cramMD5Client{username: username, password: password}
}

// Start implements sasl.Client; CRAM-MD5 has no initial response because the
// server must speak first.
func (c *cramMD5Client) Start() (string, []byte, error) {
	c.answered = false
	return MechCRAMMD5, nil, nil
}

// Next implements sasl.Client.
func (c *cramMD5Client) Next(challenge []byte) ([]byte, error) {
	if c.answered {
		return nil, errors.New("sasl CRAM-MD5: server sent a second challenge; the exchange has only one")
	}
	if len(challenge) == 0 {
		// An HMAC over nothing would be replayable, so refuse rather than
		// answer a server that is not really doing CRAM-MD5.
		return nil, errors.New("sasl CRAM-MD5: server sent an empty challenge")
	}
	c.answered = true
	mac := hmac.New(md5.New, []byte(c.password))
	mac.Write(challenge)
	return []byte(c.username + " " + hex.EncodeToString(mac.Sum(nil))), nil
}

// normalizeMechanism maps a configured or advertised name onto one of the
// Mech constants, or "" when smtpshim does not know it.
func normalizeMechanism(name string) string {
	name = strings.ToUpper(strings.TrimSpace(name))
	for _, m := range knownMechanisms {
		if name == m {
			return m
		}
	}
	return ""
}

// ChooseMechanism picks the password AUTH mechanism to use from what the
// server advertised; see ChooseMechanismFor.
func ChooseMechanism(advertised string, tls bool, override string) (string, error) {
	return ChooseMechanismFor(advertised, tls, override, PasswordMechanisms)
}

// ChooseMechanismFor picks the AUTH mechanism to use from what the server
// advertised (the EHLO AUTH parameter, space separated, any case) and what
// the account's credential can do (supported, best first).
//
// override is the account's configured mechanism ("" = automatic). If it is
// set but not advertised the error names what the server offers, so the
// user can fix the setting.
//
// Over TLS the credential's own order wins. Without TLS (only possible for
// an account explicitly marked insecure) the mechanisms that do not reveal
// the secret (CRAM-MD5) come first. An empty advertised list yields
// ErrNoAuth.
func ChooseMechanismFor(advertised string, tls bool, override string, supported []string) (string, error) {
	offered := strings.Fields(strings.ToUpper(advertised))
	// Some old servers advertise "AUTH=LOGIN PLAIN" and callers may pass the
	// raw text; the prefix is not part of any mechanism name.
	for i, m := range offered {
		offered[i] = strings.TrimPrefix(m, "AUTH=")
	}
	has := make(map[string]bool, len(offered))
	for _, m := range offered {
		has[m] = true
	}
	offeredText := strings.Join(offered, " ")
	can := func(m string) bool {
		for _, s := range supported {
			if s == m {
				return true
			}
		}
		return false
	}
	names := listNames(supported)

	if strings.TrimSpace(override) != "" {
		want := normalizeMechanism(override)
		if want == "" || !can(want) {
			return "", fmt.Errorf("auth mechanism %q is not supported for this account: use %s", strings.TrimSpace(override), strings.ToLower(strings.ReplaceAll(names, " and ", " or ")))
		}
		if len(offered) == 0 {
			return "", fmt.Errorf("auth is set to %s, but %w", strings.ToLower(want), ErrNoAuth)
		}
		if !has[want] {
			return "", fmt.Errorf("auth is set to %s, but the server only offers %s", strings.ToLower(want), offeredText)
		}
		return want, nil
	}

	if len(offered) == 0 {
		return "", ErrNoAuth
	}
	order := supported
	if !tls {
		order = make([]string, 0, len(supported))
		for _, m := range supported {
			if !revealsSecret(m) {
				order = append(order, m)
			}
		}
		for _, m := range supported {
			if revealsSecret(m) {
				order = append(order, m)
			}
		}
	}
	for _, m := range order {
		if has[m] {
			return m, nil
		}
	}
	return "", fmt.Errorf("the server offers AUTH %s, but smtpshim supports %s for this account", offeredText, names)
}

// listNames joins mechanism names as a person writes a list: "A, B and C".
func listNames(names []string) string {
	switch len(names) {
	case 0:
		return "no mechanism"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// NewSASLClient builds the client for a mechanism returned by
// ChooseMechanism (any case is accepted).
func NewSASLClient(mech, username, password string) (sasl.Client, error) {
	switch normalizeMechanism(mech) {
	case MechPlain:
		// An empty authorization identity means "act as username", which
		// is what every submission server expects.
		return sasl.NewPlainClient("", username, password), nil
	case MechLogin:
		return NewLoginClient(username, password), nil
	case MechCRAMMD5:
		return NewCRAMMD5Client(username, password), nil
	}
	return nil, fmt.Errorf("auth mechanism %q is not supported with a password: smtpshim supports PLAIN, LOGIN and CRAM-MD5", mech)
}
