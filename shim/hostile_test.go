package shim_test

// The hostile-client suite: the real engine and listener over TCP, driven
// by raw net.Conn clients that misbehave the way broken devices and
// attackers do. Every case asserts the exact reply and then proves the
// relay is still healthy: a legitimate message through a fresh connection
// arrives intact.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/internal/rig"
	"github.com/smtpshim/smtpshim/shim/internal/testbin"
	"github.com/smtpshim/smtpshim/shim/localcert"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

const (
	alice      = "alice@example.com" // a user-level account
	alicePW    = "alice-Upstream-pw-7Qx"
	domainUser = "relay@example.org" // the login of the @example.org domain account
	domainPW   = "relay-Upstream-pw-3Kz"
	bob        = "bob@example.net"
)

// hostileRig is one running engine with a simulated provider behind it.
type hostileRig struct {
	t       *testing.T
	eng     *shim.Engine
	sim     *upstreamsim.Server // the provider of every account but aliceSim's
	alice   *upstreamsim.Server // alice's provider: sim, unless hostileOpts.aliceSim
	cfg     *config.Config
	dir     string
	spool   string
	addr    string
	tlsAddr string
	localPW string // sent by healthy() when local AUTH is required
	trace   *testbin.Buffer
	n       atomic.Int64
}

type hostileOpts struct {
	cfg     func(*config.Config)
	sim     upstreamsim.Options // Users, ImplicitTLS and RawLog are filled in
	secrets map[string]string
	trace   bool
	bind    bool   // let the engine bind cfg.Listen and cfg.ListenTLS itself
	localPW string // the local AUTH password healthy() uses
	// aliceSim, when set, gives alice's account a provider of its own,
	// reached with STARTTLS; healthy() keeps using the normal one.
	aliceSim *upstreamsim.Options
}

// startHostile runs an engine with two accounts, alice and the
// @example.org domain, in front of simulated providers.
func startHostile(t *testing.T, o hostileOpts) *hostileRig {
	t.Helper()
	so := o.sim
	so.Users = map[string]string{alice: alicePW, domainUser: domainPW}
	so.RawLog = true
	// Implicit TLS upstream, so the sim's raw log sees plaintext.
	so.ImplicitTLS = true
	sim := rig.Sim(t, so)
	aliceSim, aliceSec := sim, config.SecurityTLS
	if o.aliceSim != nil {
		ao := *o.aliceSim
		ao.Users = so.Users
		ao.RawLog = true
		aliceSim = rig.Sim(t, ao)
		aliceSec = config.SecurityStartTLS
	}
	pool := sim.Cert.Pool.Clone()
	pool.AppendCertsFromPEM(aliceSim.Cert.CAPEM)
	dir := t.TempDir()
	cfg := &config.Config{
		Hostname:      "shim.test",
		SpoolDir:      filepath.Join(dir, "spool"),
		SyncWait:      config.Duration(10 * time.Second),
		MaxLineLength: 4 << 10,
		Accounts: []config.Account{
			{Address: alice, Server: aliceSim.Addr, Security: aliceSec},
			{Domain: "example.org", Username: domainUser, Server: sim.Addr, Security: config.SecurityTLS},
		},
	}
	cfg.SetPath(filepath.Join(dir, "config.toml"))
	if o.cfg != nil {
		o.cfg(cfg)
	}
	stored := map[string]string{alice: alicePW, "@example.org": domainPW}
	for k, v := range o.secrets {
		stored[k] = v
	}
	if o.bind && len(cfg.Listen) == 0 {
		cfg.Listen = []string{freeAddr(t)} // the config wants a real port
	}
	e := rig.Start(t, cfg, rig.Options{
		Secrets:     stored,
		UpstreamCAs: pool,
		Bind:        o.bind,
		Trace:       o.trace,
		StopWait:    20 * time.Second,
	})
	return &hostileRig{t: t, eng: e.Engine, sim: sim, alice: aliceSim, cfg: cfg, dir: dir, spool: cfg.SpoolDir,
		addr: e.Addr, tlsAddr: e.TLSAddr, localPW: o.localPW, trace: e.Trace}
}

// healthy proves the relay still works: a fresh connection, a unique
// message from a unique sender (so rate limits don't interfere), and it
// arrives at the provider byte for byte.
func (r *hostileRig) healthy(t *testing.T) {
	t.Helper()
	n := r.n.Add(1)
	from := fmt.Sprintf("healthy-%d@example.org", n)
	body := fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: healthy %d\r\n\r\nstill healthy %d\r\n", from, bob, n, n)
	before := len(r.sim.Messages())
	cl := rig.Dial(t, r.addr)
	cl.EHLO()
	if r.localPW != "" {
		cl.Do("AUTH PLAIN "+plain("client", r.localPW), 235, "2.0.0")
	}
	cl.Do("MAIL FROM:<"+from+">", 250, "")
	cl.Do("RCPT TO:<"+bob+">", 250, "")
	cl.Expect(cl.Data(strings.TrimSuffix(body, "\r\n")), 250, "2.0.0")
	cl.Do("QUIT", 221, "")
	msgs := r.sim.Messages()
	if len(msgs) != before+1 {
		t.Fatalf("healthy check: the provider has %d messages, want %d", len(msgs), before+1)
	}
	m := msgs[len(msgs)-1]
	if m.From != from || len(m.To) != 1 || m.To[0] != bob {
		t.Fatalf("healthy check: envelope %s -> %v", m.From, m.To)
	}
	if m.Data != nil && string(m.Data) != body {
		t.Fatalf("healthy check: body\n%q\nwant\n%q", m.Data, body)
	}
	if m.Data == nil && m.Size != int64(len(body)) {
		t.Fatalf("healthy check: size %d, want %d", m.Size, len(body))
	}
}

func plain(user, pw string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pw))
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// checkWire asserts what the provider read on the wire for one message:
// the only CRLF.CRLF is the real end, every CR and LF is part of a CRLF
// pair, and undoing the dot-stuffing gives exactly the delivered content.
func checkWire(t *testing.T, m upstreamsim.Message) {
	t.Helper()
	raw := m.Raw
	if raw == nil {
		t.Fatal("the provider recorded no raw DATA bytes")
	}
	if !bytes.HasSuffix(raw, []byte("\r\n.\r\n")) && !bytes.Equal(raw, []byte(".\r\n")) {
		t.Fatalf("wire DATA does not end with CRLF.CRLF: %q", tail(raw))
	}
	// The stream is at the start of a line after "DATA\r\n".
	if i := bytes.Index(append([]byte("\r\n"), raw...), []byte("\r\n.\r\n")); i != len(raw)-3 {
		t.Fatalf("wire DATA has an end-of-data sequence at offset %d of %d: %q", i-2, len(raw), raw)
	}
	onlyCRLF(t, "on the wire", raw)
	var content []byte
	for _, line := range bytes.SplitAfter(raw[:len(raw)-3], []byte("\r\n")) {
		content = append(content, bytes.TrimPrefix(line, []byte("."))...)
	}
	if m.Data != nil && !bytes.Equal(content, m.Data) {
		t.Fatalf("un-dot-stuffed wire bytes differ from the delivered message:\n%q\n%q", content, m.Data)
	}
}

