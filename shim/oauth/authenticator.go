package oauth

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/emersion/go-sasl"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/secrets"
	"github.com/smtpshim/smtpshim/shim/upstream"
)

// Authenticator gives SMTP AUTH clients for one OAuth2 account. It
// satisfies the upstream package's credential interface: Mechanisms,
// Client and Refused.
type Authenticator struct {
	s      *Session
	user   string
	server string
}

// Mechanisms lists the mechanisms the provider takes, best first.
func (a *Authenticator) Mechanisms() []string { return slices.Clone(a.s.p.Mechanisms) }

// Client returns a SASL client for mech carrying a valid access token. ctx
// bounds getting the token; its errors are *CredentialError.
func (a *Authenticator) Client(ctx context.Context, mech string) (sasl.Client, error) {
	tok, err := a.s.AccessToken(ctx)
	if err != nil {
		return nil, err
	}
	return NewSASLClient(mech, a.user, tok, a.server)
}

// Refused drops the cached access token after the server refused it.
func (a *Authenticator) Refused() { a.s.Refused() }

// Renewable reports, after Refused, whether a new token is worth a try
// (upstream.Renewer): yes once, no when the refused token was itself the
// replacement of a refused one.
func (a *Authenticator) Renewable() bool { return a.s.renewable() }

// Session returns the account's token session.
func (a *Authenticator) Session() *Session { return a.s }

// Manager hands out authenticators, one token session per account, so
// that every connection of an account shares one access token and one
// refresh, also across config reloads.
type Manager struct {
	store secrets.Store
	o     Options

	mu       sync.Mutex
	sessions map[string]*managed
}

type managed struct {
	s   *Session
	sig string // what the session was built from; a change rebuilds it
}

// NewManager returns a manager that keeps refresh tokens in store.
func NewManager(store secrets.Store, o Options) *Manager {
	return &Manager{store: store, o: o, sessions: map[string]*managed{}}
}

// Authenticator returns the authenticator for an account with oauth set.
func (m *Manager) Authenticator(c *config.Config, a *config.Account) (*Authenticator, error) {
	s, err := m.Session(c, a)
	if err != nil {
		return nil, err
	}
	return &Authenticator{s: s, user: a.Login(), server: a.Server}, nil
}

// Session returns the account's token session, creating it on first use.
func (m *Manager) Session(c *config.Config, a *config.Account) (*Session, error) {
	p, err := Resolve(c, a.OAuth)
	if err != nil {
		return nil, err
	}
	sig := strings.Join(append([]string{p.Name, p.TokenURL, p.ClientID, p.ClientSecret, p.CAFile}, p.Scopes...), "\x00")
	m.mu.Lock()
	defer m.mu.Unlock()
	if ms, ok := m.sessions[a.Key()]; ok && ms.sig == sig {
		return ms.s, nil
	}
	s, err := NewSession(p, a.Key(), m.store, m.o)
	if err != nil {
		return nil, err
	}
	m.sessions[a.Key()] = &managed{s: s, sig: sig}
	return s, nil
}

// SignedIn tells the account's session (if any) that a new refresh token
// was stored, so held mail can go at the next attempt.
func (m *Manager) SignedIn(key string) {
	m.mu.Lock()
	ms := m.sessions[strings.ToLower(key)]
	m.mu.Unlock()
	if ms != nil {
		ms.s.SignedIn()
	}
}

// What the upstream package finds by type assertion.
var (
	_ upstream.Authenticator = (*Authenticator)(nil)
	_ upstream.Renewer       = (*Authenticator)(nil)
	_ upstream.Scrubber      = (*xoauth2Client)(nil)
	_ upstream.Detailer      = (*oauthBearerClient)(nil)
	_ upstream.Scrubber      = (*oauthBearerClient)(nil)
	_ upstream.Detailer      = (*xoauth2Client)(nil)
)
