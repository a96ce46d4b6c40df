package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"runtime"
	"strings"
	"testing"
	"time"
)

var (
	testArrival = time.Date(2024, 3, 1, 9, 30, 0, 0, time.UTC)
	testDate    = time.Date(2024, 3, 1, 9, 31, 0, 0, time.UTC)
)

const testOriginal = "Return-Path: <alice@example.com>\r\n" +
	"From: Alice <alice@example.com>\r\n" +
	"To: Bob <bob@example.net>\r\n" +
	"Subject: Quarterly figures\r\n" +
	"Message-ID: <orig-1@example.com>\r\n" +
	"\r\n" +
	"SECRET BODY TEXT that must never be quoted in a bounce.\r\n"

func baseReport() Report {
	return Report{
		ReportingMTA: "laptop.example.com",
		From:         "MAILER-DAEMON@example.com",
		To:           "alice@example.com",
		EnvelopeID:   "QQ314159",
		ArrivalDate:  testArrival,
		Reason:       "The provider refused the message permanently.",
		Hint:         "the recipient address does not exist at the receiving end: check it for typos",
		Recipients: []Recipient{{
			Address:    "bob@example.net",
			Action:     "failed",
			Status:     "5.1.1",
			RemoteMTA:  "smtp.office365.com",
			Diagnostic: "550 5.1.1 User unknown",
		}},
		MessageID: "<dsn-1@laptop.example.com>",
		Date:      testDate,
	}
}

// parsedDSN is the output taken apart the way a mail client would.
type parsedDSN struct {
	header     mail.Header
	parts      []parsedPart
	perMessage textproto.MIMEHeader
	perRcpt    []textproto.MIMEHeader
}

type parsedPart struct {
	header textproto.MIMEHeader
	raw    []byte
	body   []byte // transfer-decoded
}

func build(t testing.TB, r Report, original io.Reader) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := Build(&out, r, original); err != nil {
		t.Fatalf("Build: %v", err)
	}
	return out.Bytes()
}

// checkLines enforces the wire rules: CRLF everywhere, nothing bare, no
// line over 998 octets.
func checkLines(t testing.TB, out []byte) {
	t.Helper()
	if !bytes.HasSuffix(out, []byte("\r\n")) {
		t.Fatalf("output does not end in CRLF")
	}
	for i, line := range bytes.Split(out[:len(out)-2], []byte("\r\n")) {
		if n := len(line); n > maxLine {
			t.Fatalf("line %d is %d octets", i+1, n)
		}
		if j := bytes.IndexAny(line, "\r\n"); j >= 0 {
			t.Fatalf("line %d has a bare CR or LF: %q", i+1, line)
		}
	}
}

func parseDSN(t testing.TB, out []byte) *parsedDSN {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("not a message: %v", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type: %v", err)
	}
	if mt != "multipart/report" || params["report-type"] != "delivery-status" || params["boundary"] == "" {
		t.Fatalf("Content-Type = %q %v, want multipart/report; report-type=delivery-status", mt, params)
	}
	p := &parsedDSN{header: msg.Header}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("part %d: %v", len(p.parts)+1, err)
		}
		raw, err := io.ReadAll(part)
		if err != nil {
			t.Fatalf("part %d: %v", len(p.parts)+1, err)
		}
		pp := parsedPart{header: part.Header, raw: raw, body: raw}
		if strings.EqualFold(part.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
			if pp.body, err = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw))); err != nil {
				t.Fatalf("part %d: bad quoted-printable: %v", len(p.parts)+1, err)
			}
		}
		p.parts = append(p.parts, pp)
	}
	if len(p.parts) != 3 {
		t.Fatalf("got %d parts, want 3", len(p.parts))
	}
	wantTypes := []string{"text/plain", "message/delivery-status", "text/rfc822-headers"}
	for i, want := range wantTypes {
		if mt, _, _ := mime.ParseMediaType(p.parts[i].header.Get("Content-Type")); mt != want {
			t.Fatalf("part %d is %q, want %q", i+1, mt, want)
		}
	}
	for i, c := range p.parts[1].raw {
		if c >= 0x80 || c == 0 {
			t.Fatalf("delivery-status byte %d is %#x: the part must be 7-bit", i, c)
		}
	}
	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(p.parts[1].raw)))
	for {
		h, err := tr.ReadMIMEHeader()
		if len(h) > 0 {
			if p.perMessage == nil {
				p.perMessage = h
			} else {
				p.perRcpt = append(p.perRcpt, h)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("delivery-status fields: %v", err)
		}
	}
	return p
}

