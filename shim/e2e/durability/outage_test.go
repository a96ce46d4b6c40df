//go:build realpeer

package durability

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/internal/realpeer"
)

// oldClient sends one message the way a 1990s client does: HELO, no
// EHLO, no AUTH, bare LF line endings in the body. It returns the final
// reply line to DATA.
func oldClient(t *testing.T, addr, from, to, subject string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("old client: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	reply := func() string {
		t.Helper()
		var last string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("old client: reading a reply: %v", err)
			}
			last = strings.TrimRight(line, "\r\n")
			if len(last) < 4 || last[3] != '-' {
				return last
			}
		}
	}
	step := func(cmd, want string) string {
		t.Helper()
		if cmd != "" {
			fmt.Fprintf(c, "%s\r\n", cmd)
		}
		r := reply()
		if !strings.HasPrefix(r, want) {
			t.Fatalf("old client: %q: got %q, want %s", cmd, r, want)
		}
		return r
	}
	step("", "220")
	step("HELO oldbox", "250")
	step("MAIL FROM:<"+from+">", "250")
	step("RCPT TO:<"+to+">", "250")
	step("DATA", "354")
	body := "From: " + from + "\nTo: " + to + "\nSubject: " + subject + "\n\nWritten on an old machine.\nBare LF line endings.\n"
	fmt.Fprintf(c, "%s\r\n.\r\n", body)
	r := step("", "250")
	fmt.Fprintf(c, "QUIT\r\n")
	return r
}

// TestPostfixOutage stops a real Postfix, sends mail from an old client
// through the relay (queued), starts Postfix again and has the relay
// deliver the queue, authenticated as alice.
func TestPostfixOutage(t *testing.T) {
	const carol = "carol@example.net"
	p := realpeer.StartPostfix(t, map[string]string{alice: alicePW})
	r := newRelay(t, relayConfig{
		SyncWait: "5s", RetryMin: "1s", RetryMax: "5s",
		Server: p.SubmissionAddr, CAFile: p.CAFile, Password: alicePW,
	})
	r.start()

	// The path works before the outage: delivered live, not queued.
	if rep := oldClient(t, r.addr, alice, carol, "before the outage"); queuedID(rep) != "" {
		t.Fatalf("with Postfix up the message was queued: %q", rep)
	}
	p.WaitMessages(t, carol, 1, 15*time.Second)

	p.Stop(t)
	subjects := []string{"outage 1", "outage 2", "outage 3"}
	for _, s := range subjects {
		rep := oldClient(t, r.addr, alice, bob, s)
		if !strings.Contains(rep, "queued") || queuedID(rep) == "" {
			t.Fatalf("%s: reply %q, want 250 queued as ID", s, rep)
		}
		t.Logf("%s: %s", s, rep)
	}
	if ids := queueIDs(r.cliOK("queue", "list")); len(ids) != 3 {
		t.Fatalf("queue list shows %d message(s) while Postfix is down, want 3", len(ids))
	}

	p.Start(t)
	started := time.Now()
	if out := r.cliOK("queue", "retry"); !strings.Contains(out, "retrying 3 message(s) now") {
		t.Errorf("queue retry: %q", out)
	}
	msgs := p.WaitMessages(t, bob, 3, 30*time.Second)
	took := time.Since(started)
	if !waitFor(10*time.Second, func() bool { return strings.Contains(r.cliOK("queue", "list"), "the queue is empty") }) {
		t.Errorf("queue not empty after delivery:\n%s", r.cliOK("queue", "list"))
	}
	// Give a stray second delivery the chance to show up.
	time.Sleep(1500 * time.Millisecond)
	msgs = p.Messages(bob)
	if len(msgs) != 3 {
		t.Errorf("%d message(s) for %s, want 3", len(msgs), bob)
	}
	for _, s := range subjects {
		n := 0
		for _, m := range msgs {
			raw := string(m.Raw)
			if !strings.Contains(raw, "\nSubject: "+s+"\n") {
				continue
			}
			n++
			if got := m.AuthenticatedSender(); got != alice {
				t.Errorf("%s: authenticated sender %q, want %s", s, got, alice)
			}
			if !strings.Contains(raw, "\nBare LF line endings.\n") {
				t.Errorf("%s: body not delivered intact:\n%s", s, raw)
			}
		}
		if n != 1 {
			t.Errorf("%q delivered %d times, want once", s, n)
		}
	}
	t.Logf("3 queued message(s) in Postfix's mailbox %v after it came back", took.Round(time.Millisecond))
	r.term()
}