// checkBdatWire asserts what the provider read on the wire for a message
// sent with BDAT: well-formed chunks, the last one marked LAST, nothing
// after it, every CR and LF part of a CRLF pair, and the chunks together
// exactly the delivered content.
func checkBdatWire(t *testing.T, m upstreamsim.Message) {
	t.Helper()
	raw := m.Raw
	if raw == nil {
		t.Fatal("the provider recorded no raw BDAT bytes")
	}
	var content []byte
	for last := false; !last; {
		eol := bytes.Index(raw, []byte("\r\n"))
		if eol < 0 {
			t.Fatalf("wire BDAT: no complete command in %q", tail(raw))
		}
		f := strings.Fields(string(raw[:eol]))
		if len(f) < 2 || len(f) > 3 || f[0] != "BDAT" {
			t.Fatalf("wire BDAT: bad command %q", raw[:eol])
		}
		n, err := strconv.Atoi(f[1])
		if err != nil || n < 0 || n > len(raw)-eol-2 {
			t.Fatalf("wire BDAT: bad chunk size in %q", raw[:eol])
		}
		last = len(f) == 3 && f[2] == "LAST"
		content = append(content, raw[eol+2:eol+2+n]...)
		raw = raw[eol+2+n:]
	}
	if len(raw) != 0 {
		t.Fatalf("wire BDAT: %q after the LAST chunk", raw)
	}
	onlyCRLF(t, "in the chunks", content)
	if m.Data != nil && !bytes.Equal(content, m.Data) {
		t.Fatalf("the chunks differ from the delivered message:\n%q\n%q", content, m.Data)
	}
}

// onlyCRLF fails the test at a CR or LF in b that is not part of a CRLF
// pair.
func onlyCRLF(t *testing.T, where string, b []byte) {
	t.Helper()
	for i, c := range b {
		switch c {
		case '\r':
			if i+1 >= len(b) || b[i+1] != '\n' {
				t.Fatalf("bare CR %s at %d: %q", where, i, b)
			}
		case '\n':
			if i == 0 || b[i-1] != '\r' {
				t.Fatalf("bare LF %s at %d: %q", where, i, b)
			}
		}
	}
}

func tail(b []byte) []byte {
	if len(b) > 40 {
		return b[len(b)-40:]
	}
	return b
}

// TestSmuggling sends bodies with every bare line-ending variant of an
// end-of-data sequence followed by a smuggled transaction. Neither the
// relay nor the provider may see the message end early: exactly one
// message arrives, with the smuggled text as content, and the wire to the
// provider carries only CRLF line endings and a single CRLF.CRLF.
func TestSmuggling(t *testing.T) {
	runSmuggling(t, hostileOpts{}, checkWire)
}

// TestSmugglingBDAT is TestSmuggling with a provider that offers
// CHUNKING, as Gmail and Microsoft do: the relay sends BDAT, and the
// chunks carry the same content with only CRLF line endings.
func TestSmugglingBDAT(t *testing.T) {
	runSmuggling(t, hostileOpts{sim: upstreamsim.Options{Chunking: true}}, checkBdatWire)
}