func TestBuildStructure(t *testing.T) {
	twoRcpts := baseReport()
	twoRcpts.Recipients = append(twoRcpts.Recipients, Recipient{
		Address: "<carol@example.org>", Action: "delayed", Status: "4.4.1", Diagnostic: "",
	})
	delayed := baseReport()
	delayed.Reason = "smtpshim could not deliver the message for 5 days."
	delayed.Recipients[0].Action = "Delayed"
	delayed.Recipients[0].Status = "4.7.0"
	minimal := Report{To: "alice@example.com", Recipients: []Recipient{{Address: "bob@example.net", Action: "failed", Status: "5.0.0"}}}

	tests := []struct {
		name        string
		report      Report
		wantSubject string
		wantFrom    string
		wantRcpts   []map[string]string
		wantMessage map[string]string
	}{
		{
			name: "one failed recipient", report: baseReport(),
			wantSubject: "Undelivered Mail Returned to Sender",
			wantFrom:    "MAILER-DAEMON@example.com",
			wantMessage: map[string]string{
				"Reporting-Mta":        "dns; laptop.example.com",
				"Original-Envelope-Id": "QQ314159",
				"Arrival-Date":         "Fri, 01 Mar 2024 09:30:00 +0000",
			},
			wantRcpts: []map[string]string{{
				"Final-Recipient": "rfc822; bob@example.net",
				"Action":          "failed",
				"Status":          "5.1.1",
				"Remote-Mta":      "dns; smtp.office365.com",
				"Diagnostic-Code": "smtp; 550 5.1.1 User unknown",
			}},
		},
		{
			name: "mixed failed and delayed", report: twoRcpts,
			wantSubject: "Undelivered Mail Returned to Sender",
			wantFrom:    "MAILER-DAEMON@example.com",
			wantRcpts: []map[string]string{
				{"Final-Recipient": "rfc822; bob@example.net", "Action": "failed", "Status": "5.1.1"},
				{"Final-Recipient": "rfc822; carol@example.org", "Action": "delayed", "Status": "4.4.1", "Remote-Mta": "", "Diagnostic-Code": ""},
			},
		},
		{
			name: "all delayed", report: delayed,
			wantSubject: "Delayed Mail (still being retried)",
			wantFrom:    "MAILER-DAEMON@example.com",
			wantRcpts:   []map[string]string{{"Action": "delayed", "Status": "4.7.0"}},
		},
		{
			name: "minimal report gets defaults", report: minimal,
			wantSubject: "Undelivered Mail Returned to Sender",
			wantFrom:    "MAILER-DAEMON@example.com", // from the sender's domain
			wantMessage: map[string]string{"Reporting-Mta": "dns; localhost", "Original-Envelope-Id": "", "Arrival-Date": ""},
			wantRcpts:   []map[string]string{{"Final-Recipient": "rfc822; bob@example.net", "Remote-Mta": "", "Diagnostic-Code": ""}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := build(t, tt.report, strings.NewReader(testOriginal))
			checkLines(t, out)
			p := parseDSN(t, out)

			if got := p.header.Get("Subject"); got != tt.wantSubject {
				t.Errorf("Subject = %q, want %q", got, tt.wantSubject)
			}
			from, err := mail.ParseAddress(p.header.Get("From"))
			if err != nil || from.Address != tt.wantFrom {
				t.Errorf("From = %q (%v), want %s", p.header.Get("From"), err, tt.wantFrom)
			}
			to, err := mail.ParseAddress(p.header.Get("To"))
			if err != nil || to.Address != "alice@example.com" {
				t.Errorf("To = %q (%v)", p.header.Get("To"), err)
			}
			if got := p.header.Get("Auto-Submitted"); got != "auto-replied" {
				t.Errorf("Auto-Submitted = %q", got)
			}
			if got := p.header.Get("MIME-Version"); got != "1.0" {
				t.Errorf("MIME-Version = %q", got)
			}
			if _, err := p.header.Date(); err != nil {
				t.Errorf("Date: %v", err)
			}
			if id := p.header.Get("Message-ID"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, ">") || !strings.Contains(id, "@") {
				t.Errorf("Message-ID = %q", id)
			}

			for k, want := range tt.wantMessage {
				if got := p.perMessage.Get(k); got != want {
					t.Errorf("per-message %s = %q, want %q", k, got, want)
				}
			}
			if len(p.perRcpt) != len(tt.report.Recipients) {
				t.Fatalf("%d per-recipient blocks, want %d", len(p.perRcpt), len(tt.report.Recipients))
			}
			for i, fields := range tt.wantRcpts {
				for k, want := range fields {
					if got := p.perRcpt[i].Get(k); got != want {
						t.Errorf("recipient %d %s = %q, want %q", i+1, k, got, want)
					}
				}
			}

			human := string(p.parts[0].body)
			// Fields/Join undoes the word wrapping; the hint's first letter
			// is capitalised in the bounce, hence the case folding.
			flat := strings.ToLower(strings.Join(strings.Fields(human), " "))
			for _, want := range []string{tt.report.Reason, tt.report.Hint, "bob@example.net"} {
				if !strings.Contains(flat, strings.ToLower(want)) {
					t.Errorf("human-readable part lacks %q:\n%s", want, human)
				}
			}

			orig := string(p.parts[2].raw)
			if !strings.Contains(orig, "Subject: Quarterly figures\r\n") || !strings.Contains(orig, "Message-ID: <orig-1@example.com>\r\n") {
				t.Errorf("original headers missing:\n%s", orig)
			}
			if strings.Contains(string(out), "SECRET BODY") {
				t.Errorf("the original body leaked into the bounce")
			}
		})
	}
}

