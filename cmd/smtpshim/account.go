package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/smtpshim/smtpshim/shim/accounts"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/control"
	"github.com/smtpshim/smtpshim/shim/oauth"
	"github.com/smtpshim/smtpshim/shim/secrets"
)

// keychain is the store account commands use; tests replace it.
var keychain = func(cfg *config.Config) secrets.Store {
	return secrets.NewKeychain(cfg.EffectiveKeychainTimeout())
}

func (a *app) account(args []string) error {
	if len(args) == 0 {
		return exit(exUsage, "usage: smtpshim account add|list|remove|test|login ...")
	}
	switch args[0] {
	case "add", "set", "update":
		return a.accountAdd(args[1:])
	case "list", "ls":
		if err := noArgs("account list", args[1:]); err != nil {
			return err
		}
		return a.accountList()
	case "remove", "rm", "delete":
		return a.accountRemove(args[1:])
	case "test", "check":
		return a.accountTest(args[1:])
	case "login", "signin", "sign-in":
		return a.accountLogin(args[1:])
	}
	return exit(exUsage, "unknown account command %q (add, list, remove, test, login)", args[0])
}

// splitPositional lets flags come before or after the one positional
// argument, as people type them.
func splitPositional(fs *flag.FlagSet, args []string) (string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return "", exit(exUsage, "%v", err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != 1 {
		return "", exit(exUsage, "give exactly one account: an address like you@example.com, or @example.com for a whole domain")
	}
	return pos[0], nil
}

func (a *app) accountAdd(args []string) error {
	fs := flag.NewFlagSet("account add", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	server := fs.String("server", "", "upstream submission server, host:port (587 = STARTTLS, 465 = TLS)")
	security := fs.String("security", "", "starttls, tls or insecure (default: from the port)")
	username := fs.String("username", "", "login for the server (default: the address)")
	auth := fs.String("auth", "", "force an AUTH mechanism: plain, login or cram-md5")
	caFile := fs.String("ca-file", "", "extra CA certificates (PEM) for a private server")
	pwStdin := fs.Bool("password-stdin", false, "read the password from standard input instead of prompting")
	pwCommand := fs.String("password-command", "", "command that prints the password (for machines without a keychain)")
	test := fs.Bool("test", false, "connect and log in after saving")
	oauthName := fs.String("oauth", "", "sign in with OAuth2 instead of a password: microsoft, google, or an [[oauth_provider]] name")
	lf := addLoginFlags(fs)
	who, err := splitPositional(fs, args)
	if err != nil {
		return err
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	acct := config.Account{Server: *server, Security: *security, Username: *username, Auth: *auth, CAFile: *caFile, PasswordCommand: *pwCommand, OAuth: *oauthName}
	if d, ok := strings.CutPrefix(who, "@"); ok {
		acct.Domain = d
	} else {
		acct.Address = who
	}
	// The form first: "bob" is a mistake, not an account that only
	// lacks --server.
	if acct.Address != "" {
		if err := config.ValidateAddress(acct.Address); err != nil {
			return exit(exUsage, "%v (or @example.com for a whole domain)", err)
		}
	} else if err := config.ValidateDomain(acct.Domain); err != nil {
		return exit(exUsage, "%v: give @example.com for a whole domain, or an address like you@example.com", err)
	}
	idx, existing := cfg.Find(acct.Key())
	if existing != nil {
		// Updating: keep what the user did not say again.
		merged := *existing
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "server":
				merged.Server = acct.Server
			case "security":
				merged.Security = acct.Security
			case "username":
				merged.Username = acct.Username
			case "auth":
				merged.Auth = acct.Auth
			case "ca-file":
				merged.CAFile = acct.CAFile
			case "password-command":
				merged.PasswordCommand = acct.PasswordCommand
			case "oauth":
				merged.OAuth = acct.OAuth
			}
		})
		acct = merged
	}
	var provider *oauth.Provider
	if acct.OAuth != "" {
		if provider, err = oauth.Resolve(cfg, acct.OAuth); err != nil {
			return exit(exConfig, "%s: %v", who, err)
		}
		if acct.Server == "" {
			acct.Server = provider.Server
			if acct.Server != "" {
				fmt.Fprintf(a.stderr, "using %s, %s's submission server (override with --server)\n", acct.Server, provider.Title)
			}
		}
	}
	if acct.Server == "" {
		dom := acct.Domain
		if dom == "" {
			dom = who[strings.LastIndexByte(who, '@')+1:]
		}
		if s, _, ok := accounts.ServerFor(dom); ok {
			acct.Server = s
			fmt.Fprintf(a.stderr, "using %s, the usual submission server for %s (override with --server)\n", s, dom)
		} else {
			return exit(exUsage, "--server is required for %s, e.g. --server smtp.%s:587 (ask your provider for its SMTP submission server)", who, dom)
		}
	}
	if err := acct.Validate(); err != nil {
		return exit(exUsage, "%s: %v", who, err)
	}
	if err := config.CheckCAFile(acct.CAFile); err != nil {
		return exit(exUsage, "%s: %v (nothing was changed)", who, err)
	}
	// One password source at a time. A password given now (prompt or
	// --password-stdin) goes to the keychain and replaces a
	// password_command; --password-command replaces the keychain entry.
	hadCommand := existing != nil && existing.PasswordCommand != ""
	if *pwStdin && acct.PasswordCommand != "" && *pwCommand != "" {
		return exit(exUsage, "give either --password-stdin (the keychain) or --password-command, not both")
	}
	var pw string
	var notes []string
	switch {
	case acct.OAuth != "":
		// Sign in before anything is saved: a failed sign-in leaves the
		// config as it was.
		probe := *cfg
		probe.Accounts = append(append([]config.Account(nil), cfg.Accounts...), acct)
		if err := probe.Validate(); err != nil {
			return exit(exUsage, "%s: %v", who, err)
		}
		if err := a.signIn(cfg, &acct, lf); err != nil {
			return err
		}
	case acct.PasswordCommand == "" || *pwStdin:
		if pw, err = a.readPassword(*pwStdin, acct.Key()); err != nil {
			return err
		}
		if acct.PasswordCommand != "" {
			notes = append(notes, fmt.Sprintf("its password_command (%s) was removed: the password now comes from the OS keychain", acct.PasswordCommand))
			acct.PasswordCommand = ""
		}
	case *pwCommand != "":
		// The command replaces a stored password: remove it, so that no
		// stale copy stays in the keychain.
		ctx, cancel := context.WithTimeout(context.Background(), cfg.EffectiveKeychainTimeout()+time.Second)
		err := keychain(cfg).Delete(ctx, acct.Key())
		cancel()
		switch {
		case err == nil:
			notes = append(notes, "the password stored in the OS keychain for it was removed")
		case errors.Is(err, secrets.ErrNotFound):
		default:
			notes = append(notes, fmt.Sprintf("a password for it may still be in the OS keychain (it could not be removed: %v); it is not used", err))
		}
	}
	if _, err := accounts.Save(context.Background(), cfg, keychain(cfg), acct, pw); err != nil {
		var ke *accounts.KeychainError
		if errors.As(err, &ke) {
			return exit(exUnavailable, "%v", err)
		}
		return exit(exConfig, "%v", err)
	}
	idx, _ = cfg.Find(acct.Key())
	verb := "added"
	if existing != nil {
		verb = "updated"
	}
	switch {
	case acct.OAuth != "":
		fmt.Fprintf(a.stdout, "account %s %s (server %s, %s, OAuth2 with %s)\n", acct.Key(), verb, acct.Server, acct.SecurityMode(), provider.Title)
	case acct.PasswordCommand != "":
		where := "its password comes from its password_command"
		if !hadCommand {
			where += " (nothing was stored in the keychain)"
		}
		fmt.Fprintf(a.stdout, "account %s %s (server %s, %s); %s\n", acct.Key(), verb, acct.Server, acct.SecurityMode(), where)
	default:
		fmt.Fprintf(a.stdout, "account %s %s (server %s, %s); the password is in the OS keychain, not in %s\n", acct.Key(), verb, acct.Server, acct.SecurityMode(), cfg.Path())
	}
	for _, n := range notes {
		fmt.Fprintf(a.stdout, "account %s: %s\n", acct.Key(), n)
	}
	a.notifyDaemon(cfg)
	if *test {
		return a.testAccount(cfg, &cfg.Accounts[idx])
	}
	return nil
}