func runSmuggling(t *testing.T, o hostileOpts, checkWire func(*testing.T, upstreamsim.Message)) {
	r := startHostile(t, o)
	const head = "From: <alice@example.com>\r\nTo: <bob@example.net>\r\nSubject: smuggling\r\n\r\n"
	const smuggled = "MAIL FROM:<alice@example.com>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nSubject: smuggled\r\n"
	cases := []struct {
		name string
		body string // sent after head, followed by CRLF.CRLF
		want string // the content after head that must arrive
	}{
		{"bare LF", "one\ntwo\n\nthree", "one\r\ntwo\r\n\r\nthree\r\n"},
		{"bare CR", "one\rtwo\r\rthree", "one\r\ntwo\r\n\r\nthree\r\n"},
		{"LF.LF", "hi\n.\nMAIL FROM:<x@y>\nRCPT TO:<victim@example.net>\nDATA\nevil",
			"hi\r\n\r\nMAIL FROM:<x@y>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nevil\r\n"},
		{"CR.LF", "hi\r.\nMAIL FROM:<x@y>", "hi\r\n\r\nMAIL FROM:<x@y>\r\n"},
		{"LF.CRLF", "hi\n.\r\nMAIL FROM:<x@y>", "hi\r\n\r\nMAIL FROM:<x@y>\r\n"},
		{"CRLF.LF", "hi\r\n.\nMAIL FROM:<x@y>", "hi\r\n\r\nMAIL FROM:<x@y>\r\n"},
		{"CR.CRLF", "hi\r.\r\nMAIL FROM:<x@y>", "hi\r\n\r\nMAIL FROM:<x@y>\r\n"},
		{"CR.CR", "hi\r.\rMAIL FROM:<x@y>", "hi\r\n\r\nMAIL FROM:<x@y>\r\n"},
		// go-smtp drops ".\r" at the start of a CRLF line as a stuffed,
		// unterminated dot line: the text survives, the lone dot does not.
		{"CRLF.CR", "hi\r\n.\rMAIL FROM:<x@y>", "hi\r\nMAIL FROM:<x@y>\r\n"},
		// After a bare CR the relay sees no line start, so CRLF.CRLF
		// inside "\r\r\n.\r\n" does not end DATA; normalized, the dot line
		// is content and must go out dot-stuffed.
		{"CR CRLF.CRLF", "hi\r\r\n.\r\n" + smuggled + "evil",
			"hi\r\n\r\n.\r\n" + smuggled + "evil\r\n"},
		{"LF..LF", "hi\n..\nworld", "hi\r\n.\r\nworld\r\n"},
		{"LF.LF full transaction", "hi\n.\n" + strings.ReplaceAll(smuggled, "\r\n", "\n") + "\nevil\n.\nQUIT",
			"hi\r\n\r\n" + smuggled + "\r\nevil\r\n\r\nQUIT\r\n"},
		{"LF.CRLF full transaction", "hi\n.\r\n" + smuggled + "\r\nevil\n.\r\nQUIT",
			"hi\r\n\r\n" + smuggled + "\r\nevil\r\n\r\nQUIT\r\n"},
		// Clients stuff dots after CRLF; after a bare LF the relay takes
		// one leading dot for stuffing too, as Postfix does.
		{"dot lines", ".stuffed\r\n..two dots\n.bare-LF dot line\r\nlast", "stuffed\r\n.two dots\r\nbare-LF dot line\r\nlast\r\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(r.sim.Messages())
			cl := rig.Dial(t, r.addr)
			cl.EHLO()
			cl.Do("MAIL FROM:<"+alice+">", 250, "2.0.0")
			cl.Do("RCPT TO:<"+bob+">", 250, "2.0.0")
			cl.Expect(cl.Data(head+c.body), 250, "2.0.0")
			// Nothing of the body was taken for commands: the next reply
			// is NOOP's own.
			if rp := cl.Do("NOOP", 250, "2.0.0"); !strings.Contains(rp.Text, "done nothing") {
				t.Fatalf("a stray reply after DATA: %q", rp.Lines)
			}
			cl.Do("QUIT", 221, "")
			msgs := r.sim.Messages()
			if len(msgs) != before+1 {
				t.Fatalf("the provider got %d messages, want exactly 1", len(msgs)-before)
			}
			m := msgs[len(msgs)-1]
			if m.From != alice || len(m.To) != 1 || m.To[0] != bob {
				t.Fatalf("envelope %s -> %v", m.From, m.To)
			}
			if got := string(m.Data); got != head+c.want {
				t.Fatalf("delivered\n%q\nwant\n%q", got, head+c.want)
			}
			checkWire(t, m)
			r.healthy(t)
		})
	}
	// The provider never saw a transaction the smuggled text describes.
	for _, m := range r.sim.Messages() {
		if m.From == "x@y" || slicesContains(m.To, "victim@example.net") {
			t.Fatalf("a smuggled transaction reached the provider: %s -> %v", m.From, m.To)
		}
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestEnvelopeControlCharacters tries to inject through MAIL FROM and RCPT
// TO with a CR in mid-line, an LF, and a NUL. The relay refuses, and no
// such byte reaches the provider.
func TestEnvelopeControlCharacters(t *testing.T) {
	r := startHostile(t, hostileOpts{})
	cases := []struct {
		name   string
		mail   bool // the line is a MAIL command; else RCPT after a good MAIL
		line   string
		code   int
		enh    string
		extras []string // replies to the rest of the line after an LF, "code enh"
	}{
		{"MAIL CR in local part", true, "MAIL FROM:<al\rice@example.com>", 501, "5.1.7", nil},
		{"MAIL CR in domain", true, "MAIL FROM:<alice@exam\rple.com>", 501, "5.1.7", nil},
		{"MAIL CR then command", true, "MAIL FROM:<alice@example.com>\rRCPT TO:<victim@example.net>", 500, "5.5.4", nil},
		{"MAIL NUL", true, "MAIL FROM:<al\x00ice@example.com>", 501, "5.1.7", nil},
		{"MAIL DEL", true, "MAIL FROM:<al\x7fice@example.com>", 501, "5.1.7", nil},
		{"MAIL LF", true, "MAIL FROM:<alice@exa\nmple.com>", 501, "5.5.2", []string{"501 5.5.2"}},
		{"MAIL LF then command", true, "MAIL FROM:<alice@example.com\nRCPT TO:<victim@example.net>", 501, "5.5.2", []string{"502 5.5.1"}},
		{"RCPT CR in local part", false, "RCPT TO:<b\rob@example.net>", 501, "5.1.3", nil},
		{"RCPT CR then command", false, "RCPT TO:<bob@example.net>\rDATA", 500, "5.5.4", nil},
		{"RCPT CR in domain", false, "RCPT TO:<bob@exa\rmple.net>", 501, "5.1.3", nil},
		{"RCPT NUL", false, "RCPT TO:<bob\x00@example.net>", 501, "5.1.3", nil},
		{"RCPT LF", false, "RCPT TO:<bob@exa\nmple.net>", 501, "5.5.2", []string{"501 5.5.2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rawBefore := len(r.sim.RawInput())
			msgsBefore := len(r.sim.Messages())
			cl := rig.Dial(t, r.addr)
			cl.EHLO()
			if !c.mail {
				cl.Do("MAIL FROM:<"+alice+">", 250, "2.0.0")
			}
			cl.Do(c.line, c.code, c.enh)
			for _, x := range c.extras {
				code, _ := strconv.Atoi(x[:3])
				cl.Expect(cl.MustRead(), code, x[4:])
			}
			if !c.mail {
				// The transaction is still open, without the bad recipient.
				cl.Do("DATA", 502, "5.5.1")
			}
			cl.Do("QUIT", 221, "")
			if n := len(r.sim.Messages()) - msgsBefore; n != 0 {
				t.Fatalf("%d messages reached the provider", n)
			}
			sent := r.sim.RawInput()[rawBefore:]
			for i, b := range sent {
				if b == 0 || b == 0x7f || (b == '\r' && (i+1 == len(sent) || sent[i+1] != '\n')) || (b == '\n' && (i == 0 || sent[i-1] != '\r')) {
					t.Fatalf("a control character reached the provider at %d: %q", i, sent)
				}
			}
			bads := []string{"victim", "al\rice", "b\rob", "\rDATA"}
			if !c.mail {
				bads = append(bads, "RCPT") // every recipient was refused
			}
			for _, bad := range bads {
				if bytes.Contains(sent, []byte(bad)) {
					t.Fatalf("%q reached the provider: %q", bad, sent)
				}
			}
			r.healthy(t)
		})
	}
}

// TestNULAnd8Bit: NUL bytes and 8-bit data in headers and body are passed
// through untouched (only line endings are normalized).
func TestNULAnd8Bit(t *testing.T) {
	r := startHostile(t, hostileOpts{})
	body := "From: <alice@example.com>\r\nSubject: caf\xe9 \x00 nul \xff\xfe\r\nX-Utf8: na\xc3\xafve\r\n\r\n8-bit \x80\x81\xfe\xff body\r\nNUL here:\x00:and\x00\x00there\nbare LF after NUL\x00\n\x00\r\nend"
	cl := rig.Dial(t, r.addr)
	cl.EHLO()
	cl.Do("MAIL FROM:<"+alice+"> BODY=8BITMIME", 250, "2.0.0")
	cl.Do("RCPT TO:<"+bob+">", 250, "2.0.0")
	cl.Expect(cl.Data(body), 250, "2.0.0")
	cl.Do("QUIT", 221, "")
	msgs := r.sim.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	want := strings.NewReplacer("there\n", "there\r\n", "NUL\x00\n", "NUL\x00\r\n").Replace(body) + "\r\n"
	if string(msgs[0].Data) != want {
		t.Fatalf("delivered\n%q\nwant\n%q", msgs[0].Data, want)
	}
	checkWire(t, msgs[0])
	r.healthy(t)
}

// TestOverlongLines: a line over max_line_length (4 KB here) ends the
// session with a 500, whether it is a command, a header or a body line,
// and nothing is delivered. Lines just under the limit are fine.
func TestOverlongLines(t *testing.T) {
	r := startHostile(t, hostileOpts{})
	long := strings.Repeat("x", 5000)
	t.Run("command", func(t *testing.T) {
		cl := rig.Dial(t, r.addr)
		cl.EHLO()
		// go-smtp's own reply for a command line over the limit.
		cl.Expect(cl.Cmd("MAIL FROM:<"+long+"@example.com>"), 500, "5.4.0")
		cl.ExpectClosed(5 * time.Second)
		r.healthy(t)
	})
	for _, where := range []string{"header", "body", "bare-CR body"} {
		t.Run(where, func(t *testing.T) {
			before := len(r.sim.Messages())
			cl := rig.Dial(t, r.addr)
			cl.EHLO()
			cl.Do("MAIL FROM:<"+alice+">", 250, "2.0.0")
			cl.Do("RCPT TO:<"+bob+">", 250, "2.0.0")
			body := "Subject: long\r\nX-Long: " + long + "\r\n\r\nbody"
			switch where {
			case "body":
				body = "Subject: long\r\n\r\nbody " + long + "\r\nmore"
			case "bare-CR body":
				// The line limit counts from the last LF.
				body = "Subject: long\r\n\r\n" + strings.Repeat(strings.Repeat("y", 70)+"\r", 80)
			}
			cl.Expect(cl.Data(body), 500, "5.5.2")
			// go-smtp's line limit stays tripped: it says so and hangs up,
			// so nothing after the long line is read as a command.
			cl.Expect(cl.MustRead(), 500, "5.4.0")
			cl.ExpectClosed(5 * time.Second)
			if n := len(r.sim.Messages()) - before; n != 0 {
				t.Fatalf("%d messages delivered", n)
			}
			r.healthy(t)
		})
	}
	t.Run("long line under the limits", func(t *testing.T) {
		// The simulated provider keeps go-smtp's 2000-byte line limit.
		before := len(r.sim.Messages())
		cl := rig.Dial(t, r.addr)
		cl.EHLO()
		cl.Do("MAIL FROM:<"+alice+">", 250, "2.0.0")
		cl.Do("RCPT TO:<"+bob+">", 250, "2.0.0")
		line := strings.Repeat("z", 1990)
		cl.Expect(cl.Data("Subject: near\r\n\r\n"+line), 250, "2.0.0")
		msgs := r.sim.Messages()
		if len(msgs) != before+1 || string(msgs[len(msgs)-1].Data) != "Subject: near\r\n\r\n"+line+"\r\n" {
			t.Fatal("the message with a 1990-byte line did not arrive intact")
		}
		r.healthy(t)
	})
}

// TestTinyWrites sends a whole session one byte per TCP write, with
// pauses, as a crawling device would; it still delivers correctly.
func TestTinyWrites(t *testing.T) {
	r := startHostile(t, hostileOpts{})
	cl := rig.DialRaw(t, r.addr)
	if tc, ok := cl.Conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	cl.Expect(cl.MustRead(), 220, "")
	trickle := func(s string) {
		for i := 0; i < len(s); i++ {
			if _, err := cl.Conn.Write([]byte{s[i]}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
	}
	step := func(s string, code int) {
		trickle(s)
		cl.Expect(cl.MustRead(), code, "")
	}
	step("HELO slow.device\r\n", 250)
	step("MAIL FROM:<alice@example.com>\r\n", 250)
	step("RCPT TO:<bob@example.net>\r\n", 250)
	step("DATA\r\n", 354)
	body := "Subject: crawling\r\n\r\nline one\r\n.dot line\r\nbare LF\nend\r\n"
	step(body+".\r\n", 250)
	step("QUIT\r\n", 221)
	msgs := r.sim.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	if want := "Subject: crawling\r\n\r\nline one\r\ndot line\r\nbare LF\r\nend\r\n"; string(msgs[0].Data) != want {
		t.Fatalf("delivered %q, want %q", msgs[0].Data, want)
	}
	checkWire(t, msgs[0])
	r.healthy(t)
}

// waitGoroutines waits until the goroutine count is back to within margin
// of base.
func waitGoroutines(t *testing.T, base, margin int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		n := runtime.NumGoroutine()
		if n <= base+margin {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutines: %d, baseline %d (+%d allowed)\n%s", n, base, margin, buf)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPipeliningFlood writes 10,000 NOOPs at once without reading. The
// relay answers every one in order (or would close cleanly), and no
// goroutine is left behind.
func TestPipeliningFlood(t *testing.T) {
	r := startHostile(t, hostileOpts{})
	r.healthy(t) // warm the upstream pool
	base := runtime.NumGoroutine()
	const n = 10000
	cl := rig.Dial(t, r.addr)
	cl.EHLO()
	werr := make(chan error, 1)
	go func() {
		_, err := cl.Conn.Write(bytes.Repeat([]byte("NOOP\r\n"), n))
		werr <- err
	}()
	for i := 0; i < n; i++ {
		rp, err := cl.Read()
		if err != nil {
			t.Fatalf("after %d replies: %v", i, err)
		}
		if rp.Code != 250 || rp.Enh != "2.0.0" {
			t.Fatalf("reply %d: %q", i, rp.Lines)
		}
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	cl.Do("QUIT", 221, "")
	cl.ExpectClosed(5 * time.Second)
	cl.Conn.Close()
	waitGoroutines(t, base, 3, 10*time.Second)
	r.healthy(t)
}

// TestGarbageBeforeGreeting: a client that talks HTTP before the greeting
// gets error replies, then the relay hangs up after too many errors.
func TestGarbageBeforeGreeting(t *testing.T) {
	r := startHostile(t, hostileOpts{})
	cl := rig.DialRaw(t, r.addr)
	cl.Write("GET / HTTP/1.1\r\nHost: localhost:2525\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n")
	cl.Expect(cl.MustRead(), 220, "")
	for i := 0; i < 4; i++ {
		cl.Expect(cl.MustRead(), 501, "5.5.2")
	}
	cl.Expect(cl.MustRead(), 500, "5.5.1") // too many errors
	cl.ExpectClosed(5 * time.Second)
	r.healthy(t)

	// Binary garbage with no line end at all: the relay waits for a line
	// and lets the client go when it hangs up.
	cl = rig.DialRaw(t, r.addr)
	cl.Write("\x00\x01\x02\xff\xfe binary \x16\x03\x01")
	cl.Expect(cl.MustRead(), 220, "")
	cl.Conn.Close()
	r.healthy(t)
}

// clientHello returns the first flight of a TLS client.
func clientHello(t *testing.T) []byte {
	a, b := net.Pipe()
	go tls.Client(a, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true}).Handshake()
	buf := make([]byte, 64<<10)
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := b.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	b.Close()
	return buf[:n]
}

// TestTLSOnPlainPort: a client configured for implicit TLS (SMTPS) on the
// plain port fails its handshake at once instead of hanging, and its
// ClientHello, read as commands, only earns error replies.
func TestTLSOnPlainPort(t *testing.T) {
	r := startHostile(t, hostileOpts{})
	base := runtime.NumGoroutine()
	c, err := net.DialTimeout("tcp", r.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	err = tc.Handshake()
	if err == nil || !strings.Contains(err.Error(), "does not look like a TLS handshake") {
		t.Fatalf("handshake against the plain port: %v", err)
	}
	c.Close()

	cl := rig.DialRaw(t, r.addr)
	cl.Write(string(clientHello(t)) + "\r\n")
	cl.Expect(cl.MustRead(), 220, "")
	cl.Conn.SetReadDeadline(time.Now().Add(time.Second))
	for {
		rp, err := cl.Read()
		if err != nil {
			break // the deadline, or the relay hung up after too many errors
		}
		if rp.Code/100 != 5 {
			t.Fatalf("reply to a ClientHello: %q", rp.Lines)
		}
	}
	cl.Conn.Close()
	waitGoroutines(t, base, 3, 10*time.Second)
	r.healthy(t)
}

// TestConnectionCap: past max_connections a client is told 421 4.7.0 at
// once and disconnected; it does not hang waiting for a greeting.
func TestConnectionCap(t *testing.T) {
	r := startHostile(t, hostileOpts{cfg: func(c *config.Config) { c.MaxConnections = 5 }})
	var held []*rig.Client
	for i := 0; i < 5; i++ {
		held = append(held, rig.Dial(t, r.addr))
	}
	start := time.Now()
	extra := rig.DialRaw(t, r.addr)
	extra.Conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	rp, err := extra.Read()
	if err != nil {
		t.Fatalf("the 6th client: %v (%q)", err, rp.Lines)
	}
	extra.Expect(rp, 421, "4.7.0")
	extra.ExpectClosed(3 * time.Second)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the 6th client waited %s for its refusal", d)
	}
	// The five held connections still work.
	for _, cl := range held {
		cl.Do("NOOP", 250, "2.0.0")
	}
	for _, cl := range held {
		cl.Do("QUIT", 221, "")
		cl.ExpectClosed(5 * time.Second)
	}
	waitFor(t, 5*time.Second, "a free slot", func() bool {
		cl := rig.DialRaw(t, r.addr)
		defer cl.Conn.Close()
		rp, err := cl.Read()
		return err == nil && rp.Code == 220
	})
	r.healthy(t)
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestIdleAndSlowClients: idle_timeout bounds silence and each command
// line; a DATA phase that trickles steadily is bounded only by
// data_timeout, and when that ends it, the rest of the body is never
// taken for commands.
func TestIdleAndSlowClients(t *testing.T) {
	r := startHostile(t, hostileOpts{cfg: func(c *config.Config) {
		c.IdleTimeout = config.Duration(time.Second)
		c.DataTimeout = config.Duration(3 * time.Second)
	}})

	t.Run("silent mid-command", func(t *testing.T) {
		cl := rig.Dial(t, r.addr)
		cl.EHLO()
		start := time.Now()
		cl.Write("MAIL FR")
		cl.Expect(cl.MustRead(), 421, "4.4.2")
		if d := time.Since(start); d < 800*time.Millisecond || d > 2*time.Second {
			t.Fatalf("cut off after %s, want about 1s", d)
		}
		cl.ExpectClosed(2 * time.Second)
		r.healthy(t)
	})

	t.Run("trickled command line", func(t *testing.T) {
		cl := rig.Dial(t, r.addr)
		cl.EHLO()
		stop := make(chan struct{})
		defer close(stop)
		start := time.Now()
		go func() {
			line := "MAIL FROM:<alice@example.com>\r\n"
			for i := 0; i < len(line); i++ {
				if _, err := cl.Conn.Write([]byte{line[i]}); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(300 * time.Millisecond):
				}
			}
		}()
		cl.Expect(cl.MustRead(), 421, "4.4.2")
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("cut off after %s, want about 1s", d)
		}
		cl.ExpectClosed(2 * time.Second)
		r.healthy(t)
	})

	// trickleData starts a transaction and sends the body in chunks every
	// 500 ms (half the idle timeout) for the given number of chunks, then
	// the terminator; it returns when the relay replies.
	trickleData := func(t *testing.T, cl *rig.Client, chunks []string) (rig.Reply, time.Duration) {
		cl.EHLO()
		cl.Do("MAIL FROM:<"+alice+">", 250, "2.0.0")
		cl.Do("RCPT TO:<"+bob+">", 250, "2.0.0")
		cl.Do("DATA", 354, "")
		start := time.Now()
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for _, c := range chunks {
				if _, err := io.WriteString(cl.Conn, c); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(500 * time.Millisecond):
				}
			}
			io.WriteString(cl.Conn, ".\r\n")
		}()
		return cl.MustRead(), time.Since(start)
	}

	t.Run("steady DATA longer than idle", func(t *testing.T) {
		before := len(r.sim.Messages())
		cl := rig.Dial(t, r.addr)
		chunks := []string{"Subject: slow\r\n\r\n", "chunk 1\r\n", "chunk 2\r\n", "chunk 3\r\n", "chunk 4\r\n"}
		rp, d := trickleData(t, cl, chunks)
		cl.Expect(rp, 250, "2.0.0")
		if d < 2*time.Second {
			t.Fatalf("DATA took only %s; the test needs it to outlast idle_timeout", d)
		}
		msgs := r.sim.Messages()
		if len(msgs) != before+1 || string(msgs[len(msgs)-1].Data) != strings.Join(chunks, "") {
			t.Fatal("the slow message did not arrive intact")
		}
		cl.Do("QUIT", 221, "")
		r.healthy(t)
	})

	t.Run("DATA past data_timeout", func(t *testing.T) {
		before := len(r.sim.Messages())
		cl := rig.Dial(t, r.addr)
		// After the cut-off the client keeps sending its body, which
		// quotes an SMTP session: none of it may run as commands.
		chunks := []string{"Subject: too slow\r\n\r\n"}
		for i := 0; i < 6; i++ {
			chunks = append(chunks, fmt.Sprintf("chunk %d\r\n", i))
		}
		chunks = append(chunks, "RSET\r\n", "MAIL FROM:<alice@example.com>\r\n", "RCPT TO:<victim@example.net>\r\n",
			"DATA\r\n", "Subject: injected\r\n\r\nevil\r\n.\r\n", "QUIT\r\n")
		rp, d := trickleData(t, cl, chunks)
		cl.Expect(rp, 421, "4.4.2")
		if d < 2500*time.Millisecond || d > 4500*time.Millisecond {
			t.Fatalf("DATA cut off after %s, want about data_timeout (3s)", d)
		}
		cl.ExpectClosed(2 * time.Second)
		time.Sleep(1500 * time.Millisecond) // let the rest of the chunks go out
		if n := len(r.sim.Messages()) - before; n != 0 {
			t.Fatalf("%d messages delivered after the DATA timeout", n)
		}
		r.healthy(t)
	})

	t.Run("silence inside DATA", func(t *testing.T) {
		before := len(r.sim.Messages())
		cl := rig.Dial(t, r.addr)
		cl.EHLO()
		cl.Do("MAIL FROM:<"+alice+">", 250, "2.0.0")
		cl.Do("RCPT TO:<"+bob+">", 250, "2.0.0")
		cl.Do("DATA", 354, "")
		start := time.Now()
		cl.Write("Subject: stalled\r\n\r\npart")
		cl.Expect(cl.MustRead(), 421, "4.4.2")
		if d := time.Since(start); d < 800*time.Millisecond || d > 2*time.Second {
			t.Fatalf("cut off after %s, want about idle_timeout (1s)", d)
		}
		cl.ExpectClosed(2 * time.Second)
		if n := len(r.sim.Messages()) - before; n != 0 {
			t.Fatalf("%d messages delivered", n)
		}
		r.healthy(t)
	})
}

// TestRecipientAndSizeLimits: the 4th recipient of max_recipients = 3 gets
// go-smtp's 452 4.5.3; a message over max_message_size gets 552 5.3.4 and
// the session goes on.
func TestRecipientAndSizeLimits(t *testing.T) {
	r := startHostile(t, hostileOpts{cfg: func(c *config.Config) {
		c.MaxRecipients = 3
		c.MaxMessageSize = 10 << 10
	}})
	t.Run("recipients", func(t *testing.T) {
		before := len(r.sim.Messages())
		cl := rig.Dial(t, r.addr)
		cl.EHLO()
		cl.Do("MAIL FROM:<"+alice+">", 250, "2.0.0")
		for i := 1; i <= 3; i++ {
			cl.Do(fmt.Sprintf("RCPT TO:<r%d@example.net>", i), 250, "2.0.0")
		}
		cl.Do("RCPT TO:<r4@example.net>", 452, "4.5.3")
		cl.Expect(cl.Data("Subject: three\r\n\r\nto three"), 250, "2.0.0")
		msgs := r.sim.Messages()
		if len(msgs) != before+1 || strings.Join(msgs[len(msgs)-1].To, ",") != "r1@example.net,r2@example.net,r3@example.net" {
			t.Fatalf("recipients upstream: %v", msgs[len(msgs)-1].To)
		}
		cl.Do("QUIT", 221, "")
		r.healthy(t)
	})
	t.Run("size", func(t *testing.T) {
		before := len(r.sim.Messages())
		cl := rig.Dial(t, r.addr)
		caps := cl.EHLO()
		if !slicesContains(caps, "SIZE 10240") {
			t.Fatalf("EHLO does not announce SIZE 10240: %q", caps)
		}
		cl.Do("MAIL FROM:<"+alice+"> SIZE=20000", 552, "5.3.4")
		cl.Do("MAIL FROM:<"+alice+">", 250, "2.0.0")
		cl.Do("RCPT TO:<"+bob+">", 250, "2.0.0")
		big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("b", 76)+"\r\n", 260)
		cl.Expect(cl.Data(big), 552, "5.3.4")
		if n := len(r.sim.Messages()) - before; n != 0 {
			t.Fatalf("%d oversized messages delivered", n)
		}
		// The same session carries on.
		cl.Do("MAIL FROM:<"+alice+">", 250, "2.0.0")
		cl.Do("RCPT TO:<"+bob+">", 250, "2.0.0")
		cl.Expect(cl.Data("Subject: small\r\n\r\nsmall"), 250, "2.0.0")
		cl.Do("QUIT", 221, "")
		msgs := r.sim.Messages()
		if len(msgs) != before+1 || string(msgs[len(msgs)-1].Data) != "Subject: small\r\n\r\nsmall\r\n" {
			t.Fatal("the follow-up message did not arrive intact")
		}
		r.healthy(t)
	})
}

// TestSenderRateLimit: with rate_limit_loopback the third message from one
// sender within a minute gets 451 4.7.1; other senders are unaffected.
func TestSenderRateLimit(t *testing.T) {
	r := startHostile(t, hostileOpts{cfg: func(c *config.Config) {
		c.SenderRateMinute = 2
		c.RateLimitLoopback = true
	}})
	// The budget is the account's, per client address: these clients
	// come from 127.0.0.2, so healthy() from 127.0.0.1 has its own.
	send := func(from string) {
		t.Helper()
		cl := dialFrom(t, r.addr, "127.0.0.2")
		cl.EHLO()
		cl.Do("MAIL FROM:<"+from+">", 250, "2.0.0")
		cl.Do("RCPT TO:<"+bob+">", 250, "2.0.0")
		cl.Expect(cl.Data("Subject: rate\r\n\r\nrate"), 250, "2.0.0")
		cl.Do("QUIT", 221, "")
	}
	send(alice)
	send(alice)
	cl := dialFrom(t, r.addr, "127.0.0.2")
	cl.EHLO()
	rp := cl.Do("MAIL FROM:<"+alice+">", 451, "4.7.1")
	if !strings.Contains(rp.Text, "per minute") {
		t.Fatalf("the refusal does not say which limit: %q", rp.Text)
	}
	cl.Do("MAIL FROM:<ALICE@Example.COM>", 451, "4.7.1")  // case does not dodge it
	cl.Do("MAIL FROM:<alice@example.com.>", 501, "5.1.7") // nor does a trailing dot
	cl.Do("MAIL FROM:<carol@example.org>", 250, "2.0.0")
	cl.Do("RCPT TO:<"+bob+">", 250, "2.0.0")
	cl.Expect(cl.Data("Subject: other\r\n\r\nother"), 250, "2.0.0")
	cl.Do("QUIT", 221, "")
	send("dave@example.org")
	// Every local part of a domain account shares its budget.
	cl = dialFrom(t, r.addr, "127.0.0.2")
	cl.EHLO()
	cl.Do("MAIL FROM:<erin@example.org>", 451, "4.7.1")
	cl.Do("QUIT", 221, "")
	r.healthy(t)
}

// dialFrom is dial from the local address ip.
func dialFrom(t testing.TB, addr, ip string) *rig.Client {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(60 * time.Second))
	cl := &rig.Client{T: t, Conn: c, R: bufio.NewReader(c)}
	cl.Expect(cl.MustRead(), 220, "")
	return cl
}