func TestBuildGeneratedMessageID(t *testing.T) {
	tests := []struct {
		name, given, want string
	}{
		{"given with brackets", "<a.b@host>", "<a.b@host>"},
		{"given without brackets", "a.b@host", "<a.b@host>"},
		{"empty generates", "", ""},
		{"garbage regenerates", "<x<y>", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := baseReport()
			r.MessageID = tt.given
			p := parseDSN(t, build(t, r, nil))
			got := p.header.Get("Message-ID")
			if tt.want != "" {
				if got != tt.want {
					t.Errorf("Message-ID = %q, want %q", got, tt.want)
				}
				return
			}
			if !strings.HasPrefix(got, "<dsn.") || !strings.HasSuffix(got, "@laptop.example.com>") {
				t.Errorf("generated Message-ID = %q", got)
			}
		})
	}
}

func TestBuildHeaderInjection(t *testing.T) {
	payloads := []string{
		"x\r\nBcc: evil@example.com",
		"x\nX-Injected: yes",
		"x\rX-Injected: yes",
		"x\x00\r\n\r\nX-Injected: yes",
		"x\r\n\r\n--=_smtpshim_\r\nContent-Type: text/html\r\nX-Injected: yes\r\n\r\n<b>hi</b>",
		"x\u2028X-Injected: yes\u0085Bcc: evil@example.com",
	}
	fields := map[string]func(r *Report, v string){
		"ReportingMTA": func(r *Report, v string) { r.ReportingMTA = v },
		"From":         func(r *Report, v string) { r.From = v },
		"To":           func(r *Report, v string) { r.To = v },
		"EnvelopeID":   func(r *Report, v string) { r.EnvelopeID = v },
		"Reason":       func(r *Report, v string) { r.Reason = v },
		"Hint":         func(r *Report, v string) { r.Hint = v },
		"MessageID":    func(r *Report, v string) { r.MessageID = v },
		"Address":      func(r *Report, v string) { r.Recipients[0].Address = v },
		"Action":       func(r *Report, v string) { r.Recipients[0].Action = v },
		"Status":       func(r *Report, v string) { r.Recipients[0].Status = v },
		"RemoteMTA":    func(r *Report, v string) { r.Recipients[0].RemoteMTA = v },
		"Diagnostic":   func(r *Report, v string) { r.Recipients[0].Diagnostic = v },
	}
	for name, set := range fields {
		for i, payload := range payloads {
			t.Run(fmt.Sprintf("%s/%d", name, i), func(t *testing.T) {
				r := baseReport()
				set(&r, payload)
				out := build(t, r, strings.NewReader(testOriginal))
				checkLines(t, out)
				p := parseDSN(t, out)
				headers := []textproto.MIMEHeader{textproto.MIMEHeader(p.header), p.perMessage}
				for _, part := range p.parts {
					headers = append(headers, part.header)
				}
				headers = append(headers, p.perRcpt...)
				for _, h := range headers {
					for _, bad := range []string{"Bcc", "X-Injected"} {
						if _, ok := h[bad]; ok {
							t.Errorf("%s header injected via %s: %v", bad, name, h)
						}
					}
				}
				if len(p.perRcpt) != 1 {
					t.Errorf("%d per-recipient blocks, want 1", len(p.perRcpt))
				}
			})
		}
	}
}

