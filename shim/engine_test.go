package shim_test

// Engine-level tests of the data path: a real Engine with its listener,
// spool and retry queue, a go-smtp client in front, and upstreamsim (a
// provider with injectable faults) behind. They check what the README's
// "Delivery guarantee" promises: what the client hears, what reaches the
// provider (exactly once, never truncated), what stays on disk, and the
// bounces.
//
// Every wait for an outcome polls with a deadline; the only sleeps are a
// measuring window (account health) and waiting out max_age.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/control"
	"github.com/smtpshim/smtpshim/shim/events"
	"github.com/smtpshim/smtpshim/shim/internal/rig"
	"github.com/smtpshim/smtpshim/shim/oauth"
	"github.com/smtpshim/smtpshim/shim/secrets"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

const (
	simUser = "alice@example.com"
	simPass = "sim-password-not-real"
	// testSyncWait is how long a client waits for the provider before it
	// is told "queued".
	testSyncWait = 2 * time.Second
	// outcomeWait bounds every wait for something the engine does on its
	// own. The slowest legitimate path is a retry of an account marked
	// down: healthBackoff(2) is at most 10 s.
	outcomeWait = 25 * time.Second
)

// ---- rig: a simulated provider and an engine in front of it ----

func startSim(tb testing.TB, hashOnly bool) *upstreamsim.Server {
	tb.Helper()
	return rig.Sim(tb, upstreamsim.Options{Users: map[string]string{simUser: simPass}, HashOnly: hashOnly})
}

type rigOptions struct {
	spoolDir string               // "" means a new temporary directory
	control  bool                 // serve the control socket
	quiet    bool                 // discard the log (benchmarks)
	tune     func(*config.Config) // adjusts the test config
	password string               // the stored password, if not simPass
	store    secrets.Store        // replaces the keychain (then password is unused)
	onLog    map[string]func()    // log hooks registered before Run starts
	oauth    oauth.Options        // token handling for OAuth2 accounts
	// wrap, when set, stands between the engine and its listener.
	wrap func(net.Listener) net.Listener
}

// engineRig is an engine with one account, alice, whose provider is sim.
type engineRig struct {
	sim      *upstreamsim.Server
	eng      *shim.Engine
	addr     string
	spoolDir string
	hooks    *rig.LogHooks
	store    secrets.Store
	// stop cancels Run and waits for it; safe to call more than once.
	stop func()
}

func testConfig(sim *upstreamsim.Server, spoolDir string) *config.Config {
	return &config.Config{
		Hostname: "shim.test",
		SpoolDir: spoolDir,
		SyncWait: config.Duration(testSyncWait),
		RetryMin: config.Duration(50 * time.Millisecond),
		RetryMax: config.Duration(200 * time.Millisecond),
		Accounts: []config.Account{{Address: simUser, Server: sim.Addr, Security: config.SecurityStartTLS}},
	}
}

func startRig(tb testing.TB, sim *upstreamsim.Server, o rigOptions) *engineRig {
	tb.Helper()
	if o.spoolDir == "" {
		o.spoolDir = tb.TempDir()
	}
	cfg := testConfig(sim, o.spoolDir)
	if o.tune != nil {
		o.tune(cfg)
	}
	pw := simPass
	if o.password != "" {
		pw = o.password
	}
	e := rig.Start(tb, cfg, rig.Options{
		Secrets:     map[string]string{simUser: pw},
		Store:       o.store,
		UpstreamCAs: sim.Cert.Pool,
		Control:     o.control,
		Quiet:       o.quiet,
		OnLog:       o.onLog,
		Wrap:        o.wrap,
		OAuth:       o.oauth,
		// Release a stalled provider first: an attempt waiting on it
		// must not hold up Run's return.
		BeforeStop: func() {
			if sim.Fault() == upstreamsim.Stall {
				sim.SetFault(upstreamsim.None)
			}
		},
	})
	r := &engineRig{sim: sim, eng: e.Engine, addr: e.Addr, spoolDir: o.spoolDir, hooks: e.Hooks, store: o.store, stop: e.Stop}
	if e.Memory != nil {
		r.store = e.Memory
	}
	return r
}

const eventWait = outcomeWait

// ---- the client side ----

type sent struct {
	text    string // the reply text to a successful end of DATA
	err     error  // the MAIL or end-of-DATA error
	rcptErr map[string]error
	took    time.Duration // from the end of DATA to the reply
}

func dialClient(tb testing.TB, addr string) *smtp.Client {
	tb.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		tb.Fatalf("dialing the shim: %v", err)
	}
	c.CommandTimeout = 30 * time.Second
	c.SubmissionTimeout = 30 * time.Second
	if err := c.Hello("client.test"); err != nil {
		c.Close()
		tb.Fatalf("HELLO: %v", err)
	}
	return c
}

// sendOn runs one mail transaction on c.
func sendOn(tb testing.TB, c *smtp.Client, from string, rcpts []string, body []byte) sent {
	tb.Helper()
	s := sent{rcptErr: map[string]error{}}
	if err := c.Mail(from, nil); err != nil {
		s.err = err
		return s
	}
	ok := 0
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			s.rcptErr[r] = err
			continue
		}
		ok++
	}
	if ok == 0 {
		c.Reset()
		return s
	}
	w, err := c.Data()
	if err != nil {
		s.err = err
		return s
	}
	if _, err := w.Write(body); err != nil {
		tb.Fatalf("writing the body: %v", err)
	}
	start := time.Now()
	resp, err := w.CloseWithResponse()
	s.took = time.Since(start)
	if err != nil {
		s.err = err
	} else {
		s.text = resp.StatusText
	}
	return s
}

