// Package shim is smtpshim's engine: it accepts mail from local clients,
// routes it by envelope sender to an account, and submits it upstream, with
// a durable queue for what can't go out at once. It has no user interface;
// a UI subscribes to its events and sends it commands.
package shim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/control"
	"github.com/smtpshim/smtpshim/shim/events"
	"github.com/smtpshim/smtpshim/shim/hints"
	"github.com/smtpshim/smtpshim/shim/listener"
	"github.com/smtpshim/smtpshim/shim/localcert"
	"github.com/smtpshim/smtpshim/shim/oauth"
	"github.com/smtpshim/smtpshim/shim/queue"
	"github.com/smtpshim/smtpshim/shim/relay"
	"github.com/smtpshim/smtpshim/shim/route"
	"github.com/smtpshim/smtpshim/shim/secrets"
	"github.com/smtpshim/smtpshim/shim/spool"
	"github.com/smtpshim/smtpshim/shim/upstream"
)

// Options are the engine's replaceable parts.
type Options struct {
	// Secrets supplies account passwords; nil means the OS keychain.
	Secrets secrets.Store
	// Logger receives the log; nil discards it.
	Logger *slog.Logger
	// Dialer opens upstream connections; nil means the network.
	Dialer upstream.Dialer
	// UpstreamTLS is the base TLS config for upstream connections (tests
	// and the demo add their own CA to it).
	UpstreamTLS *tls.Config
	// Listeners, when set, are served instead of the configured addresses.
	Listeners []net.Listener
	// NoControl disables the control socket.
	NoControl bool
	// Trace, when set, receives SMTP protocol traces of both sides, with
	// credentials masked.
	Trace io.Writer
	// OAuth tunes the token handling of OAuth2 accounts (tests point its
	// HTTP client at a local authorization server).
	OAuth oauth.Options
	// Version is shown in the status.
	Version string
	// Authenticator builds each account's credential; nil means
	// DefaultAuthenticator over Secrets.
	Authenticator func(*config.Account) (upstream.Authenticator, error)
}

// DefaultAuthenticator returns the factory of account credentials: the one
// place that knows which kind of credential an account has. OAuth2
// accounts find their provider in cfg and share token sessions through
// sessions (nil: the factory keeps its own).
func DefaultAuthenticator(cfg *config.Config, store secrets.Store, sessions *oauth.Manager) func(*config.Account) (upstream.Authenticator, error) {
	timeout := cfg.EffectiveKeychainTimeout()
	if sessions == nil {
		sessions = oauth.NewManager(store, oauth.Options{KeychainTimeout: timeout})
	}
	return func(a *config.Account) (upstream.Authenticator, error) {
		switch {
		case a.OAuth != "":
			auth, err := sessions.Authenticator(cfg, a)
			if err != nil {
				return nil, err
			}
			return auth, nil
		default:
			return upstream.NewPasswordAuth(a, store, timeout), nil
		}
	}
}

// authenticator is the credential factory for the accounts of cfg.
func (e *Engine) authenticator(cfg *config.Config) func(*config.Account) (upstream.Authenticator, error) {
	if e.o.Authenticator != nil {
		return e.o.Authenticator
	}
	return DefaultAuthenticator(cfg, e.o.Secrets, e.oauth)
}

// Engine is a running smtpshim.
type Engine struct {
	o     Options
	log   *slog.Logger
	bus   *events.Bus
	spool *spool.Spool
	queue *queue.Queue
	srv   *listener.Server
	relay *relay.Relay
	lns   []net.Listener
	tlns  []net.Listener // implicit TLS
	ctl   net.Listener

	// wg tracks the goroutines the engine starts besides the listeners,
	// the queue and the control server; Run waits for them.
	wg sync.WaitGroup

	// oauth keeps the token sessions of OAuth2 accounts across reloads,
	// so that all their connections share one access token.
	oauth *oauth.Manager

	mu     sync.RWMutex
	cfg    *config.Config
	routes *route.Table
	pools  map[string]*upstream.Pool

	// started is the config the engine started with: settings that need a
	// restart are compared against it, so a reload keeps saying so until
	// the restart.
	started *config.Config
	// reloadMu makes reloads, pause and resume one at a time.
	reloadMu  sync.Mutex
	localAuth localAuthState
	paused    atomic.Bool
	running   atomic.Bool
	stopping  atomic.Bool
	subjects  sync.Map // message ID -> Subject header, for the queue listing
}

