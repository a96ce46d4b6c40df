//go:build realpeer

package realpeer

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const (
	alice   = "alice@example.com"
	alicePW = "secret"
	wait    = 15 * time.Second
)

// swaks runs the swaks binary against addr with the given extra arguments
// and returns its combined output and whether it exited 0.
func swaks(t *testing.T, addr string, args ...string) (string, bool) {
	t.Helper()
	bin, err := exec.LookPath("swaks")
	if err != nil {
		t.Fatalf("swaks not found (%v); run .ci/deps to install the test dependencies", err)
	}
	host, port, _ := net.SplitHostPort(addr)
	all := append([]string{"--server", host, "--port", port, "--timeout", "20", "--helo", "client.example"}, args...)
	out, err := exec.Command(bin, all...).CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("running swaks: %v", err)
		}
		return string(out), false
	}
	return string(out), true
}

// send is swaks with from/to/subject and optional AUTH.
func send(t *testing.T, addr, to, subject string, extra ...string) (string, bool) {
	t.Helper()
	args := append([]string{"--from", alice, "--to", to, "--header", "Subject: " + subject,
		"--body", "realpeer test body for " + subject}, extra...)
	return swaks(t, addr, args...)
}

func auth(mech, user, pw string) []string {
	return []string{"--auth", mech, "--auth-user", user, "--auth-password", pw}
}

// serverReply returns the first server reply line (swaks prefixes them with
// "<~ " inside TLS, "<- " in the clear, "<** " or "<~* " for errors) that
// follows the client command cmd (e.g. "RCPT TO").
func serverReply(out, cmd string) string {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.Contains(l, cmd) && (strings.HasPrefix(strings.TrimSpace(l), "->") || strings.HasPrefix(strings.TrimSpace(l), "~>")) {
			for _, r := range lines[i+1:] {
				r = strings.TrimSpace(r)
				if strings.HasPrefix(r, "<") {
					if j := strings.IndexByte(r, ' '); j >= 0 {
						return strings.TrimSpace(r[j:])
					}
				}
			}
		}
	}
	return ""
}

func expectDelivered(t *testing.T, p *Postfix, mailbox, subject, login string) Message {
	t.Helper()
	msgs := p.WaitMessages(t, mailbox, 1, wait)
	for _, m := range msgs {
		if strings.Contains(string(m.Raw), "Subject: "+subject+"\r\n") || strings.Contains(string(m.Raw), "Subject: "+subject+"\n") {
			if got := m.AuthenticatedSender(); got != login {
				t.Errorf("%s: Authenticated sender = %q, want %q\n%s", subject, got, login, m.Raw)
			}
			return m
		}
	}
	t.Fatalf("no message with subject %q for %s; got %d message(s)", subject, mailbox, len(msgs))
	return Message{}
}

