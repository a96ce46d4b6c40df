package smtp

// This file holds the block-wise data path added to go-smtp v0.25.1 for
// smtpshim (see PATCH.md). Every function here produces byte-for-byte the
// output of the byte-at-a-time code it replaces; fastpath_test.go holds
// them to the originals on any input.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
)

// States of the DATA reader: those of net/textproto's dotReader.
const (
	stateBeginLine = iota // beginning of line; initial state; must be zero
	stateDot              // read . at beginning of line
	stateDotCR            // read .\r at beginning of line
	stateCR               // read \r (possibly at end of line)
	stateData             // reading data in middle of line
	stateEOF              // reached .\r\n end marker line
)

// readBlocks runs the DATA state machine over what r.r holds buffered:
// inside a line it copies up to the next CR in one step, and it steps
// byte by byte only at line starts and ends. Like the byte-wise loop it
// stops as soon as b is full or the end marker is read, consuming nothing
// past that point, and it reads from the network only when the buffer is
// empty, so the underlying reads (and the line-length limit on them) are
// the same.
func (r *dataReader) readBlocks(b []byte) (n int, err error) {
	for n < len(b) && r.state != stateEOF {
		if r.r.Buffered() == 0 {
			if _, err = r.r.Peek(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return n, err
			}
		}
		buf, _ := r.r.Peek(r.r.Buffered())
		i := 0
		for i < len(buf) && n < len(b) && r.state != stateEOF {
			if r.state == stateData {
				end := len(buf)
				if room := i + len(b) - n; room < end {
					end = room
				}
				run := buf[i:end]
				if j := bytes.IndexByte(run, '\r'); j >= 0 {
					run = run[:j+1]
					r.state = stateCR
				}
				n += copy(b[n:], run)
				i += len(run)
				continue
			}
			c := buf[i]
			i++
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
			}
			b[n] = c
			n++
		}
		r.r.Discard(i)
	}
	return n, nil
}

// States of the client's dot-stuffing writer: those of net/textproto's
// dotWriter.
const (
	wstateBegin     = iota // initial state; must be zero
	wstateBeginLine        // beginning of line
	wstateCR               // wrote \r (possibly at end of line)
	wstateData             // writing data in middle of line
)

var dotCRLF = []byte(".\r\n")

// dotWriter dot-stuffs a message body and turns bare LF into CRLF, as
// net/textproto's DotWriter does, but copies the inside of each line in one
// step. Close writes the end-of-data line.
type dotWriter struct {
	w     *bufio.Writer
	state int
	// cr and lf are the positions, in the slice being written, of the next
	// CR and LF at or after the current one; -1 when there is none left.
	// Keeping them makes each byte scanned once, whatever the line ends.
	cr, lf int
}