func TestBuildFieldSanitizing(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(r *Report)
		field string // per-recipient field to check
		want  string
	}{
		{"non-ASCII diagnostic stays 7-bit", func(r *Report) { r.Recipients[0].Diagnostic = "550 5.1.1 Empfänger unbekannt ☹" },
			"Diagnostic-Code", "smtp; 550 5.1.1 Empf?nger unbekannt ?"},
		{"invalid UTF-8 diagnostic", func(r *Report) { r.Recipients[0].Diagnostic = "550 \xff\xfe bad" },
			"Diagnostic-Code", "smtp; 550 ? bad"},
		{"multi-line reply joined", func(r *Report) { r.Recipients[0].Diagnostic = "550-5.7.1 first\n550 5.7.1 second" },
			"Diagnostic-Code", "smtp; 550-5.7.1 first 550 5.7.1 second"},
		{"internationalized address", func(r *Report) { r.Recipients[0].Address = "jörg+x@exämple.de" },
			"Final-Recipient", `utf-8; j\x{F6}rg\x{2B}x@ex\x{E4}mple.de`},
		{"invalid status falls back for failed", func(r *Report) { r.Recipients[0].Status = "550" },
			"Status", "5.0.0"},
		{"invalid status falls back for delayed", func(r *Report) { r.Recipients[0].Status = "x"; r.Recipients[0].Action = "delayed" },
			"Status", "4.0.0"},
		{"unknown action becomes failed", func(r *Report) { r.Recipients[0].Action = "bounced" },
			"Action", "failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := baseReport()
			tt.edit(&r)
			out := build(t, r, nil)
			checkLines(t, out)
			p := parseDSN(t, out)
			if got := p.perRcpt[0].Get(tt.field); got != tt.want {
				t.Errorf("%s = %q, want %q", tt.field, got, tt.want)
			}
		})
	}
}

func TestBuildLongDiagnostic(t *testing.T) {
	words := strings.Repeat("word ", 500) // long enough to fold, short of the cap
	tests := []struct {
		name string
		diag string
		want string // after unfolding; "" = just check the length rules
	}{
		{"many words fold", "550 5.7.1 " + words, "smtp; 550 5.7.1 " + strings.TrimSpace(words)},
		{"one huge token", "550 " + strings.Repeat("x", 3000), ""},
		{"capped", strings.Repeat("y ", 10000), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := baseReport()
			r.Recipients[0].Diagnostic = tt.diag
			out := build(t, r, nil)
			checkLines(t, out)
			p := parseDSN(t, out)
			got := p.perRcpt[0].Get("Diagnostic-Code")
			if tt.want != "" && got != tt.want {
				t.Errorf("Diagnostic-Code unfolds to %d bytes, want %d", len(got), len(tt.want))
			}
			if len(got) > maxDiagnostic+200 {
				t.Errorf("Diagnostic-Code is %d bytes; the cap is not applied", len(got))
			}
		})
	}
}

func TestBuildOriginalHeaders(t *testing.T) {
	tests := []struct {
		name        string
		original    io.Reader
		want        string // exact text/rfc822-headers part
		wantEight   bool
		wantMaxLine bool // only check line rules, not exact text
	}{
		{"crlf", strings.NewReader(testOriginal), "Return-Path: <alice@example.com>\r\nFrom: Alice <alice@example.com>\r\nTo: Bob <bob@example.net>\r\nSubject: Quarterly figures\r\nMessage-ID: <orig-1@example.com>\r\n", false, false},
		{"lf only", strings.NewReader("From: a@b\nSubject: hi\n\nbody\n"), "From: a@b\r\nSubject: hi\r\n", false, false},
		{"folded header kept", strings.NewReader("Subject: a\r\n long\r\n\r\nbody"), "Subject: a\r\n long\r\n", false, false},
		{"headers only, no final newline", strings.NewReader("From: a@b\r\nSubject: hi"), "From: a@b\r\nSubject: hi\r\n", false, false},
		{"empty", strings.NewReader(""), "", false, false},
		{"nil", nil, "", false, false},
		{"starts with blank line", strings.NewReader("\r\nFrom: a@b\r\n"), "", false, false},
		{"bare CR and NUL", strings.NewReader("Subject: a\rb\x00c\r\n\r\n"), "Subject: a b c\r\n", false, false},
		{"8-bit header", strings.NewReader("Subject: Grüße\r\n\r\n"), "Subject: Grüße\r\n", true, false},
		{"line over 998 octets", strings.NewReader("X-Long: " + strings.Repeat("z", 5000) + "\r\n\r\n"), "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := build(t, baseReport(), tt.original)
			checkLines(t, out)
			p := parseDSN(t, out)
			got := string(p.parts[2].raw)
			if !tt.wantMaxLine && got != tt.want {
				t.Errorf("headers part = %q, want %q", got, tt.want)
			}
			if tt.wantMaxLine && !strings.HasPrefix(got, "X-Long: zzz") {
				t.Errorf("long header lost: %.40q", got)
			}
			cte := p.parts[2].header.Get("Content-Transfer-Encoding")
			topCTE := p.header.Get("Content-Transfer-Encoding")
			if tt.wantEight && (cte != "8bit" || topCTE != "8bit") {
				t.Errorf("8-bit headers labelled %q (top %q), want 8bit", cte, topCTE)
			}
			if !tt.wantEight && (cte != "7bit" || topCTE != "") {
				t.Errorf("7-bit headers labelled %q (top %q)", cte, topCTE)
			}
		})
	}
}