func TestSwaks(t *testing.T) {
	t.Parallel()
	p := StartPostfix(t, map[string]string{alice: alicePW, "bob@example.org": "b:o b\x01"})

	for _, mech := range []string{"LOGIN", "CRAM-MD5", "PLAIN"} {
		t.Run("submission-starttls-"+mech, func(t *testing.T) {
			rcpt := strings.ToLower(strings.ReplaceAll(mech, "-", "")) + "@example.net"
			subj := "submission " + mech
			out, ok := send(t, p.SubmissionAddr, rcpt, subj, append([]string{"--tls"}, auth(mech, alice, alicePW)...)...)
			if !ok {
				t.Fatalf("swaks failed:\n%s", out)
			}
			m := expectDelivered(t, p, rcpt, subj, alice)
			if !strings.Contains(string(m.Raw), "using TLS") {
				t.Errorf("Received header does not record TLS:\n%s", m.Raw)
			}
		})
	}

	t.Run("password-with-colon", func(t *testing.T) {
		out, ok := send(t, p.SubmissionAddr, "colon@example.org", "colon pw", append([]string{"--tls"}, auth("CRAM-MD5", "bob@example.org", "b:o b\x01")...)...)
		if !ok {
			t.Fatalf("swaks failed:\n%s", out)
		}
		expectDelivered(t, p, "colon@example.org", "colon pw", "bob@example.org")
	})

	t.Run("smtps-implicit-tls", func(t *testing.T) {
		out, ok := send(t, p.SMTPSAddr, "smtps@example.org", "smtps", append([]string{"--tlsc"}, auth("PLAIN", alice, alicePW)...)...)
		if !ok {
			t.Fatalf("swaks failed:\n%s", out)
		}
		expectDelivered(t, p, "smtps@example.org", "smtps", alice)
	})

	t.Run("no-auth-refused", func(t *testing.T) {
		for _, c := range []struct {
			name, addr string
			tls        []string
		}{
			{"submission", p.SubmissionAddr, []string{"--tls"}},
			{"smtps", p.SMTPSAddr, []string{"--tlsc"}},
			{"plain", p.PlainAddr, nil},
		} {
			rcpt := "noauth-" + c.name + "@example.com"
			out, ok := send(t, c.addr, rcpt, "noauth", c.tls...)
			if ok {
				t.Errorf("%s: unauthenticated mail accepted:\n%s", c.name, out)
			}
			if r := serverReply(out, "RCPT TO"); !strings.HasPrefix(r, "554 5.7.1") {
				t.Errorf("%s: RCPT reply = %q, want 554 5.7.1 relay denied\n%s", c.name, r, out)
			}
			if n := len(p.Messages(rcpt)); n != 0 {
				t.Errorf("%s: %d message(s) delivered without AUTH", c.name, n)
			}
		}
	})

	t.Run("auth-needs-tls-on-submission", func(t *testing.T) {
		out, _ := swaks(t, p.SubmissionAddr, "--quit-after", "EHLO")
		if !strings.Contains(out, "STARTTLS") {
			t.Errorf("STARTTLS not offered:\n%s", out)
		}
		if strings.Contains(out, "AUTH") {
			t.Errorf("AUTH advertised before STARTTLS:\n%s", out)
		}
	})

	t.Run("wrong-password-535", func(t *testing.T) {
		for _, mech := range []string{"PLAIN", "LOGIN", "CRAM-MD5"} {
			out, ok := send(t, p.SubmissionAddr, "wrongpw@example.com", "wrong pw", append([]string{"--tls"}, auth(mech, alice, "not-the-password")...)...)
			if ok {
				t.Errorf("%s: wrong password accepted:\n%s", mech, out)
			}
			if !strings.Contains(out, "535 5.7.8") {
				t.Errorf("%s: no 535 in:\n%s", mech, out)
			}
		}
		if n := len(p.Messages("wrongpw@example.com")); n != 0 {
			t.Errorf("%d message(s) delivered with a wrong password", n)
		}
	})

	t.Run("reject-550-at-rcpt", func(t *testing.T) {
		out, ok := send(t, p.SubmissionAddr, RejectAddr, "reject", append([]string{"--tls"}, auth("PLAIN", alice, alicePW)...)...)
		if ok {
			t.Fatalf("mail to %s accepted:\n%s", RejectAddr, out)
		}
		if r := serverReply(out, "RCPT TO"); !strings.HasPrefix(r, "550 5.1.1") {
			t.Errorf("RCPT reply = %q, want 550 5.1.1\n%s", r, out)
		}
		out, _ = send(t, p.SubmissionAddr, "someone@elsewhere.test", "elsewhere", append([]string{"--tls"}, auth("PLAIN", alice, alicePW)...)...)
		if r := serverReply(out, "RCPT TO"); !strings.HasPrefix(r, "550 5.7.1") {
			t.Errorf("RCPT reply for a foreign domain = %q, want 550 5.7.1\n%s", r, out)
		}
	})

	t.Run("plain-port-no-starttls-but-auth", func(t *testing.T) {
		out, ok := swaks(t, p.PlainAddr, "--quit-after", "EHLO")
		if !ok {
			t.Fatalf("swaks failed:\n%s", out)
		}
		if strings.Contains(out, "STARTTLS") {
			t.Errorf("STARTTLS offered on PlainAddr:\n%s", out)
		}
		if !strings.Contains(out, "250-AUTH PLAIN LOGIN") && !strings.Contains(out, "250 AUTH PLAIN LOGIN") {
			t.Errorf("AUTH PLAIN LOGIN not advertised on PlainAddr:\n%s", out)
		}
		// And credentials sent there in the clear do work (and show up in
		// the log), so tests can detect a client that leaks them.
		out, ok = send(t, p.PlainAddr, "cleartext@example.com", "cleartext", auth("LOGIN", alice, alicePW)...)
		if !ok {
			t.Fatalf("swaks failed:\n%s", out)
		}
		expectDelivered(t, p, "cleartext@example.com", "cleartext", alice)
	})

	t.Run("case-insensitive-mailbox", func(t *testing.T) {
		out, ok := send(t, p.SubmissionAddr, "Carol@Example.COM", "case", append([]string{"--tls"}, auth("PLAIN", alice, alicePW)...)...)
		if !ok {
			t.Fatalf("swaks failed:\n%s", out)
		}
		expectDelivered(t, p, "carol@example.com", "case", alice)
	})

	t.Run("go-client-verifies-CA", func(t *testing.T) {
		c, err := smtp.Dial(p.SubmissionAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.StartTLS(&tls.Config{ServerName: "127.0.0.1", RootCAs: p.CertPool()}); err != nil {
			t.Fatalf("STARTTLS with CAFile (IP SAN): %v", err)
		}
		if err := c.Auth(smtp.PlainAuth("", alice, alicePW, "127.0.0.1")); err != nil {
			t.Fatal(err)
		}
		if err := c.Mail(alice); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("gotest@example.com"); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(w, "Subject: go client\r\nFrom: bob\r\n\r\nhello\r\n.dot\r\n")
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		_ = c.Quit()
		m := expectDelivered(t, p, "gotest@example.com", "go client", alice)
		// Delivered as submitted: no rewriting, no added headers.
		pm, err := m.Parse()
		if err != nil {
			t.Fatal(err)
		}
		if got := pm.Header.Get("From"); got != "bob" {
			t.Errorf("From rewritten to %q", got)
		}
		for _, h := range []string{"Message-Id", "Date"} {
			if pm.Header.Get(h) != "" {
				t.Errorf("Postfix added a %s header:\n%s", h, m.Raw)
			}
		}
		if !strings.HasSuffix(string(m.Raw), "\n\nhello\n.dot\n") {
			t.Errorf("body not delivered as submitted:\n%q", m.Raw)
		}

		tc, err := tls.Dial("tcp", p.SMTPSAddr, &tls.Config{ServerName: "localhost", RootCAs: p.CertPool()})
		if err != nil {
			t.Fatalf("SMTPS with CAFile (DNS SAN): %v", err)
		}
		tc.Close()
	})
}

func TestStopStartAndUsers(t *testing.T) {
	t.Parallel()
	p := StartPostfix(t, map[string]string{alice: alicePW})
	tlsAuth := append([]string{"--tls"}, auth("PLAIN", alice, alicePW)...)

	if out, ok := send(t, p.SubmissionAddr, "outage@example.com", "before", tlsAuth...); !ok {
		t.Fatalf("swaks failed:\n%s", out)
	}
	p.WaitMessages(t, "outage@example.com", 1, wait)

	p.Stop(t)
	for _, addr := range []string{p.SubmissionAddr, p.SMTPSAddr, p.PlainAddr} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s accepts connections while stopped", addr)
		}
	}
	if out, ok := send(t, p.SubmissionAddr, "outage@example.com", "during", tlsAuth...); ok {
		t.Errorf("swaks succeeded while postfix was stopped:\n%s", out)
	}

	p.Start(t)
	if out, ok := send(t, p.SubmissionAddr, "outage@example.com", "after", tlsAuth...); !ok {
		t.Fatalf("swaks failed after restart:\n%s", out)
	}
	msgs := p.WaitMessages(t, "outage@example.com", 2, wait)
	if len(msgs) != 2 || !strings.Contains(string(msgs[0].Raw), "Subject: before") || !strings.Contains(string(msgs[1].Raw), "Subject: after") {
		t.Errorf("want messages before, after (in order); got %d", len(msgs))
	}

	// Password change and user removal take effect immediately.
	p.SetUser(t, alice, "new-secret")
	if out, ok := send(t, p.SubmissionAddr, "pw@example.com", "old pw", tlsAuth...); ok || !strings.Contains(out, "535") {
		t.Errorf("old password still accepted after SetUser:\n%s", out)
	}
	if out, ok := send(t, p.SubmissionAddr, "pw@example.com", "new pw", append([]string{"--tls"}, auth("CRAM-MD5", alice, "new-secret")...)...); !ok {
		t.Errorf("new password refused after SetUser:\n%s", out)
	}
	p.RemoveUser(t, alice)
	if out, ok := send(t, p.SubmissionAddr, "pw@example.com", "removed", append([]string{"--tls"}, auth("PLAIN", alice, "new-secret")...)...); ok {
		t.Errorf("removed user still accepted:\n%s", out)
	}
	p.WaitMessages(t, "pw@example.com", 1, wait)

	if !strings.Contains(p.Log(), "sasl_username="+alice) {
		t.Errorf("Log() lacks the SASL login lines:\n%s", p.Log())
	}
}
