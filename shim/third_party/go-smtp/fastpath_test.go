package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/textproto"
	"testing"
)

// byteDataReader is go-smtp v0.25.1's dataReader.Read, unchanged: the
// reference the block-wise reader must match.
type byteDataReader struct {
	r       *bufio.Reader
	state   int
	limited bool
	n       int64
}

func (r *byteDataReader) Read(b []byte) (n int, err error) {
	if r.limited {
		if r.n <= 0 {
			return 0, ErrDataTooLarge
		}
		if int64(len(b)) > r.n {
			b = b[0:r.n]
		}
	}
	for n < len(b) && r.state != stateEOF {
		var c byte
		c, err = r.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			break
		}
		switch r.state {
		case stateBeginLine:
			if c == '.' {
				r.state = stateDot
				continue
			}
			if c == '\r' {
				r.state = stateCR
				break
			}
			r.state = stateData
		case stateDot:
			if c == '\r' {
				r.state = stateDotCR
				continue
			}
			r.state = stateData
		case stateDotCR:
			if c == '\n' {
				r.state = stateEOF
				continue
			}
			r.state = stateData
		case stateCR:
			if c == '\n' {
				r.state = stateBeginLine
				break
			}
			r.state = stateData
		case stateData:
			if c == '\r' {
				r.state = stateCR
			}
		}
		b[n] = c
		n++
	}
	if err == nil && r.state == stateEOF {
		err = io.EOF
	}
	if r.limited {
		r.n -= int64(n)
	}
	return
}

