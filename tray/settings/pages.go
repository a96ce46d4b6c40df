package settings

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/smtpshim/smtpshim/shim/accounts"
	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/shim/config"
)

//go:embed web
var webFS embed.FS

var pages = map[string]*template.Template{}

func init() {
	funcs := template.FuncMap{
		"when":     when,
		"describe": describe,
		"size":     humanSize,
		"join":     strings.Join,
		"sentence": sentence,
		"stateText": func(a api.Account) string {
			switch a.State {
			case api.AccountOK:
				return "Working"
			case api.AccountFailing:
				return "Cannot reach the server: mail waits and is retried"
			case api.AccountNeedsAttention:
				if a.Problem != "" {
					return "Needs attention: " + a.Problem
				}
				return "Needs attention"
			}
			return "Not used yet"
		},
	}
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(webFS, "web/layout.html"))
	names, _ := fs.Glob(webFS, "web/*.html")
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "web/"), ".html")
		if name == "layout" {
			continue
		}
		pages[name] = template.Must(template.Must(layout.Clone()).ParseFS(webFS, n))
	}
}

// page is what every template gets.
type page struct {
	Title   string
	Nav     string
	CSRF    string
	Version string
	Error   string
	Hint    string
	Flash   string
	Status  api.Status
	Data    any
	// Refresh reloads the page after this many seconds, while it shows
	// something in progress.
	Refresh int
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, name string, p page) {
	t, ok := pages[name]
	if !ok {
		http.Error(w, "no page "+name, http.StatusInternalServerError)
		return
	}
	if c, ok := r.Context().Value(csrfKey{}).(string); ok {
		p.CSRF = c
	}
	p.Version = s.o.Version
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := t.ExecuteTemplate(w, "layout.html", p); err != nil {
		s.o.Log.Error("settings page", "page", name, "err", err)
	}
}

func (s *Server) routes(mux *http.ServeMux) {
	static, _ := fs.Sub(webFS, "web/static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("GET /setup", s.setup)
	mux.HandleFunc("GET /accounts", s.accountList)
	mux.HandleFunc("GET /accounts/new", s.accountNew)
	mux.HandleFunc("POST /accounts", s.accountSave)
	mux.HandleFunc("GET /accounts/{key}", s.accountEdit)
	mux.HandleFunc("POST /accounts/{key}", s.accountSave)
	mux.HandleFunc("POST /accounts/{key}/test", s.accountTest)
	mux.HandleFunc("POST /accounts/{key}/password", s.accountPassword)
	mux.HandleFunc("POST /accounts/{key}/remove", s.accountRemove)
	mux.HandleFunc("POST /accounts/{key}/signin", s.signinStart)
	mux.HandleFunc("POST /signin", s.signinStart)
	mux.HandleFunc("GET /signin/{id}", s.signinPage)
	mux.HandleFunc("GET /outbox", s.outbox)
	mux.HandleFunc("POST /outbox/retry", s.outboxRetry)
	mux.HandleFunc("POST /outbox/{id}/delete", s.outboxDelete)
	mux.HandleFunc("GET /activity", s.activityPage)
	mux.HandleFunc("GET /events", s.events)
	mux.HandleFunc("GET /guide", s.guideIndex)
	mux.HandleFunc("GET /guide/{client}", s.guidePage)
	mux.HandleFunc("GET /presets.json", s.presets)
}

func (s *Server) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 10*time.Second)
}

func (s *Server) status(r *http.Request) api.Status {
	ctx, cancel := s.ctx(r)
	defer cancel()
	st, err := s.o.Engine.Status(ctx)
	if err != nil {
		s.o.Log.Warn("settings page: no status from the relay", "err", err)
	}
	return st
}

func (s *Server) loadConfig() (*config.Config, error) {
	cfg, err := config.Load(s.o.ConfigPath)
	if err != nil {
		return nil, fmt.Errorf("reading the settings file: %w", err)
	}
	return cfg, nil
}

func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	st := s.status(r)
	cfg, err := s.loadConfig()
	if err == nil && len(cfg.Accounts) == 0 {
		http.Redirect(w, r, "/setup", http.StatusSeeOther)
		return
	}
	p := page{Title: "Overview", Nav: "home", Status: st, Data: listenInfo(st, cfg)}
	if err != nil {
		p.Error = err.Error()
	}
	s.render(w, r, "home", p)
}

// listen is how a mail client reaches smtpshim.
type listen struct {
	Host, Port string
	LAN        bool // clients must give the local password
	Network    bool // listening beyond this computer
}