// send delivers one message to the shim on a new connection.
func send(tb testing.TB, addr, from string, rcpts []string, body []byte) sent {
	tb.Helper()
	c := dialClient(tb, addr)
	defer c.Close()
	s := sendOn(tb, c, from, rcpts, body)
	c.Quit()
	return s
}

var queuedRE = regexp.MustCompile(`queued as ([0-9]{8}T[0-9]{6}-[0-9a-v]+)`)

// mustQueued checks a "250 … queued as ID" reply and returns the ID.
func mustQueued(tb testing.TB, s sent) string {
	tb.Helper()
	if s.err != nil {
		tb.Fatalf("want 250 queued, got %v", s.err)
	}
	m := queuedRE.FindStringSubmatch(s.text)
	if m == nil {
		tb.Fatalf("want a reply naming a queue ID, got %q", s.text)
	}
	return m[1]
}

// mustProviderOK checks that the 250 is the provider's own acceptance.
func mustProviderOK(tb testing.TB, s sent) {
	tb.Helper()
	if s.err != nil {
		tb.Fatalf("want 250 from the provider, got %v", s.err)
	}
	if !strings.Contains(s.text, "Ok: queued as SIM") {
		tb.Fatalf("want the provider's own text \"Ok: queued as SIM…\", got %q", s.text)
	}
}

func mustSMTPError(tb testing.TB, err error, code int, enh smtp.EnhancedCode, msg string) {
	tb.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		tb.Fatalf("want SMTP error %d %v %q, got %v", code, enh, msg, err)
	}
	if se.Code != code || se.EnhancedCode != enh || (msg != "" && se.Message != msg) {
		tb.Fatalf("want %d %d.%d.%d %q, got %d %d.%d.%d %q", code, enh[0], enh[1], enh[2], msg,
			se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
	}
}

// message returns a CRLF message of about size bytes with a unique
// Message-ID, and a line that needs dot-stuffing.
func message(subject string, size int) []byte {
	var id [8]byte
	rand.Read(id[:])
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.net>\r\nSubject: %s\r\nMessage-ID: <%s@client.test>\r\n\r\n", subject, hex.EncodeToString(id[:]))
	b.WriteString(".a line that starts with a dot\r\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "line %06d: the quick brown fox jumps over the lazy dog 0123456789\r\n", i)
	}
	return b.Bytes()
}

// ---- what the provider and the spool hold ----

func messagesTo(sim *upstreamsim.Server, rcpt string) []upstreamsim.Message {
	var out []upstreamsim.Message
	for _, m := range sim.Messages() {
		if slices.Contains(m.To, rcpt) {
			out = append(out, m)
		}
	}
	return out
}

func messagesWith(sim *upstreamsim.Server, body []byte) int {
	sum := sha256.Sum256(body)
	n := 0
	for _, m := range sim.Messages() {
		if m.SHA256 == sum {
			n++
		}
	}
	return n
}

// spoolFiles lists the files in the spool's msg/ and tmp/.
func spoolFiles(tb testing.TB, dir string) []string {
	tb.Helper()
	var out []string
	for _, sub := range []string{"msg", "tmp"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			tb.Fatalf("reading the spool: %v", err)
		}
		for _, e := range ents {
			out = append(out, sub+"/"+e.Name())
		}
	}
	sort.Strings(out)
	return out
}

func waitSpoolEmpty(tb testing.TB, r *engineRig) {
	tb.Helper()
	rig.WaitUntil(tb, outcomeWait, "the queue and the spool to be empty", func() bool {
		return r.eng.Queue().Len() == 0 && len(spoolFiles(tb, r.spoolDir)) == 0
	})
}

// ---- bounces ----

type dsnReport struct {
	to          []string
	perMessage  textproto.MIMEHeader
	recipients  []textproto.MIMEHeader
	origHeaders string
	text        string
}

func parseDSN(tb testing.TB, data []byte) dsnReport {
	tb.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		tb.Fatalf("the bounce is not a message: %v\n%s", err, data)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		tb.Fatalf("bounce Content-Type = %q (%v), want multipart/report; report-type=delivery-status", msg.Header.Get("Content-Type"), err)
	}
	var rep dsnReport
	if to, err := msg.Header.AddressList("To"); err == nil {
		for _, a := range to {
			rep.to = append(rep.to, a.Address)
		}
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	seen := map[string]bool{}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			tb.Fatalf("reading the bounce's parts: %v", err)
		}
		body, err := io.ReadAll(p)
		if err != nil {
			tb.Fatal(err)
		}
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		seen[pt] = true
		switch pt {
		case "text/plain":
			rep.text = string(body)
		case "message/delivery-status":
			blocks := strings.Split(strings.TrimRight(string(body), "\r\n"), "\r\n\r\n")
			for i, blk := range blocks {
				h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(blk + "\r\n\r\n"))).ReadMIMEHeader()
				if err != nil {
					tb.Fatalf("delivery-status block %d: %v\n%s", i, err, blk)
				}
				if i == 0 {
					rep.perMessage = h
				} else {
					rep.recipients = append(rep.recipients, h)
				}
			}
		case "text/rfc822-headers":
			rep.origHeaders = string(body)
		}
	}
	for _, want := range []string{"text/plain", "message/delivery-status", "text/rfc822-headers"} {
		if !seen[want] {
			tb.Fatalf("the bounce has no %s part:\n%s", want, data)
		}
	}
	return rep
}

