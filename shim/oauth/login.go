package oauth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/smtpshim/smtpshim/shim/secrets"
)

// DefaultLoginTimeout bounds a sign-in: the time a person has to finish it
// in the browser or on another device.
const DefaultLoginTimeout = 5 * time.Minute

// LoginOptions controls a sign-in.
type LoginOptions struct {
	// Device uses the device flow: a code to enter on another device.
	Device bool
	// NoBrowser prints the address instead of opening a browser.
	NoBrowser bool
	// Out receives the instructions for the person (the address to open,
	// the device code). nil discards them.
	Out io.Writer
	// OpenBrowser opens an address; nil means OpenBrowser (which honours
	// $BROWSER like xdg-open).
	OpenBrowser func(url string) error
	// Timeout bounds the whole sign-in; 0 means DefaultLoginTimeout.
	Timeout time.Duration
	// HTTPClient talks to the provider; nil builds one as for refreshes.
	HTTPClient *http.Client
	// LoginHint pre-fills the account in the provider's sign-in page.
	LoginHint string
}

// Pending is a started code-flow sign-in: the address to open, and Wait
// for the outcome. A settings page shows URL as a link and calls Wait.
type Pending struct {
	// URL is the provider's sign-in address for the person to open.
	URL string

	p     *Provider
	key   string
	store secrets.Store
	hc    *http.Client
	ln    net.Listener
	srv   *http.Server
	cfg   *oauth2.Config
	state string
	verif string
	done  chan result
	once  sync.Once
}

type result struct {
	code string
	err  error
}

// StartLogin starts the authorization-code flow with PKCE (RFC 7636): it
// listens for the redirect on 127.0.0.1 on a free port and returns the
// address to open. Wait finishes it and stores the refresh token under key.
func StartLogin(p *Provider, key string, store secrets.Store, o LoginOptions) (*Pending, error) {
	hc, err := loginHTTPClient(p, o)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the sign-in redirect on 127.0.0.1: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	// Microsoft registers "http://localhost" for desktop apps and matches
	// any port on it; Google and RFC 8252 prefer the literal loopback IP.
	host := "127.0.0.1"
	if p.Name == Microsoft {
		host = "localhost"
	}
	redirect := "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/"
	pe := &Pending{
		p: p, key: key, store: store, hc: hc, ln: ln,
		cfg:   p.oauth2Config(redirect),
		state: randomString(24), verif: oauth2.GenerateVerifier(),
		done: make(chan result, 1),
	}
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(pe.verif)}
	if p.Name == Google {
		// Google issues a refresh token only for offline access, and
		// only on a consent screen, so ask for both every time.
		opts = append(opts, oauth2.AccessTypeOffline, oauth2.SetAuthURLParam("prompt", "consent"))
	}
	if o.LoginHint != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", o.LoginHint))
	}
	pe.URL = pe.cfg.AuthCodeURL(pe.state, opts...)
	pe.srv = &http.Server{Handler: http.HandlerFunc(pe.callback), ReadHeaderTimeout: 10 * time.Second}
	go pe.srv.Serve(ln)
	return pe, nil
}

// callback serves the redirect. Anything but the right path with the
// right state is turned away and the wait goes on, so a stray request (or
// a hostile page guessing the port) cannot end or hijack the sign-in.
func (pe *Pending) callback(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(pe.state)) != 1 {
		page(w, http.StatusBadRequest, "Sign-in not recognised", "This address does not belong to the sign-in smtpshim is waiting for. Start the sign-in again from smtpshim.")
		return
	}
	var res result
	if e := q.Get("error"); e != "" {
		desc := firstLine(q.Get("error_description"))
		res.err = &CredentialError{Account: pe.key, Kind: ErrSignInNeeded, Reason: pe.p.Title + " did not complete the sign-in", Err: errors.New(strings.TrimSpace(e + ": " + desc))}
		page(w, http.StatusOK, "Sign-in failed", pe.p.Title+" reported: "+e+" "+desc+". Go back to smtpshim for what to do next; you can close this tab.")
	} else if res.code = q.Get("code"); res.code == "" {
		page(w, http.StatusBadRequest, "Sign-in incomplete", "The provider sent no authorization code. Start the sign-in again from smtpshim.")
		return
	} else {
		page(w, http.StatusOK, "Signed in", "smtpshim is now signed in to "+pe.p.Title+" and can send your mail. You can close this tab.")
	}
	pe.once.Do(func() { pe.done <- res })
}

func page(w http.ResponseWriter, status int, title, body string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<!doctype html><html><head><meta charset=\"utf-8\"><title>smtpshim: %[1]s</title></head><body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\"><h1>%[1]s</h1><p>%[2]s</p></body></html>",
		html.EscapeString(title), html.EscapeString(body))
}

