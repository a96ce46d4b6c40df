//go:build realpeer

package e2e

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/internal/realpeer"
)

// runTool runs a client program and returns its combined output; it fails
// the test unless the program exits 0.
func runTool(t *testing.T, stdin []byte, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, needTool(t, name), args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// checkRelayed checks that each message a client sent through rec reached
// Postfix exactly as sent (line endings normalized to CRLF), authenticated
// as login. markers[i] finds the i-th message in mailboxes[i].
func checkRelayed(t *testing.T, p *realpeer.Postfix, rec *recorder, login string, mailboxes, markers []string) [][]byte {
	t.Helper()
	sent := dataPayloads(rec.sent())
	if len(sent) != len(markers) {
		t.Fatalf("the client sent %d message(s), want %d:\n%q", len(sent), len(markers), rec.sent())
	}
	for i, marker := range markers {
		m := waitMessage(t, p, mailboxes[i], marker)
		if got := m.AuthenticatedSender(); got != login {
			t.Errorf("message %s: authenticated sender %q, want %q", marker, got, login)
		}
		sameBytes(t, "message "+marker+" as delivered vs. as the client sent it", asSubmitted(t, m), toCRLF(sent[i]))
	}
	return sent
}

func TestLegacyClients(t *testing.T) {
	t.Parallel()
	p := realpeer.StartPostfix(t, map[string]string{"alice@example.com": "alice clients pw"})
	c := newConfig(t, "", account{Address: "alice@example.com", Server: p.SubmissionAddr, CAFile: p.CAFile, Password: "alice clients pw"})
	r := startRelay(t, c)

	t.Run("swaks", func(t *testing.T) {
		// Bare LF line endings, 8-bit UTF-8, a line starting with a dot,
		// one with two, and a lone dot that is not the end. No
		// backslashes or %TOKENS%: swaks would expand them.
		file := []byte("From: Alice <alice@example.com>\n" +
			"To: bob@example.net\n" +
			"Subject: e2e 2a-swaks Gr\xc3\xbc\xc3\x9fe\n" +
			"Message-ID: <2a-swaks@e2e.test>\n" +
			"Date: Mon, 02 Jan 2006 15:04:05 +0000\n" +
			"\n" +
			"H\xc3\xa9llo w\xc3\xb6rld \xe2\x82\xac\n" +
			".leading dot\n" +
			"..two dots\n" +
			".\n" +
			"last line\n")
		path := filepath.Join(t.TempDir(), "message.txt")
		if err := os.WriteFile(path, file, 0o644); err != nil {
			t.Fatal(err)
		}
		rec := startRecorder(t, r.Addr)
		out := runTool(t, nil, "swaks", "--server", rec.Addr(), "--protocol", "SMTP", "--helo", "oldclient",
			"--from", "alice@example.com", "--to", "bob@example.net", "--data", "@"+path, "--timeout", "30")
		if !strings.Contains(out, " -> HELO oldclient") || strings.Contains(out, "EHLO") || strings.Contains(out, "AUTH") {
			t.Errorf("swaks did not talk HELO-only:\n%s", out)
		}
		stream := rec.sent()
		if !bytes.HasPrefix(stream, []byte("HELO oldclient\r\n")) {
			t.Errorf("swaks's first command: %q", stream[:min(len(stream), 40)])
		}
		// What swaks sends for --data (its "data fixup", swaks 2020xxxx):
		// the header is re-joined with CRLF, bare LFs in the body become
		// CRLF, leading dots are doubled on the wire, and it appends
		// "\r\n." as the terminator: since the file already ends with a
		// line ending, the message gains one empty last line.
		want := append(toCRLF(file), "\r\n"...)
		sent := checkRelayed(t, p, rec, "alice@example.com", []string{"bob@example.net"}, []string{"2a-swaks@e2e.test"})
		sameBytes(t, "what swaks sent vs. what its documented data fixup predicts", sent[0], want)
	})

	t.Run("msmtp", func(t *testing.T) {
		rec := startRecorder(t, r.Addr)
		host, port, _ := net.SplitHostPort(rec.Addr())
		dir := t.TempDir()
		rc := filepath.Join(dir, "msmtprc")
		if err := os.WriteFile(rc, []byte("defaults\nauth off\ntls off\nlogfile "+filepath.Join(dir, "msmtp.log")+"\n\n"+
			"account oldshim\nhost "+host+"\nport "+port+"\nfrom alice@example.com\ndomain oldclient.example\n\n"+
			"account default : oldshim\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		msg := []byte("From: Alice <alice@example.com>\n" +
			"To: msmtp-to@example.net\n" +
			"Cc: msmtp-cc@example.net\n" +
			"Subject: e2e 2b-msmtp \xc3\xa9t\xc3\xa9\n" +
			"Message-ID: <2b-msmtp@e2e.test>\n" +
			"Date: Mon, 02 Jan 2006 15:04:05 +0000\n" +
			"MIME-Version: 1.0\n" +
			"Content-Type: text/plain; charset=utf-8\n" +
			"Content-Transfer-Encoding: 8bit\n" +
			"\n" +
			"Sent by msmtp with auth off and tls off.\n" +
			".a dot line\n" +
			"8-bit: \xc3\xa4\xc3\xb6\xc3\xbc\n")
		runTool(t, msg, "msmtp", "-C", rc, "-t")
		if bytes.Contains(rec.sent(), []byte("AUTH")) || bytes.Contains(rec.sent(), []byte("STARTTLS")) {
			t.Errorf("msmtp sent AUTH or STARTTLS:\n%q", rec.sent())
		}
		sent := checkRelayed(t, p, rec, "alice@example.com",
			[]string{"msmtp-to@example.net"}, []string{"2b-msmtp@e2e.test"})
		// The Cc recipient gets the same message.
		m := waitMessage(t, p, "msmtp-cc@example.net", "2b-msmtp@e2e.test")
		sameBytes(t, "the Cc copy", asSubmitted(t, m), toCRLF(sent[0]))
		// msmtp turns LFs into CRLFs and, as the message has Date and
		// Message-ID, adds nothing (set_date_header/set_msgid_header auto).
		sameBytes(t, "what msmtp sent vs. the message with CRLF line endings", sent[0], toCRLF(msg))
	})

	t.Run("python-smtplib", func(t *testing.T) {
		rec := startRecorder(t, r.Addr)
		host, port, _ := net.SplitHostPort(rec.Addr())
		// Session 1: HELO only, a bytes message with bare LFs, 8-bit text
		// and a leading dot. Session 2: EHLO and AUTH with a made-up
		// password, which smtpshim accepts and ignores by default.
		msg1 := []byte("From: alice@example.com\nTo: py-helo@example.net\nSubject: e2e 2c-py-helo\n" +
			"Message-ID: <2c-py-helo@e2e.test>\nDate: Mon, 02 Jan 2006 15:04:05 +0000\n\n" +
			"Gr\xc3\xbc\xc3\x9fe from smtplib\n.dot line\nend\n")
		msg2 := []byte("From: alice@example.com\nTo: py-auth@example.net\nSubject: e2e 2c-py-auth\n" +
			"Message-ID: <2c-py-auth@e2e.test>\nDate: Mon, 02 Jan 2006 15:04:05 +0000\n\n" +
			"sent after AUTH with a fake password\n")
		dir := t.TempDir()
		for name, b := range map[string][]byte{"msg1": msg1, "msg2": msg2} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		script := `
import smtplib, sys
host, port, dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
msg1 = open(dir + "/msg1", "rb").read()
msg2 = open(dir + "/msg2", "r").read()
s = smtplib.SMTP(host, port, local_hostname="oldclient", timeout=30)
code, _ = s.helo("oldclient")
assert code == 250, code
refused = s.sendmail("alice@example.com", ["py-helo@example.net"], msg1)
assert refused == {}, refused
s.quit()
s = smtplib.SMTP(host, port, local_hostname="oldclient", timeout=30)
s.ehlo("oldclient")
code, text = s.login("x", "y-fake-password")
print("LOGIN", code, text.decode())
refused = s.sendmail("alice@example.com", ["py-auth@example.net"], msg2)
assert refused == {}, refused
s.quit()
print("OK")
`
		out := runTool(t, nil, "python3", "-c", script, host, port, dir)
		if !strings.Contains(out, "LOGIN 235 ") || !strings.Contains(out, "OK\n") {
			t.Errorf("smtplib: want AUTH accepted with 235 and both messages sent:\n%s", out)
		}
		stream := rec.sent()
		if !bytes.HasPrefix(stream, []byte("helo oldclient\r\n")) {
			t.Errorf("smtplib's first session did not start with HELO: %q", stream[:min(len(stream), 40)])
		}
		if !bytes.Contains(stream, []byte("AUTH PLAIN ")) && !bytes.Contains(stream, []byte("AUTH LOGIN")) {
			t.Errorf("smtplib did not send AUTH:\n%q", stream)
		}
		sent := checkRelayed(t, p, rec, "alice@example.com",
			[]string{"py-helo@example.net", "py-auth@example.net"}, []string{"2c-py-helo@e2e.test", "2c-py-auth@e2e.test"})
		// smtplib sends a bytes message as it is, bare LFs included, and
		// puts a CRLF before the final dot since the message does not end
		// with one: the message gains an empty last line. A str message
		// has its line endings made CRLF first, so it gains nothing.
		sameBytes(t, "what smtplib sent (bytes)", sent[0], append(append([]byte(nil), msg1...), "\r\n"...))
		sameBytes(t, "what smtplib sent (str)", sent[1], toCRLF(msg2))
		if strings.Contains(r.Log(), "y-fake-password") {
			t.Errorf("the local password is in smtpshim's log:\n%s", r.Log())
		}
	})

	t.Run("smtpshim-send", func(t *testing.T) {
		in := []byte("From: Alice <alice@example.com>\n" +
			"To: To Person <send-to@example.net>\n" +
			"Cc: send-cc@example.net\n" +
			"Bcc: Hidden <send-bcc@example.org>\n" +
			"Subject: e2e 2d-send-t\n" +
			"Message-ID: <2d-send-t@e2e.test>\n" +
			"Date: Mon, 02 Jan 2006 15:04:05 +0000\n" +
			"\n" +
			"Sent with smtpshim send -t, b\xc3\xa4re LF.\n" +
			".leading dot\n" +
			"end\n")
		res := shim(t, c.Path, string(in), "send", "-t", "--read-envelope-from")
		if res.Code != 0 {
			t.Fatalf("smtpshim send -t --read-envelope-from:\n%s", res)
		}
		want := toCRLF(bytes.Replace(in, []byte("Bcc: Hidden <send-bcc@example.org>\n"), nil, 1))
		for _, rcpt := range []string{"send-to@example.net", "send-cc@example.net", "send-bcc@example.org"} {
			m := waitMessage(t, p, rcpt, "2d-send-t@e2e.test")
			if got := m.AuthenticatedSender(); got != "alice@example.com" {
				t.Errorf("%s: authenticated sender %q", rcpt, got)
			}
			if bytes.Contains(bytes.ToLower(m.Raw), []byte("bcc:")) {
				t.Errorf("%s: the Bcc header was delivered:\n%s", rcpt, m.Raw)
			}
			sameBytes(t, rcpt+"'s copy", asSubmitted(t, m), want)
		}

		in2 := message("alice@example.com", "send-f@example.net", "2d-send-f")
		res = shim(t, c.Path, string(in2), "send", "-f", "alice@example.com", "send-f@example.net")
		if res.Code != 0 {
			t.Fatalf("smtpshim send -f alice@example.com send-f@example.net:\n%s", res)
		}
		m := waitMessage(t, p, "send-f@example.net", "2d-send-f")
		sameBytes(t, "send -f message", asSubmitted(t, m), in2)

		res = shim(t, c.Path, string(message("mallory@unknown.example", "send-x@example.net", "2d-send-x")),
			"send", "-f", "mallory@unknown.example", "send-x@example.net")
		if res.Code != 77 || !strings.Contains(res.Stderr, "smtpshim account add mallory@unknown.example") ||
			!strings.Contains(res.Stderr, "550 5.7.1") {
			t.Errorf("smtpshim send from an unknown sender: want exit 77 (EX_NOPERM) and the 550 5.7.1 naming smtpshim account add:\n%s", res)
		}
		noMessage(t, p, "send-x@example.net", "2d-send-x")
	})
}
