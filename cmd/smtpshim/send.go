package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/crlf"
	"github.com/smtpshim/smtpshim/shim/dsn"
	"github.com/smtpshim/smtpshim/shim/hints"
	"github.com/smtpshim/smtpshim/shim/queue"
	shimrelay "github.com/smtpshim/smtpshim/shim/relay"
	"github.com/smtpshim/smtpshim/shim/route"
	"github.com/smtpshim/smtpshim/shim/spool"
	"github.com/smtpshim/smtpshim/shim/upstream"
)

// sendOptions are the sendmail flags smtpshim understands, and what the
// message's header adds to them.
type sendOptions struct {
	from        string // -f / -r: the envelope sender
	fromHdr     bool   // -t: recipients from the headers
	dotStops    bool   // without -i, a line with a single dot ends the message
	readEnvFrom bool   // --read-envelope-from: the envelope sender from From:
	rcpts       []string
	acctKey     string // the sender's account, for hints

	// Set by readHeader.
	hdrFrom  string // the address in the From: header ("" when none or unreadable)
	parsed   bool   // the header section parsed as a header
	hasFrom  bool
	hasDate  bool
	hasMsgID bool
}

// parseSendmailArgs reads sendmail's command line. Flags that make no
// sense here (-o options, -B, -F, -N, -R, -V, -X) are accepted and
// ignored, as scripts pass them out of habit.
func parseSendmailArgs(args []string) (*sendOptions, error) {
	o := &sendOptions{dotStops: true}
	takesValue := map[byte]bool{'f': true, 'F': true, 'o': false, 'B': true, 'N': true, 'R': true, 'V': true, 'X': true, 'r': true}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			o.rcpts = append(o.rcpts, args[i+1:]...)
			break
		}
		if len(arg) < 2 || arg[0] != '-' {
			o.rcpts = append(o.rcpts, arg)
			continue
		}
		flagc := arg[1]
		val := arg[2:]
		switch {
		case arg == "--read-envelope-from":
			o.readEnvFrom = true
		case arg == "-oi":
			o.dotStops = false
		case strings.Trim(arg[1:], "ti") == "":
			// -t, -i, and the combined -ti / -it scripts use.
			o.fromHdr = o.fromHdr || strings.Contains(arg, "t")
			o.dotStops = o.dotStops && !strings.Contains(arg, "i")
		case strings.HasPrefix(arg, "-o") || arg == "-v" || arg == "-bm" || arg == "-U" || arg == "-n":
		case strings.HasPrefix(arg, "-b"):
			return nil, exit(exUsage, "sendmail mode %s is not supported: smtpshim send only sends a message read from standard input", arg)
		case takesValue[flagc]:
			if val == "" {
				if i+1 >= len(args) {
					return nil, exit(exUsage, "%s needs a value", arg)
				}
				i++
				val = args[i]
			}
			if flagc == 'f' || flagc == 'r' {
				o.from = strings.Trim(val, "<>")
			}
		default:
			return nil, exit(exUsage, "unknown option %s (supported: -t, -f SENDER, -i, -oi, --read-envelope-from)", arg)
		}
	}
	var rc []string
	for _, r := range o.rcpts {
		for _, part := range strings.Split(r, ",") {
			if p := strings.TrimSpace(part); p != "" {
				rc = append(rc, p)
			}
		}
	}
	o.rcpts = rc
	return o, nil
}

const maxHeaderBytes = 1 << 20

