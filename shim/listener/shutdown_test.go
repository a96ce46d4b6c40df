package listener

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/route"
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
