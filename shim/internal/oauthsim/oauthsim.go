// Package oauthsim is an OAuth2 authorization server for tests, on
// loopback. It does what smtpshim meets at Microsoft and Google: the
// authorization-code flow with PKCE (checking state passthrough, the
// redirect URI and the code verifier), the device flow (pending, slow_down,
// then success), refresh tokens that rotate on every use and can expire or
// be revoked, and an RFC 7662 introspection endpoint that a mail server
// (Dovecot's oauth2 passdb, or upstreamsim) checks access tokens against.
//
// The "browser" in a test is any HTTP client that follows redirects: the
// authorize endpoint signs in Options.User (or the login_hint) at once and
// redirects back with a code.
package oauthsim

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/smtpshim/smtpshim/shim/internal/testlog"
)

// Options configures a Server.
type Options struct {
	// ClientID is the only client accepted.
	ClientID string
	// ClientSecret, when set, must be sent; when empty the client is a
	// public one and a secret is refused (as Microsoft does: AADSTS700025).
	ClientSecret string
	// User signs in at the authorize endpoint when there is no login_hint.
	User string
	// AccessTTL is an access token's lifetime; 0 means one hour.
	AccessTTL time.Duration
	// DevicePending is how many polls answer authorization_pending before
	// the device sign-in succeeds; DeviceSlowDown adds one slow_down.
	DevicePending  int
	DeviceSlowDown bool
	// Now is the clock for expiry; nil means time.Now.
	Now func() time.Time
}

// Server is a running authorization server.
type Server struct {
	URL string // http://127.0.0.1:PORT

	o   Options
	srv *httptest.Server

	mu        sync.Mutex
	codes     map[string]*codeGrant
	refresh   map[string]string // live refresh token → user
	retired   map[string]bool   // rotated-away refresh tokens
	access    map[string]*accessToken
	devices   map[string]*device
	refreshes int
	denyNext  [2]string
	rtExpired map[string]bool
}

type codeGrant struct {
	user, redirect, challenge string
}

type accessToken struct {
	user   string
	expiry time.Time
}

type device struct {
	user  string
	polls int
	slow  bool
}

// Start serves on 127.0.0.1 on a free port.
func Start(o Options) *Server {
	if o.AccessTTL <= 0 {
		o.AccessTTL = time.Hour
	}
	s := &Server{o: o, codes: map[string]*codeGrant{}, refresh: map[string]string{}, retired: map[string]bool{},
		access: map[string]*accessToken{}, devices: map[string]*device{}, rtExpired: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /authorize", s.authorize)
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("POST /device", s.device)
	mux.HandleFunc("POST /introspect", s.introspect)
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Endpoints returns the authorize, token, device and introspection URLs.
func (s *Server) Endpoints() (auth, token, device, introspect string) {
	return s.URL + "/authorize", s.URL + "/token", s.URL + "/device", s.URL + "/introspect"
}

func (s *Server) now() time.Time {
	if s.o.Now != nil {
		return s.o.Now()
	}
	return time.Now()
}

func random(prefix string) string {
	b := make([]byte, 18)
	rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// Refreshes counts refresh_token grants answered (successful or not).
func (s *Server) Refreshes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshes
}

// Revoke withdraws every grant of user, as a password change or an admin's
// "revoke sessions" does: its refresh and access tokens stop working.
func (s *Server) Revoke(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for rt, u := range s.refresh {
		if u == user {
			delete(s.refresh, rt)
		}
	}
	for at, t := range s.access {
		if t.user == user {
			delete(s.access, at)
		}
	}
}

// ExpireAccessTokens ends every access token's life now.
func (s *Server) ExpireAccessTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.access {
		t.expiry = s.now().Add(-time.Second)
	}
}

// ExpireRefreshTokens makes every live refresh token expired, like
// Google's 7-day limit for apps in "Testing".
func (s *Server) ExpireRefreshTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for rt := range s.refresh {
		s.rtExpired[rt] = true
	}
}

// DenyNext makes the next authorize request fail with this error, as a
// provider does when consent is missing (e.g. "consent_required",
// "AADSTS65001: ...").
func (s *Server) DenyNext(code, description string) {
	s.mu.Lock()
	s.denyNext = [2]string{code, description}
	s.mu.Unlock()
}

// Validate reports the user an access token belongs to, if it is live.
func (s *Server) Validate(tok string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.access[tok]
	if !ok || !s.now().Before(t.expiry) {
		return "", false
	}
	return t.user, true
}

// IsLiveRefreshToken reports whether rt would be honoured.
func (s *Server) IsLiveRefreshToken(rt string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.refresh[rt]
	return ok && !s.rtExpired[rt]
}

func oauthErr(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != s.o.ClientID {
		http.Error(w, "AADSTS700016: unknown client_id", http.StatusBadRequest)
		return
	}
	redirect := q.Get("redirect_uri")
	ru, err := url.Parse(redirect)
	if err != nil || ru.Scheme != "http" || !isLoopback(ru.Hostname()) {
		// A provider shows this on its own page; it never redirects to an
		// unregistered address.
		http.Error(w, "AADSTS50011: The redirect URI specified in the request does not match the redirect URIs configured for the application", http.StatusBadRequest)
		return
	}
	back := func(v url.Values) {
		if st := q.Get("state"); st != "" {
			v.Set("state", st)
		}
		ru.RawQuery = v.Encode()
		http.Redirect(w, r, ru.String(), http.StatusFound)
	}
	s.mu.Lock()
	deny := s.denyNext
	s.denyNext = [2]string{}
	s.mu.Unlock()
	if deny[0] != "" {
		back(url.Values{"error": {deny[0]}, "error_description": {deny[1]}})
		return
	}
	if q.Get("response_type") != "code" {
		back(url.Values{"error": {"unsupported_response_type"}})
		return
	}
	if q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256" {
		back(url.Values{"error": {"invalid_request"}, "error_description": {"AADSTS9002325: Proof Key for Code Exchange is required"}})
		return
	}
	user := q.Get("login_hint")
	if user == "" {
		user = s.o.User
	}
	code := random("code-")
	s.mu.Lock()
	s.codes[code] = &codeGrant{user: user, redirect: redirect, challenge: q.Get("code_challenge")}
	s.mu.Unlock()
	back(url.Values{"code": {code}})
}

