package smtp_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
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

// rcptRefuser refuses one recipient and records the rest.
type rcptRefuser struct {
	refuse string
	got    []string
}

func (b *rcptRefuser) NewSession(*smtp.Conn) (smtp.Session, error) { return &refuserSession{b}, nil }

type refuserSession struct{ b *rcptRefuser }

func (s *refuserSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *refuserSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if to == s.b.refuse {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	s.b.got = append(s.b.got, to)
	return nil
}
func (s *refuserSession) Data(r io.Reader) error { _, err := io.Copy(io.Discard, r); return err }
func (s *refuserSession) Reset()                 {}
func (s *refuserSession) Logout() error          { return nil }

// dialCounting returns a client whose own writes are counted.
func dialCounting(t *testing.T, addr string) (*smtp.Client, *writeCounter) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	wc := &writeCounter{Conn: conn}
	c := smtp.NewClient(wc)
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("localhost"); err != nil {
		t.Fatal(err)
	}
	return c, wc
}

func (w *writeCounter) since(n int) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.writes[n:]...)
}

func TestClientMailRcptPipelined(t *testing.T) {
	be := new(backend)
	addr, _ := serveCounting(t, be)
	c, wc := dialCounting(t, addr)
	before := len(wc.since(0))
	mailErr, rcptErr := c.MailRcpt("a@example.org", nil, "b@example.org", nil)
	if mailErr != nil || rcptErr != nil {
		t.Fatalf("MailRcpt: %v, %v", mailErr, rcptErr)
	}
	if w := wc.since(before); len(w) != 1 || w[0] != "MAIL FROM:<a@example.org> BODY=8BITMIME\r\nRCPT TO:<b@example.org>\r\n" {
		t.Fatalf("MAIL and RCPT went out as %q, want one write", w)
	}
	// The transaction goes on as after Mail and Rcpt.
	if err := c.Rcpt("c@example.org", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "hi\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if len(be.anonmsgs) != 1 || be.anonmsgs[0].From != "a@example.org" || strings.Join(be.anonmsgs[0].To, ",") != "b@example.org,c@example.org" {
		t.Fatalf("the server got %+v", be.anonmsgs)
	}
}

func TestClientMailRcptRefusedSender(t *testing.T) {
	be := new(backend)
	be.userErr = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "not your address"}
	addr, _ := serveCounting(t, be)
	c, _ := dialCounting(t, addr)
	mailErr, rcptErr := c.MailRcpt("a@example.org", nil, "b@example.org", nil)
	var se *smtp.SMTPError
	if !errors.As(mailErr, &se) || se.Code != 550 || rcptErr != mailErr {
		t.Fatalf("MailRcpt: %v, %v; want the 550 twice", mailErr, rcptErr)
	}
	// The RCPT's reply was read: the connection is in step.
	be.userErr = nil
	if err := sendWith(t, c, c.Data, []byte("x\r\n")); err != nil {
		t.Fatalf("after a refused sender: %v", err)
	}
}

func TestClientMailRcptRefusedRecipient(t *testing.T) {
	be := &rcptRefuser{refuse: "nobody@example.org"}
	s := smtp.NewServer(be)
	s.Domain = "localhost"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	c, _ := dialCounting(t, l.Addr().String())
	mailErr, rcptErr := c.MailRcpt("a@example.org", nil, "nobody@example.org", nil)
	var se *smtp.SMTPError
	if mailErr != nil || !errors.As(rcptErr, &se) || se.Code != 550 {
		t.Fatalf("MailRcpt: %v, %v; want nil and the 550", mailErr, rcptErr)
	}
	// The transaction is open: another recipient is taken.
	if err := c.Rcpt("b@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if strings.Join(be.got, ",") != "b@example.org" {
		t.Fatalf("the server took %q", be.got)
	}
}

// A server without PIPELINING hears MAIL, and RCPT only after its reply.
func TestClientMailRcptWithoutPipelining(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	serverErr := make(chan error, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		expect := func(prefix, reply string) error {
			line, err := r.ReadString('\n')
			if err != nil || !strings.HasPrefix(line, prefix) {
				return fmt.Errorf("got %q (%v), want %s", line, err, prefix)
			}
			if prefix == "MAIL" {
				// Nothing more may come before the reply.
				conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				if _, err := r.Peek(1); err == nil {
					return errors.New("RCPT was sent before the reply to MAIL")
				}
				conn.SetReadDeadline(time.Time{})
			}
			_, err = io.WriteString(conn, reply)
			return err
		}
		io.WriteString(conn, "220 plain ESMTP\r\n")
		for _, step := range [][2]string{{"EHLO", "250 plain\r\n"}, {"MAIL", "250 ok\r\n"}, {"RCPT", "250 ok\r\n"}} {
			if err := expect(step[0], step[1]); err != nil {
				serverErr <- err
				return
			}
		}
		serverErr <- nil
	}()
	c, err := smtp.Dial(l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if mailErr, rcptErr := c.MailRcpt("a@example.org", nil, "b@example.org", nil); mailErr != nil || rcptErr != nil {
		t.Fatalf("MailRcpt: %v, %v", mailErr, rcptErr)
	}
	if err := <-serverErr; err != nil {
		t.Fatal(err)
	}
}
