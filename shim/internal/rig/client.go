package rig

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Reply is one (possibly multi-line) SMTP reply.
type Reply struct {
	Code  int
	Enh   string   // "5.7.1", or "" when the reply has none
	Text  string   // the last line's text after the enhanced code
	Lines []string // full lines, e.g. "250-PIPELINING", without CRLF
}

func (r Reply) String() string { return strings.Join(r.Lines, " / ") }

// Joined is every line's text after the code, joined by " / ".
func (r Reply) Joined() string {
	var parts []string
	for _, l := range r.Lines {
		if len(l) >= 3 {
			parts = append(parts, strings.TrimSpace(l[3:]))
		}
	}
	return strings.Join(parts, " / ")
}

// LastText is the last line's text after the code, enhanced code included.
func (r Reply) LastText() string {
	if len(r.Lines) == 0 {
		return ""
	}
	if l := r.Lines[len(r.Lines)-1]; len(l) > 4 {
		return l[4:]
	}
	return ""
}

var enhRE = regexp.MustCompile(`^([245]\.\d{1,3}\.\d{1,3}) `)

// Client is a raw SMTP client that sends exactly what it is told, so that
// tests can pipeline, misbehave, and use BDAT (go-smtp's client has none).
type Client struct {
	T    testing.TB
	Conn net.Conn
	R    *bufio.Reader
}

// DialRaw connects without reading the greeting. The connection has a
// 60 s deadline and closes at the end of the test.
func DialRaw(tb testing.TB, addr string) *Client {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		tb.Fatalf("connecting to %s: %v", addr, err)
	}
	tb.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(60 * time.Second))
	return &Client{T: tb, Conn: c, R: bufio.NewReader(c)}
}

// Dial connects and reads the greeting, which must be a 220.
func Dial(tb testing.TB, addr string) *Client {
	tb.Helper()
	cl := DialRaw(tb, addr)
	cl.Expect(cl.MustRead(), 220, "")
	return cl
}

// Close closes the connection.
func (cl *Client) Close() { cl.Conn.Close() }

// Write sends s as it is.
func (cl *Client) Write(s string) {
	cl.T.Helper()
	if _, err := io.WriteString(cl.Conn, s); err != nil {
		cl.T.Fatalf("write %q: %v", truncate(s), err)
	}
}

// WriteBytes sends b as it is.
func (cl *Client) WriteBytes(b []byte) {
	cl.T.Helper()
	if _, err := cl.Conn.Write(b); err != nil {
		cl.T.Fatalf("writing to the server: %v", err)
	}
}

func truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// Read reads one reply.
func (cl *Client) Read() (Reply, error) {
	var rp Reply
	for {
		line, err := cl.R.ReadString('\n')
		if err != nil {
			if line != "" {
				rp.Lines = append(rp.Lines, line)
			}
			return rp, err
		}
		line = strings.TrimRight(line, "\r\n")
		rp.Lines = append(rp.Lines, line)
		if len(line) < 3 {
			return rp, fmt.Errorf("malformed reply line %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return rp, fmt.Errorf("malformed reply line %q", line)
		}
		if rp.Code != 0 && code != rp.Code {
			return rp, fmt.Errorf("reply code changed inside a multi-line reply: %q", rp.Lines)
		}
		rp.Code = code
		if len(line) == 3 || line[3] == ' ' {
			rest := ""
			if len(line) > 4 {
				rest = line[4:]
			}
			if m := enhRE.FindStringSubmatch(rest + " "); m != nil {
				rp.Enh = m[1]
				rest = strings.TrimPrefix(rest[len(m[1]):], " ")
			}
			rp.Text = rest
			return rp, nil
		}
	}
}

// MustRead reads one reply and fails the test on an error.
func (cl *Client) MustRead() Reply {
	cl.T.Helper()
	rp, err := cl.Read()
	if err != nil {
		cl.T.Fatalf("reading a reply: %v (got %q)", err, rp.Lines)
	}
	return rp
}

// ReadOrClosed reads one reply; a connection the server closed before it
// gives Code 0.
func (cl *Client) ReadOrClosed() Reply {
	cl.T.Helper()
	rp, err := cl.Read()
	if err != nil {
		if len(rp.Lines) == 0 && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
			return Reply{}
		}
		cl.T.Fatalf("reading a reply: %v (so far %q)", err, rp.Lines)
	}
	return rp
}

// Cmd sends one command line and returns the reply.
func (cl *Client) Cmd(line string) Reply {
	cl.T.Helper()
	cl.Write(line + "\r\n")
	return cl.MustRead()
}

// Expect fails unless rp has the code and enhanced code ("" skips it).
func (cl *Client) Expect(rp Reply, code int, enh string) Reply {
	cl.T.Helper()
	if rp.Code != code || (enh != "" && rp.Enh != enh) {
		want := strconv.Itoa(code)
		if enh != "" {
			want += " " + enh
		}
		cl.T.Fatalf("got %q, want %s", rp.Lines, want)
	}
	return rp
}

// Do sends a command and fails unless the reply has code (and enh).
func (cl *Client) Do(line string, code int, enh string) Reply {
	cl.T.Helper()
	return cl.Expect(cl.Cmd(line), code, enh)
}

// ExpectClosed fails unless the server closes the connection (EOF or a
// reset) within d, without sending anything more.
func (cl *Client) ExpectClosed(d time.Duration) {
	cl.T.Helper()
	cl.Conn.SetReadDeadline(time.Now().Add(d))
	line, err := cl.R.ReadString('\n')
	if err == nil || line != "" {
		cl.T.Fatalf("expected the connection to be closed, got %q (err %v)", line, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		cl.T.Fatalf("the server did not close the connection within %s", d)
	}
}

// EHLO greets with EHLO and returns the capabilities.
func (cl *Client) EHLO() []string {
	cl.T.Helper()
	rp := cl.Do("EHLO client.test", 250, "")
	var caps []string
	for _, l := range rp.Lines[1:] {
		caps = append(caps, l[4:])
	}
	return caps
}

// Data sends DATA, the body as given, and the terminator.
func (cl *Client) Data(body string) Reply {
	cl.T.Helper()
	cl.Do("DATA", 354, "")
	cl.Write(body + "\r\n.\r\n")
	return cl.MustRead()
}

// DataStuffed sends DATA and msg (CRLF line endings), dot-stuffed here,
// and returns the final reply (Code 0 if the server hung up).
func (cl *Client) DataStuffed(msg []byte) Reply {
	cl.T.Helper()
	cl.Do("DATA", 354, "")
	cl.WriteBytes(DotStuff(msg))
	cl.WriteBytes([]byte(".\r\n"))
	return cl.ReadOrClosed()
}

// DotStuff doubles each leading dot and makes sure msg ends with CRLF.
func DotStuff(msg []byte) []byte {
	var b bytes.Buffer
	start := true
	for _, ch := range msg {
		if start && ch == '.' {
			b.WriteByte('.')
		}
		b.WriteByte(ch)
		start = ch == '\n'
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return b.Bytes()
}
