package oauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/smtpshim/smtpshim/shim/secrets"
)

// RefreshMargin is how long before its expiry an access token is replaced,
// so that a token never expires between AUTH and the end of a long DATA.
const RefreshMargin = 5 * time.Minute

// Options tunes token handling; the zero value is right outside tests.
type Options struct {
	// HTTPClient talks to token endpoints; nil means a client with a
	// 30-second timeout that trusts the provider's ca_file too.
	HTTPClient *http.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// KeychainTimeout bounds each keychain call; 0 means 10 seconds.
	KeychainTimeout time.Duration
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// Session keeps one account signed in: it reads the refresh token from the
// keychain when it needs it, keeps the access token in memory, refreshes it
// shortly before it expires (one refresh, however many sends wait for it),
// and saves a rotated refresh token before it uses the new access token.
type Session struct {
	p     *Provider
	key   string // the account's keychain key
	store secrets.Store
	o     Options
	hc    *http.Client

	sem chan struct{} // held while refreshing: one refresh at a time

	mu     sync.Mutex
	access *oauth2.Token
	// replacing says the next token replaces one the server refused;
	// replacement says the current token is such a one. A refused
	// replacement is not an expiry but a refusal of the grant itself (SMTP
	// AUTH off for the mailbox, a missing scope, a revoked consent).
	replacing, replacement bool
	pending                string // a rotated refresh token not yet saved
	// refused is the refresh token the provider (or the server, for a
	// fresh access token) refused, with why; nothing is retried with it.
	refused    string
	refusedErr error
	refreshes  int
}

// NewSession returns a session for the account whose keychain key is key.
func NewSession(p *Provider, key string, store secrets.Store, o Options) (*Session, error) {
	hc := o.HTTPClient
	if hc == nil {
		var err error
		if hc, err = httpClientFor(p); err != nil {
			return nil, err
		}
	}
	if o.KeychainTimeout <= 0 {
		o.KeychainTimeout = 10 * time.Second
	}
	return &Session{p: p, key: key, store: store, o: o, hc: hc, sem: make(chan struct{}, 1)}, nil
}

// httpClientFor returns an HTTP client for a provider, trusting its
// ca_file in addition to the system's roots.
func httpClientFor(p *Provider) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if p.CAFile != "" {
		pem, err := os.ReadFile(p.CAFile)
		if err != nil {
			return nil, fmt.Errorf("oauth_provider %s: ca_file: %w", p.Name, err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("oauth_provider %s: ca_file %s: no PEM certificates found", p.Name, p.CAFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

func (p *Provider) oauth2Config(redirect string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     p.ClientID,
		ClientSecret: p.ClientSecret,
		Endpoint: oauth2.Endpoint{
			AuthURL: p.AuthURL, TokenURL: p.TokenURL, DeviceAuthURL: p.DeviceURL,
			// Form parameters work with every provider, and with no
			// secret they are what public clients must send.
			AuthStyle: oauth2.AuthStyleInParams,
		},
		RedirectURL: redirect,
		Scopes:      p.Scopes,
	}
}

// Refreshes counts the calls made to the token endpoint to refresh.
func (s *Session) Refreshes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshes
}

// valid returns the cached access token when it has more than the margin
// left.
func (s *Session) valid() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.access == nil || s.pending != "" {
		return "", false
	}
	if !s.access.Expiry.IsZero() && !s.o.now().Add(RefreshMargin).Before(s.access.Expiry) {
		return "", false
	}
	return s.access.AccessToken, true
}

// AccessToken returns an access token with some life left, refreshing it
// when needed. Errors are *CredentialError: ErrSignInNeeded or
// ErrTokenUnavailable. ctx bounds the keychain and the token endpoint.
func (s *Session) AccessToken(ctx context.Context) (string, error) {
	if tok, ok := s.valid(); ok {
		return tok, nil
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return "", &CredentialError{Account: s.key, Kind: ErrTokenUnavailable, Reason: "timed out waiting for the access token to be refreshed", Err: ctx.Err()}
	}
	defer func() { <-s.sem }()
	// Whoever refreshed while this call waited has done the work.
	if tok, ok := s.valid(); ok {
		return tok, nil
	}
	return s.refresh(ctx)
}

// refresh runs with s.sem held.
func (s *Session) refresh(ctx context.Context) (string, error) {
	s.mu.Lock()
	pending := s.pending
	s.mu.Unlock()
	if pending != "" {
		// A rotated token the keychain refused to take: save it first;
		// the old one may already be dead at the provider.
		if err := s.save(ctx, pending); err != nil {
			return "", err
		}
		s.mu.Lock()
		s.pending = ""
		tok := s.access
		s.mu.Unlock()
		if tok != nil && (tok.Expiry.IsZero() || s.o.now().Add(RefreshMargin).Before(tok.Expiry)) {
			return tok.AccessToken, nil
		}
	}
	rt, err := s.load(ctx)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	if s.refused != "" && rt == s.refused {
		err := s.refusedErr
		s.mu.Unlock()
		return "", err
	}
	s.refused, s.refusedErr = "", nil
	s.refreshes++
	s.mu.Unlock()

	hctx := context.WithValue(ctx, oauth2.HTTPClient, s.hc)
	tok, err := s.p.oauth2Config("").TokenSource(hctx, &oauth2.Token{RefreshToken: rt}).Token()
	if err != nil {
		cerr := classifyTokenError(s.key, err)
		if IsSignInNeeded(cerr) {
			s.mu.Lock()
			s.refused, s.refusedErr, s.access = rt, cerr, nil
			s.mu.Unlock()
		}
		return "", cerr
	}
	if tok.AccessToken == "" {
		return "", &CredentialError{Account: s.key, Kind: ErrTokenUnavailable, Reason: "the provider's token endpoint returned no access token"}
	}
	// The expiry is counted on the session's own clock from expires_in,
	// not from oauth2's wall-clock Expiry, so tests can move time.
	now := s.o.now()
	tok.Expiry = time.Time{}
	if tok.ExpiresIn > 0 {
		tok.Expiry = now.Add(time.Duration(tok.ExpiresIn) * time.Second)
	}
	s.mu.Lock()
	s.access = tok
	s.replacement, s.replacing = s.replacing, false
	s.mu.Unlock()
	if tok.RefreshToken != "" && tok.RefreshToken != rt {
		// Rotation: the provider may already have retired rt, so the new
		// token must be in the keychain before anything relies on it.
		if err := s.save(ctx, tok.RefreshToken); err != nil {
			s.mu.Lock()
			s.pending = tok.RefreshToken
			s.mu.Unlock()
			return "", err
		}
	}
	return tok.AccessToken, nil
}

func (s *Session) load(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.o.KeychainTimeout)
	defer cancel()
	rt, err := s.store.Get(ctx, s.key)
	switch {
	case errors.Is(err, secrets.ErrNotFound):
		return "", &CredentialError{Account: s.key, Kind: ErrSignInNeeded, Reason: "the account has not been signed in to " + s.p.Title + " yet (no refresh token in the keychain)"}
	case err != nil:
		return "", &CredentialError{Account: s.key, Kind: ErrTokenUnavailable, Reason: "the keychain did not give the refresh token", Err: err}
	case rt == "":
		return "", &CredentialError{Account: s.key, Kind: ErrSignInNeeded, Reason: "the keychain holds an empty refresh token"}
	}
	return rt, nil
}

func (s *Session) save(ctx context.Context, rt string) error {
	ctx, cancel := context.WithTimeout(ctx, s.o.KeychainTimeout)
	defer cancel()
	if err := s.store.Set(ctx, s.key, rt); err != nil {
		return &CredentialError{Account: s.key, Kind: ErrTokenUnavailable, Reason: "the provider issued a new refresh token, but the keychain would not store it (smtpshim keeps it in memory and tries again)", Err: err}
	}
	return nil
}

// Refused tells the session that the server refused its access token. The
// token is dropped so the next send refreshes. If the token was itself the
// replacement for a refused one, a new one will not fare better: the grant
// is refused, and the session asks for a sign-in (until the keychain holds
// a different refresh token, which `smtpshim account login` puts there).
func (s *Session) Refused() {
	s.mu.Lock()
	fresh := s.access != nil && s.replacement
	s.access, s.replacing, s.replacement = nil, !fresh, false
	s.mu.Unlock()
	if !fresh {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.o.KeychainTimeout)
	defer cancel()
	rt, err := s.store.Get(ctx, s.key)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.refused = rt
	s.refusedErr = &CredentialError{Account: s.key, Kind: ErrSignInNeeded, Reason: "the mail server refused an access token " + s.p.Title + " had just issued"}
	s.mu.Unlock()
}

// renewable reports whether the next token replaces a refused one (and so
// may succeed), rather than the grant itself having been refused.
func (s *Session) renewable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replacing && s.refused == ""
}

// SignedIn forgets everything cached after a new sign-in stored rt.
func (s *Session) SignedIn() {
	s.mu.Lock()
	s.access, s.pending, s.refused, s.refusedErr = nil, "", "", nil
	s.replacing, s.replacement = false, false
	s.mu.Unlock()
}
