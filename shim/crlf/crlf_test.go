package crlf

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"strings"
	"testing"
	"testing/iotest"
)

// reference is an independent statement of the rule: every line break,
// whether CRLF, bare CR or bare LF, becomes one CRLF.
func reference(in string) string {
	s := strings.ReplaceAll(in, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.ReplaceAll(s, "\n", "\r\n")
}

// checkCRLF reports whether every CR in b is followed by LF and every LF is
// preceded by CR.
func checkCRLF(b []byte) error {
	for i, c := range b {
		switch c {
		case '\r':
			if i+1 >= len(b) || b[i+1] != '\n' {
				return fmt.Errorf("bare CR at offset %d in %q", i, b)
			}
		case '\n':
			if i == 0 || b[i-1] != '\r' {
				return fmt.Errorf("bare LF at offset %d in %q", i, b)
			}
		}
	}
	return nil
}

// readAll drains r with reads of exactly bufSize bytes, checking the
// io.Reader contract on the way.
func readAll(r io.Reader, bufSize int) ([]byte, error) {
	var out []byte
	p := make([]byte, bufSize)
	empty := 0
	for {
		n, err := r.Read(p)
		if n < 0 || n > len(p) {
			return out, fmt.Errorf("Read returned n=%d for len(p)=%d", n, len(p))
		}
		out = append(out, p[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if n == 0 {
			// A (0, nil) read is allowed but must not go on forever.
			if empty++; empty > 100 {
				return out, io.ErrNoProgress
			}
		} else {
			empty = 0
		}
	}
}

// sources wraps an input in readers that deliver it in different chunks and
// with the final EOF in different places.
var sources = []struct {
	name string
	wrap func([]byte) io.Reader
}{
	{"bytes", func(b []byte) io.Reader { return bytes.NewReader(b) }},
	{"OneByteReader", func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }},
	{"HalfReader", func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) }},
	// EOF arrives together with the last data, as io.Reader allows.
	{"DataErrReader", func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) }},
	{"DataErrReader(OneByteReader)", func(b []byte) io.Reader {
		return iotest.DataErrReader(iotest.OneByteReader(bytes.NewReader(b)))
	}},
}

var readSizes = []int{1, 2, 3, 7, 4096}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"no line break", "abc", "abc"},
		{"bare LF", "a\nb", "a\r\nb"},
		{"bare CR", "a\rb", "a\r\nb"},
		{"CRLF unchanged", "a\r\nb", "a\r\nb"},
		{"CR CRLF", "\r\r\n", "\r\n\r\n"},
		{"LF LF", "\n\n", "\r\n\r\n"},
		{"CRLF CRLF", "\r\n\r\n", "\r\n\r\n"},
		{"LF CR is two breaks", "\n\r", "\r\n\r\n"},
		{"trailing CR", "abc\r", "abc\r\n"},
		{"leading LF", "\nabc", "\r\nabc"},
		{"LF dot LF", "\n.\n", "\r\n.\r\n"},
		{"CR dot LF", "\r.\n", "\r\n.\r\n"},
		{"LF dot CRLF", "\n.\r\n", "\r\n.\r\n"},
		{"CR dot CR", "\r.\r", "\r\n.\r\n"},
		{"CRLF dot LF", "\r\n.\n", "\r\n.\r\n"},
		{"CRLF dot CRLF", "\r\n.\r\n", "\r\n.\r\n"},
		{"mixed", "Subject: x\nFrom: a\r\rb\r\n\nbody\r.\r\n", "Subject: x\r\nFrom: a\r\n\r\nb\r\n\r\nbody\r\n.\r\n"},
		{"only CRs", "\r\r\r", "\r\n\r\n\r\n"},
		{"only LFs", "\n\n\n", "\r\n\r\n\r\n"},
		{"binary bytes pass", "\x00\xff\x1b\t", "\x00\xff\x1b\t"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ref := reference(tt.in); ref != tt.want {
				t.Fatalf("test table disagrees with the reference rule: %q -> %q, reference %q", tt.in, tt.want, ref)
			}
			if got := Normalize([]byte(tt.in)); string(got) != tt.want {
				t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
			}
			for _, src := range sources {
				for _, size := range readSizes {
					got, err := readAll(NewReader(src.wrap([]byte(tt.in))), size)
					if err != nil {
						t.Errorf("%s, reads of %d: error %v", src.name, size, err)
					}
					if string(got) != tt.want {
						t.Errorf("%s, reads of %d: got %q, want %q", src.name, size, got, tt.want)
					}
				}
			}
		})
	}
}

// checkInvariants verifies every property of normalizing in.
func checkInvariants(t *testing.T, in []byte) {
	t.Helper()
	want := Normalize(in)
	if err := checkCRLF(want); err != nil {
		t.Fatalf("Normalize(%q): %v", in, err)
	}
	if ref := reference(string(in)); string(want) != ref {
		t.Fatalf("Normalize(%q) = %q, reference rule gives %q", in, want, ref)
	}
	if again := Normalize(want); !bytes.Equal(again, want) {
		t.Fatalf("Normalize is not idempotent on %q: %q then %q", in, want, again)
	}
	for _, src := range sources {
		for _, size := range readSizes {
			got, err := readAll(NewReader(src.wrap(in)), size)
			if err != nil {
				t.Fatalf("%s, reads of %d, input %q: %v", src.name, size, in, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s, reads of %d, input %q: got %q, want %q", src.name, size, in, got, want)
			}
		}
	}
}

func TestProperties(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	const alphabet = "ab.\r\n"
	for i := range 500 {
		in := make([]byte, rng.Intn(64))
		for j := range in {
			in[j] = alphabet[rng.Intn(len(alphabet))]
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkInvariants(t, in) })
	}
}

