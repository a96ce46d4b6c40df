package shim

// The engine's side of the status API (package control serves it): the
// status and the event stream, the queue as API entries, and the commands
// pause, resume, retry, delete and reload. Each command publishes an event.

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/events"
	"github.com/smtpshim/smtpshim/shim/listener"
	"github.com/smtpshim/smtpshim/shim/spool"
)

// watchBuffer is how many events a watcher may leave unread before it is
// cut off and must watch again.
const watchBuffer = 4096

func (e *Engine) runState() api.EngineState {
	switch {
	case e.stopping.Load():
		return api.Stopping
	case !e.running.Load():
		return api.Starting
	case e.paused.Load():
		return api.Paused
	}
	return api.Running
}

// Status returns the engine's current status.
func (e *Engine) Status() api.Status {
	st := e.bus.Status()
	e.enrich(&st)
	return st
}

// Watch returns the current status and every event after it; see
// events.Bus.Watch. The caller must Stop it.
func (e *Engine) Watch(buffer int) *events.Watcher {
	if buffer <= 0 {
		buffer = watchBuffer
	}
	w := e.bus.Watch(buffer)
	e.enrich(&w.Status)
	return w
}

// enrich adds what the bus does not track: where the engine keeps its
// files, and the queue per account (gauges, read now).
func (e *Engine) enrich(st *api.Status) {
	e.mu.RLock()
	st.ConfigPath = e.cfg.Path()
	e.mu.RUnlock()
	if abs, err := filepath.Abs(st.ConfigPath); err == nil && st.ConfigPath != "" {
		st.ConfigPath = abs
	}
	st.SpoolDir = e.spool.Dir()
	if e.paused.Load() {
		st.PausedSince, _ = e.spool.Paused()
	}
	counts, oldest := e.queue.Counts()
	st.OldestQueued = oldest
	st.Queued = 0
	for _, n := range counts {
		st.Queued += n
	}
	for i := range st.Accounts {
		st.Accounts[i].Queued = counts[st.Accounts[i].Key]
	}
}

// QueueEntries returns the queued messages, oldest first.
func (e *Engine) QueueEntries() []api.QueueEntry {
	ms := e.queue.List()
	out := make([]api.QueueEntry, len(ms))
	keep := make(map[string]bool, len(ms))
	held := e.heldAccounts()
	for i := range ms {
		out[i] = e.entry(&ms[i], held)
		keep[ms[i].ID] = true
	}
	e.subjects.Range(func(k, _ any) bool {
		if !keep[k.(string)] {
			e.subjects.Delete(k)
		}
		return true
	})
	return out
}

// QueueEntry returns one queued message.
func (e *Engine) QueueEntry(id string) (api.QueueEntry, bool) {
	m, ok := e.queue.Get(id)
	if !ok {
		return api.QueueEntry{}, false
	}
	return e.entry(&m, e.heldAccounts()), true
}

// heldAccounts are the accounts whose mail waits for the user (the
// provider refused the credential), with the reason. Mail of an account
// whose credential could not be read (keychain, password_command) is not
// held: it is retried.
func (e *Engine) heldAccounts() map[string]string {
	held := map[string]string{}
	e.mu.RLock()
	defer e.mu.RUnlock()
	for key, p := range e.pools {
		if h := p.Health(); h.Held {
			held[key] = cmp.Or(h.Problem, "needs attention")
		}
	}
	return held
}

func (e *Engine) entry(m *spool.Meta, held map[string]string) api.QueueEntry {
	subj, ok := e.subjects.Load(m.ID)
	if !ok {
		subj = e.spool.Subject(m.ID)
		e.subjects.Store(m.ID, subj)
	}
	q := QueueEntryOf(m, subj.(string))
	switch {
	case e.paused.Load():
		q.HeldBy = "paused"
	case held[m.Account] != "":
		q.HeldBy = held[m.Account]
	}
	q.Held = q.HeldBy != ""
	return q
}

