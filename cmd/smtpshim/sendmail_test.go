package main

// sendmail-mode tests: `smtpshim send` end to end, with the simulated
// provider behind it, both through a running relay and on its own (no
// relay listening). Each checks what reaches the provider byte for byte.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/secrets"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

const (
	sendUser = "you@example.com"
	sendPass = "send-test-password"
)

// sendRig is a simulated provider, a config naming it, and optionally a
// relay in front of it.
type sendRig struct {
	sim     *upstreamsim.Server
	cfgPath string
}

// newSendRig starts the provider and writes a config for it. extra is
// added to the top of the config; withRelay starts a relay on the
// config's listen address.
func newSendRig(t *testing.T, withRelay bool, extra string) *sendRig {
	t.Helper()
	sim, err := upstreamsim.Start(upstreamsim.Options{
		Users:      map[string]string{sendUser: sendPass},
		Mechanisms: []string{"PLAIN"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	sim.SetFault(upstreamsim.RejectSomeRcpt)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, sim.Cert.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	if !withRelay {
		ln.Close() // nothing listens there: send works on its own
	}
	cfgText := fmt.Sprintf("listen = [%q]\nspool_dir = %q\nsync_wait = \"10s\"\n%s\n[[account]]\naddress = %q\nserver = %q\nca_file = %q\n",
		listen, filepath.Join(dir, "spool"), extra, sendUser, sim.Addr, ca)
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	store := secrets.NewMemory()
	store.Set(context.Background(), sendUser, sendPass)
	old := keychain
	keychain = func(*config.Config) secrets.Store { return store }
	t.Cleanup(func() { keychain = old })
	if withRelay {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		eng, err := shim.New(cfg, shim.Options{
			Secrets:     store,
			UpstreamTLS: &tls.Config{RootCAs: sim.Cert.Pool},
			Listeners:   []net.Listener{ln},
			NoControl:   true,
		})
		if err != nil {
			ln.Close()
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- eng.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	return &sendRig{sim: sim, cfgPath: cfgPath}
}

// send runs `smtpshim send args...` with stdin and returns the exit code
// and standard error.
func (r *sendRig) send(t *testing.T, stdin []byte, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	a := &app{configPath: r.cfgPath, stdin: bytes.NewReader(stdin), stdout: &out, stderr: &errb}
	code := a.run(append([]string{"send"}, args...))
	return code, errb.String()
}

// only returns the one message the provider received.
func (r *sendRig) only(t *testing.T) upstreamsim.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(r.sim.Messages()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	msgs := r.sim.Messages()
	if len(msgs) != 1 {
		t.Fatalf("the provider received %d messages, want 1", len(msgs))
	}
	return msgs[0]
}

func crlfOf(s []byte) []byte {
	return bytes.ReplaceAll(bytes.ReplaceAll(s, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
}

// fullHeader has every field send would otherwise add.
const fullHeader = "From: you@example.com\nTo: t@example.net\nDate: Tue, 1 Dec 2026 10:00:00 +0000\nMessage-ID: <m1@example.com>\nSubject: s\n"

func TestSendDeliversByteForByte(t *testing.T) {
	big := make([]byte, 0, 10<<20+100)
	line := bytes.Repeat([]byte("x"), 76)
	for len(big) < 10<<20 {
		big = append(big, line...)
		big = append(big, '\n')
	}
	rnd := make([]byte, 64)
	rand.Read(rnd)
	cases := []struct {
		name string
		in   []byte
		args []string
	}{
		{"LF", []byte(fullHeader + "\nbody\nline two\n"), []string{"-t"}},
		{"CRLF", crlfOf([]byte(fullHeader + "\nbody\nline two\n")), []string{"-t"}},
		{"body starts with a dot", []byte(fullHeader + "\n.hidden\n..two dots\n.\n"), []string{"-i", "t@example.net"}},
		{"header only", []byte(fullHeader), []string{"-t"}},
		{"header only, no final newline", []byte(strings.TrimSuffix(fullHeader, "\n")), []string{"-t"}},
		{"10 MB body", append([]byte(fullHeader+"\n"), big...), []string{"-t"}},
	}
	for _, relay := range []bool{true, false} {
		mode := "alone"
		if relay {
			mode = "via relay"
		}
		for _, tc := range cases {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				r := newSendRig(t, relay, "")
				code, stderr := r.send(t, tc.in, tc.args...)
				if code != 0 {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				m := r.only(t)
				want := crlfOf(tc.in)
				if !bytes.HasSuffix(want, []byte("\r\n")) {
					want = append(want, "\r\n"...)
				}
				if !bytes.Equal(m.Data, want) {
					t.Fatalf("the provider got %d bytes, want %d\n got: %.300q\nwant: %.300q", len(m.Data), len(want), m.Data, want)
				}
				if m.From != sendUser || strings.Join(m.To, ",") != "t@example.net" {
					t.Errorf("envelope %s -> %v", m.From, m.To)
				}
			})
		}
	}
}

func TestSendLFKeepsTheBlankLineBetweenHeaderAndBody(t *testing.T) {
	r := newSendRig(t, false, "")
	code, stderr := r.send(t, []byte("From: you@example.com\nTo: t@example.net\nSubject: s\n\nbody\n"), "-t")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(r.only(t).Data))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.ReadFrom(msg.Body)
	if b.String() != "body\r\n" || msg.Header.Get("Subject") != "s" {
		t.Fatalf("subject %q, body %q", msg.Header.Get("Subject"), b.String())
	}
}

func TestSendmailModeAsCronUsesIt(t *testing.T) {
	for _, relay := range []bool{true, false} {
		t.Run(fmt.Sprint("relay=", relay), func(t *testing.T) {
			r := newSendRig(t, relay, `default_domain = "example.net"`)
			// What cron writes: bare local names, no Date, no Message-ID.
			in := "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> backup\n\nbackup done\n"
			code, stderr := r.send(t, []byte(in), "-t")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			m := r.only(t)
			// The envelope sender is the only account, not the From: header.
			if m.From != sendUser || strings.Join(m.To, ",") != "root@example.net" {
				t.Fatalf("envelope %s -> %v", m.From, m.To)
			}
			msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := msg.Header.Date(); err != nil {
				t.Errorf("Date: %v", err)
			}
			if id := msg.Header.Get("Message-Id"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@example.com>") {
				t.Errorf("Message-ID = %q", id)
			}
			if !bytes.HasSuffix(m.Data, []byte("\r\n\r\nbackup done\r\n")) || msg.Header.Get("From") != "root (Cron Daemon)" {
				t.Errorf("message changed beyond the added fields:\n%s", m.Data)
			}
		})
	}
}

func TestSendEnvelopeSender(t *testing.T) {
	in := []byte("From: boss@example.org\nTo: t@example.net\nSubject: s\n\nbody\n")
	cases := []struct {
		name   string
		extra  string
		args   []string
		code   int
		from   string
		stderr string
	}{
		{name: "-f wins", args: []string{"-f", sendUser, "-t"}, from: sendUser},
		{name: "-f without a domain", extra: `default_domain = "example.com"`, args: []string{"-f", "you", "-t"}, from: sendUser},
		{name: "default_from", extra: `default_from = "you@example.com"`, args: []string{"-t"}, from: sendUser},
		{name: "the only account", args: []string{"-t"}, from: sendUser},
		{name: "never From: silently", extra: `[[account]]` + "\naddress = \"boss@example.org\"\nserver = \"127.0.0.1:1\"\n", args: []string{"-t"}, code: exUsage, stderr: "default_from"},
		{name: "From: when asked", args: []string{"--read-envelope-from", "-t"}, code: exNoPerm, stderr: "boss@example.org"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newSendRig(t, false, tc.extra)
			code, stderr := r.send(t, in, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.code, stderr)
			}
			if tc.code == 0 {
				if m := r.only(t); m.From != tc.from {
					t.Fatalf("envelope sender %q, want %q", m.From, tc.from)
				}
			}
		})
	}
}

func TestSendBareRecipientWithoutDefaultDomainSaysWhatToSet(t *testing.T) {
	r := newSendRig(t, false, `[[account]]`+"\ndomain = \"example.org\"\nusername = \"x@example.org\"\nserver = \"127.0.0.1:1\"\n")
	code, stderr := r.send(t, []byte("Subject: s\n\nbody\n"), "-f", sendUser, "root")
	if code != exUsage || !strings.Contains(stderr, "default_domain") || !strings.Contains(stderr, `"root"`) {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}

func TestSendOneRefusedRecipientDeliversToTheOthers(t *testing.T) {
	for _, relay := range []bool{true, false} {
		t.Run(fmt.Sprint("relay=", relay), func(t *testing.T) {
			r := newSendRig(t, relay, "")
			in := []byte(fullHeader + "\nbody\n")
			code, stderr := r.send(t, in, "a@example.net", "reject-me@example.net", "b@example.net")
			if code != 0 || !strings.Contains(stderr, "reject-me@example.net") || !strings.Contains(stderr, "bounce") {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			deadline := time.Now().Add(10 * time.Second)
			for len(r.sim.Messages()) < 2 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			msgs := r.sim.Messages()
			if len(msgs) != 2 {
				t.Fatalf("the provider got %d messages, want the message and a bounce", len(msgs))
			}
			if got := strings.Join(msgs[0].To, ","); got != "a@example.net,b@example.net" {
				t.Errorf("delivered to %s", got)
			}
			bounce := msgs[1]
			if strings.Join(bounce.To, ",") != sendUser {
				t.Errorf("bounce went to %v", bounce.To)
			}
			bm, err := mail.ReadMessage(bytes.NewReader(bounce.Data))
			if err != nil {
				t.Fatal(err)
			}
			from, err := mail.ParseAddress(bm.Header.Get("From"))
			if err != nil || from.Address != sendUser {
				t.Errorf("bounce From %q: %v", bm.Header.Get("From"), err)
			}
			if !bytes.Contains(bounce.Data, []byte("reject-me@example.net")) {
				t.Errorf("the bounce does not name the refused recipient:\n%s", bounce.Data)
			}
		})
	}
}

func TestSendEveryRecipientRefusedFails(t *testing.T) {
	r := newSendRig(t, false, "")
	code, stderr := r.send(t, []byte(fullHeader+"\nbody\n"), "reject-1@example.net", "reject-2@example.net")
	if code == 0 || !strings.Contains(stderr, "refused") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if n := len(r.sim.Messages()); n != 0 {
		t.Fatalf("the provider got %d messages", n)
	}
}