func (d *dotWriter) Write(b []byte) (n int, err error) {
	d.cr, d.lf = indexFrom(b, 0, '\r'), indexFrom(b, 0, '\n')
	for n < len(b) {
		if d.state == wstateData {
			if d.cr >= 0 && d.cr < n {
				d.cr = indexFrom(b, n, '\r')
			}
			if d.lf >= 0 && d.lf < n {
				d.lf = indexFrom(b, n, '\n')
			}
			end := len(b)
			if d.cr >= 0 {
				end = d.cr
			}
			if d.lf >= 0 && d.lf < end {
				end = d.lf
			}
			if end > n {
				m, err := d.w.Write(b[n:end])
				n += m
				if err != nil {
					return n, err
				}
				continue
			}
		}
		c := b[n]
		switch d.state {
		case wstateBegin, wstateBeginLine:
			d.state = wstateData
			if c == '.' {
				// escape leading dot
				d.w.WriteByte('.')
			}
			fallthrough
		case wstateData:
			if c == '\r' {
				d.state = wstateCR
			}
			if c == '\n' {
				d.w.WriteByte('\r')
				d.state = wstateBeginLine
			}
		case wstateCR:
			d.state = wstateData
			if c == '\n' {
				d.state = wstateBeginLine
			}
		}
		if err = d.w.WriteByte(c); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func indexFrom(b []byte, from int, c byte) int {
	if i := bytes.IndexByte(b[from:], c); i >= 0 {
		return from + i
	}
	return -1
}

func (d *dotWriter) Close() error {
	switch d.state {
	default:
		d.w.WriteByte('\r')
		fallthrough
	case wstateCR:
		d.w.WriteByte('\n')
		fallthrough
	case wstateBeginLine:
		d.w.Write(dotCRLF)
	}
	return d.w.Flush()
}

// DefaultChunkSize is the BDAT chunk size Client.Bdat uses when given 0.
const DefaultChunkSize = 64 << 10

// Bdat starts the message body as RFC 3030 BDAT chunks, for a server that
// advertises CHUNKING. The body is sent as written: no dot-stuffing and no
// line-ending change, so write it with CRLF line endings. Chunks of up to
// chunkSize bytes are sent as they fill; when the server also advertises
// PIPELINING they are sent without waiting for each reply (RFC 3030
// section 4.2), and the replies are read when the writer is closed.
// Close sends the last chunk with BDAT ... LAST.
func (c *Client) Bdat(chunkSize int) (*DataCommand, error) {
	if c.lmtp {
		return nil, errors.New("smtp: BDAT is not supported with LMTP")
	}
	if ok, _ := c.Extension("CHUNKING"); !ok {
		return nil, errors.New("smtp: server doesn't support CHUNKING")
	}
	if chunkSize <= 0 {
		chunkSize = DefaultChunkSize
	}
	pipelining, _ := c.Extension("PIPELINING")
	return c.startData(&bdatWriter{
		c:          c,
		buf:        getChunkBuf(chunkSize),
		pipelining: pipelining,
	}), nil
}

// chunkBufs recycles BDAT chunk buffers of DefaultChunkSize: a client
// that sends one message after another would otherwise allocate (and
// clear) 64 KB for each.
var chunkBufs = sync.Pool{New: func() interface{} { b := make([]byte, 0, DefaultChunkSize); return &b }}

func getChunkBuf(size int) []byte {
	if size != DefaultChunkSize {
		return make([]byte, 0, size)
	}
	return (*chunkBufs.Get().(*[]byte))[:0]
}

func putChunkBuf(b []byte) {
	if cap(b) == DefaultChunkSize {
		chunkBufs.Put(&b)
	}
}

func (c *Client) startData(wc io.WriteCloser) *DataCommand {
	c.openData = wc
	return &DataCommand{client: c, wc: wc}
}

// bdatWriter gathers the body into chunks and sends each as BDAT.
type bdatWriter struct {
	c          *Client
	buf        []byte
	pipelining bool
	pending    int   // chunks sent whose reply is not read yet
	err        error // the first refused chunk, reported by CloseWithResponse
}

func (w *bdatWriter) Write(b []byte) (int, error) {
	if w.buf == nil {
		return 0, errors.New("smtp: BDAT writer already closed")
	}
	n := 0
	for len(b) > 0 {
		if len(w.buf) == cap(w.buf) {
			if err := w.send(false); err != nil {
				return n, err
			}
		}
		m := copy(w.buf[len(w.buf):cap(w.buf)], b)
		w.buf = w.buf[:len(w.buf)+m]
		b = b[m:]
		n += m
	}
	return n, nil
}

func (w *bdatWriter) send(last bool) error {
	bw := w.c.text.W
	bw.WriteString("BDAT ")
	bw.WriteString(strconv.Itoa(len(w.buf)))
	if last {
		bw.WriteString(" LAST")
	}
	bw.WriteString("\r\n")
	if _, err := bw.Write(w.buf); err != nil {
		return err
	}
	w.buf = w.buf[:0]
	if last {
		return bw.Flush()
	}
	w.pending++
	if w.pipelining {
		return nil
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return w.readPending()
}

// readPending reads the replies to the chunks sent before the last one.
// A refusal is kept for CloseWithResponse, which must still read the reply
// to the last chunk to stay in step with the server.
func (w *bdatWriter) readPending() error {
	w.c.conn.SetDeadline(time.Now().Add(w.c.CommandTimeout))
	defer w.c.conn.SetDeadline(time.Time{})
	for ; w.pending > 0; w.pending-- {
		_, _, err := w.c.readResponse(250)
		if err != nil {
			if _, ok := err.(*SMTPError); !ok {
				return err
			}
			if w.err == nil {
				w.err = err
			}
		}
	}
	return nil
}

func (w *bdatWriter) Close() error {
	err := w.send(true)
	putChunkBuf(w.buf)
	w.buf = nil
	if err != nil {
		return err
	}
	return w.readPending()
}

// chunkError is the refusal of a chunk before the last one, if any.
func (cmd *DataCommand) chunkError() error {
	if w, ok := cmd.wc.(*bdatWriter); ok && w.err != nil {
		return w.err
	}
	return nil
}

// flushingReader flushes the server's pending replies before it waits for
// the client: replies to a pipelined batch of commands go out in one write
// (see Conn.writeResponse), and nothing a client waits for is held back.
type flushingReader struct {
	r io.Reader
	w *bufio.Writer
}

func (f *flushingReader) Read(p []byte) (int, error) {
	if f.w.Buffered() > 0 {
		if err := f.w.Flush(); err != nil {
			return 0, err
		}
	}
	return f.r.Read(p)
}

// writeReplyLine writes one reply line to the buffered writer.
func writeReplyLine(w *bufio.Writer, format string, args ...interface{}) {
	fmt.Fprintf(w, format, args...)
	w.WriteString("\r\n")
}

// MailRcpt starts a transaction with its first recipient: Mail, then
// Rcpt. When the server advertises PIPELINING (RFC 2920) both commands
// go out in one write and both replies are read after it, which saves a
// round trip per message.
//
// mailErr is Mail's error: with it, no transaction is open and rcptErr
// is the same error. Otherwise rcptErr is Rcpt's error, and the
// transaction is open either way. As with Mail and Rcpt, a refusal is an
// *SMTPError.
func (c *Client) MailRcpt(from string, mopts *MailOptions, to string, ropts *RcptOptions) (mailErr, rcptErr error) {
	if ok, _ := c.Extension("PIPELINING"); !ok {
		if err := c.Mail(from, mopts); err != nil {
			return err, err
		}
		return nil, c.Rcpt(to, ropts)
	}
	mail, err := c.mailLine(from, mopts)
	if err != nil {
		return err, err
	}
	rcpt, err := c.rcptLine(to, ropts)
	if err != nil {
		// Nothing is sent: the caller's recipient is at fault, and the
		// transaction can start without it.
		if err := c.Mail(from, mopts); err != nil {
			return err, err
		}
		return nil, err
	}

	c.conn.SetDeadline(time.Now().Add(c.CommandTimeout))
	defer c.conn.SetDeadline(time.Time{})
	if c.openData != nil {
		c.openData.Close()
		c.openData = nil
	}
	w := c.text.W
	w.WriteString(mail)
	w.WriteString("\r\n")
	w.WriteString(rcpt)
	w.WriteString("\r\n")
	if err := w.Flush(); err != nil {
		return err, err
	}
	_, _, mailErr = c.readResponse(250)
	if mailErr != nil {
		if _, ok := mailErr.(*SMTPError); ok {
			// Read the RCPT's reply (a 503, as there is no sender) to
			// stay in step with the server.
			c.readResponse(25)
		}
		return mailErr, mailErr
	}
	c.rcpts = nil
	if _, _, rcptErr = c.readResponse(25); rcptErr == nil {
		c.rcpts = append(c.rcpts, to)
	}
	return nil, rcptErr
}

// count advances the line length over p, as the byte-at-a-time loop did
// (a newline starts a line of length 1; ErrTooLongLine at the first byte
// over LineLimit, the count left where that loop left it), but finds the
// newlines with bytes.IndexByte.
func (r *lineLimitReader) count(p []byte) error {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		seg := i
		if i < 0 {
			seg = len(p)
		}
		if seg > 0 && r.curLineLength+seg > r.LineLimit {
			k := r.LineLimit - r.curLineLength + 1
			if k < 1 {
				k = 1
			}
			r.curLineLength += k
			return ErrTooLongLine
		}
		r.curLineLength += seg
		if i < 0 {
			return nil
		}
		r.curLineLength = 1
		if r.curLineLength > r.LineLimit {
			return ErrTooLongLine
		}
		p = p[i+1:]
	}
	return nil
}