// checkDSNRecipient checks the one per-recipient block of rep.
func checkDSNRecipient(tb testing.TB, rep dsnReport, rcpt, status, diagContains string) {
	tb.Helper()
	if len(rep.recipients) != 1 {
		tb.Fatalf("want a delivery status for exactly 1 recipient, got %d: %v", len(rep.recipients), rep.recipients)
	}
	h := rep.recipients[0]
	if got := h.Get("Final-Recipient"); got != "rfc822; "+rcpt {
		tb.Errorf("Final-Recipient = %q, want %q", got, "rfc822; "+rcpt)
	}
	if got := h.Get("Action"); got != "failed" {
		tb.Errorf("Action = %q, want failed", got)
	}
	if got := h.Get("Status"); got != status {
		tb.Errorf("Status = %q, want %q", got, status)
	}
	if got := h.Get("Diagnostic-Code"); !strings.Contains(got, diagContains) {
		tb.Errorf("Diagnostic-Code = %q, want it to contain %q", got, diagContains)
	}
}

// ---- 1. healthy upstream ----

func TestEngineHealthyDelivery(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{})
	rec := rig.Record(t, r.eng.Bus())

	body := message("healthy", 4000)
	s := send(t, r.addr, simUser, []string{"bob@example.net"}, body)
	mustProviderOK(t, s)

	msgs := sim.Messages()
	if len(msgs) != 1 {
		t.Fatalf("the provider got %d messages, want 1", len(msgs))
	}
	if !bytes.Equal(msgs[0].Data, body) {
		t.Fatalf("the provider got a different body:\n got %q\nwant %q", msgs[0].Data, body)
	}
	if msgs[0].From != simUser || !slices.Equal(msgs[0].To, []string{"bob@example.net"}) || msgs[0].User != simUser {
		t.Fatalf("envelope/login = %s -> %v as %s", msgs[0].From, msgs[0].To, msgs[0].User)
	}
	// The body was dropped unsynced: nothing stays in msg/ or tmp/.
	if f := spoolFiles(t, r.spoolDir); len(f) != 0 {
		t.Fatalf("the spool still holds %v after a live delivery", f)
	}
	if n := r.eng.Queue().Len(); n != 0 {
		t.Fatalf("queue length %d, want 0", n)
	}
	rec.WaitFor(t, eventWait, "a Delivered event", rig.IsEvent(events.Delivered, ""))
	if n := rec.Count(rig.IsEvent(events.Queued, "")); n != 0 {
		t.Fatalf("%d Queued events for a live delivery", n)
	}
}

// ---- 2.-7. the provider fails while the client waits: queued, then delivered ----

// checkQueuedEntry checks that id is on disk (body and metadata) and in
// the queue with the reason it waits.
func checkQueuedEntry(t *testing.T, r *engineRig, id string, rcpts []string, errContains string) {
	t.Helper()
	want := []string{"msg/" + id + ".eml", "msg/" + id + ".json"}
	if got := spoolFiles(t, r.spoolDir); !slices.Equal(got, want) {
		t.Fatalf("spool = %v, want %v", got, want)
	}
	l := r.eng.Queue().List()
	if len(l) != 1 || l[0].ID != id {
		t.Fatalf("queue = %+v, want one entry %s", l, id)
	}
	if !slices.Equal(l[0].Rcpts, rcpts) {
		t.Fatalf("queued rcpts = %v, want %v", l[0].Rcpts, rcpts)
	}
	if l[0].LastError == "" || !strings.Contains(l[0].LastError, errContains) {
		t.Fatalf("LastError = %q, want it to contain %q", l[0].LastError, errContains)
	}
}

// checkDeliveredOnce waits for body to reach the provider, and for the
// queue to empty, then checks there is exactly one copy.
func checkDeliveredOnce(t *testing.T, r *engineRig, body []byte) {
	t.Helper()
	rig.WaitUntil(t, outcomeWait, "the queued message to reach the provider", func() bool { return messagesWith(r.sim, body) > 0 })
	waitSpoolEmpty(t, r)
	if n := messagesWith(r.sim, body); n != 1 {
		t.Fatalf("the provider got %d copies, want 1", n)
	}
}

func TestEngineQueuesWhenUpstreamRefuses(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{})
	rec := rig.Record(t, r.eng.Bus())
	sim.SetFault(upstreamsim.Refuse)

	body := message("refused", 3000)
	id := mustQueued(t, send(t, r.addr, simUser, []string{"bob@example.net"}, body))
	checkQueuedEntry(t, r, id, []string{"bob@example.net"}, "")
	if len(sim.Messages()) != 0 {
		t.Fatal("the provider got a message while refusing connections")
	}

	sim.SetFault(upstreamsim.None)
	checkDeliveredOnce(t, r, body)
	q, _ := rec.Find(rig.IsEvent(events.Queued, id))
	d, _ := rec.Find(rig.IsEvent(events.Delivered, id))
	if q < 0 || d < 0 || q > d {
		t.Fatalf("events: Queued at %d, Delivered at %d; want Queued then Delivered for %s: %+v", q, d, id, rec.All())
	}
}

func TestEngineQueuesOnTempFailAtMail(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{})
	sim.SetFault(upstreamsim.TempFail)

	body := message("451 at MAIL", 3000)
	s := send(t, r.addr, simUser, []string{"bob@example.net"}, body)
	id := mustQueued(t, s)
	if !strings.Contains(s.text, "451") {
		t.Errorf("the queued reply does not say why: %q", s.text)
	}
	checkQueuedEntry(t, r, id, []string{"bob@example.net"}, "451")
	sim.SetFault(upstreamsim.None)
	checkDeliveredOnce(t, r, body)
}

