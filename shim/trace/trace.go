// Package trace writes SMTP protocol traces for debugging with every
// credential replaced by "***": the arguments of AUTH, and each line a
// client sends in answer to a 334 challenge. Every line carries a
// timestamp and the session it belongs to; a message body is shown as one
// summary line, <DATA: 10240 bytes, 143 lines>, never line by line.
package trace

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// now is the clock of the timestamps; tests replace it.
var now = time.Now

// sessions numbers the traced connections of this process.
var sessions atomic.Uint64

// NextSession returns a new session ID: L for a local client, U for a
// connection to a provider, then a number unique in this process.
func NextSession(kind byte) string {
	return string(kind) + strconv.FormatUint(sessions.Add(1), 10)
}

// Writer redacts a protocol trace line by line and passes it on. Both
// directions of one connection go through the same Writer, in order, which
// is how it knows a line answers a challenge.
type Writer struct {
	mu        sync.Mutex
	w         io.Writer
	prefix    string
	session   string
	partial   []byte
	challenge bool // the last server line was a 334 challenge
	shared    bool // see NewShared

	// A message body (after a 354 reply) is counted, not shown.
	inData     bool
	dataBytes  int64
	dataLines  int64
	lineStart  []byte // the first bytes of the body line being counted
	lineLen    int
	encrypted  bool  // after STARTTLS on a raw connection: nothing more to show
	startTLS   bool  // the last client line was STARTTLS
	rawConnTLS bool  // the Writer sees the raw connection (see Conn)
	bdatLeft   int64 // bytes of a BDAT chunk still to come
}

// New returns a redacting Writer for one connection, with a new session
// ID; prefix follows the timestamp and session ID on every line (e.g.
// "upstream smtp.example.com:587: ").
func New(w io.Writer, prefix string) *Writer {
	return &Writer{w: w, prefix: prefix, session: NextSession('U')}
}

// NewSession is New with a given session ID.
func NewSession(w io.Writer, session, prefix string) *Writer {
	return &Writer{w: w, prefix: prefix, session: session}
}

// NewShared returns a redacting Writer for a stream that several
// connections write to at once, as go-smtp's Server.Debug is for every
// client of a server. Their lines interleave, even mid-line, so a line
// can't be joined across writes or tied to the challenge it answers: each
// write is taken on its own, and only what is plainly a server reply or an
// SMTP command is shown (redacted as by New). Anything else, such as an
// AUTH answer, a message body or a piece of a line, becomes "***".
func NewShared(w io.Writer, prefix string) *Writer {
	return &Writer{w: w, prefix: prefix, shared: true}
}

// Write buffers partial lines and emits whole ones, redacted.
func (t *Writer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if t.encrypted {
		return n, nil
	}
	if t.shared {
		for len(p) > 0 {
			line := p
			p = nil
			if i := bytes.IndexByte(line, '\n'); i >= 0 {
				line, p = line[:i], line[i+1:]
			}
			t.emit(bytes.TrimRight(line, "\r"))
		}
		return n, nil
	}
	for len(p) > 0 {
		if t.inData {
			p = t.countData(p)
			continue
		}
		if t.bdatLeft > 0 {
			k := int(min(int64(len(p)), t.bdatLeft))
			t.dataBytes += int64(k)
			t.dataLines += int64(bytes.Count(p[:k], []byte("\n")))
			t.bdatLeft -= int64(k)
			p = p[k:]
			if t.bdatLeft == 0 {
				t.line(fmt.Sprintf("<BDAT chunk: %d bytes, %d lines>", t.dataBytes, t.dataLines))
			}
			continue
		}
		if t.encrypted {
			break
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(t.partial) < 4096 {
				t.partial = append(t.partial, p...)
			}
			break
		}
		line := append(t.partial, p[:i]...)
		t.partial = t.partial[:0]
		p = p[i+1:]
		t.emit(bytes.TrimRight(line, "\r"))
	}
	return n, nil
}

func (t *Writer) emit(line []byte) {
	out := Redact(line, t.challenge)
	if t.shared && len(line) > 0 && !(len(line) > 3 && isReply(line)) && !isCommand(line) {
		out = []byte("***")
	}
	t.challenge = bytes.HasPrefix(line, []byte("334"))
	t.line(string(out))
	if !t.shared && bytes.HasPrefix(line, []byte("354")) {
		t.inData, t.dataBytes, t.dataLines, t.lineLen, t.lineStart = true, 0, 0, 0, t.lineStart[:0]
	}
	if f := bytes.Fields(line); !t.shared && len(f) >= 2 && bytes.EqualFold(f[0], []byte("BDAT")) {
		if n, err := strconv.ParseInt(string(f[1]), 10, 64); err == nil && n > 0 {
			t.bdatLeft, t.dataBytes, t.dataLines = n, 0, 0
		}
	}
	if t.rawConnTLS {
		if t.startTLS && bytes.HasPrefix(line, []byte("220")) {
			t.encrypted = true
			t.line("<TLS: the rest of this session is encrypted and not traced>")
		}
		t.startTLS = bytes.EqualFold(bytes.TrimSpace(line), []byte("STARTTLS"))
	}
}

