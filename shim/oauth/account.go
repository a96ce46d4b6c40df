package oauth

import (
	"context"
	"fmt"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/secrets"
)

// LoginAccount signs acct in to its provider (acct.OAuth, resolved in cfg)
// and stores the refresh token under the account's key. It is what
// `smtpshim account login` runs; a settings page or tray item that wants
// to show the address itself uses StartAccountLogin instead.
func LoginAccount(ctx context.Context, cfg *config.Config, acct *config.Account, store secrets.Store, o LoginOptions) error {
	p, err := accountProvider(cfg, acct)
	if err != nil {
		return err
	}
	if o.LoginHint == "" {
		o.LoginHint = acct.Login()
	}
	return Login(ctx, p, acct.Key(), store, o)
}

// StartAccountLogin starts a browser sign-in for acct and returns at once:
// Pending.URL is the address to open (as a link, or with OpenBrowser), and
// Pending.Wait finishes the sign-in when the browser comes back. Close
// abandons it.
func StartAccountLogin(cfg *config.Config, acct *config.Account, store secrets.Store, o LoginOptions) (*Pending, error) {
	p, err := accountProvider(cfg, acct)
	if err != nil {
		return nil, err
	}
	if o.LoginHint == "" {
		o.LoginHint = acct.Login()
	}
	return StartLogin(p, acct.Key(), store, o)
}

func accountProvider(cfg *config.Config, acct *config.Account) (*Provider, error) {
	if acct.OAuth == "" {
		return nil, fmt.Errorf("account %s signs in with a password, not OAuth2", acct.Key())
	}
	return Resolve(cfg, acct.OAuth)
}