func listenInfo(st api.Status, cfg *config.Config) listen {
	l := listen{Host: "localhost", Port: "2525"}
	addrs := st.Listen
	if len(addrs) == 0 && cfg != nil {
		addrs = cfg.Listen
	}
	if len(addrs) > 0 {
		if h, p, err := net.SplitHostPort(addrs[0]); err == nil {
			l.Port = p
			ip := net.ParseIP(h)
			switch {
			case ip != nil && ip.IsUnspecified():
				// Every interface: devices on the network use this
				// computer's name.
				if name, err := os.Hostname(); err == nil && name != "" {
					l.Host = name
				}
				l.Network = true
			case ip != nil && !ip.IsLoopback():
				l.Host = h
				l.Network = true
			}
		}
	}
	l.LAN = cfg != nil && cfg.EffectiveLocalAuth() == config.LocalAuthRequire
	return l
}

// accountForm is the add/edit form's content. It never holds a password.
type accountForm struct {
	Key      string // empty for a new account
	Address  string
	Server   string
	Security string
	Username string
	CAFile   string
	Setup    bool
	Presets  []accounts.Preset
	SignIn   []signinOption // the "Sign in with ..." buttons
	OAuth    string         // the account's OAuth2 provider, when editing one
	Account  *api.Account   // the live state, when editing
}

func (s *Server) setup(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, "account", page{Title: "Set up smtpshim", Nav: "accounts", Data: accountForm{Setup: true, Presets: accounts.Presets, SignIn: signinOptions(s.formConfig())}})
}

func (s *Server) accountNew(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, "account", page{Title: "Add an account", Nav: "accounts", Data: accountForm{Presets: accounts.Presets, SignIn: signinOptions(s.formConfig())}})
}

func (s *Server) accountList(w http.ResponseWriter, r *http.Request) {
	st := s.status(r)
	p := page{Title: "Accounts", Nav: "accounts", Status: st}
	if r.URL.Query().Get("removed") != "" {
		p.Flash = "Account " + r.URL.Query().Get("removed") + " removed, and its password deleted from the keychain."
	}
	s.render(w, r, "accounts", p)
}

func (s *Server) accountEdit(w http.ResponseWriter, r *http.Request) {
	cfg, err := s.loadConfig()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	_, acct := cfg.Find(r.PathValue("key"))
	if acct == nil {
		w.WriteHeader(http.StatusNotFound)
		s.render(w, r, "message", page{Title: "No such account", Error: "There is no account " + r.PathValue("key") + "."})
		return
	}
	st := s.status(r)
	f := accountForm{Key: acct.Key(), Address: acct.Key(), Server: acct.Server, Security: acct.Security,
		Username: acct.Username, CAFile: acct.CAFile, Presets: accounts.Presets, OAuth: acct.OAuth}
	for i := range st.Accounts {
		if strings.EqualFold(st.Accounts[i].Key, acct.Key()) {
			f.Account = &st.Accounts[i]
		}
	}
	s.render(w, r, "account", page{Title: acct.Key(), Nav: "accounts", Status: st, Data: f})
}

// testResult is the page after a save or a test.
type testResult struct {
	Key     string
	OK      bool
	Summary string
	Setup   bool
	Sent    int // held messages sent on after a new password
}

func (s *Server) accountSave(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	who := strings.TrimSpace(r.PostFormValue("address"))
	if key != "" {
		who = key
	}
	form := accountForm{
		Key: key, Address: who, Server: strings.TrimSpace(r.PostFormValue("server")),
		Security: r.PostFormValue("security"), Username: strings.TrimSpace(r.PostFormValue("username")),
		CAFile: strings.TrimSpace(r.PostFormValue("ca_file")), Setup: r.PostFormValue("setup") != "", Presets: accounts.Presets,
	}
	password := r.PostFormValue("password")
	again := func(msg, hint string) {
		w.WriteHeader(http.StatusUnprocessableEntity)
		s.render(w, r, "account", page{Title: "Check the account", Nav: "accounts", Error: msg, Hint: hint, Data: form})
	}
	if who == "" || !strings.Contains(who, "@") {
		again("Type the e-mail address the old program sends from, e.g. you@example.com (or @example.com for every address of a domain).", "")
		return
	}
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	cfg, err := s.loadConfig()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	form.SignIn = signinOptions(cfg)
	acct := config.Account{}
	if _, existing := cfg.Find(who); existing != nil {
		acct = *existing
	} else if d, ok := strings.CutPrefix(who, "@"); ok {
		acct.Domain = d
	} else {
		acct.Address = who
	}
	if key == "" && r.PostFormValue("preset") != "" && form.Server == "" {
		for _, p := range accounts.Presets {
			if p.Name == r.PostFormValue("preset") {
				form.Server = p.Server
			}
		}
	}
	if form.Server == "" {
		if srv, _, ok := accounts.ServerFor(who); ok {
			form.Server = srv
		}
	}
	if form.Server == "" {
		again("Type your provider's outgoing (SMTP) server, e.g. smtp.example.com:587. Your provider's help pages name it.", "")
		return
	}
	acct.Server, acct.Security, acct.Username, acct.CAFile = form.Server, form.Security, form.Username, form.CAFile
	if _, existing := cfg.Find(who); existing == nil && password == "" && acct.PasswordCommand == "" {
		again("Type the password for "+who+". It goes straight into your system's keychain.", "")
		return
	}
	added, err := accounts.Save(r.Context(), cfg, s.o.Store, acct, password)
	if err != nil {
		again(err.Error(), "")
		return
	}
	s.reload(r)
	s.o.Log.Info("settings page: account saved", "account", acct.Key(), "added", added)
	s.renderTest(w, r, cfg, acct.Key(), form.Setup, false)
}

