package crlf

import (
	"bytes"
	"testing"
)

// byteConvert is the byte-at-a-time convert that the block-wise one
// replaced: the reference it must match.
func byteConvert(r *Reader, dst, src []byte) int {
	n := 0
	skip, bol := r.skipLF, r.bareBOL
	for _, c := range src {
		if skip {
			skip = false
			if c == '\n' {
				continue
			}
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

// FuzzBlockwiseConvert holds the block-wise convert to the byte-wise one,
// for plain and DATA streams, with the input cut into any pieces (the
// state carried between pieces must be the same).
func FuzzBlockwiseConvert(f *testing.F) {
	for _, s := range []string{
		"a\r\nb\nc\rd", "\n.\n", "\r.\r", "\r\n.\r\n", "x\r", "\r\r\n..\n.", "",
	} {
		f.Add([]byte(s), []byte{1, 5})
	}
	f.Fuzz(func(t *testing.T, in, cuts []byte) {
		for _, unstuff := range []bool{false, true} {
			ref, got := &Reader{unstuff: unstuff}, &Reader{unstuff: unstuff}
			var want, have []byte
			rest := in
			for i := 0; len(rest) > 0; i++ {
				k := len(rest)
				if len(cuts) > 0 {
					k = min(k, int(cuts[i%len(cuts)])+1)
				}
				piece := rest[:k]
				rest = rest[k:]
				a, b := make([]byte, 2*len(piece)), make([]byte, 2*len(piece))
				want = append(want, a[:byteConvert(ref, a, piece)]...)
				have = append(have, b[:got.convert(b, piece)]...)
			}
			if !bytes.Equal(want, have) || ref.skipLF != got.skipLF || ref.bareBOL != got.bareBOL {
				t.Fatalf("unstuff=%v: got %q, want %q", unstuff, have, want)
			}
		}
	})
}