// readPassword prompts without echo on a terminal, or reads one line from
// stdin with --password-stdin. The password never travels on argv.
func (a *app) readPassword(fromStdin bool, key string) (string, error) {
	if !fromStdin {
		f, ok := a.stdin.(*os.File)
		if !ok || !term.IsTerminal(int(f.Fd())) {
			return "", exit(exUsage, "no terminal to ask for the password: pipe it in with --password-stdin (never put it on the command line)")
		}
		fmt.Fprintf(a.stderr, "Password for %s: ", key)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		if err != nil {
			return "", exit(exIOErr, "reading the password: %v", err)
		}
		if len(b) == 0 {
			return "", exit(exUsage, "empty password; nothing was changed")
		}
		return string(b), nil
	}
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", exit(exUsage, "--password-stdin: no password on standard input")
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", exit(exUsage, "--password-stdin: empty password; nothing was changed")
	}
	return pw, nil
}

// notifyDaemon makes a running smtpshim pick up the changed file, but
// only one that runs with this very file: a relay started with another
// config would re-read its own file and report a change it never saw.
func (a *app) notifyDaemon(cfg *config.Config) {
	dir, err := cfg.EffectiveSpoolDir()
	if err != nil {
		return
	}
	c, err := control.Dial(dir)
	if err != nil {
		fmt.Fprintf(a.stderr, "no running smtpshim uses %s; the change takes effect when smtpshim starts\n", cfg.Path())
		return
	}
	defer c.Close()
	if err := a.checkSameConfig(c, cfg); err != nil {
		fmt.Fprintf(a.stderr, "%v\n", err)
		return
	}
	res, err := c.Reload()
	if err != nil {
		fmt.Fprintf(a.stderr, "the running smtpshim kept its old settings: %v\n", err)
		return
	}
	printReload(a.stderr, res)
}

