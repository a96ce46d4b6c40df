package listener

import (
	"bytes"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
)

// go-smtp answers some commands itself, in its own words ("Roger,
// accepting mail from <x>"). Those reach the user's mail client and its
// log, so smtpshim rewrites them on the way out into its own, and notes
// every refusal, whoever made it, for the log.

// stockReplies maps go-smtp's fixed replies to smtpshim's; the codes stay
// as they are, only the words change. A reply line (without its CRLF)
// matches when it is prefix, then a middle part, then suffix; $1 in repl
// is the middle part (an address, or a number where digits is set). A
// stock reply without $1 must match whole. Plain string comparisons:
// three of these lines go by with every message.
var stockReplies = []stockReply{
	{"250 2.0.0 Roger, accepting mail from <", ">", false, "250 2.0.0 Sender <$1> OK"},
	{"250 2.0.0 I'll make sure <", "> gets this", false, "250 2.0.0 Recipient <$1> OK"},
	{"501 5.5.2 Was expecting MAIL arg syntax of FROM:<address>", "", false,
		"501 5.5.2 Syntax error: write MAIL FROM:<you@example.com>, a full address with its domain, in angle brackets"},
	{"501 5.5.2 Was expecting RCPT arg syntax of TO:<address>", "", false,
		"501 5.5.2 Syntax error: write RCPT TO:<someone@example.com>, a full address with its domain, in angle brackets"},
	{"452 4.5.3 Maximum limit of ", " recipients reached", true,
		"452 4.5.3 Too many recipients: smtpshim takes at most $1 per message (max_recipients); send the others in another message"},
	{"552 5.3.4 Max message size exceeded", "", false,
		"552 5.3.4 The message is larger than smtpshim's max_message_size; it was not sent"},
	{"354 Go ahead. End your data with <CR><LF>.<CR><LF>", "", false,
		"354 Send the message; end it with a line holding only a dot"},
	{"502 5.5.1 Missing MAIL FROM command.", "", false, "502 5.5.1 Give MAIL FROM first"},
	{"502 5.5.1 Missing RCPT TO command.", "", false, "502 5.5.1 Give at least one RCPT TO first"},
	{"500 5.4.0 Too long line, closing connection", "", false,
		"500 5.4.0 Line too long; closing the connection"},
}

type stockReply struct {
	prefix, suffix string
	digits         bool
	repl           string
}

// rewrite returns line in smtpshim's words, if it is this stock reply.
func (s stockReply) rewrite(line string) (string, bool) {
	rest, ok := strings.CutPrefix(line, s.prefix)
	if !ok {
		return line, false
	}
	mid, ok := strings.CutSuffix(rest, s.suffix)
	if !ok {
		return line, false
	}
	if !strings.Contains(s.repl, "$1") {
		if mid != "" {
			return line, false
		}
		return s.repl, true
	}
	if s.digits && (mid == "" || strings.Trim(mid, "0123456789") != "") {
		return line, false
	}
	return strings.Replace(s.repl, "$1", mid, 1), true
}

// stockMarkers are substrings of every stock reply, to skip the regular
// expressions on the many writes that hold none.
var stockMarkers = [][]byte{[]byte("Roger, accepting"), []byte("I'll make sure"), []byte("Was expecting"),
	[]byte("Maximum limit of"), []byte("Max message size"), []byte("Go ahead."), []byte("Missing "), []byte("Too long line")}

