package listener

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/localcert"
	"github.com/smtpshim/smtpshim/shim/route"
)

// lanListener makes every client look like it comes from the LAN.
type lanListener struct{ net.Listener }

func (l lanListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return lanConn{c}, nil
}

type lanConn struct{ net.Conn }

func (lanConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 40000} }

// TestRequireTLSForAuth: with require_tls_for_auth, a LAN client is not
// offered AUTH and is refused it with 538 5.7.11 until it starts TLS;
// after STARTTLS the local password works.
func TestRequireTLSForAuth(t *testing.T) {
	pair, err := localcert.Generate("test", []string{"localhost"}, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Options{
		Config:    &config.Config{Hostname: "shim.test", RequireTLSForAuth: true, StartTLS: true},
		Routes:    func() *route.Table { return route.New(nil) },
		LocalAuth: PasswordChecker("the-local-pw"),
		Allowed:   func(netip.Addr) bool { return true },
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair.Cert}},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lanListener{ln})
	defer srv.Shutdown(context.Background())
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var r *bufio.Reader
	var w net.Conn
	cmd := func(line string) []string {
		t.Helper()
		if line != "" {
			w.Write([]byte(line + "\r\n"))
		}
		var lines []string
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			lines = append(lines, strings.TrimRight(l, "\r\n"))
			if len(l) < 4 || l[3] != '-' {
				return lines
			}
		}
	}
	r, w = bufio.NewReader(c), c
	cmd("")
	if caps := strings.Join(cmd("EHLO printer"), "\n"); strings.Contains(caps, "AUTH") || !strings.Contains(caps, "STARTTLS") {
		t.Fatalf("before TLS: %s", caps)
	}
	pw := "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00printer\x00the-local-pw"))
	if got := cmd(pw); !strings.HasPrefix(got[0], "538 5.7.11") {
		t.Fatalf("AUTH before TLS: %q", got)
	}
	if got := cmd("STARTTLS"); !strings.HasPrefix(got[0], "220") {
		t.Fatalf("STARTTLS: %q", got)
	}
	tc := tls.Client(c, &tls.Config{RootCAs: pair.Pool, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	r, w = bufio.NewReader(tc), tc
	if caps := strings.Join(cmd("EHLO printer"), "\n"); !strings.Contains(caps, "AUTH PLAIN LOGIN") {
		t.Fatalf("after TLS: %s", caps)
	}
	if got := cmd(pw); !strings.HasPrefix(got[0], "235") {
		t.Fatalf("AUTH after TLS: %q", got)
	}
}