// QueueEntryOf is a spooled message as the status API shows it.
func QueueEntryOf(m *spool.Meta, subject string) api.QueueEntry {
	q := api.QueueEntry{
		ID: m.ID, Account: m.Account, From: m.From, Rcpts: slices.Clone(m.Rcpts), Subject: subject,
		Size: m.Size, Created: m.Created, Attempts: m.Attempts, NextTry: m.NextTry,
		LastError: m.LastError, Hint: m.LastHint, Bounce: m.Bounce,
	}
	for _, f := range m.Failed {
		q.Refused = append(q.Refused, api.Refusal{Rcpt: f.Rcpt, Status: f.Status, Diagnostic: f.Diagnostic})
	}
	return q
}

// RetryNow makes a queued message, or all with id "", due now.
func (e *Engine) RetryNow(id string) int {
	n := e.queue.RetryNow(id)
	if n > 0 {
		e.bus.Publish(events.Event{Kind: events.Retry, MessageID: id, Count: n})
		if e.paused.Load() {
			e.log.Info("retry requested while paused: the messages go out on resume", "id", id, "count", n)
		}
	}
	return n
}

// Delete removes a queued message without sending it.
func (e *Engine) Delete(id string) error {
	m, ok := e.queue.Get(id)
	if err := e.queue.Delete(id); err != nil {
		return err
	}
	e.subjects.Delete(id)
	ev := events.Event{Kind: events.Deleted, MessageID: id}
	if ok {
		ev.Account, ev.Rcpts = m.Account, m.Rcpts
	}
	e.bus.Publish(ev)
	return nil
}

// Paused reports whether delivery is paused.
func (e *Engine) Paused() bool { return e.paused.Load() }

// Pause holds delivery: mail is still accepted and made durable, and
// nothing goes upstream until Resume. Attempts already under way finish.
// The pause is kept in the spool directory and survives a restart.
func (e *Engine) Pause() error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	if e.paused.Load() {
		return nil
	}
	if err := e.spool.SetPaused(true, time.Now()); err != nil {
		return fmt.Errorf("cannot pause: %w", err)
	}
	e.paused.Store(true)
	e.bus.SetState(e.runState())
	e.log.Info("paused: mail is accepted and queued, and nothing is sent until \"smtpshim resume\"")
	return nil
}

// Resume ends a pause and sends the queue at once.
func (e *Engine) Resume() error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	if !e.paused.Load() {
		return nil
	}
	if err := e.spool.SetPaused(false, time.Time{}); err != nil {
		return fmt.Errorf("cannot resume: %w", err)
	}
	e.paused.Store(false)
	e.bus.SetState(e.runState())
	n := e.queue.RetryNow("")
	e.log.Info("resumed: sending the queue now", "queued", n)
	return nil
}

// localAuthState is what a reload compares to tell whether earlier local
// logins still count.
type localAuthState struct {
	mode string
	pw   [32]byte // SHA-256 of the local password, never the password
}

// localAuthCheck returns the local AUTH check of cfg (nil: AUTH is
// ignored).
func (e *Engine) localAuthCheck(cfg *config.Config) (listener.CheckFunc, localAuthState, error) {
	st := localAuthState{mode: cfg.EffectiveLocalAuth()}
	if st.mode != config.LocalAuthRequire {
		return nil, st, nil
	}
	pw, err := e.o.Secrets.Get(context.Background(), LocalAuthKey)
	if err != nil {
		return nil, st, fmt.Errorf("local_auth = \"require\" needs a local password: set it with \"smtpshim local-password\" (%w)", err)
	}
	st.pw = sha256.Sum256([]byte(pw))
	return listener.PasswordChecker(pw), st, nil
}

