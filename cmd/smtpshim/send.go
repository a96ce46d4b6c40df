package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/crlf"
	"github.com/smtpshim/smtpshim/shim/hints"
	"github.com/smtpshim/smtpshim/shim/queue"
	shimrelay "github.com/smtpshim/smtpshim/shim/relay"
	"github.com/smtpshim/smtpshim/shim/route"
	"github.com/smtpshim/smtpshim/shim/spool"
	"github.com/smtpshim/smtpshim/shim/upstream"
)

// sendOptions are the sendmail flags smtpshim understands.
type sendOptions struct {
	from     string
	fromHdr  bool // -t: recipients from the headers
	dotStops bool // without -i, a line with a single dot ends the message
	rcpts    []string
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
			return nil, exit(exUsage, "unknown option %s (supported: -t, -f SENDER, -i, -oi)", arg)
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
	msg, err := mail.ReadMessage(bytes.NewReader(append(bytes.TrimRight(hdr, "\r\n"), "\r\n\r\n"...)))
	if err != nil {
		return hdr, nil // not a parsable header: send it as it is
	}
	if o.from == "" {
		if a, err := mail.ParseAddress(msg.Header.Get("From")); err == nil {
			o.from = a.Address
		}
	}
	if o.fromHdr {
		for _, k := range []string{"To", "Cc", "Bcc"} {
			if list, err := msg.Header.AddressList(k); err == nil {
				for _, a := range list {
					o.rcpts = append(o.rcpts, a.Address)
				}
			}
		}
		hdr = dropHeader(hdr, "Bcc")
	}
	return hdr, nil
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
	if o.from == "" {
		return exit(exUsage, "no sender: give -f you@example.com or a From: header")
	}
	if len(o.rcpts) == 0 {
		return exit(exUsage, "no recipients: list them as arguments, or use -t to read To/Cc/Bcc")
	}
	if err := checkEnvelope(o); err != nil {
		return err
	}
	msg := io.MultiReader(bytes.NewReader(hdr), body)
	if err := a.sendViaListener(cfg, o, msg); !errors.Is(err, errNoListener) {
		return err
	}
	return a.sendDirect(cfg, o, msg)
}

var errNoListener = errors.New("no smtpshim listening")

// sendViaListener hands the message to the running smtpshim, which queues
// it if the provider is unreachable.
func (a *app) sendViaListener(cfg *config.Config, o *sendOptions, msg io.Reader) error {
	var conn net.Conn
	var err error
	for _, addr := range cfg.ListenAddrs() {
		if conn, err = net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
			break
		}
	}
	if conn == nil {
		return errNoListener
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		return errNoListener
	}
	if cfg.EffectiveLocalAuth() == config.LocalAuthRequire {
		if err := a.relayLogin(cfg, conn, c); err != nil {
			return err
		}
	}
	if err := c.Mail(o.from, nil); err != nil {
		return sendError("sender "+o.from, err)
	}
	for _, r := range o.rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			return sendError("recipient "+r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return sendError("message", err)
	}
	if _, err := io.Copy(w, msg); err != nil {
		// Either the input failed or the relay went away; both are worth
		// another try later.
		return exit(exTempFail, "sending the message to smtpshim: %v", err)
	}
	if err := w.Close(); err != nil {
		return sendError("message", err)
	}
	c.Quit()
	return nil
}

// sendError maps an SMTP refusal to sendmail's exit codes.
func sendError(what string, err error) error {
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
	if h := hints.For(err); h != "" {
		msg += "\nhint: " + h
	}
	return &exitError{code: code, err: errors.New(msg)}
}

// sendDirect is used when no smtpshim is running: the message goes through
// the same delivery unit the relay uses, straight to the provider while
// the command waits; if the provider can't take it now, it is queued in the
// spool and goes out when smtpshim starts.
func (a *app) sendDirect(cfg *config.Config, o *sendOptions, msg io.Reader) error {
	acct, err := route.New(cfg.Accounts).Lookup(o.from)
	if err != nil {
		return exit(exNoPerm, "%v", err)
	}
	dir, err := cfg.EffectiveSpoolDir()
	if err != nil {
		return exit(exConfig, "%v", err)
	}
	sp, err := spool.Open(dir)
	if err != nil {
		return exit(exTempFail, "smtpshim's listener does not answer and the spool is not usable: %v", err)
	}
	defer sp.Close()
	if err := checkFreeSpace(cfg, sp); err != nil {
		return err
	}
	store := keychain(cfg)
	_, paused := sp.Paused()
	pool := upstream.NewPool(acct, upstream.Options{
		Hostname:        cfg.HostnameOrDefault(),
		Secrets:         store,
		Authenticator:   shim.DefaultAuthenticator(store, cfg.EffectiveKeychainTimeout()),
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
		return sendError("sender "+o.from, err)
	}
	var refused []string
	for _, r := range o.rcpts {
		if err := d.AddRcpt(r); err != nil {
			refused = append(refused, r+": "+oneLine(err.Error()))
		}
	}
	if len(refused) == len(o.rcpts) {
		d.Abort()
		return exit(exUnavailable, "the provider refused the message:\n  %s", strings.Join(refused, "\n  "))
	}
	max := cfg.EffectiveMaxMessageSize()
	rec, err := d.Body(&capReader{r: crlf.NewReader(msg), left: max})
	var re *shimrelay.ReadError
	switch {
	case errors.As(err, &re) && errors.Is(err, errTooBig):
		return exit(exDataErr, "the message is over max_message_size (%d bytes)", max)
	case errors.As(err, &re):
		return exit(exIOErr, "reading the message: %v", re.Err)
	case err != nil:
		return sendError("message", err)
	}
	if rec.Queued && paused {
		fmt.Fprintf(a.stderr, "smtpshim is paused: the message is queued as %s and goes out after \"smtpshim serve\" and \"smtpshim resume\"\n", rec.ID)
	} else if rec.Queued {
		fmt.Fprintf(a.stderr, "smtpshim is not running and the provider could not take the message now; it is %s, and goes out when smtpshim starts\n", rec.Text)
	}
	if len(refused) > 0 {
		return exit(exNoUser, "the provider refused the message:\n  %s", strings.Join(refused, "\n  "))
	}
	return nil
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
