package settings

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/smtpshim/smtpshim/shim/accounts"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/hints"
	"github.com/smtpshim/smtpshim/shim/oauth"
)

// A sign-in runs in the background: the page that starts it opens the
// person's browser at the provider, then shows its progress while the
// browser comes back to the oauth package's loopback listener. Only when
// the provider has issued a refresh token (stored in the keychain by the
// oauth package) is the account written to the config and the engine
// reloaded, which sends the mail held for it. A failed or abandoned
// sign-in leaves the config as it was.

// signinKeep is how long a finished sign-in's result stays viewable.
const signinKeep = 30 * time.Minute

type signinState string

const (
	signinPending signinState = "pending"
	signinDone    signinState = "done"
	signinFailed  signinState = "failed"
)

// signin is one sign-in's progress, as its page shows it.
type signin struct {
	ID       string
	Key      string
	Provider string // "Microsoft"
	URL      string // the provider's sign-in address, the fallback link
	Setup    bool
	Added    bool
	State    signinState
	OpenErr  string // why the browser could not be opened, if it could not
	Error    string
	Hint     string
	ended    time.Time
	cancel   context.CancelFunc
}

// signins owns the background sign-ins: Run waits for them.
type signins struct {
	mu   sync.Mutex
	byID map[string]*signin
	wg   sync.WaitGroup
	ctx  context.Context
	stop context.CancelFunc
}

func newSignins() *signins {
	ctx, stop := context.WithCancel(context.Background())
	return &signins{byID: map[string]*signin{}, ctx: ctx, stop: stop}
}

// close abandons every sign-in and waits for their goroutines; none
// starts after it.
func (ss *signins) close() {
	ss.mu.Lock()
	ss.stop()
	ss.mu.Unlock()
	ss.wg.Wait()
}

// start registers si and runs fn for it in a goroutine that close waits
// for. It reports false, and runs nothing, once close has begun.
func (ss *signins) start(si *signin, fn func(ctx context.Context)) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ctx.Err() != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ss.ctx, oauth.DefaultLoginTimeout)
	si.cancel = cancel
	ss.addLocked(si)
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		defer cancel()
		fn(ctx)
	}()
	return true
}

func (ss *signins) get(id string) (signin, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	si, ok := ss.byID[id]
	if !ok {
		return signin{}, false
	}
	return *si, true
}

func (ss *signins) update(id string, fn func(*signin)) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if si, ok := ss.byID[id]; ok {
		fn(si)
	}
}

// addLocked registers si, abandoning an earlier sign-in for the same
// account (only the latest one may store a token) and forgetting old
// results.
func (ss *signins) addLocked(si *signin) {
	now := time.Now()
	for id, o := range ss.byID {
		if o.State == signinPending && strings.EqualFold(o.Key, si.Key) {
			o.cancel()
		}
		if o.State != signinPending && now.Sub(o.ended) > signinKeep {
			delete(ss.byID, id)
		}
	}
	ss.byID[si.ID] = si
}

// signinOption is one "Sign in with ..." button of the account form.
type signinOption struct {
	OAuth string // the provider name the button posts
	Title string // "Microsoft"
}

// signinOptions lists the OAuth2 providers the presets sign in with, in
// the presets' order: those this copy can use, because a client ID is
// compiled in or configured in cfg (which may be nil). A button that could
// only answer "no client ID" is not offered.
func signinOptions(cfg *config.Config) []signinOption {
	var out []signinOption
	seen := map[string]bool{}
	for _, p := range accounts.Presets {
		if p.OAuth == "" || seen[p.OAuth] {
			continue
		}
		seen[p.OAuth] = true
		if prov, err := oauth.Resolve(cfg, p.OAuth); err == nil {
			out = append(out, signinOption{OAuth: p.OAuth, Title: prov.Title})
		}
	}
	return out
}

// formConfig reads the config for a form's sign-in buttons; a config
// that cannot be read offers only what is compiled in.
func (s *Server) formConfig() *config.Config {
	cfg, err := s.loadConfig()
	if err != nil {
		return nil
	}
	return cfg
}