func (s *Server) reload(r *http.Request) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	if err := s.o.Engine.Reload(ctx); err != nil {
		s.o.Log.Warn("settings page: the relay did not reload", "err", err)
	}
}

// renderTest tests the account and shows the result in plain words.
func (s *Server) renderTest(w http.ResponseWriter, r *http.Request, cfg *config.Config, key string, setup, release bool) {
	_, acct := cfg.Find(key)
	if acct == nil {
		http.Redirect(w, r, "/accounts", http.StatusSeeOther)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 45*time.Second)
	defer cancel()
	res := accounts.Test(ctx, cfg, s.o.Store, acct)
	tr := testResult{Key: acct.Key(), OK: res.Err == nil, Setup: setup}
	p := page{Title: "Testing " + acct.Key(), Nav: "accounts", Data: &tr}
	if res.Err != nil {
		tr.Summary = fmt.Sprintf("smtpshim could not log in to %s.", acct.Server)
		p.Error, p.Hint = res.Err.Error(), res.Hint
		if p.Hint == "" {
			p.Hint = "Check the server name and the password. Many providers want an app password, not the one you sign in with on the web."
		}
	} else {
		sec := "with " + res.Info.TLSVersion + ", certificate verified"
		if res.Info.TLSVersion == "" {
			sec = "without encryption (security = insecure)"
		}
		tr.Summary = fmt.Sprintf("It works: smtpshim reached %s %s, and the server accepted the login for %s.", acct.Server, sec, res.Info.Username)
		if release {
			rctx, cancel := s.ctx(r)
			n, err := s.o.Engine.Retry(rctx, "")
			cancel()
			if err == nil {
				tr.Sent = n
			}
		}
	}
	s.render(w, r, "tested", p)
}

func (s *Server) accountTest(w http.ResponseWriter, r *http.Request) {
	cfg, err := s.loadConfig()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.renderTest(w, r, cfg, r.PathValue("key"), false, false)
}

// accountPassword stores a new password for an account whose password
// was rejected, and sends the mail held for it.
func (s *Server) accountPassword(w http.ResponseWriter, r *http.Request) {
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	cfg, err := s.loadConfig()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	_, acct := cfg.Find(r.PathValue("key"))
	pw := r.PostFormValue("password")
	if acct == nil || pw == "" {
		w.WriteHeader(http.StatusUnprocessableEntity)
		s.render(w, r, "message", page{Title: "Nothing changed", Error: "Type the new password, then press Save."})
		return
	}
	if _, err := accounts.Save(r.Context(), cfg, s.o.Store, *acct, pw); err != nil {
		s.fail(w, r, err)
		return
	}
	s.reload(r)
	s.renderTest(w, r, cfg, acct.Key(), false, true)
}

func (s *Server) accountRemove(w http.ResponseWriter, r *http.Request) {
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	cfg, err := s.loadConfig()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	key := r.PathValue("key")
	kerr, err := accounts.Remove(r.Context(), cfg, s.o.Store, key)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if kerr != nil {
		s.o.Log.Warn("settings page: the password stayed in the keychain", "account", key, "err", kerr)
	}
	s.reload(r)
	http.Redirect(w, r, "/accounts?removed="+key, http.StatusSeeOther)
}