func TestEnginePassesPermFailAtData(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{})
	rec := rig.Record(t, r.eng.Bus())
	sim.SetFault(upstreamsim.PermFail)

	s := send(t, r.addr, simUser, []string{"bob@example.net"}, message("554 at DATA", 3000))
	mustSMTPError(t, s.err, 554, smtp.EnhancedCode{5, 7, 1}, "Message refused by policy")
	if f := spoolFiles(t, r.spoolDir); len(f) != 0 {
		t.Fatalf("the spool holds %v after a refusal the client heard", f)
	}
	if n := r.eng.Queue().Len(); n != 0 {
		t.Fatalf("queue length %d, want 0", n)
	}
	rec.WaitFor(t, eventWait, "a Rejected event", rig.IsEvent(events.Rejected, ""))
	if n := rec.Count(rig.IsEvent(events.Queued, "")) + rec.Count(rig.IsEvent(events.Bounced, "")); n != 0 {
		t.Fatalf("a refusal the client heard was queued or bounced: %+v", rec.All())
	}
}

func TestEngineQueuesOnTempFailAtData(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{})
	sim.SetFault(upstreamsim.TempFailData)

	body := message("451 at DATA", 3000)
	id := mustQueued(t, send(t, r.addr, simUser, []string{"bob@example.net"}, body))
	checkQueuedEntry(t, r, id, []string{"bob@example.net"}, "451")
	sim.SetFault(upstreamsim.None)
	checkDeliveredOnce(t, r, body)
}

func TestEngineQueuesOnDropMidData(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{})
	sim.SetFault(upstreamsim.DropMidData)

	// Far more than the 100 bytes the provider reads before hanging up.
	body := message("dropped mid-DATA", 256<<10)
	id := mustQueued(t, send(t, r.addr, simUser, []string{"bob@example.net"}, body))
	checkQueuedEntry(t, r, id, []string{"bob@example.net"}, "")
	sim.SetFault(upstreamsim.None)
	checkDeliveredOnce(t, r, body)
	msgs := sim.Messages()
	if len(msgs) != 1 || msgs[0].Size != int64(len(body)) || msgs[0].SHA256 != sha256.Sum256(body) {
		t.Fatalf("the provider holds %d messages; want exactly the complete body (%d bytes)", len(msgs), len(body))
	}
}

func TestEngineStallAnswersAfterSyncWait(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{})
	sim.SetFault(upstreamsim.Stall)

	body := message("stalled", 3000)
	s := send(t, r.addr, simUser, []string{"bob@example.net"}, body)
	id := mustQueued(t, s)
	if s.took < testSyncWait || s.took >= testSyncWait+5*time.Second {
		t.Fatalf("the client waited %s for its reply; want sync_wait (%s) to %s", s.took, testSyncWait, testSyncWait+5*time.Second)
	}
	if !strings.Contains(s.text, "did not answer within") {
		t.Errorf("the queued reply does not say why: %q", s.text)
	}
	// Durable while the provider still holds the first attempt open.
	if got := spoolFiles(t, r.spoolDir); !slices.Equal(got, []string{"msg/" + id + ".eml", "msg/" + id + ".json"}) {
		t.Fatalf("spool = %v", got)
	}
	if len(sim.Messages()) != 0 {
		t.Fatal("a stalled provider recorded a message")
	}
	// Healing answers the stalled end of DATA with 451; a retry delivers.
	sim.SetFault(upstreamsim.None)
	checkDeliveredOnce(t, r, body)
}

// ---- 8.-9. recipients refused while the client waits ----

func TestEnginePartialRcptRefusalLive(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{})
	sim.SetFault(upstreamsim.RejectSomeRcpt)

	body := message("partly refused", 3000)
	s := send(t, r.addr, simUser, []string{"reject1@example.net", "bob@example.net"}, body)
	mustSMTPError(t, s.rcptErr["reject1@example.net"], 550, smtp.EnhancedCode{5, 1, 1}, "User unknown")
	if err := s.rcptErr["bob@example.net"]; err != nil {
		t.Fatalf("RCPT bob: %v", err)
	}
	mustProviderOK(t, s)
	msgs := sim.Messages()
	if len(msgs) != 1 || !slices.Equal(msgs[0].To, []string{"bob@example.net"}) || !bytes.Equal(msgs[0].Data, body) {
		t.Fatalf("the provider got %+v, want one message to bob", msgs)
	}
	if f := spoolFiles(t, r.spoolDir); len(f) != 0 {
		t.Fatalf("spool = %v, want empty", f)
	}
}

func TestEngineTempFailOneRcptLive(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{})
	sim.SetFault(upstreamsim.TempFailSomeRcpt)

	body := message("one recipient deferred", 3000)
	s := send(t, r.addr, simUser, []string{"bob@example.net", "later@example.net"}, body)
	if len(s.rcptErr) != 0 {
		t.Fatalf("RCPT errors: %v; a 4xx must not reach the client", s.rcptErr)
	}
	id := mustQueued(t, s)
	// bob got it at once; later@ waits in the queue.
	if got := messagesTo(sim, "bob@example.net"); len(got) != 1 || !bytes.Equal(got[0].Data, body) || len(got[0].To) != 1 {
		t.Fatalf("bob's copy: %+v", got)
	}
	checkQueuedEntry(t, r, id, []string{"later@example.net"}, "450")
	if len(messagesTo(sim, "later@example.net")) != 0 {
		t.Fatal("later@ got a copy while the provider deferred it")
	}

	sim.SetFault(upstreamsim.None)
	rig.WaitUntil(t, outcomeWait, "later@ to get its copy", func() bool { return len(messagesTo(sim, "later@example.net")) > 0 })
	waitSpoolEmpty(t, r)
	for _, rc := range []string{"bob@example.net", "later@example.net"} {
		got := messagesTo(sim, rc)
		if len(got) != 1 || !bytes.Equal(got[0].Data, body) {
			t.Fatalf("%s got %d copies, want 1", rc, len(got))
		}
	}
	if n := len(sim.Messages()); n != 2 {
		t.Fatalf("the provider got %d transactions, want 2", n)
	}
}