// signinStart starts a sign-in: for a new account from the add form (the
// "Sign in with ..." button), or again for an existing OAuth2 account.
func (s *Server) signinStart(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	who := strings.TrimSpace(r.PostFormValue("address"))
	form := accountForm{
		Key: key, Address: who, Server: strings.TrimSpace(r.PostFormValue("server")),
		Security: r.PostFormValue("security"), Username: strings.TrimSpace(r.PostFormValue("username")),
		CAFile: strings.TrimSpace(r.PostFormValue("ca_file")), Setup: r.PostFormValue("setup") != "",
		Presets: accounts.Presets,
	}
	again := func(msg, hint string) {
		w.WriteHeader(http.StatusUnprocessableEntity)
		if key != "" {
			// A saved account: its own page has the settings; this form
			// was only a button.
			s.render(w, r, "message", page{Title: "The sign-in did not start", Nav: "accounts", Error: msg, Hint: hint})
			return
		}
		s.render(w, r, "account", page{Title: "Check the account", Nav: "accounts", Error: msg, Hint: hint, Data: form})
	}
	s.cfgMu.Lock()
	cfg, err := s.loadConfig()
	s.cfgMu.Unlock()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	form.SignIn = signinOptions(cfg)
	var acct config.Account
	if key != "" {
		_, existing := cfg.Find(key)
		if existing == nil {
			w.WriteHeader(http.StatusNotFound)
			s.render(w, r, "message", page{Title: "No such account", Error: "There is no account " + key + "."})
			return
		}
		if existing.OAuth == "" {
			s.render(w, r, "message", page{Title: "Nothing changed", Error: key + " signs in with a password, not with a provider's sign-in page. Type a new password on its page instead."})
			return
		}
		acct = *existing
	} else {
		if who == "" || !strings.Contains(who, "@") || strings.HasPrefix(who, "@") {
			again("Type the e-mail address you sign in with, e.g. you@example.com.", "")
			return
		}
		if _, existing := cfg.Find(who); existing != nil {
			acct = *existing
		} else {
			acct.Address = who
		}
		acct.OAuth = strings.ToLower(strings.TrimSpace(r.PostFormValue("oauth")))
		if acct.OAuth == "" {
			again("Choose the provider to sign in with.", "")
			return
		}
		acct.PasswordCommand, acct.Auth = "", ""
		acct.Server, acct.Security, acct.Username, acct.CAFile = form.Server, form.Security, form.Username, form.CAFile
		if p, ok := accounts.PresetNamed(r.PostFormValue("preset")); ok && p.OAuth == acct.OAuth && acct.Server == "" {
			acct.Server = p.Server
		}
	}
	p, err := oauth.Resolve(cfg, acct.OAuth)
	if err != nil {
		again("smtpshim cannot start the sign-in: "+err.Error(), "")
		return
	}
	if acct.Server == "" {
		acct.Server = p.Server
	}
	probe := *cfg
	probe.Accounts = append([]config.Account(nil), cfg.Accounts...)
	if idx, existing := probe.Find(acct.Key()); existing != nil {
		probe.Accounts[idx] = acct
	} else {
		probe.Accounts = append(probe.Accounts, acct)
	}
	if err := probe.Validate(); err != nil {
		again(err.Error(), "")
		return
	}
	pe, err := oauth.StartAccountLogin(cfg, &acct, s.o.Store, oauth.LoginOptions{})
	if err != nil {
		again("The sign-in could not start: "+err.Error(), hints.For(err))
		return
	}
	si := &signin{ID: randomToken(), Key: acct.Key(), Provider: p.Title, URL: pe.URL, Setup: form.Setup, State: signinPending}
	if !s.signins.start(si, func(ctx context.Context) { s.runSignin(ctx, si.ID, pe, acct) }) {
		pe.Close()
		http.Error(w, "smtpshim is shutting down.", http.StatusServiceUnavailable)
		return
	}
	s.o.Log.Info("settings page: sign-in started", "account", acct.Key(), "provider", p.Name)
	http.Redirect(w, r, "/signin/"+si.ID, http.StatusSeeOther)
}

// runSignin opens the browser, waits for the sign-in, then saves the
// account and reloads the engine.
func (s *Server) runSignin(ctx context.Context, id string, pe *oauth.Pending, acct config.Account) {
	open := s.o.OpenBrowser
	if open == nil {
		open = oauth.OpenBrowser
	}
	if err := open(pe.URL); err != nil {
		s.signins.update(id, func(si *signin) { si.OpenErr = err.Error() })
	}
	err := pe.Wait(ctx)
	var added bool
	if err == nil {
		s.cfgMu.Lock()
		var cfg *config.Config
		if cfg, err = s.loadConfig(); err == nil {
			added, err = accounts.Save(ctx, cfg, s.o.Store, acct, "")
		}
		s.cfgMu.Unlock()
	}
	if err == nil {
		rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
		if rerr := s.o.Engine.Reload(rctx); rerr != nil {
			s.o.Log.Warn("settings page: the relay did not reload", "err", rerr)
		}
		rcancel()
	}
	s.signins.update(id, func(si *signin) {
		si.ended = time.Now()
		if err != nil {
			si.State, si.Error, si.Hint = signinFailed, err.Error(), hints.For(err)
			if errors.Is(err, context.Canceled) {
				si.Error = "This sign-in was replaced by a newer one, or smtpshim is shutting down."
			}
			return
		}
		si.State, si.Added = signinDone, added
	})
	if err != nil {
		s.o.Log.Warn("settings page: sign-in failed", "account", acct.Key(), "err", err)
		return
	}
	s.o.Log.Info("settings page: signed in", "account", acct.Key(), "added", added)
}

// signinPage shows a sign-in's progress; while it waits, the page
// refreshes itself.
func (s *Server) signinPage(w http.ResponseWriter, r *http.Request) {
	si, ok := s.signins.get(r.PathValue("id"))
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		s.render(w, r, "message", page{Title: "Sign-in not found", Error: "This sign-in is over or smtpshim was restarted. Start it again from the account's page."})
		return
	}
	p := page{Title: "Signing in " + si.Key, Nav: "accounts", Data: si}
	switch si.State {
	case signinPending:
		p.Refresh = 2
	case signinDone:
		p.Title = "Signed in"
	case signinFailed:
		p.Title = "Sign-in failed"
		p.Error, p.Hint = si.Error, si.Hint
	}
	s.render(w, r, "signin", p)
}