// TestLocalAuth: by default any AUTH is accepted and ignored; with
// local_auth = "require" MAIL needs AUTH with the local password.
func TestLocalAuth(t *testing.T) {
	t.Run("ignored", func(t *testing.T) {
		r := startHostile(t, hostileOpts{})
		cl := rig.Dial(t, r.addr)
		caps := cl.EHLO()
		if !slicesContains(caps, "AUTH PLAIN LOGIN") {
			t.Fatalf("AUTH not offered: %q", caps)
		}
		cl.Do("AUTH PLAIN "+plain("anyone", "anything"), 235, "2.0.0")
		cl.Do("MAIL FROM:<"+alice+">", 250, "2.0.0")
		cl.Do("RCPT TO:<"+bob+">", 250, "2.0.0")
		cl.Expect(cl.Data("Subject: auth\r\n\r\nplain"), 250, "2.0.0")
		cl.Do("QUIT", 221, "")

		cl = rig.Dial(t, r.addr)
		cl.EHLO()
		cl.Do("AUTH LOGIN", 334, "")
		cl.Do(b64("whoever"), 334, "")
		cl.Do(b64("whatever"), 235, "2.0.0")
		cl.Do("MAIL FROM:<"+alice+">", 250, "2.0.0")
		cl.Do("RCPT TO:<"+bob+">", 250, "2.0.0")
		cl.Expect(cl.Data("Subject: auth\r\n\r\nlogin"), 250, "2.0.0")
		cl.Do("QUIT", 221, "")
		// The local credentials never go upstream: the provider saw the
		// account's own login.
		for _, m := range r.sim.Messages() {
			if m.User != alice {
				t.Fatalf("upstream login %q", m.User)
			}
		}
		r.healthy(t)
	})
	t.Run("required", func(t *testing.T) {
		const pw = "local-Secret-9f"
		r := startHostile(t, hostileOpts{
			cfg:     func(c *config.Config) { c.LocalAuth = config.LocalAuthRequire },
			secrets: map[string]string{shim.LocalAuthKey: pw},
			localPW: pw,
		})
		cl := rig.Dial(t, r.addr)
		cl.EHLO()
		cl.Do("MAIL FROM:<"+alice+">", 530, "5.7.0")
		cl.Do("AUTH PLAIN "+plain("client", "wrong"), 535, "5.7.8")
		cl.Do("MAIL FROM:<"+alice+">", 530, "5.7.0")
		cl.Do("AUTH LOGIN", 334, "")
		cl.Do(b64("client"), 334, "")
		cl.Do(b64(pw+"x"), 535, "5.7.8")
		cl.Do("AUTH PLAIN "+plain("client", pw), 235, "2.0.0")
		cl.Do("MAIL FROM:<"+alice+">", 250, "2.0.0")
		cl.Do("RCPT TO:<"+bob+">", 250, "2.0.0")
		cl.Expect(cl.Data("Subject: authed\r\n\r\nauthed"), 250, "2.0.0")
		cl.Do("QUIT", 221, "")

		cl = rig.Dial(t, r.addr)
		cl.EHLO()
		cl.Do("AUTH LOGIN", 334, "")
		cl.Do(b64("client"), 334, "")
		cl.Do(b64(pw), 235, "2.0.0")
		cl.Do("MAIL FROM:<"+alice+">", 250, "2.0.0")
		cl.Do("QUIT", 221, "")
		if n := len(r.sim.Messages()); n != 1 {
			t.Fatalf("%d messages delivered, want 1", n)
		}
		r.healthy(t)
	})
}

