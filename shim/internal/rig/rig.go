// Package rig is the one test rig of the engine: a running Engine over a
// simulated provider (Start), a raw SMTP client that sends exactly what it
// is told (Client), and a recorder of the engine's events (Recorder). The
// engine tests, the hostile-client suite and the end-to-end tests share it.
package rig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/internal/testbin"
	"github.com/smtpshim/smtpshim/shim/internal/testlog"
	"github.com/smtpshim/smtpshim/shim/oauth"
	"github.com/smtpshim/smtpshim/shim/secrets"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

// Sim starts a simulated provider for the test; its users' passwords join
// the secret scan of the test logs.
func Sim(tb testing.TB, o upstreamsim.Options) *upstreamsim.Server {
	tb.Helper()
	testlog.Secrets(o.Users)
	sim, err := upstreamsim.Start(o)
	if err != nil {
		tb.Fatalf("starting the simulated provider: %v", err)
	}
	tb.Cleanup(func() { sim.Close() })
	return sim
}

// Options adjust an engine rig.
type Options struct {
	// Secrets are stored in a memory keychain (account key → password).
	Secrets map[string]string
	// Store replaces the memory keychain.
	Store secrets.Store
	// UpstreamCAs are trusted for upstream TLS (the sims' Cert.Pool).
	UpstreamCAs *x509.CertPool
	// Control serves the control socket.
	Control bool
	// Quiet discards the log (benchmarks); it still goes to the secret scan.
	Quiet bool
	// Bind lets the engine bind cfg.Listen and cfg.ListenTLS itself;
	// otherwise it serves a listener on a free loopback port.
	Bind bool
	// Trace collects the SMTP protocol traces in Engine.Trace.
	Trace bool
	// Wrap, when set, stands between the engine and its listener.
	Wrap func(net.Listener) net.Listener
	// OnLog registers log hooks before Run starts (message → func).
	OnLog map[string]func()
	// BeforeStop runs before the engine is stopped (e.g. to release a
	// stalled provider).
	BeforeStop func()
	// StopWait bounds how long Stop waits for Run; default 30 s.
	StopWait time.Duration
	// Log, when set, receives the log too (for tests of log lines).
	Log io.Writer
	// OAuth tunes token handling for OAuth2 accounts (a clock, an HTTP
	// client for a test authorization server).
	OAuth oauth.Options
}

// Engine is a running engine.
type Engine struct {
	*shim.Engine
	Config  *config.Config
	Addr    string // the plain listener
	TLSAddr string // the first implicit-TLS listener, if any
	// Memory is the memory keychain (nil when Options.Store replaced it).
	Memory *secrets.Memory
	Hooks  *LogHooks
	Trace  *testbin.Buffer
	// Stop cancels Run and waits for it; safe to call more than once, and
	// called at the end of the test.
	Stop func()
}

// Start creates an engine for cfg and runs it until the test ends.
func Start(tb testing.TB, cfg *config.Config, o Options) *Engine {
	tb.Helper()
	e := &Engine{Config: cfg, Hooks: &LogHooks{}}
	var store secrets.Store = o.Store
	if store == nil {
		e.Memory = secrets.NewMemory()
		for k, v := range o.Secrets {
			testlog.Secret(v)
			if err := e.Memory.Set(context.Background(), k, v); err != nil {
				tb.Fatal(err)
			}
		}
		store = e.Memory
	}
	for msg, fn := range o.OnLog {
		e.Hooks.On(msg, fn)
	}
	opts := shim.Options{
		Secrets:   store,
		Logger:    e.logger(tb, o.Quiet, o.Log),
		NoControl: !o.Control,
		OAuth:     o.OAuth,
	}
	if o.UpstreamCAs != nil {
		opts.UpstreamTLS = &tls.Config{RootCAs: o.UpstreamCAs}
	}
	if o.Trace {
		e.Trace = &testbin.Buffer{}
		opts.Trace = e.Trace
	}
	var ln net.Listener
	if !o.Bind {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			tb.Fatal(err)
		}
		opts.Listeners = []net.Listener{ln}
		if o.Wrap != nil {
			opts.Listeners[0] = o.Wrap(ln)
		}
	}
	eng, err := shim.New(cfg, opts)
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		tb.Fatalf("shim.New: %v", err)
	}
	e.Engine = eng
	e.Addr = eng.Addrs()[0].String()
	if a := eng.TLSAddrs(); len(a) > 0 {
		e.TLSAddr = a[0].String()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	wait := o.StopWait
	if wait <= 0 {
		wait = 30 * time.Second
	}
	e.Stop = sync.OnceFunc(func() {
		if o.BeforeStop != nil {
			o.BeforeStop()
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("Engine.Run: %v", err)
			}
		case <-time.After(wait):
			buf := make([]byte, 4<<20)
			buf = buf[:runtime.Stack(buf, true)]
			tb.Errorf("Engine.Run did not return within %s of cancel; the goroutines:\n%s", wait, buf)
		}
	})
	tb.Cleanup(e.Stop)
	return e
}

// logger sends the log to t.Log until the test is over, to the secret
// scan of `make test`, and through the hooks.
func (e *Engine) logger(tb testing.TB, quiet bool, extra io.Writer) *slog.Logger {
	var h slog.Handler = slog.DiscardHandler
	if f := testlog.Writer(); f != nil {
		h = slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	if extra != nil {
		h = slog.NewTextHandler(extra, &slog.HandlerOptions{Level: slog.LevelDebug})
		if f := testlog.Writer(); f != nil {
			h = slog.NewTextHandler(io.MultiWriter(extra, f), &slog.HandlerOptions{Level: slog.LevelDebug})
		}
	}
	if !quiet {
		w := &tbWriter{tb: tb}
		tb.Cleanup(w.close) // runs after the engine stopped
		var out io.Writer = w
		if f := testlog.Writer(); f != nil {
			out = io.MultiWriter(w, f)
		}
		if extra != nil {
			out = io.MultiWriter(out, extra)
		}
		h = slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	return slog.New(hookHandler{h, e.Hooks})
}

// tbWriter sends the engine's log to t.Log until the test is over.
type tbWriter struct {
	mu   sync.RWMutex
	tb   testing.TB
	done bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if !w.done {
		w.tb.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tbWriter) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// LogHooks run a function the first time the engine logs a message.
type LogHooks struct {
	mu    sync.Mutex
	hooks []*logHook
}

type logHook struct {
	msg  string
	fn   func()
	once sync.Once
}

// On runs fn (once) when the engine logs msg.
func (h *LogHooks) On(msg string, fn func()) {
	h.mu.Lock()
	h.hooks = append(h.hooks, &logHook{msg: msg, fn: fn})
	h.mu.Unlock()
}

func (h *LogHooks) fire(msg string) {
	h.mu.Lock()
	hs := slices.Clone(h.hooks)
	h.mu.Unlock()
	for _, k := range hs {
		if k.msg == msg {
			k.once.Do(k.fn)
		}
	}
}

type hookHandler struct {
	slog.Handler
	hooks *LogHooks
}

func (h hookHandler) Handle(ctx context.Context, r slog.Record) error {
	h.hooks.fire(r.Message)
	return h.Handler.Handle(ctx, r)
}

func (h hookHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return hookHandler{h.Handler.WithAttrs(as), h.hooks}
}

func (h hookHandler) WithGroup(name string) slog.Handler {
	return hookHandler{h.Handler.WithGroup(name), h.hooks}
}

// WaitUntil polls cond until it holds or d passes.
func WaitUntil(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