// New validates cfg, opens the spool and binds the listeners. Nothing is
// served until Run.
func New(cfg *config.Config, o Options) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Secrets == nil {
		o.Secrets = secrets.NewKeychain(cfg.EffectiveKeychainTimeout())
	}
	if o.OAuth.KeychainTimeout <= 0 {
		o.OAuth.KeychainTimeout = cfg.EffectiveKeychainTimeout()
	}
	e := &Engine{o: o, log: o.Logger, bus: &events.Bus{}, started: cfg, oauth: oauth.NewManager(o.Secrets, o.OAuth)}
	e.bus.SetState(api.Starting)
	allowed, err := allowFunc(cfg)
	if err != nil {
		return nil, err
	}
	dir, err := cfg.EffectiveSpoolDir()
	if err != nil {
		return nil, err
	}
	if e.spool, err = spool.Open(dir); err != nil {
		if errors.Is(err, spool.ErrLocked) {
			return nil, fmt.Errorf("another smtpshim is already running with the spool %s", dir)
		}
		return nil, fmt.Errorf("cannot use the spool directory %s: %w", dir, err)
	}
	if _, paused := e.spool.Paused(); paused {
		e.paused.Store(true)
		e.log.Warn("smtpshim is paused: mail is accepted and queued, and nothing is sent until \"smtpshim resume\"")
	}
	e.apply(cfg)
	lo, hi := cfg.EffectiveRetry()
	e.queue = queue.New(queue.Options{
		Spool:    e.spool,
		Pool:     e.pool,
		Routes:   e.currentRoutes,
		Bus:      e.bus,
		Logger:   e.log,
		Hostname: cfg.HostnameOrDefault(),
		MaxAge:   cfg.EffectiveMaxAge(),
		RetryMin: lo,
		RetryMax: hi,
		Paused:   e.paused.Load,
	})
	if err := e.queue.Load(); err != nil {
		e.log.Error("some queued messages could not be read", "err", err)
	}
	e.relay = relay.New(relay.Options{
		Pool:     e.pool,
		Queue:    e.queue,
		Spool:    e.spool,
		Bus:      e.bus,
		Logger:   e.log,
		SyncWait: cfg.EffectiveSyncWait(),
		Paused:   e.paused.Load,
	})
	check, las, err := e.localAuthCheck(cfg)
	if err != nil {
		e.spool.Close()
		return nil, err
	}
	e.localAuth = las
	var localTLS *tls.Config
	if cfg.StartTLS || len(cfg.ListenTLS) > 0 {
		if localTLS, err = LocalTLSConfig(cfg); err != nil {
			e.spool.Close()
			return nil, err
		}
	}
	e.srv = listener.New(listener.Options{
		TLSConfig: localTLS,
		Trace:     o.Trace,
		Config:    cfg,
		Routes:    e.currentRoutes,
		Relay:     e.relay,
		Spool:     e.spool,
		Bus:       e.bus,
		Logger:    e.log,
		LocalAuth: check,
		Allowed:   allowed,
	})
	e.lns = o.Listeners
	if len(e.lns) == 0 {
		for _, addr := range cfg.ListenAddrs() {
			l, err := net.Listen("tcp", addr)
			if err != nil && len(cfg.Listen) == 0 && strings.HasPrefix(addr, "[::1]") && len(e.lns) > 0 {
				// The default includes IPv6 loopback, which some machines
				// have switched off; IPv4 loopback alone is fine then.
				e.log.Info("IPv6 loopback not available; listening on IPv4 only", "err", err)
				continue
			}
			if err != nil {
				e.closeListeners()
				e.spool.Close()
				return nil, fmt.Errorf("cannot listen on %s: %w (is another smtpshim or mail server using the port? change listen in the config)", addr, err)
			}
			e.lns = append(e.lns, l)
		}
	}
	if len(o.Listeners) == 0 {
		for _, addr := range cfg.ListenTLS {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				e.closeListeners()
				e.spool.Close()
				return nil, fmt.Errorf("cannot listen on %s (listen_tls): %w", addr, err)
			}
			e.tlns = append(e.tlns, l)
		}
	}
	if !o.NoControl {
		if e.ctl, err = control.Listen(dir); err != nil {
			e.log.Warn("no control socket; queue commands will not reach this process", "err", err)
		}
	}
	var listen []string
	for _, a := range append(e.Addrs(), e.TLSAddrs()...) {
		listen = append(listen, a.String())
	}
	e.bus.SetInfo(o.Version, listen)
	return e, nil
}