// tls10Config is what a 2000s-era client speaks: TLS 1.0 with CBC suites.
func tls10Config(pool *x509.CertPool) *tls.Config {
	return &tls.Config{
		RootCAs:    pool,
		ServerName: "localhost",
		MinVersion: tls.VersionTLS10,
		MaxVersion: tls.VersionTLS10,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
			tls.TLS_RSA_WITH_AES_128_CBC_SHA,
			tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA,
		},
	}
}

// TestLocalTLS: STARTTLS on the plain port and the implicit-TLS listener
// both serve a TLS 1.0 client (Go's and OpenSSL's), while the upstream
// side refuses a provider that can't do TLS 1.2.
func TestLocalTLS(t *testing.T) {
	r := startHostile(t, hostileOpts{bind: true, cfg: func(c *config.Config) {
		// The config wants real ports, and only a config-bound engine
		// serves listen_tls.
		c.Listen = []string{freeAddr(t)}
		c.StartTLS = true
		c.ListenTLS = []string{freeAddr(t)}
		c.LocalTLSLegacy = true
	}})
	if r.tlsAddr == "" {
		t.Fatal("the engine bound no implicit-TLS listener")
	}
	pair, err := localcert.LoadOrCreate(r.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	tlsSend := func(t *testing.T, c net.Conn, subject string) {
		t.Helper()
		cl := &rig.Client{T: t, Conn: c, R: bufio.NewReader(c)}
		cl.EHLO()
		cl.Do("MAIL FROM:<"+alice+">", 250, "2.0.0")
		cl.Do("RCPT TO:<"+bob+">", 250, "2.0.0")
		cl.Expect(cl.Data("Subject: "+subject+"\r\n\r\nover TLS 1.0"), 250, "2.0.0")
		cl.Do("QUIT", 221, "")
		msgs := r.sim.Messages()
		if got := string(msgs[len(msgs)-1].Data); got != "Subject: "+subject+"\r\n\r\nover TLS 1.0\r\n" {
			t.Fatalf("delivered %q", got)
		}
	}

	t.Run("STARTTLS with TLS 1.0", func(t *testing.T) {
		cl := rig.Dial(t, r.addr)
		if caps := cl.EHLO(); !slicesContains(caps, "STARTTLS") {
			t.Fatalf("STARTTLS not offered: %q", caps)
		}
		cl.Do("STARTTLS", 220, "2.0.0")
		tc := tls.Client(cl.Conn, tls10Config(pair.Pool))
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS 1.0 handshake after STARTTLS: %v", err)
		}
		if v := tc.ConnectionState().Version; v != tls.VersionTLS10 {
			t.Fatalf("negotiated %s", tls.VersionName(v))
		}
		tlsSend(t, tc, "starttls")
		r.healthy(t)
	})

	t.Run("implicit TLS with TLS 1.0", func(t *testing.T) {
		d := &net.Dialer{Timeout: 5 * time.Second}
		tc, err := tls.DialWithDialer(d, "tcp", r.tlsAddr, tls10Config(pair.Pool))
		if err != nil {
			t.Fatalf("TLS 1.0 to the implicit-TLS listener: %v", err)
		}
		defer tc.Close()
		tc.SetDeadline(time.Now().Add(30 * time.Second))
		cl := &rig.Client{T: t, Conn: tc, R: bufio.NewReader(tc)}
		cl.Expect(cl.MustRead(), 220, "")
		if v := tc.ConnectionState().Version; v != tls.VersionTLS10 {
			t.Fatalf("negotiated %s", tls.VersionName(v))
		}
		tlsSend(t, tc, "implicit")
		r.healthy(t)
	})

	t.Run("openssl s_client -tls1", func(t *testing.T) {
		openssl, err := exec.LookPath("openssl")
		if err != nil {
			t.Fatalf("openssl not found (%v): run .ci/deps", err)
		}
		if help, _ := exec.Command(openssl, "s_client", "-help").CombinedOutput(); !bytes.Contains(help, []byte("-tls1 ")) {
			t.Skipf("this openssl has no -tls1 option:\n%s", help)
		}
		caFile := filepath.Join(r.dir, localcert.CAFile)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", r.tlsAddr, "-tls1",
			"-cipher", "DEFAULT:@SECLEVEL=0", "-CAfile", caFile, "-verify_return_error",
			"-servername", "localhost", "-brief", "-crlf", "-ign_eof")
		cmd.Stdin = strings.NewReader("EHLO openssl.test\nMAIL FROM:<alice@example.com>\nRCPT TO:<bob@example.net>\nDATA\nSubject: openssl\n\nsent by openssl s_client -tls1\n.\nQUIT\n")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		before := len(r.sim.Messages())
		if err := cmd.Run(); err != nil {
			t.Fatalf("openssl s_client: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
		}
		if !strings.Contains(stderr.String(), "Protocol version: TLSv1\n") {
			t.Fatalf("openssl did not negotiate TLS 1.0:\n%s", stderr.String())
		}
		if !strings.Contains(stdout.String(), "\n221 ") || strings.Count(stdout.String(), "\n250 ") < 4 {
			t.Fatalf("openssl session:\n%s", stdout.String())
		}
		msgs := r.sim.Messages()
		if len(msgs) != before+1 || string(msgs[len(msgs)-1].Data) != "Subject: openssl\r\n\r\nsent by openssl s_client -tls1\r\n" {
			t.Fatalf("the openssl message did not arrive intact:\n%s", stdout.String())
		}
		r.healthy(t)
	})

	t.Run("TLS 1.0 refused without local_tls_legacy", func(t *testing.T) {
		modern := startHostile(t, hostileOpts{bind: true, cfg: func(c *config.Config) {
			c.Listen = []string{freeAddr(t)}
			c.StartTLS = true
		}})
		pair, err := localcert.LoadOrCreate(modern.dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		cl := rig.Dial(t, modern.addr)
		cl.EHLO()
		cl.Do("STARTTLS", 220, "2.0.0")
		if err := tls.Client(cl.Conn, tls10Config(pair.Pool)).Handshake(); err == nil {
			t.Fatal("a TLS 1.0 handshake succeeded without local_tls_legacy")
		}
		cl = rig.Dial(t, modern.addr)
		cl.EHLO()
		cl.Do("STARTTLS", 220, "2.0.0")
		tc := tls.Client(cl.Conn, &tls.Config{RootCAs: pair.Pool, ServerName: "localhost"})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS 1.2+: %v", err)
		}
		if v := tc.ConnectionState().Version; v < tls.VersionTLS12 {
			t.Fatalf("negotiated %s", tls.VersionName(v))
		}
		tcl := &rig.Client{T: t, Conn: tc, R: bufio.NewReader(tc)}
		tcl.EHLO()
		tcl.Do("MAIL FROM:<"+alice+">", 250, "2.0.0")
		tcl.Do("RCPT TO:<"+bob+">", 250, "2.0.0")
		tcl.Expect(tcl.Data("Subject: modern\r\n\r\nover TLS 1.2+"), 250, "2.0.0")
		tcl.Do("QUIT", 221, "")
		modern.healthy(t)
	})

	t.Run("TLS 1.0 refused without local TLS", func(t *testing.T) {
		// Only the local side relaxes: a plain rig offers no STARTTLS.
		plainRig := startHostile(t, hostileOpts{})
		cl := rig.Dial(t, plainRig.addr)
		if caps := cl.EHLO(); slicesContains(caps, "STARTTLS") {
			t.Fatalf("STARTTLS offered without starttls = true: %q", caps)
		}
		cl.Do("STARTTLS", 502, "5.5.1")
		plainRig.healthy(t)
	})
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestUpstreamRefusesOldTLS: a provider that stops at TLS 1.1 never gets
// the password; the client hears 454 with the reason.
func TestUpstreamRefusesOldTLS(t *testing.T) {
	r := startHostile(t, hostileOpts{aliceSim: &upstreamsim.Options{MaxTLSVersion: tls.VersionTLS11}})
	cl := rig.Dial(t, r.addr)
	cl.EHLO()
	rp := cl.Do("MAIL FROM:<"+alice+">", 454, "4.7.0")
	if !strings.Contains(rp.Text, "protocol version") {
		t.Fatalf("the refusal does not name the TLS problem: %q", rp.Text)
	}
	cl.Do("QUIT", 221, "")
	if n := len(r.alice.Messages()); n != 0 {
		t.Fatalf("%d messages delivered", n)
	}
	if n := r.alice.AuthFailures(); n != 0 {
		t.Fatalf("%d AUTH attempts reached the provider", n)
	}
	// The provider read EHLO, STARTTLS and a TLS ClientHello: no AUTH.
	const plainPart = "EHLO localhost\r\nSTARTTLS\r\n\x16"
	if raw := string(r.alice.RawInput()); !strings.HasPrefix(raw, plainPart) || strings.Contains(raw, "AUTH") {
		t.Fatalf("the provider read %q", raw)
	}
	r.healthy(t)
}

// secretForms are the ways a password can show up in a trace.
func secretForms(user, pw string) []string {
	return []string{pw, b64(pw), plain(user, pw), base64.StdEncoding.EncodeToString([]byte(user + "\x00" + user + "\x00" + pw))}
}

// TestTraceHidesSecrets: the protocol trace of both sides shows AUTH
// commands and challenges but never a password, plain or base64.
func TestTraceHidesSecrets(t *testing.T) {
	r := startHostile(t, hostileOpts{trace: true})
	const plainPW, loginPW = "local-PLAIN-pw-Zq8", "local-LOGIN-pw-Wm4"
	cl := rig.Dial(t, r.addr)
	cl.EHLO()
	cl.Do("AUTH PLAIN "+plain("localuser", plainPW), 235, "2.0.0")
	cl.Do("MAIL FROM:<"+alice+">", 250, "2.0.0") // the upstream login happens here
	cl.Do("RCPT TO:<"+bob+">", 250, "2.0.0")
	cl.Expect(cl.Data("Subject: traced\r\n\r\ntraced"), 250, "2.0.0")
	cl.Do("QUIT", 221, "")

	cl = rig.Dial(t, r.addr)
	cl.EHLO()
	cl.Do("AUTH LOGIN", 334, "")
	cl.Do(b64("localuser"), 334, "")
	cl.Do(b64(loginPW), 235, "2.0.0")
	cl.Do("QUIT", 221, "")

	cl = rig.Dial(t, r.addr)
	cl.EHLO()
	cl.Do("AUTH LOGIN "+b64("localuser"), 334, "")
	cl.Do(b64(loginPW+"2"), 235, "2.0.0")
	cl.Do("QUIT", 221, "")
	r.healthy(t) // a second upstream account's login

	tr := r.trace.String()
	for _, want := range []string{"local: AUTH PLAIN ***", "local: AUTH LOGIN\n", "local: AUTH LOGIN ***", "local: ***\n", "local: 235 2.0.0", "AUTH PLAIN ***"} {
		if !strings.Contains(tr, want) {
			t.Errorf("the trace lacks %q", want)
		}
	}
	if !regexp.MustCompile(`(?m)^\S+ \[U\d+\] upstream 127\.0\.0\.1:\d+: AUTH (PLAIN|LOGIN) \*\*\*$`).MatchString(tr) {
		t.Errorf("the trace shows no masked upstream AUTH")
	}
	// Bodies are one summary line per message on both sides.
	if strings.Contains(tr, "Subject: traced") {
		t.Errorf("the trace shows the message body line by line")
	}
	if !regexp.MustCompile(`(?m)^\S+ \[L\d+\] local: <DATA: \d+ bytes, 3 lines>$`).MatchString(tr) ||
		!regexp.MustCompile(`(?m)^\S+ \[U\d+\] upstream 127\.0\.0\.1:\d+: <DATA: \d+ bytes, 3 lines>$`).MatchString(tr) {
		t.Errorf("the trace lacks a <DATA: ...> summary on each side")
	}
	var forms []string
	forms = append(forms, secretForms("localuser", plainPW)...)
	forms = append(forms, secretForms("localuser", loginPW)...)
	forms = append(forms, secretForms("localuser", loginPW+"2")...)
	forms = append(forms, secretForms(alice, alicePW)...)
	forms = append(forms, secretForms(domainUser, domainPW)...)
	for _, f := range forms {
		if strings.Contains(tr, f) {
			t.Errorf("the trace contains a secret form %q", f)
		}
	}
	if t.Failed() {
		t.Logf("trace:\n%s", tr)
	}
}

// TestTraceHidesSecretsConcurrently: the local trace is one stream for all
// clients; interleaved sessions whose answers arrive in pieces must not
// unmask each other's secrets.
func TestTraceHidesSecretsConcurrently(t *testing.T) {
	r := startHostile(t, hostileOpts{trace: true})
	const n = 16
	var wg sync.WaitGroup
	errc := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", r.addr, 5*time.Second)
			if err != nil {
				errc <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			br := bufio.NewReader(c)
			readReply := func() string {
				var last string
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return "ERR " + err.Error()
					}
					last = line
					if len(line) < 4 || line[3] != '-' {
						return last
					}
				}
			}
			// Pieces with pauses, so reads of different clients interleave.
			pieces := func(s string) {
				for len(s) > 0 {
					k := min(len(s), 3+i%4)
					c.Write([]byte(s[:k]))
					s = s[k:]
					time.Sleep(time.Duration(1+i%3) * time.Millisecond)
				}
			}
			readReply()
			pieces("EHLO c" + strconv.Itoa(i) + "\r\n")
			readReply()
			pieces("AUTH LOGIN\r\n")
			readReply()
			pieces(b64(fmt.Sprintf("user%d", i)) + "\r\n")
			readReply()
			pieces(b64(fmt.Sprintf("concurrent-pw-%02d-Xy", i)) + "\r\n")
			if rp := readReply(); !strings.HasPrefix(rp, "235") {
				errc <- fmt.Errorf("client %d: %q", i, rp)
			}
			pieces("NOOP\r\nQUIT\r\n")
			readReply()
			readReply()
		}(i)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	tr := r.trace.String()
	for i := 0; i < n; i++ {
		pw := fmt.Sprintf("concurrent-pw-%02d-Xy", i)
		enc := b64(pw)
		// Any 8-character piece of the encoded password is a leak.
		for k := 0; k+8 <= len(enc); k++ {
			if strings.Contains(tr, enc[k:k+8]) {
				t.Fatalf("the trace contains %q, part of client %d's encoded password\n%s", enc[k:k+8], i, tr)
			}
		}
		if strings.Contains(tr, pw) {
			t.Fatalf("the trace contains client %d's password", i)
		}
	}
	r.healthy(t)
}