// rewriteReplies returns p with go-smtp's stock replies in smtpshim's
// words, and the final lines of the refusals (4xx and 5xx) in it. p holds
// whole reply lines, as go-smtp writes one reply at a time.
func rewriteReplies(p []byte) ([]byte, []string) {
	var refusals []string
	stock := false
	for _, m := range stockMarkers {
		if bytes.Contains(p, m) {
			stock = true
			break
		}
	}
	if !stock && !mayRefuse(p) {
		return p, nil
	}
	if !bytes.HasSuffix(p, []byte("\r\n")) {
		return p, nil // not whole lines: leave it alone
	}
	lines := strings.SplitAfter(string(p), "\r\n")
	var out strings.Builder
	for _, l := range lines {
		line := strings.TrimSuffix(l, "\r\n")
		if line == "" {
			continue
		}
		if stock {
			for _, s := range stockReplies {
				if l, ok := s.rewrite(line); ok {
					line = l
					break
				}
			}
		}
		if len(line) >= 4 && (line[0] == '4' || line[0] == '5') && line[3] == ' ' {
			refusals = append(refusals, line)
		}
		out.WriteString(line)
		out.WriteString("\r\n")
	}
	return []byte(out.String()), refusals
}

// mayRefuse is true when a reply line in p starts with 4 or 5.
func mayRefuse(p []byte) bool {
	for len(p) > 0 {
		if p[0] == '4' || p[0] == '5' {
			return true
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			return false
		}
		p = p[i+1:]
	}
	return false
}

// refusalReason sorts a refusal reply into the reason the log gives.
func refusalReason(line string) (code int, reason string) {
	code, _ = strconv.Atoi(line[:3])
	rest := line[4:]
	enh := ""
	if f := strings.SplitN(rest, " ", 2); len(f) == 2 && strings.Count(f[0], ".") == 2 {
		enh, rest = f[0], f[1]
	}
	lower := strings.ToLower(rest)
	switch {
	case code == 552 || enh == "5.3.4" || strings.Contains(lower, "max_message_size"):
		return code, "too big"
	case strings.Contains(lower, "line too long") || strings.Contains(lower, "too long line"):
		return code, "line too long"
	case enh == "4.4.2" || strings.Contains(lower, "timed out"):
		return code, "timed out"
	case enh == "4.5.3" || strings.Contains(lower, "too many recipients"):
		return code, "over the recipient limit"
	case enh == "5.7.1" && strings.Contains(lower, "sender"), enh == "5.1.7", enh == "5.1.8":
		return code, "refused sender"
	case code == 500 || code == 501 || code == 503 || strings.HasPrefix(enh, "5.5."):
		return code, "bad syntax"
	case enh == "4.7.1" && strings.Contains(lower, "limit"):
		return code, "over the sender's rate limit"
	case code == 530 || code == 535:
		return code, "local login required or refused"
	case enh == "4.3.1" || enh == "4.3.0":
		return code, "smtpshim could not store the message"
	}
	return code, "refused"
}

// replyWatch sits on one client connection's writes: it puts go-smtp's
// stock replies into smtpshim's words and logs every refusal the client
// gets, with the client, the sender, the code and the reason, so that no
// message goes unsent without a trace in the log, whoever refused it. It
// sees plaintext only: on a TLS session the writes are already encrypted,
// and pass through untouched.
type replyWatch struct {
	log    *slog.Logger
	client string
	from   atomic.Pointer[string]
}

// setFrom records the sender of the transaction under way ("" after it).
func (w *replyWatch) setFrom(from string) { w.from.Store(&from) }

func (w *replyWatch) sender() string {
	if p := w.from.Load(); p != nil {
		return *p
	}
	return ""
}

// write sends p on c, rewritten, and logs its refusals.
func (w *replyWatch) write(c net.Conn, p []byte) (int, error) {
	if len(p) == 0 || p[0] < '2' || p[0] > '5' {
		// Not a reply: a TLS record, or nothing.
		return c.Write(p)
	}
	out, refusals := rewriteReplies(p)
	for _, r := range refusals {
		w.refused(r)
	}
	if _, err := c.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// refused logs one refusal reply line.
func (w *replyWatch) refused(reply string) {
	code, why := refusalReason(reply)
	w.log.Warn("refused", "client", w.client, "from", w.sender(), "code", code, "reason", why, "reply", reply)
}