// readHeader reads the header section (through the empty line) and
// returns it raw, with -t recipients and the From address parsed out.
func readHeader(r *bufio.Reader, o *sendOptions) ([]byte, error) {
	var raw bytes.Buffer
	for {
		line, err := r.ReadSlice('\n')
		raw.Write(line)
		if raw.Len() > maxHeaderBytes {
			return nil, exit(exDataErr, "the message header is larger than 1 MB")
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 || err != nil {
			break
		}
	}
	hdr := raw.Bytes()
	// A copy for the parser, which wants a CRLF CRLF end: appending to hdr
	// itself could write over the blank line that ends the header.
	probe := make([]byte, 0, len(hdr)+4)
	probe = append(probe, bytes.TrimRight(hdr, "\r\n")...)
	probe = append(probe, "\r\n\r\n"...)
	msg, err := mail.ReadMessage(bytes.NewReader(probe))
	if err != nil || len(msg.Header) == 0 {
		return hdr, nil // not a parsable header: send it as it is
	}
	o.parsed = true
	_, o.hasFrom = msg.Header["From"]
	_, o.hasDate = msg.Header["Date"]
	_, o.hasMsgID = msg.Header["Message-Id"]
	if list, err := headerAddrs(msg.Header.Get("From")); err == nil && len(list) > 0 {
		o.hdrFrom = list[0]
	}
	if o.fromHdr {
		for _, k := range []string{"To", "Cc", "Bcc"} {
			for _, v := range msg.Header[textproto.CanonicalMIMEHeaderKey(k)] {
				list, err := headerAddrs(v)
				if err != nil {
					return nil, exit(exDataErr, "-t: the %s: header %q cannot be read as a list of addresses: %v", k, v, err)
				}
				o.rcpts = append(o.rcpts, list...)
			}
		}
		hdr = dropHeader(hdr, "Bcc")
	}
	return hdr, nil
}

// bareLocal matches a local name without a domain (root, bob), with an
// optional comment or angle brackets, as cron and old scripts write them:
// "root", "root (Cron Daemon)", "Cron Daemon <root>".
var bareLocal = regexp.MustCompile(`^\s*(?:[^<>]*<\s*([A-Za-z0-9._+-]+)\s*>|([A-Za-z0-9._+-]+)\s*(?:\([^()]*\))?)\s*$`)

// headerAddrs returns the addresses of an address-list header. A bare
// local name is kept as it is, for default_domain to complete.
func headerAddrs(v string) ([]string, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	if list, err := mail.ParseAddressList(v); err == nil {
		out := make([]string, len(list))
		for i, a := range list {
			out[i] = a.Address
		}
		return out, nil
	}
	// One odd entry (a bare "root") fails the whole list: read it entry by
	// entry. Commas inside quotes are rare in such headers.
	var out []string
	for _, part := range strings.Split(v, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		if a, err := mail.ParseAddress(part); err == nil {
			out = append(out, a.Address)
			continue
		}
		m := bareLocal.FindStringSubmatch(part)
		if m == nil {
			_, err := mail.ParseAddress(part)
			return nil, err
		}
		out = append(out, m[1]+m[2])
	}
	return out, nil
}

// qualify completes a bare local name with the default domain.
func qualify(addr, domain, what string, cfg *config.Config) (string, error) {
	if strings.Contains(addr, "@") {
		return addr, nil
	}
	if domain == "" {
		return "", exit(exUsage, "%s %q has no domain, and there is no default_domain to add: give a full address like %s@example.com, or set default_domain = \"example.com\" in %s", what, addr, addr, cfg.Path())
	}
	return addr + "@" + domain, nil
}

// addMissingFields adds the From, Date and Message-ID fields a message
// must have (RFC 5322) when the writer left them out, as sendmail does.
func addMissingFields(hdr []byte, o *sendOptions, sender string, now time.Time) []byte {
	if !o.parsed || (o.hasFrom && o.hasDate && o.hasMsgID) {
		return hdr
	}
	eol := "\n"
	if bytes.Contains(hdr, []byte("\r\n")) {
		eol = "\r\n"
	}
	// The fields go after the last header line, before the blank line.
	fields := bytes.TrimRight(hdr, "\r\n")
	end := hdr[len(fields):]
	if i := bytes.IndexByte(end, '\n'); i >= 0 {
		end = end[i+1:] // the blank line (or nothing for a header-only message)
	} else {
		end = nil
	}
	var out bytes.Buffer
	out.Grow(len(hdr) + 200)
	out.Write(fields)
	out.WriteString(eol)
	if !o.hasFrom {
		fmt.Fprintf(&out, "From: %s%s", (&mail.Address{Address: sender}).String(), eol)
	}
	if !o.hasDate {
		fmt.Fprintf(&out, "Date: %s%s", now.Format(time.RFC1123Z), eol)
	}
	if !o.hasMsgID {
		fmt.Fprintf(&out, "Message-ID: %s%s", newMessageID(sender, now), eol)
	}
	out.Write(end)
	return out.Bytes()
}

// newMessageID makes a unique Message-ID in the sender's domain.
func newMessageID(sender string, now time.Time) string {
	var b [12]byte
	rand.Read(b[:])
	domain := sender[strings.LastIndexByte(sender, '@')+1:]
	return fmt.Sprintf("<%d.%s@%s>", now.Unix(), hex.EncodeToString(b[:]), domain)
}

// dropHeader removes a header field, with its continuation lines.
func dropHeader(hdr []byte, name string) []byte {
	var out bytes.Buffer
	skipping := false
	for _, line := range bytes.SplitAfter(hdr, []byte("\n")) {
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			if !skipping {
				out.Write(line)
			}
			continue
		}
		colon := bytes.IndexByte(line, ':')
		skipping = colon > 0 && strings.EqualFold(strings.TrimSpace(string(line[:colon])), name)
		if !skipping {
			out.Write(line)
		}
	}
	return out.Bytes()
}

