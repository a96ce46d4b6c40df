// Package accounts is what every face of smtpshim (the command line and
// the settings page) does to an account: find the provider's server,
// store the password in the keychain and the account in the config, test
// it, remove it. One copy of these steps keeps their order and their
// messages the same everywhere: the password is stored before the config
// names it, and a failed keychain write leaves the config unchanged.
package accounts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/smtpshim/smtpshim/shim"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/hints"
	"github.com/smtpshim/smtpshim/shim/secrets"
	"github.com/smtpshim/smtpshim/shim/upstream"
)

// Preset is a well-known provider's submission server.
type Preset struct {
	Name    string
	Server  string   // host:port; 587 means STARTTLS, 465 TLS
	Domains []string // the address domains it serves, for the default
	Note    string   // what the user must know first, if anything
	// OAuth names the OAuth2 provider (config.OAuthMicrosoft,
	// config.OAuthGoogle) that signs in to this server without a
	// password, or is empty. The provider's endpoints live in shim/oauth.
	OAuth string
}

// Presets lists the providers smtpshim knows, in the order a person
// looks for them.
var Presets = []Preset{
	{Name: "Gmail", Server: "smtp.gmail.com:587", Domains: []string{"gmail.com", "googlemail.com"}, OAuth: config.OAuthGoogle,
		Note: "Gmail wants Google sign-in or an app password (Google Account > Security > 2-Step Verification > App passwords), not your normal password."},
	{Name: "Microsoft 365 (work or school)", Server: "smtp.office365.com:587", OAuth: config.OAuthMicrosoft,
		Note: "Your administrator must allow SMTP AUTH for your mailbox."},
	{Name: "Outlook.com / Hotmail", Server: "smtp-mail.outlook.com:587", Domains: []string{"outlook.com", "hotmail.com", "live.com", "msn.com"}, OAuth: config.OAuthMicrosoft},
	{Name: "iCloud Mail", Server: "smtp.mail.me.com:587", Domains: []string{"icloud.com", "me.com", "mac.com"},
		Note: "iCloud needs an app-specific password (appleid.apple.com > Sign-In and Security)."},
	{Name: "Yahoo Mail", Server: "smtp.mail.yahoo.com:465", Domains: []string{"yahoo.com"},
		Note: "Yahoo needs an app password (Account Security > Generate app password)."},
	{Name: "Fastmail", Server: "smtp.fastmail.com:465", Domains: []string{"fastmail.com"},
		Note: "Fastmail needs an app password (Settings > Privacy & Security > App passwords)."},
	{Name: "GMX", Server: "mail.gmx.net:587", Domains: []string{"gmx.net", "gmx.de"},
		Note: "Turn on POP3/IMAP access in GMX's settings first."},
	{Name: "WEB.DE", Server: "smtp.web.de:587", Domains: []string{"web.de"},
		Note: "Turn on POP3/IMAP access in WEB.DE's settings first."},
	{Name: "AOL Mail", Server: "smtp.aol.com:465", Domains: []string{"aol.com"},
		Note: "AOL needs an app password."},
	{Name: "Zoho Mail", Server: "smtp.zoho.com:465", Domains: []string{"zoho.com"}},
	{Name: "Proton Mail (through Proton Mail Bridge)", Server: "127.0.0.1:1025", Domains: []string{"proton.me"},
		Note: "Proton Mail Bridge must be running; use the password it shows, not your Proton password."},
}

// ServerFor returns the usual submission server for an address's domain
// (or a bare domain), and the provider's name.
func ServerFor(addressOrDomain string) (server, provider string, ok bool) {
	dom := strings.ToLower(addressOrDomain[strings.LastIndexByte(addressOrDomain, '@')+1:])
	for _, p := range Presets {
		for _, d := range p.Domains {
			if d == dom {
				return p.Server, p.Name, true
			}
		}
	}
	return "", "", false
}

// PresetNamed returns the preset called name.
func PresetNamed(name string) (Preset, bool) {
	for _, p := range Presets {
		if p.Name == name {
			return p, true
		}
	}
	return Preset{}, false
}

// Save stores password (when not empty) in the keychain under the
// account's key, then puts acct into cfg, replacing an account with the
// same key, and writes the config. It reports whether the account is
// new. The password is stored first: a config never names an account
// whose password failed to store.
func Save(ctx context.Context, cfg *config.Config, store secrets.Store, acct config.Account, password string) (added bool, err error) {
	if err := acct.Validate(); err != nil {
		return false, fmt.Errorf("%s: %w", acct.Key(), err)
	}
	if password != "" && acct.PasswordCommand == "" {
		kctx, cancel := context.WithTimeout(ctx, cfg.EffectiveKeychainTimeout()+time.Second)
		err := store.Set(kctx, acct.Key(), password)
		cancel()
		if err != nil {
			return false, &KeychainError{Err: err}
		}
	}
	idx, existing := cfg.Find(acct.Key())
	if existing != nil {
		cfg.Accounts[idx] = acct
	} else {
		cfg.Accounts = append(cfg.Accounts, acct)
	}
	if err := cfg.Save(); err != nil {
		return false, fmt.Errorf("saving %s: %w", cfg.Path(), err)
	}
	return existing == nil, nil
}

// KeychainError means the password could not be stored; nothing changed.
type KeychainError struct{ Err error }

func (e *KeychainError) Error() string {
	return fmt.Sprintf("could not store the password: %v (the config was not changed)", e.Err)
}
func (e *KeychainError) Unwrap() error { return e.Err }

// Remove takes the account out of cfg and writes it, then deletes its
// keychain entry. keychainErr reports a keychain entry that could not be
// deleted; the account is gone from the config all the same.
func Remove(ctx context.Context, cfg *config.Config, store secrets.Store, key string) (keychainErr, err error) {
	idx, acct := cfg.Find(key)
	if acct == nil {
		return nil, fmt.Errorf("no account %s in %s", key, cfg.Path())
	}
	key = acct.Key()
	hadCommand := acct.PasswordCommand != ""
	cfg.Accounts = append(cfg.Accounts[:idx], cfg.Accounts[idx+1:]...)
	if err := cfg.Save(); err != nil {
		return nil, fmt.Errorf("saving %s: %w", cfg.Path(), err)
	}
	if hadCommand {
		return nil, nil
	}
	kctx, cancel := context.WithTimeout(ctx, cfg.EffectiveKeychainTimeout()+time.Second)
	defer cancel()
	if err := store.Delete(kctx, key); err != nil && !errors.Is(err, secrets.ErrNotFound) {
		return err, nil
	}
	return nil, nil
}

// Result is what a test found.
type Result struct {
	Info upstream.Info
	// Err is nil when the server accepted the login.
	Err error
	// Hint explains a well-known refusal in plain words, or is empty.
	Hint string
}

// Test connects to the account's server and logs in, as smtpshim would
// to send mail (with the credential the engine's one factory builds),
// and closes the connection.
func Test(ctx context.Context, cfg *config.Config, store secrets.Store, acct *config.Account) Result {
	c, err := upstream.Dial(ctx, acct, upstream.Options{
		Hostname:        cfg.HostnameOrDefault(),
		Secrets:         store,
		Authenticator:   shim.DefaultAuthenticator(cfg, store, nil),
		KeychainTimeout: cfg.EffectiveKeychainTimeout(),
	})
	if err != nil {
		return Result{Err: err, Hint: hints.For(err)}
	}
	defer c.Close()
	return Result{Info: c.Info()}
}