// Reload re-reads the config file and applies every setting that can
// change while running: accounts, limits, timeouts, rates, local_auth,
// allow_networks and the retry schedule. A bad file changes nothing. The
// result names what was applied, and has one sentence per changed setting
// that takes a restart (listen addresses, TLS listeners, …): the old
// value of those stays in force, and the reply says so.
func (e *Engine) Reload() (api.ReloadResult, error) {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	e.mu.RLock()
	old := e.cfg
	e.mu.RUnlock()
	if old.Path() == "" {
		return api.ReloadResult{}, errors.New("this smtpshim was started without a config file; there is nothing to reload")
	}
	// Everything that can fail comes before anything is applied.
	cfg, check, las, allowed, err := e.loadForReload(old.Path())
	if err != nil {
		e.log.Error("reload failed; keeping the old configuration", "err", err)
		return api.ReloadResult{}, err
	}
	authChanged := las != e.localAuth
	res := reloadDiff(e.started, old, cfg, authChanged)
	e.srv.Apply(cfg, listener.Live{LocalAuth: check, AuthChanged: authChanged, Allowed: allowed})
	e.localAuth = las
	e.apply(cfg)
	e.credentialsChanged()
	lo, hi := cfg.EffectiveRetry()
	e.queue.SetTiming(lo, hi, cfg.EffectiveMaxAge())
	for _, s := range res.NeedsRestart {
		e.log.Warn(s)
	}
	e.log.Info("configuration reloaded", "accounts", len(cfg.Accounts), "applied", strings.Join(res.Applied, ", "))
	e.bus.Publish(events.Event{Kind: events.Reloaded, Reload: &res})
	e.queue.RetryNow("") // a fixed account may send at once
	return res, nil
}

