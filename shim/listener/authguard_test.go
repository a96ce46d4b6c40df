package listener

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/route"
)

func TestAuthGuardDelaysAndLockout(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := newAuthGuard()
	g.now = func() time.Time { return now }
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	for i, w := range want {
		if d := g.failed(a); d != w {
			t.Fatalf("failure %d: delay %s, want %s", i+1, d, w)
		}
		now = now.Add(time.Minute)
	}
	if d := g.failed(b); d != authDelayBase {
		t.Fatalf("another address shares the backoff: %s", d)
	}
	for g.blocked(a) == 0 {
		g.failed(a)
	}
	if n := g.peers[a].n; n != authLockout {
		t.Fatalf("blocked after %d failures, want %d", n, authLockout)
	}
	if g.blocked(b) != 0 {
		t.Fatal("the other address is blocked too")
	}
	now = now.Add(authWindow - time.Second)
	if g.blocked(a) == 0 {
		t.Fatal("the lockout ended early")
	}
	now = now.Add(time.Second)
	if g.blocked(a) != 0 {
		t.Fatal("the lockout did not end")
	}
	if d := g.failed(a); d != authDelayBase {
		t.Fatalf("old failures were not forgotten: delay %s", d)
	}
	g.succeeded(b)
	if _, ok := g.peers[b]; ok {
		t.Fatal("a success did not forget the address")
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAuthFailuresCloseTheConnection: each wrong local password waits
// longer than the one before, the third ends the connection with 421, and
// every failure is logged with the client's address.
func TestAuthFailuresCloseTheConnection(t *testing.T) {
	var log syncBuf
	srv := New(Options{
		Config:    &config.Config{Hostname: "shim.test"},
		Routes:    func() *route.Table { return route.New(nil) },
		Logger:    slog.New(slog.NewTextHandler(&log, nil)),
		LocalAuth: PasswordChecker("the-local-pw"),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	readReply := func() string {
		t.Helper()
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading a reply: %v (%q)", err, line)
			}
			if len(line) < 4 || line[3] != '-' {
				return strings.TrimRight(line, "\r\n")
			}
		}
	}
	readReply()
	c.Write([]byte("EHLO guesser\r\n"))
	readReply()
	var took []time.Duration
	for i, want := range []string{"535 5.7.8", "535 5.7.8", "421 4.7.0"} {
		start := time.Now()
		c.Write([]byte("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00u\x00guess"+string(rune('a'+i)))) + "\r\n"))
		if got := readReply(); !strings.HasPrefix(got, want) {
			t.Fatalf("guess %d: %q, want %s", i+1, got, want)
		}
		took = append(took, time.Since(start))
	}
	if took[0] < authDelayBase || took[1] < 2*authDelayBase || took[2] < 4*authDelayBase {
		t.Fatalf("the answers did not slow down: %v", took)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := r.ReadString('\n'); err == nil {
		t.Fatalf("the connection stayed open: %q", line)
	}
	local := c.LocalAddr().String()
	if n := strings.Count(log.String(), "local AUTH failed"); n != 3 || strings.Count(log.String(), "client="+local) < 3 {
		t.Fatalf("want 3 logged failures naming client %s, log:\n%s", local, log.String())
	}
	if strings.Contains(log.String(), "guess") {
		t.Fatalf("a guessed password reached the log:\n%s", log.String())
	}
}