// ---- 10.-12. refusals after the client heard 250: bounces ----

// bounceLog is what the queue logs between deciding on a bounce and
// queueing it: the one synchronous point between a refusal and the
// bounce's own first attempt.
const bounceLog = "message refused permanently; bouncing to the sender"

func TestEngineBounceAfterQueued(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{})
	rec := rig.Record(t, r.eng.Bus())

	// (a) Queued while the provider is down; the retry gets 554; the
	// DSN reaches the sender through the same account. The bounce is
	// attempted at once, so the provider is healed the moment the queue
	// decides to bounce, before the DSN exists.
	sim.SetFault(upstreamsim.Refuse)
	body := message("Please bounce me", 3000)
	id := mustQueued(t, send(t, r.addr, simUser, []string{"bob@example.net"}, body))
	r.hooks.On(bounceLog, func() { sim.SetFault(upstreamsim.None) })
	sim.SetFault(upstreamsim.PermFail)

	rig.WaitUntil(t, outcomeWait, "the bounce to reach alice", func() bool { return len(messagesTo(sim, simUser)) > 0 })
	waitSpoolEmpty(t, r)
	if n := len(messagesTo(sim, "bob@example.net")); n != 0 {
		t.Fatalf("bob got %d copies of a refused message", n)
	}
	dsns := messagesTo(sim, simUser)
	if len(dsns) != 1 {
		t.Fatalf("alice got %d bounces, want 1", len(dsns))
	}
	if dsns[0].From != simUser || dsns[0].User != simUser {
		t.Fatalf("the bounce went out as %s (login %s), want through alice's account", dsns[0].From, dsns[0].User)
	}
	rep := parseDSN(t, dsns[0].Data)
	if !slices.Equal(rep.to, []string{simUser}) {
		t.Errorf("bounce To = %v", rep.to)
	}
	checkDSNRecipient(t, rep, "bob@example.net", "5.7.1", "554")
	if !strings.Contains(rep.origHeaders, "Subject: Please bounce me") {
		t.Errorf("the bounce's original headers lack the Subject:\n%s", rep.origHeaders)
	}
	if strings.Contains(rep.origHeaders, "quick brown fox") {
		t.Errorf("the bounce carries the original body")
	}
	b := rec.WaitFor(t, eventWait, "a Bounced event", rig.IsEvent(events.Bounced, id))
	if !slices.Equal(b.Rcpts, []string{"bob@example.net"}) || !strings.Contains(b.Error, "554") {
		t.Errorf("Bounced event = %+v", b)
	}

	// (b) With the provider refusing everything for good, the bounce
	// fails too, and is dropped: no bounce of the bounce.
	before := len(rec.All())
	sim.SetFault(upstreamsim.TempFailData)
	id2 := mustQueued(t, send(t, r.addr, simUser, []string{"carol@example.net"}, message("bounce me too", 3000)))
	sim.SetFault(upstreamsim.PermFail)
	rec.WaitFor(t, eventWait, "the second message to bounce", rig.IsEvent(events.Bounced, id2))
	var dsnID string
	rig.WaitUntil(t, outcomeWait, "the second bounce to be queued", func() bool {
		for _, e := range rec.All()[before:] {
			if e.Kind == events.Queued && e.MessageID != id2 {
				dsnID = e.MessageID
				return true
			}
		}
		return false
	})
	// A dropped bounce reaches no one by mail, so it is reported as a
	// Problem, not counted as a bounce delivered to the sender.
	rec.WaitFor(t, eventWait, "the bounce's own refusal", rig.IsEvent(events.Problem, dsnID))
	waitSpoolEmpty(t, r)
	var queued []string
	for _, e := range rec.All()[before:] {
		if e.Kind == events.Queued {
			queued = append(queued, e.MessageID)
		}
	}
	if !slices.Equal(queued, []string{id2, dsnID}) {
		t.Fatalf("queued during (b): %v, want the message and one bounce %v", queued, []string{id2, dsnID})
	}
	if n := len(sim.Messages()); n != 1 {
		t.Fatalf("the provider holds %d messages, want only the first bounce", n)
	}
}

func TestEnginePartialRefusalOnRetry(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{})
	rec := rig.Record(t, r.eng.Bus())
	sim.SetFault(upstreamsim.Refuse)

	body := message("Half of it", 3000)
	id := mustQueued(t, send(t, r.addr, simUser, []string{"bob@example.net", "reject1@example.net"}, body))
	sim.SetFault(upstreamsim.RejectSomeRcpt)

	rig.WaitUntil(t, outcomeWait, "the bounce to reach alice", func() bool { return len(messagesTo(sim, simUser)) > 0 })
	waitSpoolEmpty(t, r)
	good := messagesTo(sim, "bob@example.net")
	if len(good) != 1 || !bytes.Equal(good[0].Data, body) || !slices.Equal(good[0].To, []string{"bob@example.net"}) {
		t.Fatalf("bob's copy: %+v", good)
	}
	if n := len(messagesTo(sim, "reject1@example.net")); n != 0 {
		t.Fatalf("the refused recipient got %d copies", n)
	}
	dsns := messagesTo(sim, simUser)
	if len(dsns) != 1 {
		t.Fatalf("alice got %d bounces, want 1", len(dsns))
	}
	rep := parseDSN(t, dsns[0].Data)
	checkDSNRecipient(t, rep, "reject1@example.net", "5.1.1", "550")
	if !strings.Contains(rep.origHeaders, "Subject: Half of it") {
		t.Errorf("original headers:\n%s", rep.origHeaders)
	}
	rec.WaitFor(t, eventWait, "bob's Delivered event", func(e events.Event) bool {
		return e.Kind == events.Delivered && e.MessageID == id && slices.Equal(e.Rcpts, []string{"bob@example.net"})
	})
	b := rec.WaitFor(t, eventWait, "the Bounced event", rig.IsEvent(events.Bounced, id))
	if !slices.Equal(b.Rcpts, []string{"reject1@example.net"}) {
		t.Fatalf("Bounced event rcpts = %v", b.Rcpts)
	}
}

