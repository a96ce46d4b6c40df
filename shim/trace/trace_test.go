package trace

import (
	"bytes"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWriterRedactsCredentials(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		secrets []string
		keep    []string
	}{
		{"PLAIN initial response", "250-AUTH PLAIN LOGIN\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n235 2.7.0 ok\r\n",
			[]string{"AGFsaWNlAHNlY3JldA=="}, []string{"AUTH PLAIN ***", "235 2.7.0 ok"}},
		{"LOGIN dialogue", "AUTH LOGIN\r\n334 VXNlcm5hbWU6\r\nYWxpY2U=\r\n334 UGFzc3dvcmQ6\r\nc2VjcmV0\r\n235 ok\r\n",
			[]string{"YWxpY2U=", "c2VjcmV0"}, []string{"AUTH LOGIN", "334 VXNlcm5hbWU6", "235 ok"}},
		{"lower-case auth", "auth plain AGFsaWNlAHNlY3JldA==\r\n",
			[]string{"AGFsaWNlAHNlY3JldA=="}, []string{"auth plain ***"}},
		{"split across writes", "AUTH PLAIN AGFsaWNl", nil, nil},
		{"normal commands untouched", "MAIL FROM:<a@example.com>\r\n250 ok\r\n",
			nil, []string{"MAIL FROM:<a@example.com>", "250 ok"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			w := New(&out, "> ")
			// Feed byte by byte: lines split across TCP segments must
			// still be redacted whole.
			for i := 0; i < len(tc.in); i++ {
				w.Write([]byte{tc.in[i]})
			}
			for _, s := range tc.secrets {
				if strings.Contains(out.String(), s) {
					t.Errorf("secret %q leaked:\n%s", s, out.String())
				}
			}
			for _, k := range tc.keep {
				if !strings.Contains(out.String(), "> "+k+"\n") {
					t.Errorf("missing line %q in:\n%s", k, out.String())
				}
			}
		})
	}
}

func TestTraceLinesHaveTimeAndSession(t *testing.T) {
	defer func(f func() time.Time) { now = f }(now)
	now = func() time.Time { return time.Date(2026, 12, 1, 10, 0, 0, 123e6, time.UTC) }
	var out bytes.Buffer
	a, b := New(&out, "upstream x: "), New(&out, "upstream x: ")
	a.Write([]byte("EHLO me\r\n"))
	b.Write([]byte("EHLO you\r\n"))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	re := regexp.MustCompile(`^2026-12-01T10:00:00\.123Z \[(U\d+)\] upstream x: EHLO (me|you)$`)
	var ids []string
	for _, l := range lines {
		m := re.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("line %q has no timestamp and session", l)
		}
		ids = append(ids, m[1])
	}
	if len(ids) != 2 || ids[0] == ids[1] {
		t.Fatalf("sessions %v, want two different ones", ids)
	}
}

func TestTraceSummarizesBodies(t *testing.T) {
	body := strings.Repeat("a line of the body\r\n", 142) + "..dot-stuffed\r\n"
	in := "MAIL FROM:<a@example.com>\r\n250 ok\r\nDATA\r\n354 go ahead\r\n" + body + ".\r\n250 2.0.0 queued as X1\r\nQUIT\r\n"
	for _, chunk := range []int{1, 7, 4096} {
		var out bytes.Buffer
		w := New(&out, "")
		for s := in; len(s) > 0; {
			k := min(chunk, len(s))
			w.Write([]byte(s[:k]))
			s = s[k:]
		}
		tr := out.String()
		if strings.Contains(tr, "a line of the body") || strings.Contains(tr, "dot-stuffed") {
			t.Fatalf("chunk %d: the body is shown:\n%s", chunk, tr)
		}
		want := fmt.Sprintf("<DATA: %d bytes, 143 lines>\n", len(body))
		if !strings.Contains(tr, want) || !strings.Contains(tr, "250 2.0.0 queued as X1\n") || !strings.Contains(tr, "QUIT\n") {
			t.Fatalf("chunk %d: want %q and the lines after the body:\n%s", chunk, want, tr)
		}
	}
	// BDAT chunks too.
	var out bytes.Buffer
	w := New(&out, "")
	w.Write([]byte("BDAT 14 LAST\r\nsecret\r\nbody\r\n250 ok\r\n"))
	if tr := out.String(); strings.Contains(tr, "secret") || !strings.Contains(tr, "<BDAT chunk: 14 bytes, 2 lines>") || !strings.Contains(tr, "250 ok") {
		t.Fatalf("BDAT:\n%s", tr)
	}
}

func TestListenerTracesEachConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var out bytes.Buffer
	tl := Listener(ln, writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) }))
	defer tl.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := tl.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte("220 hi\r\n"))
		buf := make([]byte, 100)
		n, _ := c.Read(buf)
		_ = n
		c.Write([]byte("220 go ahead\r\n"))
		c.Read(buf) // ciphertext from here on
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	c.Read(buf)
	c.Write([]byte("STARTTLS\r\n"))
	c.Read(buf)
	c.Write([]byte("\x16\x03\x01 not text\r\nEHLO hidden\r\n"))
	c.Close()
	<-done
	mu.Lock()
	tr := out.String()
	mu.Unlock()
	for _, want := range []string{"] local: <connection from 127.0.0.1:", "] local: 220 hi\n", "] local: STARTTLS\n", "rest of this session is encrypted"} {
		if !strings.Contains(tr, want) {
			t.Errorf("the trace lacks %q:\n%s", want, tr)
		}
	}
	if strings.Contains(tr, "hidden") {
		t.Errorf("the trace shows traffic after STARTTLS:\n%s", tr)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