func TestReset(t *testing.T) {
	tests := []struct {
		name   string
		first  string // read in full with 1-byte reads before Reset
		prefix int    // how many output bytes of first to read, -1 for all
		second string
		want   string // output after Reset
	}{
		// After "\r" the reader owes an LF (spilled) and would swallow an
		// input LF; Reset must forget both.
		{"pending spill and CR state", "a\r", 2, "\nb", "\r\nb"},
		{"CR state after full read", "a\r", -1, "\nb", "\r\nb"},
		{"clean state", "abc", -1, "x\ny", "x\r\ny"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tt.first))
			if tt.prefix < 0 {
				if _, err := readAll(r, 1); err != nil {
					t.Fatal(err)
				}
			} else {
				p := make([]byte, 1)
				for range tt.prefix {
					if _, err := r.Read(p); err != nil {
						t.Fatal(err)
					}
				}
			}
			r.Reset(strings.NewReader(tt.second))
			got, err := readAll(r, 4096)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("after Reset got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	errBoom := fmt.Errorf("boom")
	tests := []struct {
		name string
		size int
	}{
		{"large reads", 4096},
		{"one-byte reads", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The data before a source error is delivered, then the error.
			src := io.MultiReader(strings.NewReader("a\nb\r"), iotest.ErrReader(errBoom))
			got, err := readAll(NewReader(src), tt.size)
			if err != errBoom {
				t.Errorf("error = %v, want %v", err, errBoom)
			}
			if string(got) != "a\r\nb\r\n" {
				t.Errorf("data before the error = %q, want %q", got, "a\r\nb\r\n")
			}
		})
	}
	t.Run("empty p", func(t *testing.T) {
		r := NewReader(strings.NewReader("abc"))
		if n, err := r.Read(nil); n != 0 || err != nil {
			t.Errorf("Read(nil) = %d, %v; want 0, nil", n, err)
		}
		if got, _ := io.ReadAll(r); string(got) != "abc" {
			t.Errorf("data after Read(nil) = %q, want \"abc\"", got)
		}
	})
	t.Run("iotest.TestReader", func(t *testing.T) {
		in := []byte("line 1\nline 2\rline 3\r\n.\n")
		if err := iotest.TestReader(NewReader(bytes.NewReader(in)), Normalize(in)); err != nil {
			t.Error(err)
		}
	})
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{
		"", "a\nb", "a\rb", "a\r\nb",
		// SMTP smuggling: end-of-data sequences with bare CR or LF.
		"\r\n.\r\n", "\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r.\n", "\n.\r", "\r\n.\r",
		"\r\r\n", "\n\r", "\r\n\r\n", "body\n.\nMAIL FROM:<x@y>\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkInvariants(t, in)
	})
}

func benchBody(eol string) []byte {
	line := strings.Repeat("x", 76) + eol
	n := (10 << 20) / len(line)
	return bytes.Repeat([]byte(line), n)
}

func BenchmarkReader(b *testing.B) {
	for _, bm := range []struct{ name, eol string }{{"LF", "\n"}, {"CRLF", "\r\n"}} {
		b.Run(bm.name, func(b *testing.B) {
			body := benchBody(bm.eol)
			want := len(body)
			if bm.eol == "\n" {
				want += bytes.Count(body, []byte("\n"))
			}
			src := bytes.NewReader(body)
			r := NewReader(src)
			buf := make([]byte, 32<<10)
			drain := func() int {
				total := 0
				for {
					n, err := r.Read(buf)
					total += n
					if err == io.EOF {
						return total
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			drain() // size the reader's buffer before timing
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				src.Reset(body)
				r.Reset(src)
				if n := drain(); n != want {
					b.Fatalf("read %d bytes, want %d", n, want)
				}
			}
		})
	}
}

func TestDataReaderUnstuffsAfterBareLineEndings(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"dot after bare LF is transparency", "a\n..b\n", "a\r\n.b\r\n"},
		{"dot after bare CR", "a\r..b", "a\r\n.b"},
		{"lone dot line after bare LF becomes empty", "a\n.\nb", "a\r\n\r\nb"},
		{"dot after CRLF was already unstuffed by go-smtp", "a\r\n.b", "a\r\n.b"},
		{"dot mid-line untouched", "a.b\n", "a.b\r\n"},
		{"smuggling attempt stays content", "x\n.\r\nMAIL FROM:<a@b>\r\n", "x\r\n\r\nMAIL FROM:<a@b>\r\n"},
		{"CR then dot split across reads", "a\r", "a\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunk := range []int{1, 2, 3, 4096} {
				r := NewDataReader(strings.NewReader(tc.in))
				var out bytes.Buffer
				buf := make([]byte, chunk)
				for {
					n, err := r.Read(buf)
					out.Write(buf[:n])
					if err != nil {
						break
					}
				}
				if out.String() != tc.want {
					t.Fatalf("chunk %d: got %q, want %q", chunk, out.String(), tc.want)
				}
			}
		})
	}
}