// LocalAuthKey is the keychain entry of the local AUTH password.
const LocalAuthKey = "local:smtp-auth"

// allowFunc returns which client addresses may connect: loopback, plus
// allow_networks. A listener on a non-loopback address without
// allow_networks is refused: it would only invite refused connections, or
// worse, suggest the shim is open.
func allowFunc(cfg *config.Config) (func(netip.Addr) bool, error) {
	var nets []netip.Prefix
	for _, n := range cfg.AllowNetworks {
		p, _ := netip.ParsePrefix(n)
		nets = append(nets, p.Masked())
	}
	if len(nets) == 0 {
		for _, l := range append(cfg.ListenAddrs(), cfg.ListenTLS...) {
			host, _, _ := net.SplitHostPort(l)
			ip, err := netip.ParseAddr(host)
			if host == "localhost" || (err == nil && ip.IsLoopback()) {
				continue
			}
			return nil, fmt.Errorf("listen %q is reachable from other computers, but allow_networks is empty: list the networks that may send mail through smtpshim (e.g. allow_networks = [\"192.168.1.0/24\"]), or listen on 127.0.0.1 only", l)
		}
	}
	return func(a netip.Addr) bool {
		if a.IsLoopback() {
			return true
		}
		for _, p := range nets {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}, nil
}

func (e *Engine) upstreamOptions(cfg *config.Config) upstream.Options {
	return upstream.Options{
		Hostname:        cfg.HostnameOrDefault(),
		Secrets:         e.o.Secrets,
		Authenticator:   e.authenticator(cfg),
		Dialer:          e.o.Dialer,
		Logger:          e.log,
		TLSConfig:       e.o.UpstreamTLS,
		KeychainTimeout: cfg.EffectiveKeychainTimeout(),
		Trace:           e.o.Trace,
	}
}

// LocalTLSConfig is the TLS offered to local clients: a generated
// certificate kept next to the config file, naming localhost and the
// listen addresses (and the host name, when clients come from the LAN),
// and TLS 1.2 and later. With local_tls_legacy, TLS 1.0 and 1.1 with the
// older cipher suites too, for scan-to-email printers and 2000s-era
// clients that speak nothing newer. The upstream side never goes below 1.2.
func LocalTLSConfig(cfg *config.Config) (*tls.Config, error) {
	dir := filepath.Dir(cfg.Path())
	if cfg.Path() == "" {
		d, err := config.DefaultPath()
		if err != nil {
			return nil, err
		}
		dir = filepath.Dir(d)
	}
	pair, err := localcert.LoadOrCreate(dir, localTLSNames(cfg))
	if err != nil {
		return nil, fmt.Errorf("local TLS certificate: %w", err)
	}
	if !cfg.LocalTLSLegacy {
		return &tls.Config{Certificates: []tls.Certificate{pair.Cert}, MinVersion: tls.VersionTLS12}, nil
	}
	suites := []uint16{}
	for _, cs := range tls.CipherSuites() {
		suites = append(suites, cs.ID)
	}
	for _, cs := range tls.InsecureCipherSuites() {
		// RSA key exchange and 3DES are what Windows XP-era clients have;
		// RC4 is broken beyond use and stays out.
		if !strings.Contains(cs.Name, "RC4") {
			suites = append(suites, cs.ID)
		}
	}
	return &tls.Config{
		Certificates: []tls.Certificate{pair.Cert},
		MinVersion:   tls.VersionTLS10,
		CipherSuites: suites,
	}, nil
}

// apply installs cfg's accounts, keeping the pools of unchanged accounts.
func (e *Engine) apply(cfg *config.Config) {
	uo := e.upstreamOptions(cfg)
	pools := make(map[string]*upstream.Pool, len(cfg.Accounts))
	e.mu.Lock()
	old := e.pools
	for i := range cfg.Accounts {
		a := &cfg.Accounts[i]
		if p, ok := old[a.Key()]; ok && *p.Account() == *a {
			pools[a.Key()] = p
			delete(old, a.Key())
			continue
		}
		key := a.Key()
		pools[key] = upstream.NewPool(a, uo, func(h upstream.Health) { e.healthChanged(key, h) })
	}
	e.cfg, e.routes, e.pools = cfg, route.New(cfg.Accounts), pools
	e.mu.Unlock()
	infos := make([]events.AccountInfo, len(cfg.Accounts))
	for i := range cfg.Accounts {
		a := &cfg.Accounts[i]
		infos[i] = events.AccountInfo{Key: a.Key(), Server: a.Server, Auth: "password"}
		if a.OAuth != "" {
			infos[i].Auth = "oauth2"
		}
	}
	e.bus.SetAccounts(infos)
	for _, p := range old {
		p.Close()
	}
}

func (e *Engine) healthChanged(account string, h upstream.Health) {
	ev := events.Event{Kind: events.AccountHealth, Account: account, Healthy: h.Healthy, Problem: h.Problem, Attention: h.Attention()}
	if h.LastError != nil {
		ev.Error = h.LastError.Error()
		ev.Hint = hints.ForAccount(h.LastError, account)
	}
	fix := "smtpshim account add " + account
	if h.Problem == upstream.ProblemSignInNeeded {
		fix = "smtpshim account login " + account
	}
	switch {
	case h.Held:
		e.log.Error("the provider refused the account's credential; its mail is held until it is updated", "account", account,
			"problem", h.Problem, "err", h.LastError, "hint", ev.Hint, "fix", fix)
	case h.Problem != "":
		e.log.Warn("cannot get the account's credential; its mail is kept", "account", account,
			"problem", h.Problem, "err", h.LastError, "hint", ev.Hint, "next_try", h.NextProbe.Format(time.RFC3339))
	case h.LastError != nil:
		e.log.Warn("account's server unreachable", "account", account, "err", h.LastError, "hint", ev.Hint, "next_try", h.NextProbe.Format(time.RFC3339))
	default:
		e.log.Info("account's server reachable again", "account", account)
	}
	e.bus.Publish(ev)
}

func (e *Engine) currentRoutes() *route.Table {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.routes
}

func (e *Engine) pool(account string) *upstream.Pool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.pools[account]
}

