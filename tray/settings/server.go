// Package settings serves smtpshim's settings page: first-run setup,
// accounts, the outbox, live activity and the mail client setup guide,
// as plain HTML with a little JavaScript, on loopback while the desktop
// face runs.
//
// Only the person at the desktop may use it. It listens on 127.0.0.1 on
// a port chosen by the OS and is opened with a one-time link
// (/login?t=TOKEN), which the server trades for a session cookie
// (HttpOnly, SameSite=Strict) and then forgets. Every request must carry
// that session; every request's Host must name the listener itself, so a
// web page that rebinds its DNS name to 127.0.0.1 is refused; every write
// must carry the session's CSRF token. Pages are sent with a strict
// content security policy and a same-origin referrer policy, so the link
// never leaks to another site.
package settings

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/shim/secrets"
)

// Engine is the part of the status API the settings page uses.
type Engine interface {
	Status(ctx context.Context) (api.Status, error)
	Watch(ctx context.Context, fn func(api.WatchItem)) error
	Queue(ctx context.Context) ([]api.QueueEntry, error)
	// Retry makes one message (or with id "", every message) due now.
	Retry(ctx context.Context, id string) (int, error)
	Delete(ctx context.Context, id string) error
	// Reload makes the engine read the config again after an account
	// changed.
	Reload(ctx context.Context) error
}

// Options configure a Server.
type Options struct {
	Engine Engine
	// ConfigPath is the config file accounts are saved to.
	ConfigPath string
	// Store holds passwords: the OS keychain.
	Store secrets.Store
	Log   *slog.Logger
	// Version is shown in the page footer.
	Version string
	// OpenBrowser opens a provider's sign-in page; nil means
	// oauth.OpenBrowser (the system browser, or $BROWSER).
	OpenBrowser func(url string) error
}

const (
	cookieName   = "smtpshim_session"
	tokenTTL     = 2 * time.Minute // a one-time link is used at once, or not at all
	sessionTTL   = 12 * time.Hour
	maxFormBytes = 64 << 10
)

// Server is the settings page.
type Server struct {
	o   Options
	ln  net.Listener
	srv *http.Server
	act *activity
	// signins are the OAuth2 sign-ins in progress or just finished.
	signins *signins

	mu       sync.Mutex
	tokens   map[string]oneTime
	sessions map[string]session
	// launchKey lets `smtpshim settings` ask for a one-time link.
	launchKey string
	// cfgMu serialises changes to the config file.
	cfgMu sync.Mutex
}

type oneTime struct {
	next    string
	expires time.Time
}

type session struct {
	csrf    string
	expires time.Time
}

// New returns a server listening on 127.0.0.1 on an ephemeral port.
func New(o Options) (*Server, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("settings page: %w", err)
	}
	s := &Server{o: o, ln: ln, act: newActivity(200), signins: newSignins(), tokens: map[string]oneTime{}, sessions: map[string]session{}}
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// No WriteTimeout: /events streams for as long as the page is open.
		IdleTimeout: time.Minute,
		ErrorLog:    slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// URL is the server's base URL, e.g. http://127.0.0.1:43121.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Run serves until ctx ends, and follows the engine's events for the
// Activity page meanwhile.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.follow(ctx)
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.act.close()
		s.srv.Shutdown(sctx)
	}()
	err := s.srv.Serve(s.ln)
	wg.Wait()
	s.signins.close()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// follow keeps the activity log fed from the engine's event stream.
func (s *Server) follow(ctx context.Context) {
	wait := 250 * time.Millisecond
	for ctx.Err() == nil {
		s.o.Engine.Watch(ctx, func(it api.WatchItem) {
			if it.Event != nil {
				s.act.add(*it.Event)
			}
			wait = 250 * time.Millisecond
		})
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// OneTimeURL mints a link that opens path once, within two minutes.
func (s *Server) OneTimeURL(path string) string {
	if !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") {
		path = "/"
	}
	t := randomToken()
	s.mu.Lock()
	now := time.Now()
	for k, v := range s.tokens {
		if now.After(v.expires) {
			delete(s.tokens, k)
		}
	}
	s.tokens[t] = oneTime{next: path, expires: now.Add(tokenTTL)}
	s.mu.Unlock()
	return s.URL() + "/login?t=" + t
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Handler is the whole site behind the Host, session and CSRF checks.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.routes(mux)
	return s.guard(mux)
}

// guard refuses what is not the desktop's own browser tab.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		// same-origin, not no-referrer: with no-referrer a browser sends
		// "Origin: null" on form posts, and the Origin check below needs it.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")

		if !s.hostOK(r.Host) {
			// A DNS-rebinding page reaches us under its own name.
			http.Error(w, "This page is only served as "+s.ln.Addr().String()+".", http.StatusMisdirectedRequest)
			return
		}
		if r.URL.Path == "/login" {
			s.login(w, r)
			return
		}
		if r.URL.Path == "/launch" {
			s.launch(w, r)
			return
		}
		sess, ok := s.session(r)
		if !ok {
			w.WriteHeader(http.StatusForbidden)
			s.render(w, r, "expired", page{Title: "Open the settings from smtpshim"})
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if o := r.Header.Get("Origin"); o != "" && o != s.URL() && o != "http://localhost:"+s.port() {
				http.Error(w, "Refused: this change came from another web site.", http.StatusForbidden)
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			tok := r.Header.Get("X-CSRF-Token")
			if tok == "" {
				tok = r.PostFormValue("csrf")
			}
			if subtle.ConstantTimeCompare([]byte(tok), []byte(sess.csrf)) != 1 {
				http.Error(w, "Refused: the form is out of date. Reload the page and try again.", http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), csrfKey{}, sess.csrf)))
	})
}

type csrfKey struct{}

func (s *Server) port() string {
	_, p, _ := net.SplitHostPort(s.ln.Addr().String())
	return p
}

func (s *Server) hostOK(host string) bool {
	return host == s.ln.Addr().String() || host == "localhost:"+s.port()
}

func (s *Server) session(r *http.Request) (session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return session{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[c.Value]
	if !ok || time.Now().After(sess.expires) {
		delete(s.sessions, c.Value)
		return session{}, false
	}
	return sess, true
}

// login trades a one-time token for a session cookie.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	t := r.URL.Query().Get("t")
	s.mu.Lock()
	ot, ok := s.tokens[t]
	delete(s.tokens, t) // used once, whatever happens next
	s.mu.Unlock()
	if t == "" || !ok || time.Now().After(ot.expires) {
		w.WriteHeader(http.StatusForbidden)
		s.render(w, r, "expired", page{Title: "This link has been used"})
		return
	}
	id := randomToken()
	s.mu.Lock()
	s.sessions[id] = session{csrf: randomToken(), expires: time.Now().Add(sessionTTL)}
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: id, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: int(sessionTTL / time.Second),
	})
	// The address bar then shows the page, not the spent token.
	http.Redirect(w, r, ot.next, http.StatusSeeOther)
}

// LaunchHeader carries the launch key of a Handoff.
const LaunchHeader = "X-Smtpshim-Launch"

// launch mints a one-time link for `smtpshim settings`, which proves
// with the key from the handoff file that it runs as this user.
func (s *Server) launch(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get(LaunchHeader)
	if r.Method != http.MethodPost || key == "" || !s.launchKeyOK(key) {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	path := r.URL.Query().Get("path")
	if u, err := url.Parse(path); err != nil || u.Host != "" || u.Scheme != "" {
		path = "/"
	}
	fmt.Fprintln(w, s.OneTimeURL(path))
}
