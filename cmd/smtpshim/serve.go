package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/smtpshim/smtpshim/shim"
	"github.com/smtpshim/smtpshim/shim/config"
)

func (a *app) serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	traceOn := fs.Bool("trace", false, "log both sides of every SMTP conversation (credentials are shown as ***)")
	logFile := fs.String("log-file", "", "write the log to this file, rotated by size, instead of standard error")
	if err := fs.Parse(args); err != nil {
		return exit(exUsage, "%v", err)
	}
	if err := noArgs("serve", fs.Args()); err != nil {
		return err
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	if err := cfg.CheckFiles(); err != nil {
		return exit(exConfig, "config %s: %v", cfg.Path(), err)
	}
	quietGC() // a relay that waits all day must not be woken to collect
	// Undocumented, for cmd/shimbench: a CPU profile of the whole run,
	// written when the relay stops.
	if p := os.Getenv("SMTPSHIM_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			return exit(exIOErr, "SMTPSHIM_CPUPROFILE: %v", err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	// Signals are caught from here on: a stop during start-up is orderly.
	base := a.ctx
	if base == nil {
		base = context.Background()
	}
	ctx, stop := signal.NotifyContext(base, os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := a.stderr
	if *logFile == "" && a.logOut != nil {
		out = a.logOut
	} else if *logFile == "" {
		*logFile = cfg.LogFile
	}
	if *logFile != "" {
		size, keep := cfg.EffectiveLogFileRotation()
		lf, err := openLogFile(*logFile, size, keep)
		if err != nil {
			return exit(exIOErr, "log file: %v", err)
		}
		defer lf.Close()
		fmt.Fprintf(a.stderr, "smtpshim: logging to %s\n", *logFile)
		out = lf
	}
	log := a.loggerTo(out)
	opts := shim.Options{Logger: log, Secrets: keychain(cfg), Version: version}
	if *traceOn {
		opts.Trace = out
	}
	eng, err := shim.New(cfg, opts)
	if err != nil {
		return exit(exConfig, "%v", err)
	}
	var addrs []string
	for _, ad := range eng.Addrs() {
		addrs = append(addrs, ad.String())
	}
	if len(cfg.Accounts) == 0 {
		log.Warn("no accounts yet: every sender will be refused; add one with \"smtpshim account add you@example.com --server smtp.example.com:587\"", "config", cfg.Path())
	}
	login := "no authentication"
	if cfg.EffectiveLocalAuth() == config.LocalAuthRequire {
		login = "clients must log in with the local password (local_auth = \"require\"; set it with smtpshim local-password)"
	}
	fmt.Fprintf(out, "smtpshim %s: listening on %s with %d account(s); point your mail client's outgoing server there, %s\n",
		version, strings.Join(addrs, ", "), len(cfg.Accounts), login)
	go func() {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		for range hup {
			eng.Reload() // it logs what it applied, and what failed
		}
	}()
	return eng.Run(ctx)
}

// openLogFile opens the log file, which is rotated when it reaches size
// bytes (to FILE-<time>.log; keep old ones are kept). Only the owner can
// read it: it names senders and recipients.
func openLogFile(path string, size int64, keep int) (io.WriteCloser, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	// Open it once now, so that a bad path fails at start, not at the
	// first log line.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	f.Close()
	mb := int((size + (1<<20 - 1)) >> 20) // lumberjack counts megabytes
	return &lumberjack.Logger{Filename: path, MaxSize: max(mb, 1), MaxBackups: keep}, nil
}
