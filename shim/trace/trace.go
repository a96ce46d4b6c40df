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
}

// New returns a redacting Writer; prefix starts every line (e.g. the
// client's address).
func New(w io.Writer, prefix string) *Writer {
	return &Writer{w: w, prefix: prefix}
}

// Write buffers partial lines and emits whole ones, redacted.
func (t *Writer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
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

func isReply(line []byte) bool {
	return len(line) >= 3 && line[0] >= '2' && line[0] <= '5' && line[1] >= '0' && line[1] <= '9' && line[2] >= '0' && line[2] <= '9' &&
		(len(line) == 3 || line[3] == ' ' || line[3] == '-')
}