// fdCount is the number of open file descriptors of this process.
func fdCount(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting open files: %v", err)
	}
	return len(ents)
}

// TestLoadNoLeaks: 10,000 connections, 50 at a time, half of them
// misbehaving, half delivering a message. Afterwards goroutines and open
// files are back to where they were, and the spool is empty.
func TestLoadNoLeaks(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts open files in /proc/self/fd")
	}
	r := startHostile(t, hostileOpts{sim: upstreamsim.Options{HashOnly: true}, cfg: func(c *config.Config) {
		c.MaxConnections = 1000
		c.IdleTimeout = config.Duration(5 * time.Second)
	}})
	const total, parallel = 10000, 50
	body := "Subject: load\r\n\r\n" + strings.Repeat("load test line\r\n", 20)

	var delivered atomic.Int64
	good := func(i int) error {
		c, err := net.DialTimeout("tcp", r.addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		cl := &rig.Client{T: t, Conn: c, R: br}
		expect := func(code int) error {
			rp, err := cl.Read()
			if err != nil {
				return err
			}
			if rp.Code != code {
				return fmt.Errorf("conn %d: got %q, want %d", i, rp.Lines, code)
			}
			return nil
		}
		steps := []struct {
			send string
			code int
		}{{"", 220}, {"HELO load\r\n", 250}, {"MAIL FROM:<alice@example.com>\r\n", 250}, {"RCPT TO:<bob@example.net>\r\n", 250},
			{"DATA\r\n", 354}, {body + ".\r\n", 250}, {"QUIT\r\n", 221}}
		for _, s := range steps {
			if s.send != "" {
				if _, err := io.WriteString(c, s.send); err != nil {
					return err
				}
			}
			if err := expect(s.code); err != nil {
				return err
			}
		}
		delivered.Add(1)
		return nil
	}
	bad := func(i int) error {
		c, err := net.DialTimeout("tcp", r.addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		switch i % 5 {
		case 0: // connect and close
		case 1: // garbage
			io.WriteString(c, "\x16\x03\x01\x00\xa5garbage\r\nGET / HTTP/1.0\r\n")
			br.ReadString('\n')
		case 2: // half a command, then gone
			br.ReadString('\n')
			io.WriteString(c, "MAIL FROM:<alice@exa")
		case 3: // DATA, then gone mid-body
			io.WriteString(c, "HELO x\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n")
			for k := 0; k < 5; k++ {
				if _, err := br.ReadString('\n'); err != nil {
					return err
				}
			}
			io.WriteString(c, "Subject: cut\r\n\r\nhalf a bo")
		case 4: // refused sender
			io.WriteString(c, "HELO x\r\nMAIL FROM:<mallory@evil.test>\r\nQUIT\r\n")
			for k := 0; k < 4; k++ {
				line, err := br.ReadString('\n')
				if err != nil {
					return err
				}
				if k == 2 && !strings.HasPrefix(line, "550 5.7.1") {
					return fmt.Errorf("refused sender: %q", line)
				}
			}
		}
		return nil
	}

	// Warm up: fill the upstream pool and the listener's buffers, then
	// take the baseline.
	run := func(n, offset int, f func(int) error) error {
		sem := make(chan struct{}, parallel)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var first error
		for i := 0; i < n; i++ {
			sem <- struct{}{}
			wg.Add(1)
			go func(i int) {
				defer func() { <-sem; wg.Done() }()
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}(offset + i)
		}
		wg.Wait()
		return first
	}
	if err := run(200, 0, good); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	baseG, baseFD := runtime.NumGoroutine(), fdCount(t)

	start := time.Now()
	delivered.Store(0)
	err := run(total, 0, func(i int) error {
		if i%2 == 0 {
			return good(i)
		}
		return bad(i / 2)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d connections in %s, %d delivered", total, time.Since(start).Round(time.Millisecond), delivered.Load())
	if delivered.Load() != total/2 {
		t.Fatalf("%d delivered, want %d", delivered.Load(), total/2)
	}
	if n := len(r.sim.Messages()); n != total/2+200 {
		t.Fatalf("the provider has %d messages, want %d", n, total/2+200)
	}
	waitGoroutines(t, baseG, 10, 15*time.Second)
	deadline := time.Now().Add(15 * time.Second)
	for fdCount(t) > baseFD+4 {
		if time.Now().After(deadline) {
			t.Fatalf("open files: %d, baseline %d", fdCount(t), baseFD)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, sub := range []string{"tmp", "msg"} {
		ents, err := os.ReadDir(filepath.Join(r.spool, sub))
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 0 {
			t.Fatalf("spool %s/ holds %d files", sub, len(ents))
		}
	}
	if q := r.eng.Queue().List(); len(q) != 0 {
		t.Fatalf("%d messages queued", len(q))
	}
	r.healthy(t)
}