// line writes one trace line with its timestamp and session.
func (t *Writer) line(s string) {
	ts := now().UTC().Format("2006-01-02T15:04:05.000Z")
	if t.session != "" {
		io.WriteString(t.w, ts+" ["+t.session+"] "+t.prefix+s+"\n")
		return
	}
	io.WriteString(t.w, ts+" "+t.prefix+s+"\n")
}

// countData counts body bytes and lines up to the line with a single
// dot, writes the summary there, and returns what follows it.
func (t *Writer) countData(p []byte) []byte {
	for len(p) > 0 {
		seg := p
		i := bytes.IndexByte(p, '\n')
		if i >= 0 {
			seg = p[:i+1]
		}
		p = p[len(seg):]
		t.lineLen += len(seg)
		if k := min(len(seg), 3-len(t.lineStart)); k > 0 {
			t.lineStart = append(t.lineStart, seg[:k]...)
		}
		if i < 0 {
			break
		}
		if s := string(t.lineStart); t.lineLen <= 3 && (s == ".\r\n" || s == ".\n") {
			t.inData = false
			t.line(fmt.Sprintf("<DATA: %d bytes, %d lines>", t.dataBytes, t.dataLines))
			t.line(".")
			return p
		}
		t.dataBytes += int64(t.lineLen)
		t.dataLines++
		t.lineLen, t.lineStart = 0, t.lineStart[:0]
	}
	return p
}

// Listener traces each connection it accepts with a Writer of its own,
// session L1, L2, ..., in both directions. Pass the listener the SMTP
// server reads plaintext from: after STARTTLS the trace says that the
// rest is encrypted.
func Listener(l net.Listener, w io.Writer) net.Listener {
	return &listener{Listener: l, w: w}
}

// TLSListener is Listener for a listener whose clients speak TLS from the
// first byte: it wraps the raw connections, so it notes each session and
// that it is encrypted, and shows nothing of it.
func TLSListener(l net.Listener, w io.Writer) net.Listener {
	return &listener{Listener: l, w: w, encrypted: true}
}

type listener struct {
	net.Listener
	w         io.Writer
	encrypted bool
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	return WrapConn(c, l.w, l.encrypted), nil
}

// WrapConn traces one accepted local client connection, as Listener
// does; encrypted says it speaks TLS from the first byte.
func WrapConn(c net.Conn, w io.Writer, encrypted bool) *Conn {
	tw := NewSession(w, NextSession('L'), "local: ")
	tw.rawConnTLS = true
	tw.line("<connection from " + c.RemoteAddr().String() + ">")
	if encrypted {
		tw.line("<TLS from the first byte: this session is encrypted and not traced>")
		tw.encrypted = true
	}
	return &Conn{Conn: c, t: tw}
}

// NetConn returns the traced connection, as tls.Conn's NetConn does.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Conn is a connection whose traffic, both ways, goes to a trace Writer.
type Conn struct {
	net.Conn
	t *Writer
}

func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.t.Write(p[:n])
	}
	return n, err
}

func (c *Conn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.t.Write(p[:n])
	}
	return n, err
}

var authPrefix = []byte("AUTH ")

// Redact returns the line with any credential in it masked; afterChallenge
// says the previous server line was a 334 challenge, so this line, if not
// a reply itself, is a secret answer.
func Redact(line []byte, afterChallenge bool) []byte {
	if len(line) >= len(authPrefix) && bytes.EqualFold(line[:len(authPrefix)], authPrefix) {
		rest := line[len(authPrefix):]
		if sp := bytes.IndexByte(rest, ' '); sp >= 0 {
			// Keep the mechanism; the initial response is the secret.
			return append(append([]byte{}, line[:len(authPrefix)+sp]...), " ***"...)
		}
		return line
	}
	if afterChallenge && !isReply(line) {
		return []byte("***")
	}
	return line
}

var verbs = [][]byte{[]byte("HELO"), []byte("EHLO"), []byte("LHLO"), []byte("MAIL"), []byte("RCPT"), []byte("DATA"),
	[]byte("BDAT"), []byte("RSET"), []byte("NOOP"), []byte("QUIT"), []byte("VRFY"), []byte("EXPN"), []byte("HELP"),
	[]byte("AUTH"), []byte("STARTTLS")}

// isCommand is true when line starts with an SMTP verb, alone or followed
// by a space.
func isCommand(line []byte) bool {
	verb := line
	if sp := bytes.IndexByte(line, ' '); sp >= 0 {
		verb = line[:sp]
	}
	for _, v := range verbs {
		if bytes.EqualFold(verb, v) {
			return true
		}
	}
	return false
}

func isReply(line []byte) bool {
	return len(line) >= 3 && line[0] >= '2' && line[0] <= '5' && line[1] >= '0' && line[1] <= '9' && line[2] >= '0' && line[2] <= '9' &&
		(len(line) == 3 || line[3] == ' ' || line[3] == '-')
}