func TestEngineMaxAgeExpiry(t *testing.T) {
	t.Parallel()
	const maxAge = 300 * time.Millisecond
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{tune: func(c *config.Config) { c.MaxAge = config.Duration(maxAge) }})
	rec := rig.Record(t, r.eng.Bus())
	sim.SetFault(upstreamsim.Refuse)

	body := message("Too old", 3000)
	id := mustQueued(t, send(t, r.addr, simUser, []string{"bob@example.net"}, body))
	m, ok := r.eng.Queue().Get(id)
	if !ok {
		t.Fatal("not queued")
	}
	// Expiry is checked after an attempt. Wait out max_age, then ask for
	// an attempt at once (as "smtpshim queue retry" does) rather than wait
	// for the account's next probe, seconds away.
	time.Sleep(time.Until(m.Created.Add(maxAge)))
	rig.WaitUntil(t, outcomeWait, "an expiring attempt", func() bool {
		if _, ok := rec.Find(rig.IsEvent(events.Bounced, id)); ok {
			return true
		}
		r.eng.RetryNow(id)
		return false
	})
	var dsnID string
	rig.WaitUntil(t, outcomeWait, "the bounce to be queued", func() bool {
		for _, e := range rec.All() {
			if e.Kind == events.Queued && e.MessageID != id {
				dsnID = e.MessageID
				return true
			}
		}
		return false
	})
	// The provider comes back; the bounce goes out, the original doesn't.
	sim.SetFault(upstreamsim.None)
	rig.WaitUntil(t, outcomeWait, "the bounce to reach alice", func() bool {
		if len(messagesTo(sim, simUser)) > 0 {
			return true
		}
		r.eng.RetryNow("")
		return false
	})
	waitSpoolEmpty(t, r)
	if n := len(messagesTo(sim, "bob@example.net")); n != 0 {
		t.Fatalf("the expired original reached bob (%d copies)", n)
	}
	dsns := messagesTo(sim, simUser)
	if len(dsns) != 1 {
		t.Fatalf("alice got %d bounces, want 1", len(dsns))
	}
	rep := parseDSN(t, dsns[0].Data)
	checkDSNRecipient(t, rep, "bob@example.net", "4.4.7", "gave up after")
	if !strings.Contains(rep.origHeaders, "Subject: Too old") {
		t.Errorf("original headers:\n%s", rep.origHeaders)
	}
	if _, ok := rec.Find(rig.IsEvent(events.Delivered, dsnID)); !ok {
		t.Errorf("no Delivered event for the bounce %s", dsnID)
	}
}

// ---- 13. restart ----

func TestEngineRestartRecovery(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	spoolDir := t.TempDir()
	r1 := startRig(t, sim, rigOptions{spoolDir: spoolDir})
	sim.SetFault(upstreamsim.Refuse)
	var bodies [][]byte
	for i := range 3 {
		b := message(fmt.Sprintf("restart %d", i), 3000)
		bodies = append(bodies, b)
		mustQueued(t, send(t, r1.addr, simUser, []string{"bob@example.net"}, b))
	}
	r1.stop()
	if got := len(spoolFiles(t, spoolDir)); got != 6 {
		t.Fatalf("after shutdown the spool holds %d files, want 3 bodies and 3 metadata", got)
	}
	sim.SetFault(upstreamsim.None)

	// With hour-long backoff, only the start-up try can deliver promptly.
	start := time.Now()
	r2 := startRig(t, sim, rigOptions{spoolDir: spoolDir, tune: func(c *config.Config) {
		c.RetryMin = config.Duration(time.Hour)
		c.RetryMax = config.Duration(time.Hour)
	}})
	rig.WaitUntil(t, 10*time.Second, "the 3 queued messages to be delivered after the restart", func() bool {
		return len(sim.Messages()) >= 3
	})
	t.Logf("delivered %s after the restart", time.Since(start).Round(time.Millisecond))
	waitSpoolEmpty(t, r2)
	for i, b := range bodies {
		if n := messagesWith(sim, b); n != 1 {
			t.Errorf("message %d delivered %d times, want 1", i, n)
		}
	}
	if n := len(sim.Messages()); n != 3 {
		t.Fatalf("the provider holds %d messages, want 3", n)
	}
}

// ---- 14. account health ----