// dotReader ends the input at a line holding a single ".", as sendmail
// does without -i.
type dotReader struct {
	r    *bufio.Reader
	done bool
	line []byte
}

func (d *dotReader) Read(p []byte) (int, error) {
	for len(d.line) == 0 {
		if d.done {
			return 0, io.EOF
		}
		line, err := d.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			err = nil
		} else if s := string(line); s == ".\n" || s == ".\r\n" {
			d.done = true
			return 0, io.EOF
		}
		d.line = line
		if err != nil {
			d.done = true
			if len(line) == 0 {
				if errors.Is(err, io.EOF) {
					return 0, io.EOF
				}
				return 0, err
			}
		}
	}
	n := copy(p, d.line)
	d.line = d.line[n:]
	return n, nil
}

func (a *app) send(args []string) error {
	o, err := parseSendmailArgs(args)
	if err != nil {
		return err
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	in := bufio.NewReaderSize(a.stdin, 64<<10)
	hdr, err := readHeader(in, o)
	if err != nil {
		return err
	}
	var body io.Reader = in
	if o.dotStops {
		body = &dotReader{r: in}
	}
	// The envelope sender picks the account. It never comes silently from
	// the From: header, which a web form may fill in.
	switch {
	case o.from != "":
	case o.readEnvFrom && o.hdrFrom != "":
		o.from = o.hdrFrom
	case o.readEnvFrom:
		return exit(exUsage, "--read-envelope-from: the message has no From: header with an address; give -f you@example.com")
	default:
		o.from = cfg.EffectiveDefaultFrom()
	}
	if o.from == "" {
		return exit(exUsage, "no envelope sender: give -f you@example.com, or set default_from = \"you@example.com\" in %s (or use --read-envelope-from to take it from the From: header)", cfg.Path())
	}
	domain := cfg.EffectiveDefaultDomain()
	if o.from, err = qualify(o.from, domain, "the sender", cfg); err != nil {
		return err
	}
	for i, r := range o.rcpts {
		if o.rcpts[i], err = qualify(r, domain, "the recipient", cfg); err != nil {
			return err
		}
	}
	if len(o.rcpts) == 0 {
		return exit(exUsage, "no recipients: list them as arguments, or use -t to read To/Cc/Bcc")
	}
	if err := checkEnvelope(o); err != nil {
		return err
	}
	if acct, err := route.New(cfg.Accounts).Lookup(o.from); err == nil {
		o.acctKey = acct.Key()
	}
	hdr = addMissingFields(hdr, o, o.from, time.Now())
	refused, err := a.submit(cfg, o, io.MultiReader(bytes.NewReader(hdr), body))
	if err != nil || len(refused) == 0 {
		return err
	}
	// Some recipients were refused and the others have the message. As
	// sendmail does, that is a success (exit 0: the caller must not send
	// again to those who have it), with a warning, and a bounce for the
	// refused ones goes to the sender.
	for _, f := range refused {
		fmt.Fprintf(a.stderr, "smtpshim: warning: %s was refused: %s\n", f.Rcpt, f.Diagnostic)
	}
	if err := a.bounceRefused(cfg, o.from, hdr, refused); err != nil {
		return exit(exNoUser, "the message went to the other recipients, but the bounce for the refused ones could not be sent: %v", err)
	}
	fmt.Fprintf(a.stderr, "smtpshim: the message went to the other recipients; a bounce naming the refused ones goes to %s\n", o.from)
	return nil
}

// submit hands the message to the running smtpshim, or, when none
// answers, spools it and sends it itself. It returns the recipients that
// were refused while others took the message.
func (a *app) submit(cfg *config.Config, o *sendOptions, msg io.Reader) ([]spool.Failure, error) {
	refused, err := a.sendViaListener(cfg, o, msg)
	if errors.Is(err, errNoListener) {
		return a.sendDirect(cfg, o, msg)
	}
	return refused, err
}

// bounceRefused sends the sender a delivery status notification for the
// refused recipients, with the header of the message.
func (a *app) bounceRefused(cfg *config.Config, sender string, hdr []byte, refused []spool.Failure) error {
	rep := dsn.Report{
		ReportingMTA: cfg.HostnameOrDefault(),
		From:         sender,
		To:           sender,
		ArrivalDate:  time.Now(),
		Reason:       "smtpshim send delivered your message to its other recipients, but the provider refused the recipients below.",
	}
	for _, f := range refused {
		rep.Recipients = append(rep.Recipients, dsn.Recipient{Address: f.Rcpt, Action: "failed", Status: f.Status, Diagnostic: f.Diagnostic})
	}
	var buf bytes.Buffer
	if err := dsn.Build(&buf, rep, bytes.NewReader(hdr)); err != nil {
		return err
	}
	o := &sendOptions{from: sender, rcpts: []string{sender}}
	still, err := a.submit(cfg, o, &buf)
	if err == nil && len(still) > 0 {
		err = errors.New(still[0].Diagnostic)
	}
	return err
}

var errNoListener = errors.New("no smtpshim listening")

// sendViaListener hands the message to the running smtpshim, which queues
// it if the provider is unreachable.
func (a *app) sendViaListener(cfg *config.Config, o *sendOptions, msg io.Reader) ([]spool.Failure, error) {
	var conn net.Conn
	var err error
	for _, addr := range cfg.ListenAddrs() {
		if conn, err = net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
			break
		}
	}
	if conn == nil {
		return nil, errNoListener
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		return nil, errNoListener
	}
	if cfg.EffectiveLocalAuth() == config.LocalAuthRequire {
		if err := a.relayLogin(cfg, conn, c); err != nil {
			return nil, err
		}
	}
	if err := c.Mail(o.from, nil); err != nil {
		return nil, sendError("sender "+o.from, err, o.acctKey)
	}
	var refused []spool.Failure
	var firstErr error
	for _, r := range o.rcpts {
		err := c.Rcpt(r, nil)
		if err == nil {
			continue
		}
		if se, ok := upstream.SMTPError(err); !ok || se.Code/100 != 5 {
			// Not now, or the relay went away: nothing was sent yet, so
			// the caller can simply try again later.
			return nil, sendError("recipient "+r, err, o.acctKey)
		}
		if firstErr == nil {
			firstErr = sendError("recipient "+r, err, o.acctKey)
		}
		refused = append(refused, queue.FailureOf(r, err))
	}
	if len(refused) == len(o.rcpts) {
		return nil, firstErr
	}
	w, err := c.Data()
	if err != nil {
		return nil, sendError("message", err, o.acctKey)
	}
	if _, err := io.Copy(w, msg); err != nil {
		// Either the input failed or the relay went away; both are worth
		// another try later.
		return nil, exit(exTempFail, "sending the message to smtpshim: %v", err)
	}
	if err := w.Close(); err != nil {
		return nil, sendError("message", err, o.acctKey)
	}
	c.Quit()
	return refused, nil
}

