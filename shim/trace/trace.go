// Package trace writes SMTP protocol traces for debugging with every
// credential replaced by "***": the arguments of AUTH, and each line a
// client sends in answer to a 334 challenge.
package trace

import (
	"bytes"
	"io"
	"sync"
)

// Writer redacts a protocol trace line by line and passes it on. Both
// directions of one connection go through the same Writer, in order, which
// is how it knows a line answers a challenge.
type Writer struct {
	mu        sync.Mutex
	w         io.Writer
	prefix    string
	partial   []byte
	challenge bool // the last server line was a 334 challenge
	shared    bool // see NewShared
}

// New returns a redacting Writer; prefix starts every line (e.g. the
// client's address).
func New(w io.Writer, prefix string) *Writer {
	return &Writer{w: w, prefix: prefix}
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
	io.WriteString(t.w, t.prefix+string(out)+"\n")
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