// credentialsChanged lifts every credential hold: a reload is how a new
// password reaches a running relay ("smtpshim account add" asks for one),
// so the held mail goes out at once, and is held again if the provider
// still refuses.
func (e *Engine) credentialsChanged() {
	e.mu.RLock()
	defer e.mu.RUnlock()
	for key, p := range e.pools {
		if p.CredentialChanged() {
			e.log.Info("trying the account's credential again", "account", key)
		}
	}
}

// Addrs returns the addresses the listener serves.
func (e *Engine) Addrs() []net.Addr {
	var out []net.Addr
	for _, l := range e.lns {
		out = append(out, l.Addr())
	}
	return out
}

// Bus returns the status stream.
func (e *Engine) Bus() *events.Bus { return e.bus }

// Queue returns the retry queue.
func (e *Engine) Queue() *queue.Queue { return e.queue }

// Run serves until ctx ends, then shuts down gracefully: sessions get a
// few seconds to finish, and queued mail stays on disk for the next start.
func (e *Engine) Run(ctx context.Context) error {
	qctx, stopQueue := context.WithCancel(context.Background())
	qdone := make(chan struct{})
	go func() { e.queue.Run(qctx); close(qdone) }()

	e.running.Store(true)
	e.bus.SetState(e.runState())
	var ctlSrv *http.Server
	if e.ctl != nil {
		ctlSrv = &http.Server{Handler: control.Handler(e), ReadHeaderTimeout: 10 * time.Second}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			ctlSrv.Serve(e.ctl)
		}()
	}
	errc := make(chan error, len(e.lns)+len(e.tlns))
	for _, l := range e.lns {
		e.log.Info("listening", "addr", l.Addr().String())
		go func(l net.Listener) { errc <- e.srv.Serve(l) }(l)
	}
	for _, l := range e.tlns {
		e.log.Info("listening with implicit TLS", "addr", l.Addr().String())
		go func(l net.Listener) { errc <- e.srv.ServeTLS(l) }(l)
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.checkCredentials(ctx)
	}()
	var err error
	serving := len(e.lns) + len(e.tlns)
	select {
	case <-ctx.Done():
	case err = <-errc:
		serving--
	}
	e.stopping.Store(true)
	e.bus.SetState(api.Stopping)
	e.log.Info("shutting down: waiting for client sessions to end (up to 10s), then for provider answers and queue attempts in flight",
		"sessions", e.srv.Sessions(), "deliveries_in_flight", e.relay.InFlight())
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := e.srv.Shutdown(sctx); err != nil {
		e.log.Warn("client sessions did not end in time; closed them", "err", err)
	}
	cancel()
	for ; serving > 0; serving-- {
		<-errc // every Serve has returned
	}
	// Late answers and early MAIL FROMs settle into the queue: they end
	// before it stops.
	if n := e.relay.InFlight(); n > 0 {
		e.log.Info("shutting down: cutting provider answers still awaited; their messages stay queued", "count", n)
	}
	e.relay.Close()
	// A session whose client Shutdown cut off may still be settling its
	// message into the queue: it ends before the queue and spool close.
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := e.srv.WaitSessions(wctx); err != nil {
		e.log.Warn("shutting down without waiting further for client sessions", "err", err)
	}
	wcancel()
	if ctlSrv != nil {
		// Watchers get the last events and a clean end of their stream.
		e.bus.EndWatches()
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ctlSrv.Shutdown(cctx)
		cancel()
		ctlSrv.Close()
	}
	stopQueue()
	<-qdone
	e.wg.Wait()
	e.mu.RLock()
	for _, p := range e.pools {
		p.Close()
	}
	e.mu.RUnlock()
	e.spool.Close()
	e.log.Info("stopped")
	return err
}

