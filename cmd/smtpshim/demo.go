package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/smtpshim/smtpshim/shim"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/crlf"
	"github.com/smtpshim/smtpshim/shim/secrets"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

// demo runs smtpshim against a built-in provider that demands AUTH over
// STARTTLS, and sends a message through it the way an old client would.
func (a *app) demo(args []string) error {
	if len(args) > 0 {
		return exit(exUsage, "demo takes no arguments")
	}
	out := a.stdout
	const (
		sender   = "alice@example.com"
		password = "demo-password-not-real"
		rcpt     = "bob@example.net"
	)
	prov, err := upstreamsim.Start(upstreamsim.Options{Users: map[string]string{sender: password}, Chunking: true})
	if err != nil {
		return exit(exSoftware, "starting the demo provider: %v", err)
	}
	defer prov.Close()
	fmt.Fprintf(out, "1. A demo mail provider is listening on %s. Like Gmail or Microsoft 365 it demands\n   STARTTLS and SMTP AUTH (PLAIN or LOGIN) before it takes any mail.\n\n", prov.Addr)

	spoolDir, err := os.MkdirTemp("", "smtpshim-demo-")
	if err != nil {
		return exit(exIOErr, "%v", err)
	}
	defer os.RemoveAll(spoolDir)
	cfg := &config.Config{
		SpoolDir: spoolDir,
		SyncWait: config.Duration(10 * time.Second),
		Accounts: []config.Account{{Address: sender, Server: prov.Addr, Security: config.SecurityStartTLS}},
	}
	store := secrets.NewMemory()
	store.Set(context.Background(), sender, password)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return exit(exOSErr(), "%v", err)
	}
	logLevel := slog.LevelError
	if a.verbose {
		logLevel = slog.LevelDebug
	}
	eng, err := shim.New(cfg, shim.Options{
		Secrets:     store,
		Logger:      slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: logLevel})),
		UpstreamTLS: &tls.Config{RootCAs: prov.Cert.Pool},
		Listeners:   []net.Listener{ln},
		NoControl:   true,
	})
	if err != nil {
		return exit(exSoftware, "%v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	defer func() { cancel(); <-done }()
	fmt.Fprintf(out, "2. smtpshim is listening on %s with one account, %s.\n   Its password comes from a secret store (here an in-memory one; normally the OS keychain).\n\n", ln.Addr(), sender)

	body := "From: Alice <alice@example.com>\nTo: Bob <bob@example.net>\nSubject: Hello from a 1999 mail client\n\nThis message has bare LF line endings, as old Unix scripts send them.\n.A line starting with a dot survives too.\nCaf\xc3\xa9 and 8-bit text are fine.\n"
	fmt.Fprintf(out, "3. An old client connects: HELO only, no AUTH, no TLS, bare LF line endings.\n")
	transcript, err := oldClient(ln.Addr().String(), []string{
		"HELO oldclient.local",
		"MAIL FROM:<" + sender + ">",
		"RCPT TO:<" + rcpt + ">",
		"DATA",
	}, body)
	for _, l := range transcript {
		fmt.Fprintf(out, "   %s\n", l)
	}
	if err != nil {
		return exit(exSoftware, "the demo session failed: %v", err)
	}
	fmt.Fprintf(out, "   (the final 250 is the provider's own reply, passed through with its queue ID)\n\n")

	msgs := prov.Messages()
	if len(msgs) != 1 {
		return exit(exSoftware, "the provider received %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	// What the provider got must be the client's message with only the
	// line endings changed to CRLF.
	want := crlf.Normalize([]byte(body))
	match := bytes.Equal(m.Data, want)
	fmt.Fprintf(out, "4. What the provider saw:\n")
	fmt.Fprintf(out, "   authenticated user: %s\n", m.User)
	fmt.Fprintf(out, "   AUTH mechanism:     %s\n", m.Mechanism)
	fmt.Fprintf(out, "   TLS:                %s (certificate verified)\n", m.TLSVersion)
	fmt.Fprintf(out, "   envelope:           %s -> %s\n", m.From, strings.Join(m.To, ", "))
	fmt.Fprintf(out, "   body matched:       %v (%d bytes, every line ending now CRLF)\n\n", match, len(m.Data))
	if !match {
		return exit(exSoftware, "the body differs from what the client sent:\n%q\n%q", m.Data, want)
	}

	fmt.Fprintf(out, "5. A sender without an account is refused, so smtpshim is no open relay:\n")
	transcript, _ = oldClient(ln.Addr().String(), []string{"HELO oldclient.local", "MAIL FROM:<mallory@example.org>"}, "")
	for _, l := range transcript[len(transcript)-2:] {
		fmt.Fprintf(out, "   %s\n", l)
	}
	if !strings.HasPrefix(transcript[len(transcript)-1], "S: 550 5.7.1") {
		return exit(exSoftware, "the unknown sender was not refused")
	}
	fmt.Fprintf(out, "\nDemo passed. To use smtpshim for real:\n  smtpshim account add you@example.com --server smtp.example.com:587\n  smtpshim serve\nthen set your mail client's outgoing server to localhost, port 2525, no authentication.\n")
	return nil
}

func exOSErr() int { return 71 }

// oldClient speaks SMTP like a 1990s client: one command at a time, no
// EHLO, and the body sent exactly as given (bare LF included).
func oldClient(addr string, cmds []string, body string) ([]string, error) {
	var log []string
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return log, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	read := func() (string, error) {
		var last string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return last, err
			}
			last = strings.TrimRight(line, "\r\n")
			log = append(log, "S: "+last)
			if len(last) < 4 || last[3] != '-' {
				return last, nil
			}
		}
	}
	if _, err := read(); err != nil {
		return log, err
	}
	for _, cmd := range cmds {
		log = append(log, "C: "+cmd)
		if _, err := io.WriteString(c, cmd+"\r\n"); err != nil {
			return log, err
		}
		reply, err := read()
		if err != nil {
			return log, err
		}
		if reply[0] == '5' || reply[0] == '4' {
			return log, fmt.Errorf("refused: %s", reply)
		}
	}
	if body == "" {
		return log, nil
	}
	log = append(log, fmt.Sprintf("C: <%d bytes of message, bare LF endings>", len(body)))
	// Dot-stuffing is the client's job, as RFC 5321 says; the end marker
	// must be CRLF.CRLF, as in Postfix's "normalize" mode for bare LF.
	stuffed := strings.ReplaceAll(strings.TrimSuffix(body, "\n"), "\n.", "\n..")
	io.WriteString(c, stuffed+"\r\n.\r\n")
	log = append(log, "C: .")
	reply, err := read()
	if err != nil {
		return log, err
	}
	log = append(log, "C: QUIT")
	io.WriteString(c, "QUIT\r\n")
	read()
	if reply[0] != '2' {
		return log, fmt.Errorf("refused: %s", reply)
	}
	return log, nil
}
