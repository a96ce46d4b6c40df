package listener

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/queue"
	"github.com/smtpshim/smtpshim/shim/relay"
	"github.com/smtpshim/smtpshim/shim/route"
	"github.com/smtpshim/smtpshim/shim/spool"
	"github.com/smtpshim/smtpshim/shim/upstream"
)

// A shutdown with no client connected ends at once and reports no error:
// the log must not say that sessions "did not end in time".
func TestShutdownWithoutClientsIsClean(t *testing.T) {
	srv := New(Options{
		Config: &config.Config{Hostname: "shim.test"},
		Routes: func() *route.Table { return route.New(nil) },
		Logger: slog.New(slog.DiscardHandler),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	// One client in and out, so that the listener is surely being served.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		t.Fatalf("no greeting: %v", err)
	}
	c.Write([]byte("QUIT\r\n"))
	bufio.NewReader(c).ReadString('\n')
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for srv.Sessions() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown with no clients: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// serveOne serves srv on a loopback listener and connects one client;
// served receives Serve's result.
func serveOne(t *testing.T, srv *Server) (c net.Conn, r *bufio.Reader, served chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served = make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	c, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c), served
}

// A client still sending its message when the shutdown's wait runs out is
// disconnected: go-smtp's Close does nothing once its Shutdown has begun,
// so the listener must close what is left itself, or the session would
// outlive the engine.
func TestShutdownClosesSessionsLeftAfterItsWait(t *testing.T) {
	sp, err := spool.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	acct := config.Account{Address: "alice@example.com", Server: "127.0.0.1:1", Security: config.SecurityStartTLS}
	pool := upstream.NewPool(&acct, upstream.Options{}, nil)
	defer pool.Close()
	pools := func(string) *upstream.Pool { return pool }
	// Paused: the message would only be queued; nothing dials.
	rl := relay.New(relay.Options{Pool: pools, Queue: queue.New(queue.Options{Spool: sp, Pool: pools}), Spool: sp,
		Paused: func() bool { return true }})
	defer rl.Close()
	cfg := &config.Config{Hostname: "shim.test", Accounts: []config.Account{acct}}
	srv := New(Options{Config: cfg, Routes: func() *route.Table { return route.New(cfg.Accounts) }, Relay: rl, Spool: sp})
	c, r, served := serveOne(t, srv)
	expect := func(line, code string) {
		t.Helper()
		if line != "" {
			io.WriteString(c, line+"\r\n")
		}
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			if len(l) < 4 || l[3] != '-' {
				if !strings.HasPrefix(l, code) {
					t.Fatalf("%s: %q, want %s", line, l, code)
				}
				return
			}
		}
	}
	expect("", "220")
	expect("EHLO printer", "250")
	expect("MAIL FROM:<alice@example.com>", "250")
	expect("RCPT TO:<bob@example.net>", "250")
	expect("DATA", "354")
	io.WriteString(c, "Subject: half\r\n\r\nthe first half\r\n")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown returned no error although a client was still sending")
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err = io.Copy(io.Discard, r)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the client's connection stayed open after Shutdown gave up waiting")
	}
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
}

// A shutdown that every session ends in time reports no error: the log
// says "did not end in time" only when that is true.
func TestShutdownInTimeReportsNoError(t *testing.T) {
	cfg := &config.Config{Hostname: "shim.test"}
	srv := New(Options{Config: cfg, Routes: func() *route.Table { return route.New(nil) }})
	_, r, served := serveOne(t, srv)
	if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "220") {
		t.Fatalf("greeting %q %v", l, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with one idle client: %v, want nil", err)
	}
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
}

// A client accepted just as the shutdown began hears why it is turned
// away, not a bare close.
func TestClientAcceptedDuringShutdownHearsIt(t *testing.T) {
	srv := New(Options{Config: &config.Config{Hostname: "shim.test"}, Routes: func() *route.Table { return route.New(nil) }})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv.mu.Lock()
	srv.closing = true // Shutdown has begun; the listener is not closed yet
	srv.mu.Unlock()
	gl := &guardListener{Listener: ln, s: srv}
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		if conn, err := gl.Accept(); err == nil {
			conn.Close()
			t.Error("a connection was handed to go-smtp during the shutdown")
		}
	}()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	ln.Close()
	<-accepted
	srv.refusing.Wait()
	if strings.TrimSpace(line) != strings.TrimSpace(shutdownReply) {
		t.Fatalf("the client heard %q (%v), want %q", line, err, strings.TrimSpace(shutdownReply))
	}
	if n := srv.Sessions(); n != 0 {
		t.Fatalf("%d connections still counted", n)
	}
}