func (s *Server) outbox(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	q, err := s.o.Engine.Queue(ctx)
	p := page{Title: "Outbox", Nav: "outbox", Status: s.status(r), Data: q}
	if err != nil {
		p.Error = "The outbox could not be read: " + err.Error()
	}
	switch {
	case r.URL.Query().Get("deleted") != "":
		p.Flash = "Message deleted. Its sender was not told."
	case r.URL.Query().Get("retried") != "":
		p.Flash = "Sending now. Watch Activity for the result."
	}
	s.render(w, r, "outbox", p)
}

func (s *Server) outboxRetry(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	if _, err := s.o.Engine.Retry(ctx, r.PostFormValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/outbox?retried=1", http.StatusSeeOther)
}

func (s *Server) outboxDelete(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	if err := s.o.Engine.Delete(ctx, r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/outbox?deleted=1", http.StatusSeeOther)
}

func (s *Server) activityPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, "activity", page{Title: "Activity", Nav: "activity", Data: s.act.recent()})
}

// line is one Activity line as the live page receives it.
type line struct {
	Time  string `json:"time"`
	Kind  string `json:"kind"`
	Text  string `json:"text"`
	Error string `json:"error,omitempty"`
	Hint  string `json:"hint,omitempty"`
}

// events streams new activity as server-sent events.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ch, stop := s.act.subscribe()
	defer stop()
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": smtpshim activity\n\n")
	fl.Flush()
	ping := time.NewTicker(30 * time.Second)
	defer ping.Stop()
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				return
			}
			b, _ := json.Marshal(line{Time: when(e.Time), Kind: string(e.Kind), Text: describe(e), Error: e.Error, Hint: e.Hint})
			fmt.Fprintf(w, "data: %s\n\n", b)
			fl.Flush()
		case <-ping.C:
			fmt.Fprint(w, ": ping\n\n")
			fl.Flush()
		case <-r.Context().Done():
			return
		}
	}
}

func (s *Server) presets(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(accounts.Presets)
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	s.o.Log.Warn("settings page", "path", r.URL.Path, "err", err)
	w.WriteHeader(http.StatusInternalServerError)
	s.render(w, r, "message", page{Title: "That did not work", Error: err.Error()})
}

func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	t = t.Local()
	if time.Since(t) < 20*time.Hour {
		return t.Format("15:04:05")
	}
	return t.Format("2 Jan 15:04")
}

// sentence starts a hint (written to follow "hint: " in the log) with a
// capital letter.
func sentence(s string) string {
	if s == "" {
		return s
	}
	r := []rune(s)
	return strings.ToUpper(string(r[0])) + string(r[1:])
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d KB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// describe says what an event means, in words.
func describe(e api.Event) string {
	to := strings.Join(e.Rcpts, ", ")
	if e.From == "" {
		e.From = e.Account // an address account's key is the sender
	}
	switch e.Kind {
	case api.EventDelivered:
		return fmt.Sprintf("Sent: from %s to %s", e.From, to)
	case api.EventQueued:
		return fmt.Sprintf("Kept in the outbox for a retry: from %s to %s", e.From, to)
	case api.EventDeferred:
		return fmt.Sprintf("Retry failed, will try again: from %s to %s", e.From, to)
	case api.EventBounced:
		return fmt.Sprintf("Refused for good; the sender got a bounce: from %s to %s", e.From, to)
	case api.EventRejected:
		return fmt.Sprintf("Refused while the program waited: from %s to %s", e.From, to)
	case api.EventAccount:
		if e.AccountState != nil {
			switch e.AccountState.State {
			case api.AccountOK:
				return e.Account + " works again"
			case api.AccountNeedsAttention, api.AccountFailing:
				if e.AccountState.Problem != "" {
					return e.Account + ": " + e.AccountState.Problem
				}
			}
		}
		return e.Account + " changed"
	case api.EventDeleted:
		return "A waiting message was deleted"
	case api.EventRetry:
		return "Sending the outbox now"
	case api.EventState:
		switch e.State {
		case api.Paused:
			return "Sending paused: mail is accepted and kept"
		case api.Running:
			return "Sending resumed"
		}
		return "smtpshim is " + string(e.State)
	case api.EventReloaded:
		return "Settings reloaded"
	case api.EventProblem:
		return "Problem: " + e.Error
	case api.EventAccountAdded:
		return "Account added: " + e.Account
	case api.EventAccountGone:
		return "Account removed: " + e.Account
	case api.EventQueueChanged:
		return fmt.Sprintf("Outbox: %d waiting", e.Queued)
	}
	return string(e.Kind)
}