func (a *app) accountList() error {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	if len(cfg.Accounts) == 0 {
		fmt.Fprintf(a.stdout, "no accounts in %s; add one with: smtpshim account add you@example.com --server smtp.example.com:587\n", cfg.Path())
		return nil
	}
	store := keychain(cfg)
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tKIND\tSERVER\tSECURITY\tUSERNAME\tPASSWORD")
	for i := range cfg.Accounts {
		ac := &cfg.Accounts[i]
		kind := "address"
		if ac.Domain != "" {
			kind = "domain"
		}
		state := passwordState(store, ac)
		if ac.OAuth != "" {
			state = oauthState(store, ac)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", ac.Key(), kind, ac.Server, ac.SecurityMode(), ac.Login(), state)
	}
	return tw.Flush()
}

// passwordState says where the password is, never what it is.
func passwordState(store secrets.Store, ac *config.Account) string {
	if ac.PasswordCommand != "" {
		return "password_command"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := store.Get(ctx, ac.Key())
	switch {
	case err == nil:
		return "in keychain"
	case errors.Is(err, secrets.ErrNotFound):
		return "MISSING (smtpshim account add " + ac.Key() + ")"
	default:
		return "keychain unavailable"
	}
}

// namedAccount parses a command that takes one account, and finds it.
func (a *app) namedAccount(cmd string, args []string) (*config.Config, int, *config.Account, error) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	who, err := splitPositional(fs, args)
	if err != nil {
		return nil, 0, nil, err
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, 0, nil, err
	}
	idx, acct := cfg.Find(who)
	if acct == nil {
		return nil, 0, nil, exit(exNoUser, "no account %s in %s (see smtpshim account list)", who, cfg.Path())
	}
	return cfg, idx, acct, nil
}

func (a *app) accountRemove(args []string) error {
	cfg, _, acct, err := a.namedAccount("account remove", args)
	if err != nil {
		return err
	}
	key, hadCommand := acct.Key(), acct.PasswordCommand != ""
	keychainErr, err := accounts.Remove(context.Background(), cfg, keychain(cfg), key)
	if err != nil {
		return exit(exConfig, "%v", err)
	}
	fmt.Fprintf(a.stdout, "account %s removed from %s\n", key, cfg.Path())
	if keychainErr != nil {
		fmt.Fprintf(a.stderr, "its password could not be removed from the keychain: %v\n", keychainErr)
	} else if !hadCommand {
		fmt.Fprintf(a.stdout, "its password was removed from the keychain\n")
	}
	a.notifyDaemon(cfg)
	a.warnQueued(key)
	return nil
}

// warnQueued says when queued mail still belongs to a removed account:
// it is not sent through another account, so it waits for this one.
func (a *app) warnQueued(key string) {
	b, done, _, err := a.queueBackend()
	if err != nil {
		return
	}
	defer done()
	ms, _ := b.List()
	n := 0
	for _, m := range ms {
		if m.Account == key {
			n++
		}
	}
	if n > 0 {
		fmt.Fprintf(a.stderr, "%d queued message(s) of %s stay in the queue and are not sent until the account is added again; see \"smtpshim queue list\", and \"smtpshim queue delete ID\" to drop one\n", n, key)
	}
}

func (a *app) accountTest(args []string) error {
	cfg, _, acct, err := a.namedAccount("account test", args)
	if err != nil {
		return err
	}
	return a.testAccount(cfg, acct)
}

// testAccount connects and logs in, and says what happened in plain words.
func (a *app) testAccount(cfg *config.Config, acct *config.Account) error {
	fmt.Fprintf(a.stdout, "testing %s: %s (%s) as %s\n", acct.Key(), acct.Server, acct.SecurityMode(), acct.Login())
	r := accounts.Test(context.Background(), cfg, keychain(cfg), acct)
	if r.Err != nil {
		fmt.Fprintf(a.stdout, "FAILED: %v\n", r.Err)
		if r.Hint != "" {
			fmt.Fprintf(a.stdout, "hint: %s\n", r.Hint)
		}
		return exit(exUnavailable, "account %s does not work yet", acct.Key())
	}
	info := r.Info
	if info.TLSVersion != "" {
		fmt.Fprintf(a.stdout, "connected: %s, certificate verified\n", info.TLSVersion)
	} else {
		fmt.Fprintf(a.stdout, "connected without TLS (security = insecure): the password crossed the network unencrypted\n")
	}
	fmt.Fprintf(a.stdout, "AUTH %s as %s: accepted\n", info.Mechanism, info.Username)
	fmt.Fprintf(a.stdout, "OK: mail from %s will go out through %s\n", acct.Key(), acct.Server)
	return nil
}