// Wait waits for the browser to come back (or ctx to end), exchanges the
// code and stores the refresh token. It always stops the listener.
func (pe *Pending) Wait(ctx context.Context) error {
	defer pe.Close()
	var res result
	select {
	case res = <-pe.done:
	case <-ctx.Done():
		return &CredentialError{Account: pe.key, Kind: ErrSignInNeeded, Reason: "the sign-in was not finished in the browser in time (if the provider's page showed an error such as AADSTS50011 or AADSTS7000218, the app registration needs fixing: see the README)", Err: ctx.Err()}
	}
	if res.err != nil {
		return res.err
	}
	hctx := context.WithValue(ctx, oauth2.HTTPClient, pe.hc)
	tok, err := pe.cfg.Exchange(hctx, res.code, oauth2.VerifierOption(pe.verif))
	if err != nil {
		return loginTokenError(pe.key, err)
	}
	return storeGrant(ctx, pe.p, pe.key, pe.store, tok)
}

// Close stops listening for the redirect.
func (pe *Pending) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return pe.srv.Shutdown(ctx)
}

// Login signs the account whose keychain key is key in to p and stores the
// refresh token: in the browser (the authorization-code flow with PKCE) or,
// with o.Device, with a code entered on another device.
func Login(ctx context.Context, p *Provider, key string, store secrets.Store, o LoginOptions) error {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultLoginTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	if o.Device {
		return deviceLogin(ctx, p, key, store, o, out)
	}
	pe, err := StartLogin(p, key, store, o)
	if err != nil {
		return err
	}
	defer pe.Close()
	open := o.OpenBrowser
	if open == nil {
		open = OpenBrowser
	}
	if o.NoBrowser {
		fmt.Fprintf(out, "To sign in to %s, open this address in a browser on this computer:\n\n  %s\n\n", p.Title, pe.URL)
	} else if err := open(pe.URL); err != nil {
		fmt.Fprintf(out, "Could not open a browser (%v).\nTo sign in to %s, open this address in a browser on this computer:\n\n  %s\n\n", err, p.Title, pe.URL)
	} else {
		fmt.Fprintf(out, "A browser window opened to sign in to %s. If none appeared, open this address:\n\n  %s\n\n", p.Title, pe.URL)
	}
	fmt.Fprintf(out, "Waiting up to %s for the sign-in to finish...\n", timeout.Round(time.Second))
	return pe.Wait(ctx)
}

func deviceLogin(ctx context.Context, p *Provider, key string, store secrets.Store, o LoginOptions, out io.Writer) error {
	if ok, why := p.CanDevice(); !ok {
		return fmt.Errorf("cannot sign in with a device code: %s", why)
	}
	hc, err := loginHTTPClient(p, o)
	if err != nil {
		return err
	}
	hctx := context.WithValue(ctx, oauth2.HTTPClient, hc)
	cfg := p.oauth2Config("")
	da, err := cfg.DeviceAuth(hctx)
	if err != nil {
		return loginTokenError(key, err)
	}
	fmt.Fprintf(out, "To sign in to %s, open %s on any device and enter the code %s\n", p.Title, da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(out, "(or open %s)\n", da.VerificationURIComplete)
	}
	fmt.Fprintln(out, "Waiting for the sign-in to finish...")
	tok, err := cfg.DeviceAccessToken(hctx, da)
	if err != nil {
		if ctx.Err() != nil {
			return &CredentialError{Account: key, Kind: ErrSignInNeeded, Reason: "the device sign-in was not finished in time", Err: ctx.Err()}
		}
		return loginTokenError(key, err)
	}
	return storeGrant(ctx, p, key, store, tok)
}

func storeGrant(ctx context.Context, p *Provider, key string, store secrets.Store, tok *oauth2.Token) error {
	if tok.RefreshToken == "" {
		return &CredentialError{Account: key, Kind: ErrSignInNeeded, Reason: p.Title + " signed in but issued no refresh token, so smtpshim could not stay signed in: make sure the app may ask for offline access (the offline_access scope for Microsoft)"}
	}
	if err := store.Set(ctx, key, tok.RefreshToken); err != nil {
		return fmt.Errorf("signed in, but the keychain would not store the refresh token: %w", err)
	}
	return nil
}

// loginTokenError describes a failed code exchange or device flow; the
// provider's error (AADSTS…) is kept for the hints.
func loginTokenError(key string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return &CredentialError{Account: key, Kind: ErrSignInNeeded, Reason: "the provider refused the sign-in", Err: cleanRetrieveError(re)}
	}
	return &CredentialError{Account: key, Kind: ErrTokenUnavailable, Reason: "the provider could not be reached", Err: err}
}

func loginHTTPClient(p *Provider, o LoginOptions) (*http.Client, error) {
	if o.HTTPClient != nil {
		return o.HTTPClient, nil
	}
	return httpClientFor(p)
}

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
