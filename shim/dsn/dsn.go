// Package dsn builds RFC 3464 delivery status notifications. smtpshim
// accepts a message with 250 before it talks to the provider, so when the
// provider later refuses it for good the only way to tell the user is a
// bounce in their inbox, formatted the way every mail client already
// understands.
package dsn

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Recipient is the final status of one recipient.
type Recipient struct {
	Address    string // the RCPT TO address
	Action     string // "failed" or "delayed"
	Status     string // enhanced status code, e.g. "5.1.1"
	RemoteMTA  string // upstream host name, may be ""
	Diagnostic string // the upstream's reply, e.g. "550 5.1.1 User unknown"; "" if none
}

// Report describes one bounce.
type Report struct {
	ReportingMTA string    // e.g. the local host name
	From         string    // address the DSN comes from, e.g. "MAILER-DAEMON@<sender domain>"
	To           string    // the original envelope sender (who gets the bounce)
	EnvelopeID   string    // optional Original-Envelope-Id
	ArrivalDate  time.Time // when smtpshim accepted the message; zero omits Arrival-Date
	Reason       string    // human-readable sentence for the first part
	Hint         string    // optional plain-language advice, appended to the human-readable part
	Recipients   []Recipient
	MessageID    string    // Message-ID for the DSN; generated if ""
	Date         time.Time // Date header of the DSN; now if zero
}

// ErrNoRecipients is returned by Build for a report without recipients:
// RFC 3464 requires at least one per-recipient block, and a bounce about
// nobody would only confuse the reader.
var ErrNoRecipients = errors.New("dsn: report has no recipients")

const (
	// maxHeaderBytes caps the copied header section of the original so a
	// hostile or broken message cannot make the bounce (or our memory)
	// arbitrarily large.
	maxHeaderBytes = 64 << 10
	// maxLine is RFC 5322's hard limit, excluding CRLF.
	maxLine = 998
	// foldAt is the RFC 5322 recommended line length, used when folding.
	foldAt = 78
	// maxWord bounds an unbreakable run so a folded line never exceeds
	// maxLine even after the field name.
	maxWord = 900
	// Caps on single values. Real addresses and host names are far
	// shorter; the caps only keep garbage from producing huge output.
	maxAddr       = 400
	maxHost       = 255
	maxEnvID      = 100
	maxMessageID  = 250
	maxDiagnostic = 4096
	maxText       = 4096
	// textWidth leaves room below quoted-printable's 76 columns so plain
	// ASCII text never gets soft line breaks.
	textWidth = 72
)