// sendError maps an SMTP refusal to sendmail's exit codes.
func sendError(what string, err error, account string) error {
	se, ok := upstream.SMTPError(err)
	if !ok {
		return exit(exTempFail, "%s: %v", what, err)
	}
	code := exUnavailable
	switch {
	case se.Code/100 == 4:
		code = exTempFail
	case se.Code == 552:
		code = exDataErr
	case se.EnhancedCode[1] == 1 && strings.HasPrefix(what, "recipient"):
		code = exNoUser
	case se.EnhancedCode[1] == 7:
		code = exNoPerm
	}
	msg := fmt.Sprintf("%s refused: %d %d.%d.%d %s", what, se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
	if h := hints.ForAccount(err, account); h != "" {
		msg += "\nhint: " + h
	}
	return &exitError{code: code, err: errors.New(msg)}
}

// sendDirect is used when no smtpshim is running: the message goes through
// the same delivery unit the relay uses, straight to the provider while
// the command waits; if the provider can't take it now, it is queued in the
// spool and goes out when smtpshim starts.
func (a *app) sendDirect(cfg *config.Config, o *sendOptions, msg io.Reader) ([]spool.Failure, error) {
	acct, err := route.New(cfg.Accounts).Lookup(o.from)
	if err != nil {
		return nil, exit(exNoPerm, "%v", err)
	}
	dir, err := cfg.EffectiveSpoolDir()
	if err != nil {
		return nil, exit(exConfig, "%v", err)
	}
	sp, err := spool.Open(dir)
	if err != nil {
		return nil, exit(exTempFail, "smtpshim's listener does not answer and the spool is not usable: %v", err)
	}
	defer sp.Close()
	if err := checkFreeSpace(cfg, sp); err != nil {
		return nil, err
	}
	store := keychain(cfg)
	_, paused := sp.Paused()
	pool := upstream.NewPool(acct, upstream.Options{
		Hostname:        cfg.HostnameOrDefault(),
		Secrets:         store,
		Authenticator:   shim.DefaultAuthenticator(cfg, store, nil),
		KeychainTimeout: cfg.EffectiveKeychainTimeout(),
	}, nil)
	defer pool.Close()
	pools := func(key string) *upstream.Pool {
		if key == acct.Key() {
			return pool
		}
		return nil
	}
	q := queue.New(queue.Options{Spool: sp, Pool: pools, Hostname: cfg.HostnameOrDefault()})
	rl := shimrelay.New(shimrelay.Options{
		Pool:  pools,
		Queue: q,
		Spool: sp,
		// The command waits for the provider's real answer: a script
		// hears it in the exit code.
		SyncWait: sendWait,
		// A paused relay (its pause is kept in the spool) sends nothing,
		// and neither does sendmail mode while it is not running.
		Paused: func() bool { return paused },
	})
	defer rl.Close()

	d, err := rl.Start(acct, o.from, shimrelay.StartOptions{Client: "smtpshim send"})
	if err != nil {
		return nil, sendError("sender "+o.from, err, o.acctKey)
	}
	var refused []spool.Failure
	var lines []string
	for _, r := range o.rcpts {
		err := d.AddRcpt(r)
		if err == nil {
			continue
		}
		if se, ok := upstream.SMTPError(err); !ok || se.Code/100 != 5 {
			d.Abort()
			return nil, sendError("recipient "+r, err, o.acctKey)
		}
		refused = append(refused, queue.FailureOf(r, err))
		lines = append(lines, r+": "+oneLine(err.Error()))
	}
	if len(refused) == len(o.rcpts) {
		d.Abort()
		return nil, exit(exUnavailable, "the provider refused the message:\n  %s", strings.Join(lines, "\n  "))
	}
	max := cfg.EffectiveMaxMessageSize()
	rec, err := d.Body(&capReader{r: crlf.NewReader(msg), left: max})
	var re *shimrelay.ReadError
	switch {
	case errors.As(err, &re) && errors.Is(err, errTooBig):
		return nil, exit(exDataErr, "the message is over max_message_size (%d bytes)", max)
	case errors.As(err, &re):
		return nil, exit(exIOErr, "reading the message: %v", re.Err)
	case err != nil:
		return nil, sendError("message", err, o.acctKey)
	}
	if rec.Queued && paused {
		fmt.Fprintf(a.stderr, "smtpshim is paused: the message is queued as %s and goes out after \"smtpshim serve\" and \"smtpshim resume\"\n", rec.ID)
	} else if rec.Queued {
		fmt.Fprintf(a.stderr, "smtpshim is not running and the provider could not take the message now; it is %s, and goes out when smtpshim starts\n", rec.Text)
	}
	// Some recipients refused, the others have it: the caller reports them.
	return refused, nil
}

// sendWait is how long "smtpshim send" waits for the provider's answer
// before it leaves the message queued.
const sendWait = 5 * time.Minute

var errTooBig = errors.New("message too large")

// capReader fails once more than left bytes were read.
type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return n, errTooBig
	}
	return n, err
}

func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}
