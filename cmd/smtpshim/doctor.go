package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/smtpshim/smtpshim/shim"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/control"
	"github.com/smtpshim/smtpshim/shim/hints"
	"github.com/smtpshim/smtpshim/shim/secrets"
	"github.com/smtpshim/smtpshim/shim/spool"
	"github.com/smtpshim/smtpshim/shim/upstream"
)

// doctor runs each check, says what is wrong in plain words, and exits
// non-zero if anything failed.
func (a *app) doctor(args []string) error {
	if len(args) > 0 {
		return exit(exUsage, "doctor takes no arguments")
	}
	failed := 0
	report := func(ok bool, warnOnly bool, format string, v ...any) {
		tag := "ok  "
		if !ok {
			tag = "FAIL"
			if warnOnly {
				tag = "warn"
			} else {
				failed++
			}
		}
		fmt.Fprintf(a.stdout, "[%s] %s\n", tag, fmt.Sprintf(format, v...))
	}

	p, err := a.path()
	if err != nil {
		report(false, false, "config location: %v", err)
		return exit(exConfig, "1 check failed")
	}
	if err := config.CheckFile(p); err != nil {
		report(false, false, "%v", err)
		return exit(exConfig, "smtpshim will not use this config until that is fixed")
	}
	cfg, err := config.Load(p)
	if err != nil {
		report(false, false, "%v", err)
		return exit(exConfig, "the config must be fixed before anything else can be checked")
	}
	if _, statErr := os.Stat(p); statErr != nil {
		report(true, false, "config %s: not created yet (defaults in use)", p)
	} else {
		report(true, false, "config %s: valid, %d account(s)", p, len(cfg.Accounts))
		if st, err := os.Stat(p); err == nil && runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
			report(false, true, "config %s is readable by other users (mode %o): run chmod 600 %s", p, st.Mode().Perm(), p)
		}
	}
	for i := range cfg.Accounts {
		if err := config.CheckCAFile(cfg.Accounts[i].CAFile); err != nil {
			report(false, false, "account %s: %v", cfg.Accounts[i].Key(), err)
		}
	}
	if len(cfg.Accounts) == 0 {
		report(false, true, "no accounts: every sender will be refused; add one with smtpshim account add you@example.com --server smtp.example.com:587")
	}

	dir, err := cfg.EffectiveSpoolDir()
	running := false
	if err != nil {
		report(false, false, "spool: %v", err)
	} else {
		if c, err := control.Dial(dir); err == nil {
			running = true
			if st, err := c.Status(); err == nil {
				report(true, false, "smtpshim is running: %d message(s) queued, %d delivered since start", st.Queued, st.Delivered)
			}
		}
		if uerr := spool.Check(dir); uerr != nil {
			report(false, false, "%v", uerr)
		} else {
			serr := checkSpool(dir)
			report(serr == nil, false, "spool %s: %s", dir, errOr(serr, "private, writable, fsync works"))
		}
		if free, ferr := spool.FreeSpaceAt(dir); ferr == nil {
			floor := cfg.EffectiveMinFreeSpace()
			if free < uint64(floor) {
				report(false, false, "spool disk: %d MB free, below min_free_space (%d MB): new mail is refused with 452 until you free disk space (or lower min_free_space)", free>>20, floor>>20)
			} else {
				report(true, false, "spool disk: %d MB free (new mail is refused below %d MB, min_free_space)", free>>20, floor>>20)
			}
		}
		if since, paused := spool.PausedIn(dir); paused {
			report(false, true, "delivery is paused (since %s): mail is queued and nothing is sent; run smtpshim resume", since.Local().Format(time.RFC1123))
		}
	}

	for _, addr := range cfg.ListenAddrs() {
		l, err := net.Listen("tcp", addr)
		switch {
		case err == nil:
			l.Close()
			report(true, false, "listen %s: free", addr)
		case running:
			report(true, false, "listen %s: in use by the running smtpshim", addr)
		default:
			report(false, false, "listen %s: %v (another program uses the port: stop it, or change listen in the config)", addr, err)
		}
	}

	store := keychain(cfg)
	for i := range cfg.Accounts {
		ac := &cfg.Accounts[i]
		fmt.Fprintf(a.stdout, "account %s (%s, %s):\n", ac.Key(), ac.Server, ac.SecurityMode())
		ctx, cancel := context.WithTimeout(context.Background(), cfg.EffectiveKeychainTimeout()+time.Second)
		_, err := upstream.Password(ctx, ac, store, cfg.EffectiveKeychainTimeout())
		cancel()
		switch {
		case ac.OAuth != "" && err == nil:
			report(true, false, "  OAuth2 sign-in (%s) found in the keychain", ac.OAuth)
		case ac.OAuth != "" && errors.Is(err, secrets.ErrNotFound):
			report(false, false, "  not signed in yet: run smtpshim account login %s", ac.Key())
		case err == nil && ac.PasswordCommand != "":
			report(true, false, "  password_command prints a password")
		case err == nil:
			report(true, false, "  password found in the keychain")
		case errors.Is(err, secrets.ErrNotFound):
			report(false, false, "  no password stored: run smtpshim account add %s", ac.Key())
		default:
			report(false, false, "  password: %v", err)
		}
		if ac.SecurityMode() == config.SecurityInsecure {
			report(false, true, "  security = insecure: the password crosses the network unencrypted")
		}
		ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
		addrs, derr := net.DefaultResolver.LookupHost(ctx, ac.Host())
		cancel()
		switch {
		case net.ParseIP(ac.Host()) != nil:
			// An address needs no lookup; saying it resolves to itself
			// would only puzzle.
		case derr != nil:
			report(false, false, "  DNS %s: %v (%s)", ac.Host(), derr, hints.For(derr))
			continue
		default:
			report(true, false, "  DNS %s: resolves to %s", ac.Host(), strings.Join(addrs, ", "))
		}
		if err != nil {
			report(false, true, "  TLS and AUTH not checked: there is no password to log in with (see above)")
			continue
		}
		c, err := upstream.Dial(context.Background(), ac, upstream.Options{
			Hostname:        cfg.HostnameOrDefault(),
			Secrets:         store,
			Authenticator:   shim.DefaultAuthenticator(cfg, store, nil),
			KeychainTimeout: cfg.EffectiveKeychainTimeout(),
		})
		if err != nil {
			h := hints.ForAccount(err, ac.Key())
			if h != "" {
				h = " — " + h
			}
			report(false, false, "  %v%s", err, h)
			continue
		}
		info := c.Info()
		c.Close()
		report(true, false, "  connected (%s), AUTH %s as %s accepted", orNone(info.TLSVersion), info.Mechanism, info.Username)
	}
	if failed > 0 {
		return exit(exUnavailable, "%d check(s) failed", failed)
	}
	fmt.Fprintln(a.stdout, "all checks passed")
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "no TLS"
	}
	return s
}

func errOr(err error, ok string) string {
	if err != nil {
		return err.Error()
	}
	return ok
}

// checkSpool proves the spool directory takes a durable write.
func checkSpool(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".doctor-*")
	if err != nil {
		return fmt.Errorf("cannot write: %w (fix the permissions, or set spool_dir)", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(make([]byte, 64<<10)); err != nil {
		return fmt.Errorf("cannot write: %w (is the disk full?)", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync failed: %w", err)
	}
	return nil
}
