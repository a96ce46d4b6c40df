package smtp_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// writeCounter counts the writes a server makes on its connection.
type writeCounter struct {
	net.Conn
	mu     sync.Mutex
	writes []string
}

func (w *writeCounter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.writes = append(w.writes, string(p))
	w.mu.Unlock()
	return w.Conn.Write(p)
}

type countingListener struct {
	net.Listener
	conns chan *writeCounter
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	wc := &writeCounter{Conn: c}
	l.conns <- wc
	return wc, nil
}

func serveCounting(t *testing.T, be *backend) (addr string, conns chan *writeCounter) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: l, conns: make(chan *writeCounter, 4)}
	s := smtp.NewServer(be)
	s.Domain = "localhost"
	s.AllowInsecureAuth = true
	go s.Serve(cl)
	t.Cleanup(func() { s.Close() })
	return l.Addr().String(), cl.conns
}

func TestServerAnswersPipelinedBatchInOneWrite(t *testing.T) {
	addr, conns := serveCounting(t, new(backend))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wc := <-conns
	r := bufio.NewReader(c)
	readReply := func() string {
		var all string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			all += line
			if len(line) >= 4 && line[3] == ' ' {
				return all
			}
		}
	}
	readReply() // greeting
	io.WriteString(c, "EHLO localhost\r\n")
	if ehlo := readReply(); !strings.Contains(ehlo, "PIPELINING") {
		t.Fatalf("EHLO reply without PIPELINING: %q", ehlo)
	}
	wc.mu.Lock()
	before := len(wc.writes)
	wc.mu.Unlock()
	if before != 2 {
		t.Errorf("greeting and EHLO took %d writes, want 2 (one per reply)", before)
	}

	io.WriteString(c, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<c@example.org>\r\nDATA\r\n")
	for _, want := range []string{"250 ", "250 ", "250 ", "354 "} {
		if got := readReply(); !strings.HasPrefix(got, want) {
			t.Fatalf("reply %q, want %q...", got, want)
		}
	}
	wc.mu.Lock()
	batch := wc.writes[before:]
	wc.mu.Unlock()
	if len(batch) != 1 {
		t.Errorf("the batch was answered in %d writes, want 1: %q", len(batch), batch)
	}
	io.WriteString(c, "Subject: x\r\n\r\nhi\r\n.\r\n")
	if got := readReply(); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("end of data: %q", got)
	}
}

// A reply waits for a pipelined command only while that command is in
// the buffer: a client that sends half a command and waits still gets the
// reply to the whole one before.
func TestServerSendsHeldReplyBeforeWaiting(t *testing.T) {
	addr, _ := serveCounting(t, new(backend))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	r.ReadString('\n')
	io.WriteString(c, "HELO localhost\r\n")
	r.ReadString('\n')
	io.WriteString(c, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@exa")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "250 ") {
		t.Fatalf("reply to MAIL: %q, %v", line, err)
	}
}

func dialClient(t *testing.T, addr string) *smtp.Client {
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("localhost"); err != nil {
		t.Fatal(err)
	}
	return c
}

func sendWith(t *testing.T, c *smtp.Client, data func() (*smtp.DataCommand, error), body []byte) error {
	if err := c.Mail("a@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("b@example.org", nil); err != nil {
		t.Fatal(err)
	}
	w, err := data()
	if err != nil {
		t.Fatal(err)
	}
	for len(body) > 0 {
		n := len(body)
		if n > 1000 {
			n = 1000
		}
		if _, err := w.Write(body[:n]); err != nil {
			t.Fatal(err)
		}
		body = body[n:]
	}
	_, err = w.CloseWithResponse()
	return err
}

func TestClientBdat(t *testing.T) {
	body := bytes.Repeat([]byte(".leading dot, no stuffing in BDAT\r\n"), 300)
	for _, size := range []int{0, 1000, 4096} {
		be := new(backend)
		addr, _ := serveCounting(t, be)
		c := dialClient(t, addr)
		if err := sendWith(t, c, func() (*smtp.DataCommand, error) { return c.Bdat(size) }, body); err != nil {
			t.Fatalf("chunk size %d: %v", size, err)
		}
		// The connection stays in step: a second message goes through.
		if err := sendWith(t, c, func() (*smtp.DataCommand, error) { return c.Bdat(size) }, []byte("x\r\n")); err != nil {
			t.Fatalf("chunk size %d, second message: %v", size, err)
		}
		if err := c.Quit(); err != nil {
			t.Fatal(err)
		}
		if len(be.anonmsgs) != 2 || !bytes.Equal(be.anonmsgs[0].Data, body) || string(be.anonmsgs[1].Data) != "x\r\n" {
			t.Fatalf("chunk size %d: the server got %d messages", size, len(be.anonmsgs))
		}
	}
}

func TestClientBdatRefusedChunk(t *testing.T) {
	be := new(backend)
	be.dataErr = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "too big"}
	addr, _ := serveCounting(t, be)
	c := dialClient(t, addr)
	err := sendWith(t, c, func() (*smtp.DataCommand, error) { return c.Bdat(1000) }, bytes.Repeat([]byte("y"), 5000))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code/100 != 5 {
		t.Fatalf("refused body: %v, want a 5xx SMTPError", err)
	}
	be.dataErr = nil
	if err := sendWith(t, c, func() (*smtp.DataCommand, error) { return c.Bdat(1000) }, []byte("z\r\n")); err != nil {
		t.Fatalf("after a refusal the connection must stay usable: %v", err)
	}
}

func TestClientDataStuffed(t *testing.T) {
	be := new(backend)
	addr, _ := serveCounting(t, be)
	c := dialClient(t, addr)
	if err := sendWith(t, c, c.DataStuffed, []byte("a\r\n..b\r\nc")); err != nil {
		t.Fatal(err)
	}
	if got := string(be.anonmsgs[0].Data); got != "a\r\n.b\r\nc\r\n" {
		t.Fatalf("server got %q", got)
	}
}
