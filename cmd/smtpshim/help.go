package main

import (
	"fmt"
	"io"
	"strings"
)

// commandHelp is the usage of each command and subcommand, printed by
// `smtpshim COMMAND [SUBCOMMAND] --help` (or -h, or `smtpshim help
// COMMAND`).
var commandHelp = map[string]string{
	"serve": `usage: smtpshim serve [--trace] [--log-file FILE]

Run the relay in the foreground, headless. Old clients send to the listen
addresses (default 127.0.0.1:2525 and [::1]:2525) without authentication.

  --trace           log both sides of every SMTP conversation (credentials
                    and message bodies are never shown)
  --log-file FILE   write the log to FILE, rotated by size, instead of
                    standard error (also: log_file in the config)

Without --log-file or log_file the log goes to standard error: the
terminal, or the service manager's journal (journalctl) under systemd.
SIGHUP reloads the config; SIGINT/SIGTERM stop after the messages in
flight are made safe.`,
	"account": `usage: smtpshim account add|list|remove|test ...

  account add ADDRESS|@DOMAIN [flags]   add or update an account
  account list                          accounts and where their password is
  account remove ADDRESS|@DOMAIN        remove it, and its keychain entry
  account test ADDRESS|@DOMAIN          connect and log in

"smtpshim account add --help" shows the flags of add.`,
	"account add": `usage: smtpshim account add ADDRESS|@DOMAIN [--server HOST:PORT] [flags]

Add or update the account for one sender address, or (@DOMAIN) for every
sender of a domain. The password goes to the OS keychain, never to the
config file; it is asked for without echo, or read with --password-stdin.

  --server HOST:PORT      submission server (587 = STARTTLS, 465 = TLS);
                          known for Gmail, Outlook.com, iCloud, Yahoo, ...
  --security MODE         starttls, tls or insecure (default: from the port)
  --username U            login (default: the address; required for @DOMAIN)
  --auth MECH             plain, login or cram-md5 (default: chosen)
  --ca-file FILE          extra trusted CA certificates (PEM) for a private server
  --password-stdin        read the password from standard input; it goes to
                          the keychain and replaces a password_command
  --password-command CMD  a command that prints the password (no keychain);
                          it replaces a password stored in the keychain
  --oauth PROVIDER        sign in with OAuth2 (microsoft, google, ...) instead
                          of a password; --device and --no-browser as for
                          "account login"
  --test                  connect and log in after saving`,
	"account login": `usage: smtpshim account login ADDRESS [--device] [--no-browser]

Sign an OAuth2 account in again (after its sign-in expired or was revoked).

  --device       sign in with a device code, on another device
  --no-browser   print the sign-in link instead of opening a browser`,
	"settings": `usage: smtpshim settings [--print-url] [PAGE]

Open the settings page of the running smtpshim in a browser.

  --print-url   print its one-time link instead`,
	"autostart": `usage: smtpshim autostart on|off|status

Start smtpshim (with its tray icon) at login, or not, or say which.`,
	"account list": `usage: smtpshim account list

List the accounts, and where each one's password is (never the password).`,
	"account remove": `usage: smtpshim account remove ADDRESS|@DOMAIN

Remove the account from the config and its password from the keychain.`,
	"account test": `usage: smtpshim account test ADDRESS|@DOMAIN

Connect to the account's server and log in; report the TLS version and AUTH
mechanism, or what went wrong and what to do about it.`,
	"queue": `usage: smtpshim queue [list | show ID | retry [ID] | delete ID]

The outbox: messages waiting for another try. Works whether or not the
relay runs.

  queue list        every queued message (the default)
  queue show ID     one message: recipients, attempts, last error, hint
  queue retry [ID]  try one message, or all, now
  queue delete ID   drop a message; it will not be sent`,
	"queue list":   "usage: smtpshim queue list\n\nList the queued messages.",
	"queue show":   "usage: smtpshim queue show ID\n\nShow one queued message: recipients, attempts, last error and hint.",
	"queue retry":  "usage: smtpshim queue retry [ID]\n\nTry one queued message, or all of them, now.",
	"queue delete": "usage: smtpshim queue delete ID\n\nDrop a queued message; it will not be sent.",
	"send": `usage: smtpshim send [-t] [-f SENDER] [-i] [--read-envelope-from] [RECIPIENT...]

sendmail-compatible (also when run as "sendmail"): read a message on
standard input and send it, through the running relay or, when none
listens, on its own.

  -t                    recipients from the To:, Cc: and Bcc: headers
                        (Bcc: is removed)
  -f SENDER             the envelope sender, which picks the account
  -i, -oi               a line with a single "." does not end the message
  --read-envelope-from  take the envelope sender from the From: header

The envelope sender is -f; else default_from in the config; else the
address of the only user-level account, when there is exactly one. It is
never taken from the From: header without --read-envelope-from. A name
without a domain (root) gets default_domain (default: the domain of the
only account). Date: and Message-ID: are added when missing.

Exit codes (sysexits): 0 sent (also when some recipients were refused and
the others got it: a warning goes to standard error and a bounce to the
sender); 64 usage; 65 bad message; 67 every recipient refused; 69 refused;
75 try again later; 77 the sender has no account; 78 config error.`,
	"doctor": `usage: smtpshim doctor

Check the config, spool, listen ports, keychain, and each account's DNS,
TLS and login, and say what to fix.`,
	"local-password": `usage: smtpshim local-password [--password-stdin]

Set the password that LAN clients must give when local_auth = "require".`,
	"cert": `usage: smtpshim cert export [--out FILE]

Write the CA certificate of the local TLS listener, for clients to trust.`,
	"cert export": `usage: smtpshim cert export [--out FILE]

Write the CA certificate of the local TLS listener (standard output, or FILE).`,
	"demo": `usage: smtpshim demo

Run a self-contained demonstration: a built-in provider that demands
STARTTLS and AUTH, smtpshim in front of it, and one old-style message.`,
	"version": "usage: smtpshim version\n\nPrint the version.",
	"status": `usage: smtpshim status [--json] [--watch]

The running relay: its state, every account (not used yet, ok, failing,
needs attention) with its last error and hint, and the queue.

  --json    JSON for scripts (with --watch: one object per line)
  --watch   keep running and print every event as it happens`,
	"pause":  "usage: smtpshim pause\n\nHold delivery: mail is still accepted and queued, nothing goes to the provider\nuntil \"smtpshim resume\". The pause survives a restart.",
	"resume": "usage: smtpshim resume\n\nEnd a pause and send the queue now.",
	"reload": "usage: smtpshim reload\n\nMake the running relay re-read its config file (as SIGHUP does) and say what\ntook effect.",
}

