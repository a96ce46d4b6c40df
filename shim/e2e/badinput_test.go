//go:build realpeer

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/internal/realpeer"
)

// syntaxError is a 500, 501 or 502 with a 5.5.x enhanced code: the reply
// to a command the server cannot parse or does not know.
func syntaxError(r reply) bool {
	return (r.Code == 500 || r.Code == 501 || r.Code == 502) && strings.HasPrefix(r.LastText(), "5.5.")
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	p := realpeer.StartPostfix(t, map[string]string{"alice@example.com": "alice-bad-pw"})
	nopw := "nopw-" + uniq() + "@example.com"
	down := closedPort(t)
	c := newConfig(t, `max_message_size = "1MB"`,
		account{Address: "alice@example.com", Server: p.SubmissionAddr, CAFile: p.CAFile, Password: "alice-bad-pw"},
		// No password_command and nothing in the keychain.
		account{Address: nopw, Username: "alice@example.com", Server: p.SubmissionAddr, CAFile: p.CAFile},
		account{Address: "down@example.com", Server: down, Password: "irrelevant"},
		// No ca_file: Postfix's private CA is not trusted.
		account{Address: "untrusted@example.com", Username: "alice@example.com", Server: p.SubmissionAddr, Password: "alice-bad-pw"},
	)
	r := startRelay(t, c)

	t.Run("garbage-commands", func(t *testing.T) {
		cl := dialSMTP(t, r.Addr)
		cl.expect("HELO oldclient", 250)
		for _, junk := range []string{
			"FOO BAR",
			// The start of a TLS ClientHello, as from a client set to
			// SSL on a plain port, and other binary noise.
			"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xff\xfe\x80\x00\x7f\x1b[0m junk",
			"ABCD efgh",
			"EXPN staff",
		} {
			if rep := cl.cmd(junk); !syntaxError(rep) {
				t.Errorf("%q: got %s, want a 500/501/502 5.5.x reply", junk, rep)
			}
		}
		// The session goes on: a whole message goes through it.
		cl.expect("NOOP", 250)
		cl.expect("MAIL FROM:<alice@example.com>", 250)
		cl.expect("RCPT TO:<after-garbage@example.net>", 250)
		msg := message("alice@example.com", "after-garbage@example.net", "4-after-garbage")
		if rep := cl.data(msg); rep.Code != 250 || !strings.Contains(rep.LastText(), "Ok: queued as") {
			t.Fatalf("message after garbage: %s", rep)
		}
		cl.expect("QUIT", 221)
		m := waitMessage(t, p, "after-garbage@example.net", "4-after-garbage")
		sameBytes(t, "delivered message", asSubmitted(t, m), msg)
	})

	t.Run("overlong-command-line", func(t *testing.T) {
		cl := dialSMTP(t, r.Addr)
		cl.expect("HELO oldclient", 250)
		line := []byte("MAIL FROM:<alice@example.com> " + strings.Repeat("X", 100<<10) + "\r\n")
		// The server answers and hangs up before it has read it all, so
		// write from the side and read the reply meanwhile.
		go func() {
			cl.Conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
			cl.Conn.Write(line)
		}()
		rep := cl.read()
		if rep.Code != 500 {
			t.Errorf("a 100 KB command line: got %s, want a 500", rep)
		}
		if after := cl.read(); after.Code != 0 {
			t.Errorf("the connection stayed open after the overlong line; next reply %s", after)
		}
		msg := message("alice@example.com", "after-long@example.net", "4-after-long")
		if rep := sendMail(t, r.Addr, "alice@example.com", []string{"after-long@example.net"}, msg); rep.Code != 250 {
			t.Fatalf("message after the overlong line: %s", rep)
		}
		waitMessage(t, p, "after-long@example.net", "4-after-long")
	})

	t.Run("message-too-large", func(t *testing.T) {
		cl := dialSMTP(t, r.Addr)
		cl.expect("HELO oldclient", 250)
		cl.expect("MAIL FROM:<alice@example.com>", 250)
		cl.expect("RCPT TO:<big@example.net>", 250)
		var big bytes.Buffer
		big.Write(message("alice@example.com", "big@example.net", "4-too-big"))
		for big.Len() < 3<<19 { // 1.5 MB
			big.WriteString(strings.Repeat("0123456789", 7) + "abcdef\r\n")
		}
		rep := cl.data(big.Bytes())
		if rep.Code != 552 || !strings.HasPrefix(rep.LastText(), "5.3.4 ") {
			t.Errorf("a 1.5 MB message with max_message_size = 1MB: %s, want 552 5.3.4", rep)
		}
		// The same session carries on with the next message.
		cl.expect("MAIL FROM:<alice@example.com>", 250)
		cl.expect("RCPT TO:<small@example.net>", 250)
		msg := message("alice@example.com", "small@example.net", "4-small-after-big")
		if rep := cl.data(msg); rep.Code != 250 || !strings.Contains(rep.LastText(), "Ok: queued as") {
			t.Fatalf("message after the refused one: %s", rep)
		}
		cl.expect("QUIT", 221)
		m := waitMessage(t, p, "small@example.net", "4-small-after-big")
		sameBytes(t, "delivered message", asSubmitted(t, m), msg)
		noMessage(t, p, "big@example.net", "4-too-big")
	})

	t.Run("config-syntax-error", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "config.toml")
		text := fmt.Sprintf("listen = [%q]\nspool_dir = %q\nmax_message_size = \"1MB\"\nsync_wait = \"10s\n\n[[account]]\naddress = \"alice@example.com\"\n",
			closedPort(t), filepath.Join(dir, "spool"))
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		res := shim(t, path, "", "serve")
		if res.Code == 0 || !strings.Contains(res.Stderr, path) || !regexp.MustCompile(`line 4\b`).MatchString(res.Stderr) {
			t.Errorf("serve with a TOML syntax error on line 4: want a non-zero exit and stderr naming the file and line 4:\n%s", res)
		}
	})

	t.Run("no-password-stored", func(t *testing.T) {
		needKeyring(t)
		cl := dialSMTP(t, r.Addr)
		cl.expect("HELO oldclient", 250)
		rep := cl.cmd("MAIL FROM:<" + nopw + ">")
		if rep.Code != 454 || !strings.HasPrefix(rep.LastText(), "4.7.0 ") || !strings.Contains(rep.LastText(), `"smtpshim account add `+nopw+`"`) {
			t.Errorf("MAIL FROM for an account without a stored password: %s; want 454 4.7.0 naming \"smtpshim account add %s\"", rep, nopw)
		}
		cl.expect("QUIT", 221)
	})

	t.Run("unreachable-upstream-queued", func(t *testing.T) {
		cl := dialSMTP(t, r.Addr)
		cl.expect("HELO oldclient", 250)
		cl.expect("MAIL FROM:<down@example.com>", 250)
		cl.expect("RCPT TO:<later@example.net>", 250)
		rep := cl.data(message("down@example.com", "later@example.net", "4-queued"))
		cl.expect("QUIT", 221)
		mm := regexp.MustCompile(`^2\.0\.0 queued as (\S+) for a later try \((.*)\)$`).FindStringSubmatch(rep.LastText())
		if rep.Code != 250 || mm == nil || !strings.Contains(mm[2], "connection refused") {
			t.Fatalf("a message for an unreachable server: %s; want 250 2.0.0 queued as ID for a later try (... connection refused)", rep)
		}
		id := mm[1]

		res := shim(t, c.Path, "", "queue", "list")
		row := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(id) + `\s+\d+s\s+down@example\.com\s+1\s+\d+\s+\d+\s+(now|in \S+)\s+(.+)$`).FindStringSubmatch(res.Stdout)
		if res.Code != 0 || row == nil || !strings.HasPrefix(row[2], down+": connect: ") || !strings.Contains(res.Stdout, "1 message(s) queued") {
			t.Errorf("queue list: want the message %s from down@example.com with its last error (%s: connect: ...):\n%s", id, down, res)
		}
		res = shim(t, c.Path, "", "queue", "show", id)
		if res.Code != 0 || !regexp.MustCompile(`(?m)^Last error:\s+`+regexp.QuoteMeta(down)+`: connect: .*connection refused$`).MatchString(res.Stdout) ||
			!strings.Contains(res.Stdout, "To:          later@example.net\n") {
			t.Errorf("queue show %s: want the recipient and the full last error:\n%s", id, res)
		}
	})

	t.Run("untrusted-certificate", func(t *testing.T) {
		mark := markLogs(p)
		cl := dialSMTP(t, r.Addr)
		cl.expect("HELO oldclient", 250)
		rep := cl.cmd("MAIL FROM:<untrusted@example.com>")
		if rep.Code != 454 || !strings.HasPrefix(rep.LastText(), "4.7.0 ") || !strings.Contains(rep.LastText(), "certificate") {
			t.Errorf("MAIL FROM for a server whose certificate is not trusted: %s; want 454 4.7.0 about the certificate", rep)
		}
		cl.expect("QUIT", 221)
		// A second client a moment later hears the same, rather than
		// having its message queued for retries that cannot succeed.
		cl = dialSMTP(t, r.Addr)
		cl.expect("HELO oldclient", 250)
		if again := cl.cmd("MAIL FROM:<untrusted@example.com>"); again.Code != 454 || again.LastText() != rep.LastText() {
			t.Errorf("MAIL FROM for the same account again: %s; want the same 454 as before: %s", again, rep)
		}
		cl.expect("QUIT", 221)
		time.Sleep(200 * time.Millisecond)
		if pf := mark.since(p)["postfix"]; strings.Contains(pf, "sasl_") || strings.Contains(pf, "auth=") {
			t.Errorf("credentials reached a server whose certificate failed verification:\n%s", pf)
		}
	})
}