// checkCredentials reads every account's credential once at start, so that
// a locked or missing keychain (a system service, an SSH login) is said at
// once, naming the account and what to do, and the account's status says
// "keychain unavailable" rather than "server down" when mail arrives.
func (e *Engine) checkCredentials(ctx context.Context) {
	e.mu.RLock()
	timeout := e.cfg.EffectiveKeychainTimeout() + time.Second
	pools := make(map[string]*upstream.Pool, len(e.pools))
	for k, p := range e.pools {
		pools[k] = p
	}
	e.mu.RUnlock()
	for key, p := range pools {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err := p.CheckCredential(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			continue
		}
		what := "unlock the keychain, or set password_command for the account"
		switch {
		case errors.Is(err, secrets.ErrNotFound):
			what = "store its password with \"smtpshim account add " + key + "\""
		case errors.Is(err, secrets.ErrCommandFailed):
			what = "run the account's password_command yourself to see why it fails, and fix it"
		}
		if upstream.CredentialProblem(err) == upstream.ProblemSignInNeeded {
			what = "sign in with \"smtpshim account login " + key + "\""
		}
		e.log.Warn("cannot get the password of an account; its mail cannot go out until this is fixed",
			"account", key, "problem", upstream.CredentialProblem(err), "err", err, "fix", what)
	}
}

func (e *Engine) closeListeners() {
	for _, l := range append(e.lns, e.tlns...) {
		l.Close()
	}
}

// TLSAddrs returns the addresses of the implicit-TLS listeners.
func (e *Engine) TLSAddrs() []net.Addr {
	var out []net.Addr
	for _, l := range e.tlns {
		out = append(out, l.Addr())
	}
	return out
}