// loadForReload reads and checks the config file, and prepares what the
// listener needs from it.
func (e *Engine) loadForReload(path string) (*config.Config, listener.CheckFunc, localAuthState, func(netip.Addr) bool, error) {
	// config.Load reads a missing file as an empty config: right for a
	// first start, but a reload would drop every account.
	if _, err := os.Stat(path); err != nil {
		return nil, nil, localAuthState{}, nil, fmt.Errorf("cannot read the config file: %w", err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, localAuthState{}, nil, err
	}
	allowed, err := allowFunc(cfg)
	if err != nil {
		return nil, nil, localAuthState{}, nil, err
	}
	check, las, err := e.localAuthCheck(cfg)
	if err != nil {
		return nil, nil, localAuthState{}, nil, err
	}
	return cfg, check, las, allowed, nil
}

// reloadDiff names the live settings that changed from old to cfg, and
// the restart-only ones that differ from what the engine started with.
func reloadDiff(started, old, cfg *config.Config, authChanged bool) api.ReloadResult {
	res := api.ReloadResult{Applied: []string{}}
	if d := accountsDiff(old, cfg); d != "" {
		res.Applied = append(res.Applied, d)
	}
	oldMin, oldDay := old.EffectiveSenderRates()
	newMin, newDay := cfg.EffectiveSenderRates()
	oldLo, oldHi := old.EffectiveRetry()
	newLo, newHi := cfg.EffectiveRetry()
	live := []struct {
		name    string
		changed bool
	}{
		{"local_auth", authChanged},
		{"allow_networks", !slices.Equal(old.AllowNetworks, cfg.AllowNetworks)},
		{"max_connections", old.EffectiveMaxConnections() != cfg.EffectiveMaxConnections()},
		{"max_connections_per_ip", old.EffectiveMaxConnectionsPerIP() != cfg.EffectiveMaxConnectionsPerIP()},
		{"max_recipients", old.EffectiveMaxRecipients() != cfg.EffectiveMaxRecipients()},
		{"sender_rate_minute", oldMin != newMin},
		{"sender_rate_day", oldDay != newDay},
		{"rate_limit_loopback", old.RateLimitLoopback != cfg.RateLimitLoopback},
		{"data_timeout", old.EffectiveDataTimeout() != cfg.EffectiveDataTimeout()},
		{"sync_wait", old.EffectiveSyncWait() != cfg.EffectiveSyncWait()},
		{"retry_min", oldLo != newLo},
		{"retry_max", oldHi != newHi},
		{"max_age", old.EffectiveMaxAge() != cfg.EffectiveMaxAge()},
		{"min_free_space", old.EffectiveMinFreeSpace() != cfg.EffectiveMinFreeSpace()},
		{"require_tls_for_auth", old.RequireTLSForAuth != cfg.RequireTLSForAuth},
		// Read by each "smtpshim send", which loads the config itself.
		{"default_domain", old.DefaultDomain != cfg.DefaultDomain},
		{"default_from", old.DefaultFrom != cfg.DefaultFrom},
	}
	for _, s := range live {
		if s.changed {
			res.Applied = append(res.Applied, s.name)
		}
	}
	oldSpool, _ := started.EffectiveSpoolDir()
	newSpool, _ := cfg.EffectiveSpoolDir()
	restart := []struct {
		name    string
		changed bool
	}{
		{"listen", !slices.Equal(started.ListenAddrs(), cfg.ListenAddrs())},
		{"listen_tls", !slices.Equal(started.ListenTLS, cfg.ListenTLS)},
		{"starttls", started.StartTLS != cfg.StartTLS},
		// The local TLS config is built once, at start.
		{"local_tls_legacy", started.LocalTLSLegacy != cfg.LocalTLSLegacy},
		{"hostname", started.HostnameOrDefault() != cfg.HostnameOrDefault()},
		{"max_message_size", started.EffectiveMaxMessageSize() != cfg.EffectiveMaxMessageSize()},
		{"max_line_length", started.EffectiveMaxLineLength() != cfg.EffectiveMaxLineLength()},
		{"idle_timeout", started.EffectiveIdleTimeout() != cfg.EffectiveIdleTimeout()},
		{"spool_dir", oldSpool != newSpool},
		{"keychain_timeout", started.EffectiveKeychainTimeout() != cfg.EffectiveKeychainTimeout()},
		// An account's token session is made with its pool, which a
		// reload keeps while the account itself is unchanged.
		{"oauth_provider", !reflect.DeepEqual(started.OAuthProviders, cfg.OAuthProviders)},
		// "smtpshim serve" opens its log file once, at start.
		{"log_file", started.LogFile != cfg.LogFile},
		{"log_file_max_size", started.LogFileMaxSize != cfg.LogFileMaxSize},
		{"log_file_keep", started.LogFileKeep != cfg.LogFileKeep},
	}
	for _, s := range restart {
		if s.changed {
			res.NeedsRestart = append(res.NeedsRestart, s.name+" changed: restart smtpshim to apply it")
		}
	}
	return res
}

// accountsDiff describes how the accounts changed, or "" when they did not.
func accountsDiff(old, cfg *config.Config) string {
	var added, removed, changed []string
	for i := range cfg.Accounts {
		a := &cfg.Accounts[i]
		_, o := old.Find(a.Key())
		switch {
		case o == nil:
			added = append(added, a.Key())
		case *o != *a:
			changed = append(changed, a.Key())
		}
	}
	for i := range old.Accounts {
		if _, n := cfg.Find(old.Accounts[i].Key()); n == nil {
			removed = append(removed, old.Accounts[i].Key())
		}
	}
	var parts []string
	for _, p := range []struct {
		what string
		keys []string
	}{{"added", added}, {"removed", removed}, {"changed", changed}} {
		if len(p.keys) > 0 {
			parts = append(parts, p.what+" "+strings.Join(p.keys, " "))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "accounts (" + strings.Join(parts, "; ") + ")"
}

// List returns the queued messages as the spool keeps them.
func (e *Engine) List() []spool.Meta { return e.queue.List() }

// Get returns one queued message as the spool keeps it.
func (e *Engine) Get(id string) (spool.Meta, bool) { return e.queue.Get(id) }
