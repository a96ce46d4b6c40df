// Command smtpshim lets mail clients and devices that cannot do modern
// SMTP AUTH or TLS send mail through today's providers: it listens on
// localhost without authentication and re-submits each message upstream
// over verified TLS with SMTP AUTH, using credentials from the OS keychain.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/smtpshim/smtpshim/shim/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes from sysexits.h, which sendmail-compatible callers expect.
const (
	exOK          = 0
	exUsage       = 64
	exDataErr     = 65
	exNoUser      = 67
	exUnavailable = 69
	exSoftware    = 70
	exIOErr       = 74
	exTempFail    = 75
	exNoPerm      = 77
	exConfig      = 78
)

// exitError carries an exit code with the message.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exit(code int, format string, a ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, a...)}
}

// app holds what every command shares.
type app struct {
	configPath string
	verbose    bool
	stdin      io.Reader
	stdout     io.Writer
	stderr     io.Writer
	// ctx, when set, bounds serve (the desktop face stops the relay
	// through it).
	ctx context.Context
}

func main() {
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	// SMTPSHIM_LOG_COPY=DIR keeps a copy of everything smtpshim prints in
	// DIR, one file per process: for diagnosis, and for the test suite,
	// which scans those copies for leaked passwords.
	if dir := os.Getenv("SMTPSHIM_LOG_COPY"); dir != "" {
		// Unbuffered file writes: nothing is lost at os.Exit.
		if f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("smtpshim-%d.log", os.Getpid())), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			a.stdout = io.MultiWriter(os.Stdout, f)
			a.stderr = io.MultiWriter(os.Stderr, f)
		}
	}
	args := os.Args[1:]
	// Installed as (or linked to) "sendmail", act as sendmail does.
	if base := strings.TrimSuffix(filepath.Base(os.Args[0]), ".exe"); base == "sendmail" {
		args = append([]string{"send"}, args...)
	}
	os.Exit(a.run(args))
}

const usage = `smtpshim: send mail from old clients through modern providers.

Usage:
  smtpshim [--config FILE] COMMAND [ARGS]

Commands:
  (none)                     run the relay with its tray icon and settings page
  serve [--trace]            run the relay (headless); --trace logs the SMTP dialogues
  settings [--print-url]     open the settings page of the running smtpshim
  autostart on|off|status    start smtpshim (with its tray icon) at login
  account add ADDRESS|@DOMAIN --server HOST:PORT [--username U] [--password-stdin]
  account list               show accounts (never passwords)
  account remove ADDRESS|@DOMAIN
  account test ADDRESS|@DOMAIN
  queue list | show ID | retry [ID] | delete ID
  status [--json] [--watch]  the running relay: state, accounts, queue; --watch follows events
  pause                      hold delivery: mail is still accepted and queued, nothing is sent
  resume                     end a pause and send the queue now
  reload                     make the running relay re-read the config file
  send [-t] [-f SENDER] [-i] [RECIPIENT...]   sendmail-compatible: reads a message on stdin
  doctor                     check the config, keychain, ports, DNS, TLS and AUTH
  local-password [--password-stdin]   set the password local clients must give (local_auth = "require")
  cert export [--out FILE]   the CA certificate of the local TLS listener, for clients to trust
  demo                       run a self-contained demonstration
  version

Global flags:
  --config FILE   config file (default: %s)
  -v, --verbose   log more
`

func (a *app) run(args []string) int {
	args = a.globalFlags(args)
	if len(args) == 0 || strings.HasPrefix(args[0], "--at-login") {
		// The desktop face (tray, settings page) is the default; "serve"
		// is the headless relay.
		return a.exitCode(a.desktop(args))
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = a.serve(rest)
	case "account", "accounts":
		err = a.account(rest)
	case "queue":
		err = a.queue(rest)
	case "status":
		err = a.status(rest)
	case "pause":
		err = a.pause(rest, true)
	case "resume":
		err = a.pause(rest, false)
	case "reload":
		err = a.reload(rest)
	case "send", "sendmail":
		err = a.send(rest)
	case "doctor":
		err = a.doctor(rest)
	case "demo":
		err = a.demo(rest)
	case "local-password":
		err = a.localPassword(rest)
	case "cert":
		err = a.cert(rest)
	case "settings":
		err = a.settingsCmd(rest)
	case "autostart":
		err = a.autostartCmd(rest)
	case "version", "--version":
		fmt.Fprintf(a.stdout, "smtpshim %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	case "help", "-h", "--help":
		a.printUsage(a.stdout)
	default:
		a.printUsage(a.stderr)
		err = exit(exUsage, "unknown command %q", cmd)
	}
	return a.exitCode(err)
}

// exitCode prints err and returns the process's exit code.
func (a *app) exitCode(err error) int {
	if err == nil {
		return exOK
	}
	fmt.Fprintln(a.stderr, "smtpshim:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

func (a *app) printUsage(w io.Writer) {
	p, _ := config.DefaultPath()
	fmt.Fprintf(w, usage, p)
}

// globalFlags takes --config and --verbose from anywhere in args, so they
// work before or after the command.
func (a *app) globalFlags(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "--":
			return append(out, args[i:]...)
		case arg == "--config" || arg == "-config":
			if i+1 < len(args) {
				a.configPath = args[i+1]
				i++
			}
		case strings.HasPrefix(arg, "--config="):
			a.configPath = strings.TrimPrefix(arg, "--config=")
		case arg == "-v" || arg == "--verbose":
			a.verbose = true
		default:
			out = append(out, arg)
		}
	}
	return out
}

func (a *app) path() (string, error) {
	if a.configPath != "" {
		return a.configPath, nil
	}
	if p := os.Getenv("SMTPSHIM_CONFIG"); p != "" {
		return p, nil
	}
	return config.DefaultPath()
}

func (a *app) loadConfig() (*config.Config, error) {
	p, err := a.path()
	if err != nil {
		return nil, exit(exConfig, "%v", err)
	}
	c, err := config.Load(p)
	if err != nil {
		return nil, exit(exConfig, "%v", err)
	}
	return c, nil
}

func (a *app) logger() *slog.Logger {
	level := slog.LevelInfo
	if a.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
}