// While an account's server is down, the queue probes it once per health
// backoff instead of retrying every message on its own backoff.
//
// After any connection failure the pool's next probe is healthBackoff(n)
// away: 5 s << (n-1), capped at 5 min, and at least half that after
// jitter, so never less than 2.5 s. Every message of the account waits
// for that probe, and only one attempt runs while the account is down. A
// 2 s window thus sees at most one scheduled probe, plus at most one
// already under way when it opens: <= 2. Retried on their own backoff (50
// to 200 ms here), 20 messages would make hundreds of connections.
func TestEngineAccountHealthLimitsProbes(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{})
	sim.SetFault(upstreamsim.Refuse)

	c := dialClient(t, r.addr)
	defer c.Close()
	for i := range 20 {
		mustQueued(t, sendOn(t, c, simUser, []string{"bob@example.net"}, message(fmt.Sprintf("burst %d", i), 2000)))
	}
	c.Quit()
	if n := r.eng.Queue().Len(); n != 20 {
		t.Fatalf("queue length %d, want 20", n)
	}
	atQueued := sim.Refused()
	time.Sleep(2 * time.Second) // the measuring window
	inWindow := sim.Refused() - atQueued
	t.Logf("connections: %d while queueing 20 messages, %d in the next 2 s", atQueued, inWindow)
	if inWindow > 2 {
		t.Fatalf("%d connections to a down server in 2 s; want at most 2 (one probe per health backoff)", inWindow)
	}
	if sim.Connections() != 0 {
		t.Fatal("a refused connection was counted as accepted")
	}
}

// Messages that trickle in while the account is down wait for the
// account's next probe too: one probe at a time, not one per message.
func TestEngineAccountDownTrickle(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{})
	sim.SetFault(upstreamsim.Refuse)

	// The first message finds the server down (one connection).
	mustQueued(t, send(t, r.addr, simUser, []string{"bob@example.net"}, message("trickle 0", 2000)))
	start := sim.Refused()
	c := dialClient(t, r.addr)
	defer c.Close()
	// Nine more, each after the previous one's retry would have fallen
	// due (retry_min is 50 ms): 1.8 s, shorter than the >= 2.5 s the
	// account waits after its first failure.
	for i := 1; i < 10; i++ {
		time.Sleep(200 * time.Millisecond)
		mustQueued(t, sendOn(t, c, simUser, []string{"bob@example.net"}, message(fmt.Sprintf("trickle %d", i), 2000)))
	}
	c.Quit()
	extra := sim.Refused() - start
	t.Logf("%d connections while 9 more messages trickled in", extra)
	if extra > 2 {
		t.Fatalf("%d connections to a down server for 9 messages; want at most 2: queued messages must wait for the account's probe", extra)
	}
}

// ---- 15. spool not writable ----

func TestEngineSpoolNotWritable(t *testing.T) {
	t.Parallel()
	// breakSpool turns tmp/ into a regular file: every new spool file
	// fails (as root, permissions would not stop us).
	breakSpool := func(t *testing.T, r *engineRig) {
		tmp := filepath.Join(r.spoolDir, "tmp")
		if err := os.RemoveAll(tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(tmp, []byte("not a directory\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The provider accepts while the client waits, so no spool is needed
	// and the client hears the provider's 250. A small body never leaves
	// memory; a large one finds the spool broken half-way, the upstream
	// leg carries on, and the problem is reported.
	t.Run("provider healthy", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, false)
		r := startRig(t, sim, rigOptions{})
		rec := rig.Record(t, r.eng.Bus())
		breakSpool(t, r)
		small := message("no spool, healthy", 3000)
		mustProviderOK(t, send(t, r.addr, simUser, []string{"bob@example.net"}, small))
		large := message("no spool, healthy, large", 4<<20) // beyond the listener's in-memory buffer
		mustProviderOK(t, send(t, r.addr, simUser, []string{"bob@example.net"}, large))
		for _, b := range [][]byte{small, large} {
			if n := messagesWith(sim, b); n != 1 {
				t.Fatalf("the provider got %d copies of a %d-byte message, want 1", n, len(b))
			}
		}
		rec.WaitFor(t, eventWait, "a Problem event about the spool", rig.IsEvent(events.Problem, ""))
	})
	// Nothing can be made durable: 452 4.3.1, and the client keeps its copy.
	t.Run("provider down", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, false)
		r := startRig(t, sim, rigOptions{})
		rec := rig.Record(t, r.eng.Bus())
		breakSpool(t, r)
		sim.SetFault(upstreamsim.Refuse)
		s := send(t, r.addr, simUser, []string{"bob@example.net"}, message("no spool, down", 3000))
		mustSMTPError(t, s.err, 452, smtp.EnhancedCode{4, 3, 1}, "")
		rec.WaitFor(t, eventWait, "a Problem event about the spool", rig.IsEvent(events.Problem, ""))
		if n := r.eng.Queue().Len(); n != 0 {
			t.Fatalf("queue length %d, want 0", n)
		}
		if n := rec.Count(rig.IsEvent(events.Queued, "")); n != 0 {
			t.Fatalf("%d Queued events without a spool", n)
		}
	})
}

// ---- 16. queue commands over the control socket ----