// commandAliases map the other spellings to the names in commandHelp.
var commandAliases = map[string]string{
	"accounts": "account", "sendmail": "send",
	"set": "add", "update": "add", "ls": "list", "rm": "remove", "delete": "remove", "check": "test", "flush": "retry",
}

func canonical(cmd, word string) string {
	if c, ok := commandAliases[word]; ok {
		if cmd == "queue" && (word == "rm" || word == "delete") {
			return "delete"
		}
		return c
	}
	return word
}

// wantsHelp reports whether args (after the command) ask for help:
// -h, -help or --help anywhere before "--".
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// printCommandHelp prints the usage of the command (and subcommand) that
// args name; false when there is no such command.
func (a *app) printCommandHelp(w io.Writer, args []string) bool {
	if len(args) == 0 {
		return false
	}
	cmd := canonical("", args[0])
	if len(args) > 1 && !strings.HasPrefix(args[1], "-") {
		if h, ok := commandHelp[cmd+" "+canonical(cmd, args[1])]; ok {
			fmt.Fprintln(w, h)
			return true
		}
	}
	h, ok := commandHelp[cmd]
	if ok {
		fmt.Fprintln(w, h)
	}
	return ok
}

// noArgs is the error for arguments a command does not take.
func noArgs(cmd string, args []string) error {
	if len(args) == 0 {
		return nil
	}
	return exit(exUsage, "%s takes no arguments (got %q); see smtpshim %s --help", cmd, strings.Join(args, " "), cmd)
}