// chunkReader hands out its input in pieces of the given sizes (cycled),
// then an error, as a network connection would.
type chunkReader struct {
	data  []byte
	sizes []byte
	i     int
	err   error
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, c.err
	}
	n := 1
	if len(c.sizes) > 0 {
		n = int(c.sizes[c.i%len(c.sizes)])%64 + 1
		c.i++
	}
	n = minInt(minInt(n, len(p)), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

type readStep struct {
	data string
	err  error
}

// readAll reads r with the given Read sizes until an error, recording each
// call, and what is left in the buffered reader afterwards (the next
// command's bytes must be the same).
func readAll(r io.Reader, br *bufio.Reader, sizes []byte) (steps []readStep, rest string) {
	buf := make([]byte, 300)
	for i := 0; i < 10000; i++ {
		size := 17
		if len(sizes) > 0 {
			size = int(sizes[i%len(sizes)]) + 1
		}
		n, err := r.Read(buf[:size])
		steps = append(steps, readStep{string(buf[:n]), err})
		if err != nil {
			break
		}
	}
	b, _ := io.ReadAll(br)
	return steps, string(b)
}

var errNet = errors.New("connection reset")

// FuzzDataReader holds the block-wise DATA reader to the byte-wise one:
// the same bytes from each Read, the same errors at the same points, the
// same end of data, and the same bytes left for the next command, for any
// input (bare CR and LF, dots, truncation), read sizes, network chunking,
// buffer size and size limit.
func FuzzDataReader(f *testing.F) {
	for _, s := range []string{
		"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
		"..leading\r\n.\r\n",
		"a\n.\nb\r\n.\r\n",
		"a\r.\rb\r\n.\r\n",
		".\rX\r\n.\r\n",
		"\r\r\n.\r\n",
		"x\r\n..\r\n.\r\nNOOP\r\n",
		"no end",
		"",
		".\r\n",
	} {
		f.Add([]byte(s), []byte{3, 200}, []byte{5}, uint8(16), uint16(0), false)
	}
	f.Fuzz(func(t *testing.T, in, readSizes, netSizes []byte, bufSize uint8, limit uint16, netErr bool) {
		size := 16 + int(bufSize)
		var end error = io.EOF
		if netErr {
			end = errNet
		}
		mk := func() *bufio.Reader {
			return bufio.NewReaderSize(&chunkReader{data: in, sizes: netSizes, err: end}, size)
		}
		ref := &byteDataReader{r: mk(), limited: limit > 0, n: int64(limit)}
		got := &dataReader{r: mk(), limited: limit > 0, n: int64(limit)}
		refSteps, refRest := readAll(ref, ref.r, readSizes)
		gotSteps, gotRest := readAll(got, got.r, readSizes)
		if len(refSteps) != len(gotSteps) {
			t.Fatalf("%d reads, want %d:\n got %v\nwant %v", len(gotSteps), len(refSteps), gotSteps, refSteps)
		}
		for i := range refSteps {
			if refSteps[i] != gotSteps[i] {
				t.Fatalf("read %d: got %+v, want %+v", i, gotSteps[i], refSteps[i])
			}
		}
		if refRest != gotRest {
			t.Fatalf("left for the next command: %q, want %q", gotRest, refRest)
		}
	})
}

// writeSplit writes in to w in pieces cut at the given sizes, then closes.
func writeSplit(t *testing.T, w io.WriteCloser, in, sizes []byte) {
	for i := 0; len(in) > 0; i++ {
		n := len(in)
		if len(sizes) > 0 {
			n = minInt(n, int(sizes[i%len(sizes)])+1)
		}
		m, err := w.Write(in[:n])
		if err != nil || m != n {
			t.Fatalf("Write = %d, %v; want %d", m, err, n)
		}
		in = in[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// FuzzDotWriter holds the client's block-wise dot-stuffing writer to
// net/textproto's DotWriter, which go-smtp v0.25.1 uses, for any body
// (bare CR and LF, dots) cut into any writes.
func FuzzDotWriter(f *testing.F) {
	for _, s := range []string{
		"Subject: x\r\n\r\nbody\r\n.\r\n..x\r\n",
		"a\n.\nb",
		"a\r.\rb\r",
		"\r\r\n.",
		".",
		"",
		"x\r",
	} {
		f.Add([]byte(s), []byte{2, 7})
	}
	f.Fuzz(func(t *testing.T, in, sizes []byte) {
		var ref, got bytes.Buffer
		rw := bufio.NewWriterSize(&ref, 16)
		writeSplit(t, textproto.NewWriter(rw).DotWriter(), in, sizes)
		gw := bufio.NewWriterSize(&got, 16)
		writeSplit(t, &dotWriter{w: gw}, in, sizes)
		if !bytes.Equal(ref.Bytes(), got.Bytes()) {
			t.Fatalf("got %q, want %q", got.Bytes(), ref.Bytes())
		}
	})
}

func minInt(a, b int) int {
	if a < b {
		return a
	}
	return b
}

// byteCount is go-smtp v0.25.1's lineLimitReader loop, unchanged: the
// reference for lineLimitReader.count.
func byteCount(r *lineLimitReader, p []byte) error {
	for _, chr := range p {
		if chr == '\n' {
			r.curLineLength = 0
		}
		r.curLineLength++

		if r.curLineLength > r.LineLimit {
			return ErrTooLongLine
		}
	}
	return nil
}

// FuzzLineLimit holds the block-wise line counter to the byte loop: the
// same verdict and the same count after every piece, for any input, any
// cut into pieces, and any limit, including one lowered midway (as BDAT
// lifts and restores it).
func FuzzLineLimit(f *testing.F) {
	f.Add([]byte("short\nlines\n"), []byte{3, 9}, 8, 4)
	f.Add([]byte("a line that is much too long\n"), []byte{200}, 10, 10)
	f.Add([]byte("\n\n\nxx\n"), []byte{1}, 1, 0)
	f.Fuzz(func(t *testing.T, in, cuts []byte, limit, later int) {
		ref := &lineLimitReader{LineLimit: limit}
		got := &lineLimitReader{LineLimit: limit}
		for i := 0; len(in) > 0; i++ {
			k := len(in)
			if len(cuts) > 0 && int(cuts[i%len(cuts)])+1 < k {
				k = int(cuts[i%len(cuts)]) + 1
			}
			if i == 1 {
				ref.LineLimit, got.LineLimit = later, later
			}
			want, have := byteCount(ref, in[:k]), got.count(in[:k])
			if want != have || ref.curLineLength != got.curLineLength {
				t.Fatalf("piece %d %q, limit %d: got %v at %d, want %v at %d",
					i, in[:k], got.LineLimit, have, got.curLineLength, want, ref.curLineLength)
			}
			in = in[k:]
		}
	})
}