func TestEngineControlSocket(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{control: true})
	rec := rig.Record(t, r.eng.Bus())
	sim.SetFault(upstreamsim.Refuse)

	id := mustQueued(t, send(t, r.addr, simUser, []string{"bob@example.net"}, message("via control", 3000)))
	// Let the queue's first retry fail; after it the account waits >= 5 s.
	rec.WaitFor(t, eventWait, "the first retry to fail", rig.IsEvent(events.Deferred, id))

	c, err := control.Dial(r.spoolDir)
	if err != nil {
		t.Fatalf("control.Dial: %v", err)
	}
	l, err := c.List()
	if err != nil || len(l) != 1 || l[0].ID != id || l[0].LastError == "" {
		t.Fatalf("List = %+v, %v; want %s with its last error", l, err, id)
	}
	m, err := c.Get(id)
	if err != nil || m.ID != id || !slices.Equal(m.Rcpts, []string{"bob@example.net"}) {
		t.Fatalf("Get(%s) = %+v, %v", id, m, err)
	}
	if until := time.Until(m.NextTry); until < time.Second {
		t.Fatalf("next try in %s; want the account's probe backoff (seconds)", until)
	}

	// Retry makes it due at once: a new connection attempt, long before
	// the scheduled one.
	refused := sim.Refused()
	deferred := rec.Count(rig.IsEvent(events.Deferred, id))
	if n, err := c.Retry(id); err != nil || n != 1 {
		t.Fatalf("Retry(%s) = %d, %v", id, n, err)
	}
	rig.WaitUntil(t, 3*time.Second, "the retried message to be attempted", func() bool {
		return sim.Refused() > refused && rec.Count(rig.IsEvent(events.Deferred, id)) > deferred
	})
	if _, err := c.Retry("20000101T000000-nosuchmessage"); err == nil {
		t.Error("Retry of an unknown ID succeeded")
	}
	if _, err := c.Get("20000101T000000-nosuchmessage"); err == nil {
		t.Error("Get of an unknown ID succeeded")
	}
	st, err := c.Status()
	if err != nil || st.Queued != 1 {
		t.Errorf("Status = %+v, %v; want 1 queued", st, err)
	}

	if err := c.Delete(id); err != nil {
		t.Fatalf("Delete(%s): %v", id, err)
	}
	if f := spoolFiles(t, r.spoolDir); len(f) != 0 {
		t.Fatalf("after Delete the spool holds %v", f)
	}
	if l, err := c.List(); err != nil || len(l) != 0 {
		t.Fatalf("List after Delete = %+v, %v", l, err)
	}
	if err := c.Delete(id); err == nil {
		t.Error("a second Delete succeeded")
	}
	if st, err := c.Status(); err != nil || st.Queued != 0 {
		t.Errorf("Status after Delete = %+v, %v", st, err)
	}
}

// The queue may be listed, read and retried (the control socket, the
// tray) while its retries run.
func TestEngineQueueCommandsDuringRetries(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{})
	rec := rig.Record(t, r.eng.Bus())
	sim.SetFault(upstreamsim.TempFailData) // the account stays healthy: retries every 50-200 ms
	var ids []string
	for i := range 5 {
		ids = append(ids, mustQueued(t, send(t, r.addr, simUser, []string{"bob@example.net"}, message(fmt.Sprintf("busy %d", i), 2000))))
	}
	rig.WaitUntil(t, outcomeWait, "several retries", func() bool {
		for _, m := range r.eng.List() {
			if m.LastError == "" {
				t.Fatalf("queued entry %s without its last error", m.ID)
			}
		}
		for _, id := range ids {
			if _, ok := r.eng.Get(id); !ok {
				t.Fatalf("queued message %s vanished", id)
			}
		}
		r.eng.RetryNow(ids[0])
		_ = r.eng.Status()
		return rec.Count(rig.IsEvent(events.Deferred, "")) >= 20
	})
	sim.SetFault(upstreamsim.None)
	waitSpoolEmpty(t, r)
	if n := len(sim.Messages()); n != 5 {
		t.Fatalf("the provider got %d messages, want 5", n)
	}
}

// ---- benchmarks ----

func reportLatencies(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	b.ReportMetric(float64(sum.Nanoseconds())/float64(len(lat)), "ns/op")
	b.ReportMetric(float64(pct(0.50).Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(pct(0.99).Nanoseconds()), "p99-ns")
}

// benchSend sends body on a new client connection and returns the time
// from the end of DATA to the reply.
func benchSend(b *testing.B, addr string, body []byte, check func(testing.TB, sent)) time.Duration {
	c := dialClient(b, addr)
	s := sendOn(b, c, simUser, []string{"bob@example.net"}, body)
	c.Quit()
	c.Close()
	check(b, s)
	return s.took
}

// BenchmarkFirstDeliveryWarm: the provider is healthy and a pooled,
// authenticated upstream connection waits; each message comes on a new
// client connection. ns/op, p50 and p99 are the end of DATA to the
// provider's 250 relayed to the client.
func BenchmarkFirstDeliveryWarm(b *testing.B) {
	sim := startSim(b, true)
	r := startRig(b, sim, rigOptions{quiet: true})
	body := message("bench warm", 2000)
	benchSend(b, r.addr, body, mustProviderOK) // pools the upstream connection
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		lat = append(lat, benchSend(b, r.addr, body, mustProviderOK))
	}
	b.StopTimer()
	if n := sim.Connections(); n != 1 {
		b.Fatalf("%d upstream connections; want the one pooled connection reused", n)
	}
	reportLatencies(b, lat)
}

// BenchmarkQueuedWrite10KB: the provider refuses connections, so each
// 10 KB message is made durable (body, metadata and directory fsynced)
// before the 250. The spool is under $TMPDIR.
func BenchmarkQueuedWrite10KB(b *testing.B) {
	sim := startSim(b, true)
	sim.SetFault(upstreamsim.Refuse)
	r := startRig(b, sim, rigOptions{quiet: true, tune: func(c *config.Config) {
		// Keep the retry loop out of the measurement.
		c.RetryMin = config.Duration(time.Hour)
		c.RetryMax = config.Duration(time.Hour)
	}})
	body := message("bench queued", 10<<10)
	queued := func(tb testing.TB, s sent) { mustQueued(tb, s) }
	benchSend(b, r.addr, body, queued) // marks the account down
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		lat = append(lat, benchSend(b, r.addr, body, queued))
	}
	b.StopTimer()
	reportLatencies(b, lat)
}
