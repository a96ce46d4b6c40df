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
	// logOut, when set, is where serve logs unless --log-file says
	// otherwise (the desktop face's log file).
	logOut io.Writer
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
  smtpshim [--at-login]      with no command: the relay with its tray icon and settings page

Commands:
  serve [--trace] [--log-file FILE]   run the relay (headless); --trace logs the SMTP dialogues
  settings [--print-url]     open the settings page of the running smtpshim
  autostart on|off|status    start smtpshim (with its tray icon) at login
  account add ADDRESS|@DOMAIN --server HOST:PORT [--username U] [--password-stdin]
  account list               show accounts (never passwords)
  account remove ADDRESS|@DOMAIN
  account test ADDRESS|@DOMAIN
  account add ADDRESS --oauth microsoft|google|NAME [--device] [--no-browser]
                             sign in with OAuth2 (browser, or a device code) instead of a password
  account login ADDRESS [--device] [--no-browser]   sign an OAuth2 account in again
  queue list | show ID | retry [ID] | delete ID
  status [--json] [--watch]  the running relay: state, accounts, queue; --watch follows events
  pause                      hold delivery: mail is still accepted and queued, nothing is sent
  resume                     end a pause and send the queue now
  reload                     make the running relay re-read the config file
  send [-t] [-f SENDER] [-i] [--read-envelope-from] [RECIPIENT...]
                             sendmail-compatible: reads a message on stdin; the envelope
                             sender is -f, else default_from in the config, else the only
                             account's address; From: only with --read-envelope-from
  doctor                     check the config, keychain, ports, DNS, TLS and AUTH
  local-password [--password-stdin]   set the password local clients must give (local_auth = "require")
  cert export [--out FILE]   the CA certificate of the local TLS listener, for clients to trust
  demo                       run a self-contained demonstration
  version

Global flags:
  --config FILE   config file (default: %s)
  -v, --verbose   log more

"smtpshim COMMAND --help" shows the usage of one command.
`

func (a *app) run(args []string) int {
	args, err := a.globalFlags(args)
	if err != nil {
		return a.exitCode(err)
	}
	if len(args) > 0 && args[0] == "help" {
		if len(args) == 1 || !a.printCommandHelp(a.stdout, args[1:]) {
			a.printUsage(a.stdout)
		}
		return exOK
	}
	if len(args) > 0 && wantsHelp(args[1:]) && a.printCommandHelp(a.stdout, args) {
		return exOK
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "--at-login") {
		// The desktop face (tray, settings page) is the default; "serve"
		// is the headless relay.
		return a.exitCode(a.desktop(args))
	}
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
		if err = noArgs("version", rest); err != nil {
			break
		}
		fmt.Fprintf(a.stdout, "smtpshim %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	case "-h", "--help", "-help":
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
func (a *app) globalFlags(args []string) ([]string, error) {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "--":
			return append(out, args[i:]...), nil
		case arg == "--config" || arg == "-config":
			if i+1 >= len(args) || args[i+1] == "" || strings.HasPrefix(args[i+1], "-") {
				return nil, exit(exUsage, "--config needs a file: --config FILE")
			}
			a.configPath = args[i+1]
			i++
		case strings.HasPrefix(arg, "--config=") || strings.HasPrefix(arg, "-config="):
			_, a.configPath, _ = strings.Cut(arg, "=")
			if a.configPath == "" {
				return nil, exit(exUsage, "--config needs a file: --config=FILE")
			}
		case arg == "-v" || arg == "--verbose":
			a.verbose = true
		default:
			out = append(out, arg)
		}
	}
	return out, nil
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

func (a *app) logger() *slog.Logger { return a.loggerTo(a.stderr) }

// loggerTo is the log of smtpshim, written to w.
func (a *app) loggerTo(w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	if a.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: dropEmptyDetail}))
}

// dropEmptyDetail leaves out the optional details of a log line (a hint,
// a reason, an error) when they are empty, instead of writing hint="".
func dropEmptyDetail(_ []string, at slog.Attr) slog.Attr {
	switch at.Key {
	case "hint", "reason", "err", "error", "last_error":
		v := at.Value.Resolve()
		if (v.Kind() == slog.KindString && v.String() == "") || (v.Kind() == slog.KindAny && v.Any() == nil) {
			return slog.Attr{}
		}
	}
	return at
}