var statusRE = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`)

// Build writes a complete RFC 5322 message: the headers, then a
// multipart/report; report-type=delivery-status with three parts: a
// text/plain explanation, the message/delivery-status fields, and a
// text/rfc822-headers copy of the original message's header section.
//
// Only the header section of original is read (up to the first empty line,
// at most 64 KiB copied); the body is never read, so queued messages of any
// size cost the same memory. original may be nil.
//
// All lines end in CRLF and none is longer than 998 octets. Every Report and
// Recipient string is sanitized, so CR, LF or NUL in any field can never
// inject headers or parts, and the delivery-status part is always 7-bit.
// Nothing is written to w if reading original fails.
func Build(w io.Writer, r Report, original io.Reader) error {
	if len(r.Recipients) == 0 {
		return ErrNoRecipients
	}
	var headers bytes.Buffer
	eightBit := false
	if original != nil {
		var err error
		if eightBit, err = copyHeaders(&headers, original, maxHeaderBytes); err != nil {
			return fmt.Errorf("dsn: reading the original message: %w", err)
		}
	}

	rcpts := make([]recipient, len(r.Recipients))
	allDelayed := true
	for i, rc := range r.Recipients {
		rcpts[i] = normalizeRecipient(rc)
		if rcpts[i].action != "delayed" {
			allDelayed = false
		}
	}
	host := hostName(r.ReportingMTA)

	human, err := humanPart(r, rcpts, host, allDelayed, headers.Len() > 0)
	if err != nil {
		return err
	}
	status := statusPart(r, rcpts, host)
	boundary := pickBoundary(human, status, headers.Bytes())

	bw := bufio.NewWriter(w)
	var top bytes.Buffer
	writeField(&top, "From", fromHeader(r, host))
	writeField(&top, "To", toHeader(r.To))
	subject := "Undelivered Mail Returned to Sender"
	if allDelayed {
		subject = "Delayed Mail (still being retried)"
	}
	writeField(&top, "Subject", subject)
	date := r.Date
	if date.IsZero() {
		date = time.Now()
	}
	writeField(&top, "Date", date.Format(time.RFC1123Z))
	writeField(&top, "Message-ID", messageID(r.MessageID, host, date))
	// Auto-Submitted stops vacation responders and other robots from
	// answering the bounce and starting a mail loop (RFC 3834).
	writeField(&top, "Auto-Submitted", "auto-replied")
	writeField(&top, "MIME-Version", "1.0")
	writeField(&top, "Content-Type", `multipart/report; report-type=delivery-status; boundary="`+boundary+`"`)
	if eightBit {
		writeField(&top, "Content-Transfer-Encoding", "8bit")
	}
	top.WriteString("\r\n")
	// The preamble is what clients without MIME support display.
	top.WriteString("This is a MIME-encapsulated message.\r\n\r\n")
	if _, err := bw.Write(top.Bytes()); err != nil {
		return err
	}

	mw := multipart.NewWriter(bw)
	if err := mw.SetBoundary(boundary); err != nil {
		return err
	}
	headersCTE := "7bit"
	if eightBit {
		headersCTE = "8bit"
	}
	parts := []struct {
		header textproto.MIMEHeader
		body   []byte
	}{
		{textproto.MIMEHeader{
			"Content-Type":              {"text/plain; charset=utf-8"},
			"Content-Transfer-Encoding": {"quoted-printable"},
			"Content-Description":       {"Notification"},
		}, human},
		{textproto.MIMEHeader{
			"Content-Type":              {"message/delivery-status"},
			"Content-Transfer-Encoding": {"7bit"},
			"Content-Description":       {"Delivery report"},
		}, status},
		{textproto.MIMEHeader{
			"Content-Type":              {"text/rfc822-headers"},
			"Content-Transfer-Encoding": {headersCTE},
			"Content-Description":       {"Headers of the original message"},
		}, headers.Bytes()},
	}
	for _, p := range parts {
		pw, err := mw.CreatePart(p.header)
		if err != nil {
			return err
		}
		if _, err := pw.Write(p.body); err != nil {
			return err
		}
	}
	if err := mw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// recipient is a Recipient after sanitizing, ready to print.
type recipient struct {
	addrType, addr string // for Final-Recipient
	display        string // for the human-readable part
	action         string
	status         string
	remote         string
	diagnostic     string // 7-bit, for Diagnostic-Code
	diagDisplay    string // UTF-8, for the human-readable part
}

func normalizeRecipient(rc Recipient) recipient {
	var n recipient
	addr := stripBrackets(singleLine(rc.Address, maxAddr))
	n.display = addr
	if isASCII(addr) {
		n.addrType, n.addr = "rfc822", addr
	} else {
		// RFC 6533 keeps internationalized addresses 7-bit in a plain
		// message/delivery-status part.
		n.addrType, n.addr = "utf-8", utf8AddrXtext(addr)
	}

	n.action = strings.ToLower(asciiLine(rc.Action, 20))
	switch n.action {
	case "failed", "delayed", "delivered", "relayed", "expanded":
	default:
		n.action = "failed"
	}

	n.status = asciiLine(rc.Status, 20)
	if !statusRE.MatchString(n.status) {
		// Status is mandatory; a class-only code is still truthful.
		n.status = "5.0.0"
		if n.action == "delayed" {
			n.status = "4.0.0"
		}
	}

	n.remote = asciiLine(rc.RemoteMTA, maxHost)
	n.diagnostic = asciiLine(rc.Diagnostic, maxDiagnostic)
	n.diagDisplay = singleLine(rc.Diagnostic, maxDiagnostic)
	return n
}

func humanPart(r Report, rcpts []recipient, host string, allDelayed, haveHeaders bool) ([]byte, error) {
	var text strings.Builder
	para := func(s string) {
		text.WriteString(wrap(s, textWidth))
		text.WriteString("\n\n")
	}
	para("This is the mail system (smtpshim) at host " + host + ".")
	reason := singleLine(r.Reason, maxText)
	if reason == "" {
		reason = "Your message could not be delivered."
		if allDelayed {
			reason = "Your message has not been delivered yet; smtpshim is still trying."
		}
	}
	para(reason)
	if hint := singleLine(r.Hint, maxText); hint != "" {
		para(sentence(hint))
	}
	if allDelayed {
		text.WriteString("Delivery is delayed for:\n")
	} else {
		text.WriteString("Affected recipients:\n")
	}
	for _, rc := range rcpts {
		text.WriteString("\n    " + rc.display + "\n")
		state := "failed permanently"
		if rc.action == "delayed" {
			state = "delayed, still being retried"
		} else if rc.action != "failed" {
			state = rc.action
		}
		text.WriteString(wrapIndented("Status: "+state+" ("+rc.status+")", "        "))
		if rc.remote != "" {
			text.WriteString(wrapIndented("Server: "+rc.remote, "        "))
		}
		if rc.diagDisplay != "" {
			text.WriteString(wrapIndented("Reply: "+rc.diagDisplay, "        "))
		}
	}
	if haveHeaders {
		text.WriteString("\n")
		para("The headers of your original message are attached; the message itself is not included.")
	}

	// Quoted-printable keeps the part 7-bit and every line short whatever
	// the reason text contains, while staying readable in old clients.
	var buf bytes.Buffer
	qp := quotedprintable.NewWriter(&buf)
	if _, err := io.WriteString(qp, text.String()); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func statusPart(r Report, rcpts []recipient, host string) []byte {
	var b bytes.Buffer
	writeField(&b, "Reporting-MTA", "dns; "+host)
	if id := asciiLine(r.EnvelopeID, maxEnvID); id != "" {
		writeField(&b, "Original-Envelope-Id", id)
	}
	if !r.ArrivalDate.IsZero() {
		writeField(&b, "Arrival-Date", r.ArrivalDate.Format(time.RFC1123Z))
	}
	for _, rc := range rcpts {
		b.WriteString("\r\n")
		writeField(&b, "Final-Recipient", rc.addrType+"; "+rc.addr)
		writeField(&b, "Action", rc.action)
		writeField(&b, "Status", rc.status)
		if rc.remote != "" {
			writeField(&b, "Remote-MTA", "dns; "+rc.remote)
		}
		if rc.diagnostic != "" {
			writeField(&b, "Diagnostic-Code", "smtp; "+rc.diagnostic)
		}
	}
	return b.Bytes()
}

// pickBoundary returns a boundary that occurs in none of the part bodies.
// Starting with "=_" makes it impossible in quoted-printable text; the
// check covers the verbatim original headers and pathological inputs.
func pickBoundary(bodies ...[]byte) string {
	for {
		var rnd [12]byte
		_, _ = rand.Read(rnd[:]) // never fails since Go 1.24
		b := "=_smtpshim_" + hex.EncodeToString(rnd[:])
		clash := false
		for _, body := range bodies {
			if bytes.Contains(body, []byte(b)) {
				clash = true
				break
			}
		}
		if !clash {
			return b
		}
	}
}

// copyHeaders copies the header section of src into dst with CRLF line
// endings, stopping at the first empty line, at EOF, or before the line
// that would take dst past limit. It reads at most about limit bytes from
// src, so the body of a huge message is never touched.
func copyHeaders(dst *bytes.Buffer, src io.Reader, limit int) (eightBit bool, err error) {
	br := bufio.NewReaderSize(src, 4096)
	var line []byte
	for {
		line = line[:0]
		room := limit - dst.Len() + 2 // +2: the input's own line ending
		var rerr error
		for {
			frag, e := br.ReadSlice('\n')
			if len(line)+len(frag) > room {
				// Stop rather than truncate mid-line: a cut header line
				// is worse than a missing one.
				return eightBit, nil
			}
			line = append(line, frag...)
			if e == bufio.ErrBufferFull {
				continue
			}
			rerr = e
			break
		}
		if rerr != nil && rerr != io.EOF {
			return eightBit, rerr
		}
		content := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if len(content) == 0 {
			return eightBit, nil
		}
		out := headerLine(content)
		if dst.Len()+len(out) > limit {
			return eightBit, nil
		}
		dst.Write(out)
		for _, c := range content {
			if c >= 0x80 {
				eightBit = true
				break
			}
		}
		if rerr == io.EOF {
			return eightBit, nil
		}
	}
}

// headerLine makes one physical line of the original safe to embed: stray
// control characters (bare CR, NUL, ...) become spaces and over-long lines
// are folded, inserting a space, so the part obeys the 998-octet limit.
func headerLine(content []byte) []byte {
	clean := make([]byte, len(content))
	for i, c := range content {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			c = ' '
		}
		clean[i] = c
	}
	out := make([]byte, 0, len(clean)+len(clean)/maxLine*3+2)
	limit := maxLine
	for len(clean) > limit {
		cut := limit
		for cut > limit/2 && !utf8.RuneStart(clean[cut]) {
			cut--
		}
		out = append(out, clean[:cut]...)
		out = append(out, "\r\n "...)
		clean = clean[cut:]
		limit = maxLine - 1
	}
	out = append(out, clean...)
	return append(out, "\r\n"...)
}

// writeField writes "Name: value" folded at spaces near 78 columns. Runs
// of white space collapse to one space, so folding never leaves a blank
// continuation line; words longer than maxWord are split (which inserts a
// space) so no line can pass 998 octets. value must already be free of CR
// and LF.
func writeField(b *bytes.Buffer, name, value string) {
	b.WriteString(name)
	b.WriteString(":")
	lineLen := len(name) + 1
	wordsOnLine := 0
	for _, w := range strings.Fields(value) {
		for _, piece := range splitLong(w, maxWord) {
			if wordsOnLine > 0 && lineLen+1+len(piece) > foldAt {
				b.WriteString("\r\n")
				lineLen = 0
			}
			b.WriteString(" ")
			b.WriteString(piece)
			lineLen += 1 + len(piece)
			wordsOnLine++
		}
	}
	b.WriteString("\r\n")
}

// splitLong cuts s into pieces of at most n bytes, at rune boundaries.
func splitLong(s string, n int) []string {
	if len(s) <= n {
		return []string{s}
	}
	var out []string
	for len(s) > n {
		cut := n
		for cut > n/2 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		out = append(out, s[:cut])
		s = s[cut:]
	}
	return append(out, s)
}

// singleLine makes s safe for one header or text line: valid UTF-8, every
// control character (CR, LF, NUL, TAB, ...) a space, trimmed, at most max
// bytes.
func singleLine(s string, max int) string {
	// Cut early so a megabyte of garbage costs no more than a short reply;
	// the slack covers leading space and the final rune-boundary trim.
	if len(s) > 2*max+8 {
		s = s[:2*max+8]
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	return truncate(strings.TrimSpace(s), max)
}

// asciiLine is singleLine restricted to 7-bit: non-ASCII becomes '?', as
// message/delivery-status must stay 7-bit.
func asciiLine(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r >= 0x80 {
			return '?'
		}
		return r
	}, singleLine(s, max*4))
	return truncate(s, max)
}

func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.TrimSpace(s[:cut])
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func stripBrackets(s string) string {
	if len(s) >= 2 && s[0] == '<' && s[len(s)-1] == '>' {
		return strings.TrimSpace(s[1 : len(s)-1])
	}
	return s
}

// utf8AddrXtext encodes an address as RFC 6533 utf-8-addr-xtext.
func utf8AddrXtext(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r > 0x20 && r < 0x7f && r != '+' && r != '\\' && r != '=' {
			b.WriteRune(r)
			continue
		}
		fmt.Fprintf(&b, `\x{%X}`, r)
	}
	return b.String()
}

// hostName reduces s to characters valid in a host name or address
// literal, because it ends up in Message-ID and Reporting-MTA where spaces
// or brackets from a misconfigured name would break parsing.
func hostName(s string) string {
	h := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9',
			r == '.', r == '-', r == '_', r == '[', r == ']', r == ':':
			return r
		}
		return -1
	}, s)
	h = truncate(strings.Trim(h, ".-"), maxHost)
	if h == "" {
		return "localhost"
	}
	return h
}

// splitAddr splits a cleaned address into local part and a domain made of
// host-name characters (plus non-ASCII, for internationalized domains).
func splitAddr(addr string) (local, domain string, ok bool) {
	at := strings.LastIndex(addr, "@")
	if at <= 0 {
		return "", "", false
	}
	local = addr[:at]
	domain = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9',
			r == '.', r == '-', r == '_', r == '[', r == ']', r == ':', r >= 0x80:
			return r
		}
		return -1
	}, addr[at+1:])
	if domain == "" {
		return "", "", false
	}
	return local, domain, true
}

func fromHeader(r Report, host string) string {
	if local, domain, ok := splitAddr(stripBrackets(singleLine(r.From, maxAddr))); ok {
		return (&mail.Address{Name: "Mail Delivery System", Address: local + "@" + domain}).String()
	}
	domain := host
	if _, d, ok := splitAddr(stripBrackets(singleLine(r.To, maxAddr))); ok {
		domain = d
	}
	return (&mail.Address{Name: "Mail Delivery System", Address: "MAILER-DAEMON@" + domain}).String()
}

func toHeader(to string) string {
	if local, domain, ok := splitAddr(stripBrackets(singleLine(to, maxAddr))); ok {
		return (&mail.Address{Address: local + "@" + domain}).String()
	}
	// An unusable address still needs a syntactically valid To header;
	// the envelope, not this header, decides where the bounce goes.
	return "undisclosed-recipients:;"
}

func messageID(given, host string, date time.Time) string {
	id := strings.ReplaceAll(asciiLine(given, maxMessageID), " ", "")
	id = strings.TrimSuffix(strings.TrimPrefix(id, "<"), ">")
	if strings.ContainsAny(id, "<>") {
		id = ""
	}
	if id == "" {
		var rnd [8]byte
		_, _ = rand.Read(rnd[:])
		id = "dsn." + date.UTC().Format("20060102150405") + "." + hex.EncodeToString(rnd[:]) + "@" + host
	}
	return "<" + id + ">"
}

// sentence capitalises and terminates s, because hints are written as
// lower-case clauses for log lines but read as prose in a bounce.
func sentence(s string) string {
	if s == "" {
		return s
	}
	if c := s[0]; c >= 'a' && c <= 'z' {
		s = string(c-'a'+'A') + s[1:]
	}
	if !strings.ContainsRune(".!?", rune(s[len(s)-1])) {
		s += "."
	}
	return s
}

// wrap breaks s into lines of at most width bytes at spaces; longer words
// stay whole and quoted-printable soft breaks take care of them.
func wrap(s string, width int) string {
	var b strings.Builder
	lineLen := 0
	for _, w := range strings.Fields(s) {
		if lineLen > 0 && lineLen+1+len(w) > width {
			b.WriteString("\n")
			lineLen = 0
		}
		if lineLen > 0 {
			b.WriteString(" ")
			lineLen++
		}
		b.WriteString(w)
		lineLen += len(w)
	}
	return b.String()
}

func wrapIndented(s, indent string) string {
	lines := strings.Split(wrap(s, textWidth-len(indent)-2), "\n")
	return indent + strings.Join(lines, "\n"+indent+"  ") + "\n"
}
