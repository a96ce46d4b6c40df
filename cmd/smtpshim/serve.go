package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/smtpshim/smtpshim/shim"
)

func (a *app) serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	traceOn := fs.Bool("trace", false, "log both sides of every SMTP conversation (credentials are shown as ***)")
	if err := fs.Parse(args); err != nil {
		return exit(exUsage, "%v", err)
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
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
	log := a.logger()
	opts := shim.Options{Logger: log, Version: version}
	if *traceOn {
		opts.Trace = a.stderr
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
	fmt.Fprintf(a.stderr, "smtpshim %s: listening on %s with %d account(s); point your mail client's outgoing server there, no authentication\n",
		version, strings.Join(addrs, ", "), len(cfg.Accounts))
	base := a.ctx
	if base == nil {
		base = context.Background()
	}
	ctx, stop := signal.NotifyContext(base, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		for range hup {
			eng.Reload() // it logs what it applied, and what failed
		}
	}()
	return eng.Run(ctx)
}
