// Package crlf normalizes line endings to CRLF in a stream.
//
// Legacy clients send bare LF (Unix scripts) or bare CR (classic Mac OS)
// line endings. Forwarding them unchanged lets a receiver and smtpshim
// disagree about where lines, and so the message, end: the root of SMTP
// smuggling. After normalization every CR and every LF in the stream is
// part of a CRLF pair.
package crlf

import (
	"bytes"
	"io"
	"sync"
)

// Reader converts bare LF and bare CR from an underlying reader to CRLF.
// CRLF pairs pass through unchanged. It allocates nothing per line.
type Reader struct {
	r      io.Reader
	buf    []byte
	skipLF bool // the last input byte was CR, already written as CRLF
	// unstuff drops the transparency dot at the start of a line that
	// follows a bare line ending (see NewDataReader); bareBOL marks such
	// a line start after a bare LF.
	unstuff bool
	bareBOL bool
	spill   []byte
	spillA  [1]byte
	// spillErr is the source's error that came with the byte in spill; it
	// is returned with that byte, never before it.
	spillErr error
}

// NewReader returns a normalizing reader over r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: r}
}

// NewDataReader returns a normalizing reader for an SMTP DATA stream
// that go-smtp has already un-dot-stuffed. go-smtp removes the
// transparency dot only after CRLF; a client that ends its lines with bare
// LF or CR stuffs the dots of those lines too, so this reader removes one
// leading dot from each line that follows a bare line ending, as Postfix
// does. The end of DATA is still only CRLF.CRLF, so no bare-LF sequence
// can end a message early.
func NewDataReader(r io.Reader) *Reader {
	return &Reader{r: r, unstuff: true}
}

// Reset makes the reader read from r with fresh state, keeping its buffer.
func (r *Reader) Reset(src io.Reader) {
	r.r = src
	r.skipLF = false
	r.bareBOL = false
	r.spill = nil
	r.spillErr = nil
}

// Read fills p with normalized bytes. Each input byte becomes at most two
// output bytes, so it reads at most len(p)/2 bytes from the source.
func (r *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(r.spill) > 0 {
		n := copy(p, r.spill)
		r.spill = r.spill[n:]
		err := r.spillErr
		r.spillErr = nil
		return n, err
	}
	if len(p) == 1 {
		var two [2]byte
		n, err := r.Read(two[:])
		if n == 0 {
			return 0, err
		}
		p[0] = two[0]
		if n == 2 {
			// Hold back an error (such as io.EOF delivered with the last
			// data) until the spilled byte is read, or it would be lost.
			r.spillA[0] = two[1]
			r.spill = r.spillA[:1]
			r.spillErr = err
			return 1, nil
		}
		return 1, err
	}
	want := len(p) / 2
	if cap(r.buf) < want {
		if r.buf != nil {
			putBuf(r.buf)
		}
		r.buf = getBuf(want)
	}
	src := r.buf[:want]
	m, err := r.r.Read(src)
	return r.convert(p, src[:m]), err
}

// convert writes the normalized src to dst, which has room for 2*len(src)
// bytes. Inside a line it copies up to the next CR or LF in one step;
// only line ends and the byte after them are looked at one by one.
func (r *Reader) convert(dst, src []byte) int {
	n := 0
	skip, bol := r.skipLF, r.bareBOL
	cr, lf := indexFrom(src, 0, '\r'), indexFrom(src, 0, '\n')
	for i := 0; i < len(src); {
		if !skip && !bol {
			// Keep the positions of the next CR and LF, so each byte is
			// scanned once whatever the line endings are.
			if cr >= 0 && cr < i {
				cr = indexFrom(src, i, '\r')
			}
			if lf >= 0 && lf < i {
				lf = indexFrom(src, i, '\n')
			}
			end := len(src)
			if cr >= 0 {
				end = cr
			}
			if lf >= 0 && lf < end {
				end = lf
			}
			if end > i {
				n += copy(dst[n:], src[i:end])
				i = end
				continue
			}
		}
		c := src[i]
		i++
		if skip {
			skip = false
			if c == '\n' {
				continue // the LF of a CRLF pair, already written
			}
			// The CR was bare: c starts a line go-smtp did not unstuff.
			bol = true
		}
		if bol {
			bol = false
			if c == '.' && r.unstuff {
				continue
			}
		}
		switch c {
		case '\r':
			dst[n] = '\r'
			dst[n+1] = '\n'
			n += 2
			skip = true
		case '\n':
			dst[n] = '\r'
			dst[n+1] = '\n'
			n += 2
			bol = true
		default:
			dst[n] = c
			n++
		}
	}
	r.skipLF, r.bareBOL = skip, bol
	return n
}

func indexFrom(b []byte, from int, c byte) int {
	if i := bytes.IndexByte(b[from:], c); i >= 0 {
		return from + i
	}
	return -1
}

// Normalize returns b with bare LF and bare CR turned into CRLF.
func Normalize(b []byte) []byte {
	var r Reader
	out := make([]byte, 2*len(b))
	return out[:r.convert(out, b)]
}

// Release returns the reader's buffer for reuse by other readers; call it
// when the message is read. The reader may still be used after it, at the
// cost of a new buffer.
func (r *Reader) Release() {
	if r.buf != nil {
		putBuf(r.buf)
		r.buf = nil
	}
}

// bufs recycles read buffers: a relay converts one message after another,
// and a new 16 KB buffer for each would be most of what it allocates.
var bufs sync.Pool

func getBuf(n int) []byte {
	if b, ok := bufs.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]byte, n)
}

func putBuf(b []byte) {
	bufs.Put(&b)
}
