package spool

import (
	"bufio"
	"io"
	"mime"
	"net/textproto"
	"strings"
)

// subjectScan bounds how much of a body Subject reads: the header of a
// normal message is far smaller, and a list of a long queue must stay
// cheap.
const subjectScan = 32 << 10

// Subject returns the decoded Subject header of a queued message, or ""
// when it has none or can't be read. It reads only the start of the body.
func (s *Spool) Subject(id string) string {
	if !validID(id) {
		return ""
	}
	f, err := s.Body(id)
	if err != nil {
		return ""
	}
	defer f.Close()
	return subjectOf(io.LimitReader(f, subjectScan))
}

func subjectOf(r io.Reader) string {
	h, _ := textproto.NewReader(bufio.NewReader(r)).ReadMIMEHeader()
	subj := h.Get("Subject")
	if subj == "" {
		return ""
	}
	dec := mime.WordDecoder{CharsetReader: func(_ string, in io.Reader) (io.Reader, error) { return in, nil }}
	if d, err := dec.DecodeHeader(subj); err == nil {
		subj = d
	}
	return strings.Join(strings.Fields(subj), " ")
}
