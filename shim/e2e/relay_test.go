//go:build realpeer

package e2e

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/internal/realpeer"
)

// Postfix users (SASL logins) of the relay tests.
var relayUsers = map[string]string{
	"alice@example.com":   "alice-pw",
	"relay@example.org":   "relay pw with spaces",
	"boss@example.org":    "boss-pw",
	"leak@example.com":    "leak-pw-never-sent",
	"plainok@example.com": "plainok-pw",
}

// postfixReply returns what Postfix itself answers on its submission port,
// after STARTTLS, to AUTH PLAIN with login/password and then (if AUTH
// succeeded) MAIL FROM and RCPT TO rcpt: the first error, as "CODE TEXT".
func postfixReply(t *testing.T, p *realpeer.Postfix, login, password, rcpt string) string {
	t.Helper()
	c, err := smtp.Dial(p.SubmissionAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartTLS(&tls.Config{ServerName: "localhost", RootCAs: p.CertPool()}); err != nil {
		t.Fatal(err)
	}
	// net/smtp's PLAIN insists on the name the client dialed.
	err = c.Auth(smtp.PlainAuth("", login, password, "127.0.0.1"))
	if err == nil {
		if err = c.Mail(login); err == nil {
			err = c.Rcpt(rcpt)
		}
	}
	var te *textproto.Error
	if !errors.As(err, &te) {
		t.Fatalf("want an SMTP error from Postfix, got %v", err)
	}
	return fmt.Sprintf("%d %s", te.Code, te.Msg) // "535 5.7.8 Error: ..."
}

func TestRelayToPostfix(t *testing.T) {
	t.Parallel()
	p := realpeer.StartPostfix(t, relayUsers)
	c := newConfig(t, "",
		account{Address: "alice@example.com", Server: p.SubmissionAddr, CAFile: p.CAFile, Password: relayUsers["alice@example.com"]},
		account{Domain: "example.org", Username: "relay@example.org", Server: p.SubmissionAddr, CAFile: p.CAFile, Password: relayUsers["relay@example.org"]},
		account{Address: "boss@example.org", Server: p.SubmissionAddr, CAFile: p.CAFile, Password: relayUsers["boss@example.org"]},
		account{Address: "implicit@example.com", Username: "alice@example.com", Server: p.SMTPSAddr, Security: "tls", CAFile: p.CAFile, Password: relayUsers["alice@example.com"]},
		account{Address: "wrongpw@example.com", Username: "alice@example.com", Server: p.SubmissionAddr, CAFile: p.CAFile, Password: "not-alices-password"},
		account{Address: "leak@example.com", Server: p.PlainAddr, CAFile: p.CAFile, Password: relayUsers["leak@example.com"]},
		account{Address: "plainok@example.com", Server: p.PlainAddr, Security: "insecure", Password: relayUsers["plainok@example.com"]},
	)
	r := startRelay(t, c)

	// The subtests run one after another: the log checks in
	// no-credentials-without-tls look at what one connection logged.

	t.Run("helo-only-client-byte-for-byte", func(t *testing.T) {
		// 8-bit UTF-8, a leading dot (dot-stuffed on the wire), a
		// line of only a dot, an empty line and trailing white space.
		msg := []byte("From: Alice <alice@example.com>\r\n" +
			"To: Bob <bob@example.net>\r\n" +
			"Subject: Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln (1a)\r\n" +
			"Date: Mon, 02 Jan 2006 15:04:05 +0100\r\n" +
			"Message-ID: <relay-1a@e2e.test>\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\n" +
			"Content-Transfer-Encoding: 8bit\r\n" +
			"\r\n" +
			"H\xc3\xa9llo B\xc3\xb6b,\r\n" +
			".a line that starts with a dot\r\n" +
			".\r\n" +
			"..two dots\r\n" +
			"\r\n" +
			"trailing spaces   \r\n" +
			"-- \r\n" +
			"Alice\r\n")
		cl := dialSMTP(t, r.Addr)
		cl.expect("HELO oldclient.example", 250)
		cl.expect("MAIL FROM:<alice@example.com>", 250)
		cl.expect("RCPT TO:<bob@example.net>", 250)
		rep := cl.data(msg)
		if rep.Code != 250 || !strings.HasPrefix(rep.LastText(), "2.0.0 Ok: queued as ") {
			t.Fatalf("end of DATA: %s; want Postfix's 250 2.0.0 Ok: queued as ...", rep)
		}
		cl.expect("QUIT", 221)

		m := waitMessage(t, p, "bob@example.net", "relay-1a@e2e.test")
		if got := m.AuthenticatedSender(); got != "alice@example.com" {
			t.Errorf("authenticated sender = %q, want alice@example.com", got)
		}
		sameBytes(t, "delivered message", asSubmitted(t, m), msg)
		// Postfix's queue ID in the client's reply is the one in the
		// Received header: the client heard Postfix's own answer.
		id := strings.TrimPrefix(rep.LastText(), "2.0.0 Ok: queued as ")
		if !strings.Contains(string(m.Raw), "with ESMTPSA id "+id+"\n") {
			t.Errorf("queue ID %q from the reply is not in the Received header:\n%s", id, m.Raw)
		}
	})

	t.Run("domain-account-and-address-precedence", func(t *testing.T) {
		for _, tc := range []struct{ from, login string }{
			{"anyone@example.org", "relay@example.org"},
			{"Somebody@Example.ORG", "relay@example.org"},
			{"boss@example.org", "boss@example.org"},
		} {
			marker := "1b-" + strings.ToLower(strings.Split(tc.from, "@")[0])
			rcpt := marker + "@example.net"
			rep := sendMail(t, r.Addr, tc.from, []string{rcpt}, message(tc.from, rcpt, marker))
			if rep.Code != 250 || !strings.Contains(rep.LastText(), "Ok: queued as") {
				t.Errorf("%s: end of DATA: %s", tc.from, rep)
				continue
			}
			m := waitMessage(t, p, rcpt, marker)
			if got := m.AuthenticatedSender(); got != tc.login {
				t.Errorf("%s: authenticated sender = %q, want %q", tc.from, got, tc.login)
			}
			if !strings.HasPrefix(string(m.Raw), "Return-Path: <"+tc.from+">\n") {
				t.Errorf("%s: envelope sender not kept:\n%s", tc.from, m.Raw)
			}
		}
	})

	t.Run("implicit-tls", func(t *testing.T) {
		rep := sendMail(t, r.Addr, "implicit@example.com", []string{"smtps@example.net"}, message("implicit@example.com", "smtps@example.net", "1c-smtps"))
		if rep.Code != 250 || !strings.Contains(rep.LastText(), "Ok: queued as") {
			t.Fatalf("end of DATA: %s", rep)
		}
		m := waitMessage(t, p, "smtps@example.net", "1c-smtps")
		if got := m.AuthenticatedSender(); got != "alice@example.com" {
			t.Errorf("authenticated sender = %q, want alice@example.com", got)
		}
		if !regexp.MustCompile(`\(using TLSv1\.[23] `).Match(m.Raw) {
			t.Errorf("Received header does not record TLS 1.2+:\n%s", m.Raw)
		}
		if !strings.Contains(string(m.Raw), "with ESMTPSA id") {
			t.Errorf("not submitted with ESMTPSA:\n%s", m.Raw)
		}
	})

	t.Run("wrong-password-held-with-postfix-535", func(t *testing.T) {
		want := postfixReply(t, p, "alice@example.com", "not-alices-password", "x@example.net")
		if !strings.HasPrefix(want, "535 5.7.8 ") {
			t.Fatalf("Postfix itself answers %q; want a 535 5.7.8", want)
		}
		// A refused password is not the message's fault: as Postfix's
		// smtp_sasl_auth_soft_bounce, the message is kept and the client
		// hears 250 queued with what to do; the provider's own 535 is the
		// queued message's last error.
		cl := dialSMTP(t, r.Addr)
		cl.expect("HELO oldclient", 250)
		cl.expect("MAIL FROM:<wrongpw@example.com>", 250)
		cl.expect("RCPT TO:<held@example.net>", 250)
		rep := cl.data(message("wrongpw@example.com", "held@example.net", "1d-held"))
		mm := regexp.MustCompile(`^2\.0\.0 queued as (\S+): the provider refused the password for wrongpw@example\.com; update it with "smtpshim account add wrongpw@example\.com"$`).FindStringSubmatch(rep.LastText())
		if rep.Code != 250 || mm == nil {
			t.Fatalf("a message with a wrong upstream password: %s\nwant 250 2.0.0 queued as ID: the provider refused the password for wrongpw@example.com; update it with \"smtpshim account add wrongpw@example.com\"", rep)
		}
		res := shim(t, c.Path, "", "queue", "show", mm[1])
		// go-smtp's client keeps the reply's text and drops the enhanced
		// code of a reply to AUTH.
		lastErr := regexp.MustCompile(`(?m)^Last error:\s+.*SMTP error 535: (5\.7\.8 )?` + regexp.QuoteMeta(strings.TrimPrefix(want, "535 5.7.8 ")) + `$`)
		if res.Code != 0 || !lastErr.MatchString(res.Stdout) {
			t.Errorf("queue show %s: want Postfix's own reply %q as the last error:\n%s", mm[1], want, res)
		}
		noMessage(t, p, "held@example.net", "1d-held")

		// The right password and a reload (what "smtpshim account add"
		// does) send the held message at once; then the wrong password is
		// put back for the checks further down.
		pwFile := filepath.Join(c.Dir, "password-4")
		setPassword := func(pw string) {
			t.Helper()
			if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if res := shim(t, c.Path, "", "reload"); res.Code != 0 {
				t.Fatalf("smtpshim reload:\n%s", res)
			}
		}
		setPassword(relayUsers["alice@example.com"])
		waitMessage(t, p, "held@example.net", "1d-held")
		setPassword("not-alices-password")

		// The session goes on: the next sender works.
		cl.expect("MAIL FROM:<alice@example.com>", 250)
		cl.expect("RCPT TO:<after535@example.net>", 250)
		if rep := cl.data(message("alice@example.com", "after535@example.net", "1d-after")); rep.Code != 250 {
			t.Errorf("message after the refused password: %s", rep)
		}
		waitMessage(t, p, "after535@example.net", "1d-after")
	})

	t.Run("unknown-sender-550", func(t *testing.T) {
		mark := markLogs(p)
		cl := dialSMTP(t, r.Addr)
		cl.expect("HELO oldclient", 250)
		rep := cl.cmd("MAIL FROM:<stranger@unknown.example>")
		if rep.Code != 550 || !strings.HasPrefix(rep.LastText(), "5.7.1 ") ||
			!strings.Contains(rep.LastText(), "stranger@unknown.example") || !strings.Contains(rep.LastText(), "smtpshim account add") {
			t.Errorf("MAIL FROM an unknown sender: %s; want 550 5.7.1 naming the sender and \"smtpshim account add\"", rep)
		}
		if rep := cl.cmd("RCPT TO:<stranger-rcpt@example.net>"); rep.Code/100 != 5 {
			t.Errorf("RCPT after a refused MAIL: %s, want a 5xx", rep)
		}
		if rep := cl.cmd("DATA"); rep.Code/100 != 5 {
			t.Errorf("DATA after a refused MAIL: %s, want a 5xx", rep)
		}
		cl.expect("QUIT", 221)
		time.Sleep(300 * time.Millisecond)
		if got := mark.since(p)["postfix"]; strings.Contains(got, "connect from") {
			t.Errorf("smtpshim connected to Postfix for an unknown sender:\n%s", got)
		}
		noMessage(t, p, "stranger-rcpt@example.net", "stranger")
	})

	t.Run("no-credentials-without-tls", func(t *testing.T) {
		mark := markLogs(p)
		cl := dialSMTP(t, r.Addr)
		cl.expect("HELO oldclient", 250)
		rep := cl.cmd("MAIL FROM:<leak@example.com>")
		if rep.Code != 454 || !strings.HasPrefix(rep.LastText(), "4.7.0 ") || !strings.Contains(rep.LastText(), "STARTTLS") ||
			!strings.Contains(rep.LastText(), "unencrypted") {
			t.Errorf("MAIL FROM for an account whose server offers no STARTTLS: %s; want 454 4.7.0 saying STARTTLS/unencrypted", rep)
		}
		cl.expect("QUIT", 221)

		// What Postfix logged for smtpshim's connection: it must have
		// ended after EHLO, with no AUTH command at all. A real AUTH
		// attempt shows as "auth=1" or "auth=0/1" in smtpd's disconnect
		// statistics, as "sasl_method=..., sasl_username=..." (success)
		// or "SASL ... authentication failed" (failure) in Postfix's log,
		// and as a passwd-file line in Dovecot's auth log; the
		// insecure-positive-control subtest below shows the first kind.
		var pf string
		deadline := time.Now().Add(10 * time.Second)
		for {
			pf = mark.since(p)["postfix"]
			conns := regexp.MustCompile(`smtpd\[(\d+)\]: connect from `).FindAllStringSubmatch(pf, -1)
			if len(conns) > 1 {
				t.Fatalf("want one connection to Postfix, got %d:\n%s", len(conns), pf)
			}
			if len(conns) == 1 {
				disc := regexp.MustCompile(`smtpd\[` + conns[0][1] + `\]: disconnect from \S+ (.*)`).FindStringSubmatch(pf)
				if disc != nil {
					if disc[1] != "ehlo=1 commands=1" {
						t.Errorf("Postfix's statistics for smtpshim's connection: %q, want \"ehlo=1 commands=1\" (no AUTH)\n%s", disc[1], pf)
					}
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("Postfix logged no finished connection from smtpshim within 10s:\n%s", pf)
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, bad := range []string{"auth=", "sasl_method", "sasl_username", "SASL", "leak@example.com", "leak-pw"} {
			if strings.Contains(pf, bad) {
				t.Errorf("Postfix's log shows an AUTH attempt (%q):\n%s", bad, pf)
			}
		}
		if dv := mark.since(p)["dovecot"]; strings.TrimSpace(dv) != "" {
			t.Errorf("Dovecot's auth log has new lines, so credentials reached it:\n%s", dv)
		}
		// A second client a moment later hears the same 454, not a 250
		// that queues the message for retries that can never succeed:
		// the server is not down, it just can't be given the password.
		cl = dialSMTP(t, r.Addr)
		cl.expect("HELO oldclient", 250)
		if again := cl.cmd("MAIL FROM:<leak@example.com>"); again.Code != 454 || again.LastText() != rep.LastText() {
			t.Errorf("MAIL FROM for the same account again: %s; want the same 454 as before: %s", again, rep)
		}
		cl.expect("QUIT", 221)
		// And in the whole run, the leak account never logged in.
		if all := p.Log(); strings.Contains(all, "leak@example.com") {
			t.Errorf("the leak account's login appears in the Postfix/Dovecot logs:\n%s", all)
		}
		noMessage(t, p, "leak-rcpt@example.net", "leak")
	})

	t.Run("insecure-positive-control", func(t *testing.T) {
		// Same plaintext port, security = "insecure": now it does log in,
		// and the log shows it, so the check above can see an AUTH.
		mark := markLogs(p)
		rep := sendMail(t, r.Addr, "plainok@example.com", []string{"plainok-rcpt@example.net"}, message("plainok@example.com", "plainok-rcpt@example.net", "1f-insecure"))
		if rep.Code != 250 || !strings.Contains(rep.LastText(), "Ok: queued as") {
			t.Fatalf("end of DATA: %s", rep)
		}
		m := waitMessage(t, p, "plainok-rcpt@example.net", "1f-insecure")
		if got := m.AuthenticatedSender(); got != "plainok@example.com" {
			t.Errorf("authenticated sender = %q, want plainok@example.com", got)
		}
		if strings.Contains(string(m.Raw), "using TLS") {
			t.Errorf("insecure account used TLS?\n%s", m.Raw)
		}
		if pf := mark.since(p)["postfix"]; !regexp.MustCompile(`sasl_method=[A-Z-0-9]+, sasl_username=plainok@example\.com`).MatchString(pf) {
			t.Errorf("Postfix's log does not show the AUTH:\n%s", pf)
		}
	})

	t.Run("rejected-recipient-550-others-delivered", func(t *testing.T) {
		want := postfixReply(t, p, "alice@example.com", relayUsers["alice@example.com"], realpeer.RejectAddr)
		if !strings.HasPrefix(want, "550 5.1.1 ") {
			t.Fatalf("Postfix itself answers %q for %s; want a 550 5.1.1", want, realpeer.RejectAddr)
		}
		cl := dialSMTP(t, r.Addr)
		cl.expect("HELO oldclient", 250)
		cl.expect("MAIL FROM:<alice@example.com>", 250)
		cl.expect("RCPT TO:<good-1g@example.net>", 250)
		rep := cl.cmd("RCPT TO:<" + realpeer.RejectAddr + ">")
		if got := rep.Lines[len(rep.Lines)-1]; len(rep.Lines) != 1 || got != want {
			t.Errorf("RCPT TO:<%s>: %s\nwant Postfix's own reply: %s", realpeer.RejectAddr, rep, want)
		}
		msg := message("alice@example.com", "good-1g@example.net, "+realpeer.RejectAddr, "1g-mixed")
		if rep := cl.data(msg); rep.Code != 250 || !strings.Contains(rep.LastText(), "Ok: queued as") {
			t.Fatalf("end of DATA: %s", rep)
		}
		cl.expect("QUIT", 221)
		m := waitMessage(t, p, "good-1g@example.net", "1g-mixed")
		sameBytes(t, "delivered message", asSubmitted(t, m), msg)
		time.Sleep(200 * time.Millisecond)
		noMessage(t, p, realpeer.RejectAddr, "1g-mixed")
	})

	t.Run("account-test-and-doctor", func(t *testing.T) {
		res := shim(t, c.Path, "", "account", "test", "alice@example.com")
		if res.Code != 0 || !regexp.MustCompile(`(?m)^connected: TLS 1\.[23], certificate verified$`).MatchString(res.Stdout) ||
			!strings.Contains(res.Stdout, "AUTH PLAIN as alice@example.com: accepted\n") {
			t.Errorf("account test alice@example.com:\n%s", res)
		}
		res = shim(t, c.Path, "", "account", "test", "implicit@example.com")
		if res.Code != 0 || !regexp.MustCompile(`(?m)^connected: TLS 1\.[23], certificate verified$`).MatchString(res.Stdout) ||
			!strings.Contains(res.Stdout, "as alice@example.com: accepted\n") {
			t.Errorf("account test implicit@example.com:\n%s", res)
		}

		res = shim(t, c.Path, "", "account", "test", "wrongpw@example.com")
		if res.Code == 0 || !strings.Contains(res.Stdout, "FAILED: ") || !strings.Contains(res.Stdout, "535") ||
			!regexp.MustCompile(`(?m)^hint: the provider rejected the username or password`).MatchString(res.Stdout) {
			t.Errorf("account test with a wrong password: want a non-zero exit, FAILED with the 535 and a hint line:\n%s", res)
		}
		for _, s := range []string{res.Stdout, res.Stderr} {
			if strings.Contains(s, "not-alices-password") {
				t.Errorf("the password is in the output:\n%s", res)
			}
		}

		// doctor: one account whose password is in the real keychain...
		who := "doctor-" + uniq() + "@example.com"
		good := newConfig(t, "")
		addKeychainAccount(t, good, who, relayUsers["alice@example.com"],
			"--server", p.SubmissionAddr, "--ca-file", p.CAFile, "--username", "alice@example.com")
		res = shimKeychain(t, good.Path, "", "doctor")
		if res.Code != 0 || strings.Contains(res.Stdout, "[FAIL]") || !strings.Contains(res.Stdout, "all checks passed") ||
			!strings.Contains(res.Stdout, "password found in the keychain") ||
			!regexp.MustCompile(`\[ok  \]   connected \(TLS 1\.[23]\), AUTH PLAIN as alice@example\.com accepted`).MatchString(res.Stdout) {
			t.Errorf("doctor with a good account:\n%s", res)
		}
		// ...and one that has none stored.
		missing := "nopw-" + uniq() + "@example.com"
		bad := newConfig(t, "", account{Address: missing, Username: "alice@example.com", Server: p.SubmissionAddr, CAFile: p.CAFile})
		res = shimKeychain(t, bad.Path, "", "doctor")
		if res.Code == 0 || !strings.Contains(res.Stdout, "[FAIL]   no password stored: run smtpshim account add "+missing) {
			t.Errorf("doctor with no password stored: want a non-zero exit and a FAIL naming smtpshim account add:\n%s", res)
		}
	})
}