func (s *Server) checkClient(w http.ResponseWriter, r *http.Request) bool {
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	switch {
	case id != s.o.ClientID:
		oauthErr(w, http.StatusBadRequest, "unauthorized_client", "AADSTS700016: Application not found")
	case s.o.ClientSecret == "" && secret != "":
		oauthErr(w, http.StatusUnauthorized, "invalid_client", "AADSTS700025: Client is public so neither 'client_assertion' nor 'client_secret' should be presented.")
	case s.o.ClientSecret != "" && secret != s.o.ClientSecret:
		oauthErr(w, http.StatusUnauthorized, "invalid_client", "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
	default:
		return true
	}
	return false
}

// issue answers with a new access token and a new refresh token for user.
func (s *Server) issue(w http.ResponseWriter, user string) {
	at, rt := random("at-"), random("rt-")
	// Every token issued joins the secret scan of `make test`: none may
	// reach a log line.
	testlog.Secret(at)
	testlog.Secret(rt)
	s.access[at] = &accessToken{user: user, expiry: s.now().Add(s.o.AccessTTL)}
	s.refresh[rt] = user
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(map[string]any{
		"access_token": at, "token_type": "Bearer", "refresh_token": rt,
		"expires_in": int(s.o.AccessTTL / time.Second), "scope": "smtp.send offline_access",
	})
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthErr(w, http.StatusBadRequest, "invalid_request", "unreadable form")
		return
	}
	if !s.checkClient(w, r) {
		return
	}
	f := r.PostForm
	s.mu.Lock()
	defer s.mu.Unlock()
	switch f.Get("grant_type") {
	case "authorization_code":
		g, ok := s.codes[f.Get("code")]
		delete(s.codes, f.Get("code")) // single use, even when it fails
		switch {
		case !ok:
			oauthErr(w, http.StatusBadRequest, "invalid_grant", "AADSTS70008: The provided authorization code or refresh token has expired or was already used")
		case f.Get("redirect_uri") != g.redirect:
			oauthErr(w, http.StatusBadRequest, "invalid_grant", "AADSTS50011: The redirect URI does not match the one the code was issued to")
		case s256(f.Get("code_verifier")) != g.challenge:
			oauthErr(w, http.StatusBadRequest, "invalid_grant", "AADSTS501481: The Code_Verifier does not match the code_challenge supplied in the authorization request")
		default:
			s.issue(w, g.user)
		}
	case "refresh_token":
		s.refreshes++
		rt := f.Get("refresh_token")
		user, ok := s.refresh[rt]
		switch {
		case s.retired[rt]:
			oauthErr(w, http.StatusBadRequest, "invalid_grant", "AADSTS70000: the refresh token was already used to get a new one")
		case !ok:
			oauthErr(w, http.StatusBadRequest, "invalid_grant", "AADSTS50173: The provided grant has expired due to it being revoked")
		case s.rtExpired[rt]:
			oauthErr(w, http.StatusBadRequest, "invalid_grant", "Token has been expired or revoked.")
		default:
			delete(s.refresh, rt)
			s.retired[rt] = true
			s.issue(w, user)
		}
	case "urn:ietf:params:oauth:grant-type:device_code":
		d, ok := s.devices[f.Get("device_code")]
		switch {
		case !ok:
			oauthErr(w, http.StatusBadRequest, "expired_token", "unknown or expired device code")
		case d.polls < s.o.DevicePending:
			d.polls++
			oauthErr(w, http.StatusBadRequest, "authorization_pending", "AADSTS70016: waiting for the user")
		case s.o.DeviceSlowDown && !d.slow:
			d.slow = true
			oauthErr(w, http.StatusBadRequest, "slow_down", "polling too fast")
		default:
			delete(s.devices, f.Get("device_code"))
			s.issue(w, d.user)
		}
	default:
		oauthErr(w, http.StatusBadRequest, "unsupported_grant_type", f.Get("grant_type"))
	}
}

func (s *Server) device(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || !s.checkClient(w, r) {
		return
	}
	dc := random("dc-")
	s.mu.Lock()
	s.devices[dc] = &device{user: s.o.User}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"device_code": dc, "user_code": "ABCD-EFGH", "verification_uri": s.URL + "/devicelogin",
		"expires_in": 900, "interval": 1,
	})
}

// introspect is RFC 7662, the way Dovecot's oauth2 passdb calls it
// (introspection_mode = post): form field token, JSON answer.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthErr(w, http.StatusBadRequest, "invalid_request", "unreadable form")
		return
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
			tok = strings.TrimPrefix(h, "Bearer ")
		}
	}
	w.Header().Set("Content-Type", "application/json")
	user, ok := s.Validate(tok)
	if !ok {
		json.NewEncoder(w).Encode(map[string]any{"active": false})
		return
	}
	s.mu.Lock()
	exp := s.access[tok].expiry.Unix()
	s.mu.Unlock()
	json.NewEncoder(w).Encode(map[string]any{"active": true, "username": user, "email": user, "scope": "smtp.send", "exp": exp, "client_id": s.o.ClientID})
}

func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func isLoopback(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// String is for test failure messages.
func (s *Server) String() string { return fmt.Sprintf("oauthsim at %s", s.URL) }