// lazyOriginal produces a message on the fly so the test itself holds no
// large buffer, and counts how much of it Build pulls.
type lazyOriginal struct {
	headerBytes, totalBytes int
	pos, read               int
	blankDone               bool
	pending                 []byte
}

func (l *lazyOriginal) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(l.pending) == 0 {
			if l.pos >= l.totalBytes {
				break
			}
			l.pending = l.nextLine()
			l.pos += len(l.pending)
		}
		c := copy(p[n:], l.pending)
		l.pending = l.pending[c:]
		n += c
	}
	l.read += n
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (l *lazyOriginal) nextLine() []byte {
	switch {
	case l.pos < l.headerBytes:
		return fmt.Appendf(nil, "X-Filler-%08d: %s\r\n", l.pos, strings.Repeat("h", 60))
	case !l.blankDone:
		l.blankDone = true
		return []byte("\r\n")
	}
	return []byte("BODY-MARKER " + strings.Repeat("b", 60) + "\r\n")
}

func TestBuildLargeOriginal(t *testing.T) {
	tests := []struct {
		name                    string
		headerBytes, totalBytes int
	}{
		{"1 MB message with 100 KB of headers", 100 << 10, 1 << 20},
		{"16 MB message with 100 KB of headers", 100 << 10, 16 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := &lazyOriginal{headerBytes: tt.headerBytes, totalBytes: tt.totalBytes}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			var out bytes.Buffer
			if err := Build(&out, baseReport(), orig); err != nil {
				t.Fatal(err)
			}
			runtime.ReadMemStats(&after)

			if orig.read > maxHeaderBytes+8<<10 {
				t.Errorf("read %d bytes of the original; only the capped header section should be read", orig.read)
			}
			// A fixed bound, the same for 1 MB and 16 MB: reading the whole
			// original would blow through it in the larger case, and the
			// read count above already catches it in the smaller one.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
				t.Errorf("allocated %d bytes; memory must not grow with the original", alloc)
			}
			checkLines(t, out.Bytes())
			p := parseDSN(t, out.Bytes())
			if n := len(p.parts[2].raw); n > maxHeaderBytes || n < maxHeaderBytes-200 {
				t.Errorf("headers part is %d bytes, want just under the %d cap", n, maxHeaderBytes)
			}
			if bytes.Contains(out.Bytes(), []byte("BODY-MARKER")) {
				t.Error("body of the original leaked into the bounce")
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	readErr := errors.New("spool file vanished")
	tests := []struct {
		name     string
		report   Report
		original io.Reader
		w        io.Writer
		want     error
	}{
		{"no recipients", Report{To: "a@b"}, nil, io.Discard, ErrNoRecipients},
		{"original unreadable", baseReport(), io.MultiReader(strings.NewReader("From: a@b\r\n"), &failingReader{readErr}), io.Discard, readErr},
		{"writer fails", baseReport(), strings.NewReader(testOriginal), &failingWriter{}, errWrite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Build(tt.w, tt.report, tt.original)
			if !errors.Is(err, tt.want) {
				t.Errorf("Build error = %v, want %v", err, tt.want)
			}
		})
	}
}

type failingReader struct{ err error }

func (f *failingReader) Read([]byte) (int, error) { return 0, f.err }

var errWrite = errors.New("disk full")

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errWrite }
