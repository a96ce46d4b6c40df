package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/hints"
	"github.com/smtpshim/smtpshim/shim/oauth"
	"github.com/smtpshim/smtpshim/shim/secrets"
)

// loginFlags are the sign-in options of `account add --oauth` and
// `account login`.
type loginFlags struct {
	device    *bool
	noBrowser *bool
}

func addLoginFlags(fs *flag.FlagSet) loginFlags {
	return loginFlags{
		device:    fs.Bool("device", false, "OAuth2: sign in with a code entered on another device (Microsoft only)"),
		noBrowser: fs.Bool("no-browser", false, "OAuth2: print the sign-in address instead of opening a browser"),
	}
}

// signIn runs the OAuth2 sign-in for acct and stores its refresh token.
func (a *app) signIn(cfg *config.Config, acct *config.Account, lf loginFlags) error {
	p, err := oauth.Resolve(cfg, acct.OAuth)
	if err != nil {
		return exit(exConfig, "%s: %v", acct.Key(), err)
	}
	err = oauth.Login(context.Background(), p, acct.Key(), keychain(cfg), oauth.LoginOptions{
		Device: *lf.device, NoBrowser: *lf.noBrowser, Out: a.stderr, LoginHint: acct.Login(),
	})
	if err != nil {
		msg := fmt.Sprintf("signing in %s to %s failed: %v", acct.Key(), p.Title, err)
		if h := hints.For(err); h != "" {
			msg += "\nhint: " + h
		}
		if errors.Is(err, secrets.ErrUnavailable) {
			return exit(exUnavailable, "%s", msg)
		}
		return exit(exNoPerm, "%s", msg)
	}
	fmt.Fprintf(a.stdout, "%s is signed in to %s; the refresh token is in the OS keychain\n", acct.Key(), p.Title)
	return nil
}

// accountLogin signs an OAuth2 account in again; held mail then goes out
// at its next retry.
func (a *app) accountLogin(args []string) error {
	fs := flag.NewFlagSet("account login", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	lf := addLoginFlags(fs)
	who, err := splitPositional(fs, args)
	if err != nil {
		return err
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	_, acct := cfg.Find(who)
	if acct == nil {
		return exit(exNoUser, "no account %s in %s (add it with: smtpshim account add %s --oauth microsoft|google)", who, cfg.Path(), who)
	}
	if acct.OAuth == "" {
		return exit(exUsage, "account %s signs in with a password, not OAuth2: store a new password with `smtpshim account add %s`, or switch it with --oauth microsoft|google", acct.Key(), acct.Key())
	}
	if err := a.signIn(cfg, acct, lf); err != nil {
		return err
	}
	a.notifyDaemon(cfg)
	return nil
}

// oauthState says whether an OAuth2 account holds a sign-in, never what.
func oauthState(store secrets.Store, ac *config.Account) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := store.Get(ctx, ac.Key())
	switch {
	case err == nil:
		return "signed in (" + ac.OAuth + ")"
	case errors.Is(err, secrets.ErrNotFound):
		return "SIGN-IN NEEDED (smtpshim account login " + ac.Key() + ")"
	default:
		return "keychain unavailable"
	}
}
