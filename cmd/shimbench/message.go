//go:build linux

package main

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"math/rand/v2"
	"sync/atomic"
)

// message is one unique message as the load client sends it: a prefix
// shared by every message of a run and a short unique last line.
type message struct {
	prefix, suffix []byte
	sum            [32]byte
}

// size is the message's length on the wire before dot-stuffing, which is
// also what the simulator counts after un-stuffing.
func (m message) size() int64 { return int64(len(m.prefix) + len(m.suffix)) }

// msgFactory makes unique messages of a given size cheaply. Every message
// is the shared prefix (headers and a filler body) plus its own last line,
// and its SHA-256 continues from the prefix's precomputed hash state, so a
// 10 MB message costs the client one short hash, not a pass over 10 MB:
// the client must not be what limits the measurement.
type msgFactory struct {
	tag    string
	prefix []byte
	state  hash.Cloner // SHA-256 after prefix
	seq    atomic.Uint64
	nonce  uint64 // tells runs apart, so no two runs share a message
}

// suffixLen is about how long a unique last line is; the prefix leaves
// room for it so the message comes out close to the size asked for.
const suffixLen = 64

// newFactory returns a factory for messages of about size bytes. tag names
// the run in each message, for whoever reads a spool or a log.
func newFactory(tag string, size int) *msgFactory {
	var b []byte
	b = fmt.Appendf(b, "From: smtpshim bench <%s>\r\n", benchSender)
	b = fmt.Appendf(b, "To: <%s>\r\n", benchRcpt)
	b = fmt.Appendf(b, "Subject: smtpshim benchmark %s\r\n", tag)
	b = append(b, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"...)
	// A line starting with a dot makes both paths dot-stuff and un-stuff,
	// so the integrity check covers SMTP transparency too.
	b = append(b, ".this line starts with a dot\r\n"...)
	// The filler is base64 of seeded random bytes: realistic line lengths,
	// no long runs anything could shortcut, and the same for every run.
	rng := rand.NewChaCha8([32]byte{'s', 'h', 'i', 'm'})
	raw := make([]byte, 57)
	line := make([]byte, base64.StdEncoding.EncodedLen(len(raw)))
	for len(b)+len(line)+2 <= size-suffixLen {
		rng.Read(raw)
		base64.StdEncoding.Encode(line, raw)
		b = append(b, line...)
		b = append(b, '\r', '\n')
	}
	h := sha256.New()
	h.Write(b)
	return &msgFactory{tag: tag, prefix: b, state: h.(hash.Cloner), nonce: rand.Uint64()}
}

// next returns a new message, unique across runs and connections; it is
// safe for concurrent use.
func (f *msgFactory) next() message {
	suffix := fmt.Appendf(nil, "-- smtpshim bench %s message %d nonce %016x\r\n", f.tag, f.seq.Add(1), f.nonce)
	c, err := f.state.Clone()
	if err != nil {
		panic(err) // SHA-256 always clones
	}
	h := c.(hash.Hash)
	h.Write(suffix)
	m := message{prefix: f.prefix, suffix: suffix}
	h.Sum(m.sum[:0])
	return m
}
