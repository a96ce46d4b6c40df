package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/smtpshim/smtpshim/shim"
	"github.com/smtpshim/smtpshim/shim/localcert"
)

// localPassword stores the password local clients must give when
// local_auth = "require" (LAN mode).
func (a *app) localPassword(args []string) error {
	fs := flag.NewFlagSet("local-password", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	pwStdin := fs.Bool("password-stdin", false, "read the password from standard input")
	if err := fs.Parse(args); err != nil {
		return exit(exUsage, "%v", err)
	}
	if err := noArgs("local-password", fs.Args()); err != nil {
		return err
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	pw, err := a.readPassword(*pwStdin, "local clients")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.EffectiveKeychainTimeout()+time.Second)
	defer cancel()
	if err := keychain(cfg).Set(ctx, shim.LocalAuthKey, pw); err != nil {
		return exit(exUnavailable, "could not store the local password: %v", err)
	}
	fmt.Fprintln(a.stdout, "local password stored in the OS keychain; clients must log in with it when local_auth = \"require\"")
	a.notifyDaemon(cfg)
	return nil
}

// cert hands out the local TLS listener's CA certificate, for clients that
// want to verify the connection to smtpshim.
func (a *app) cert(args []string) error {
	if len(args) == 0 || args[0] != "export" {
		return exit(exUsage, "usage: smtpshim cert export [--out FILE]")
	}
	fs := flag.NewFlagSet("cert export", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	out := fs.String("out", "", "write the certificate to FILE instead of standard output")
	if err := fs.Parse(args[1:]); err != nil {
		return exit(exUsage, "%v", err)
	}
	if err := noArgs("cert export", fs.Args()); err != nil {
		return err
	}
	p, err := a.path()
	if err != nil {
		return exit(exConfig, "%v", err)
	}
	pair, err := localcert.LoadOrCreate(filepath.Dir(p), nil)
	if err != nil {
		return exit(exIOErr, "%v", err)
	}
	if *out == "" {
		_, err = a.stdout.Write(pair.CAPEM)
		return err
	}
	if err := os.WriteFile(*out, pair.CAPEM, 0o644); err != nil {
		return exit(exIOErr, "%v", err)
	}
	fmt.Fprintf(a.stderr, "wrote %s: import it into the mail client or device as a trusted certificate authority\n", *out)
	return nil
}
