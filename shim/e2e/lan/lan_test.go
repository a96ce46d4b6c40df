//go:build realpeer

// Package lan runs the real smtpshim binary in LAN mode inside network
// namespaces of its own: the relay and a simulated provider in namespace
// A (10.200.0.1), LAN clients (swaks) in namespace B, on an allowed
// address (10.200.0.2) and on one that is not allowed (10.200.0.3), linked
// by a veth pair. Nothing touches the host's network. It needs root (or
// CAP_SYS_ADMIN and CAP_NET_ADMIN) for `ip netns`, and for local_auth a
// Secret Service, so run it the way `make test` does:
//
//	.ci/with-keyring go test -tags realpeer -count=1 -v ./shim/e2e/lan/
//
// A missing tool or privilege is a test failure, never a skip.
package lan

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/internal/testbin"
	"github.com/smtpshim/smtpshim/shim/internal/testlog"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

const (
	relayIP   = "10.200.0.1"
	allowedIP = "10.200.0.2"
	deniedIP  = "10.200.0.3"
	relayAddr = relayIP + ":2525"
	alice     = "alice@example.com"
	alicePW   = "alice-lan-upstream-pw"
	localPW   = "office-printer-pw-8Tq"
	helperEnv = "SMTPSHIM_LAN_HELPER"
)

// shimBin is the smtpshim binary TestMain built for this run.
var shimBin string

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "upstream" {
		os.Exit(upstreamHelper())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "smtpshim-lan-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "lan:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	if shimBin, err = testbin.Build(tmp); err != nil {
		fmt.Fprintln(os.Stderr, "lan:", err)
		return 1
	}
	return m.Run()
}

// upstreamHelper is the simulated provider, run by the test binary itself
// inside namespace A (the test process's own network namespace can't reach
// the relay's loopback). It prints "ADDR host:port" once, then one line
// per accepted message, and exits when its stdin closes.
func upstreamHelper() int {
	testlog.Secret(alicePW)
	testlog.Secret(localPW)
	sim, err := upstreamsim.Start(upstreamsim.Options{Users: map[string]string{alice: alicePW}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "upstream helper:", err)
		return 1
	}
	defer sim.Close()
	if err := os.WriteFile(os.Getenv("SMTPSHIM_LAN_CA"), sim.Cert.CAPEM, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "upstream helper:", err)
		return 1
	}
	fmt.Printf("ADDR %s\n", sim.Addr)
	stdinDone := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(stdinDone) }()
	printed := 0
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		msgs := sim.Messages()
		for _, m := range msgs[printed:] {
			subject := ""
			for _, line := range strings.Split(string(m.Data), "\r\n") {
				if s, ok := strings.CutPrefix(line, "Subject: "); ok {
					subject = s
					break
				}
			}
			fmt.Printf("MSG\t%s\t%s\t%s\t%s\t%s\t%x\n", m.From, strings.Join(m.To, ","), m.User, m.TLSVersion, subject, m.SHA256)
		}
		printed = len(msgs)
		select {
		case <-stdinDone:
			return 0
		case <-tick.C:
		}
	}
}

// needTool returns a command's path (PATH, then sbin) or fails naming
// .ci/deps.
func needTool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	t.Fatalf("%s not found: run .ci/deps to install the test dependencies", name)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// lan is the two namespaces and the link between them.
type lan struct {
	t    *testing.T
	ip   string
	a, b string // namespace names
}

// newLAN creates namespaces A (the relay's machine, 10.200.0.1) and B (the
// office LAN, 10.200.0.2 and 10.200.0.3) joined by a veth pair, and
// removes them when the test ends, whatever happened.
func newLAN(t *testing.T) *lan {
	t.Helper()
	var rnd [3]byte
	rand.Read(rnd[:])
	base := "smtpshim-lan-" + hex.EncodeToString(rnd[:])
	l := &lan{t: t, ip: needTool(t, "ip"), a: base + "-a", b: base + "-b"}
	for _, ns := range []string{l.a, l.b} {
		if out, err := exec.Command(l.ip, "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v\n%s\nThis test needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) for network namespaces. "+
				"A loopback stand-in can't replace them: every 127.0.0.0/8 client counts as this computer and is always allowed.", ns, err, out)
		}
		t.Cleanup(func() {
			if out, err := exec.Command(l.ip, "netns", "delete", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns delete %s: %v\n%s", ns, err, out)
			}
		})
	}
	l.must("link", "add", "veth-a", "netns", l.a, "type", "veth", "peer", "name", "veth-b", "netns", l.b)
	l.must("-n", l.a, "addr", "add", relayIP+"/24", "dev", "veth-a")
	l.must("-n", l.b, "addr", "add", allowedIP+"/24", "dev", "veth-b")
	l.must("-n", l.b, "addr", "add", deniedIP+"/24", "dev", "veth-b")
	for _, ns := range []string{l.a, l.b} {
		l.must("-n", ns, "link", "set", "lo", "up")
	}
	l.must("-n", l.a, "link", "set", "veth-a", "up")
	l.must("-n", l.b, "link", "set", "veth-b", "up")
	return l
}

func (l *lan) must(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(l.ip, args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// command returns cmd to run inside namespace ns.
func (l *lan) command(ctx context.Context, ns string, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, l.ip, append([]string{"netns", "exec", ns, name}, args...)...)
}

// upstream is the simulated provider running in namespace A.
type upstream struct {
	addr   string
	caFile string
	mu     sync.Mutex
	msgs   []string // "MSG\tfrom\tto\tuser\ttls\tsubject\tsha256" lines
	stderr *testbin.Buffer
}

func (l *lan) startUpstream(t *testing.T) *upstream {
	t.Helper()
	dir := t.TempDir()
	u := &upstream{caFile: filepath.Join(dir, "ca.pem"), stderr: &testbin.Buffer{}}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(l.ip, "netns", "exec", l.a, self, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=upstream", "SMTPSHIM_LAN_CA="+u.caFile)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = u.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	addrc := make(chan string, 1)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if a, ok := strings.CutPrefix(line, "ADDR "); ok {
				addrc <- a
				continue
			}
			u.mu.Lock()
			u.msgs = append(u.msgs, line)
			u.mu.Unlock()
		}
		cmd.Wait()
	}()
	select {
	case u.addr = <-addrc:
	case <-done:
		t.Fatalf("the upstream helper exited:\n%s", u.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("the upstream helper did not start:\n%s", u.stderr.String())
	}
	return u
}

// messages returns what the provider accepted so far, as fields.
func (u *upstream) messages() [][]string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out [][]string
	for _, l := range u.msgs {
		out = append(out, strings.Split(l, "\t"))
	}
	return out
}

// waitMessage waits for the message with subject to reach the provider.
func (u *upstream) waitMessage(t *testing.T, subject string) []string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range u.messages() {
			if len(m) == 7 && m[5] == subject {
				return m
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no message %q reached the provider; it has %q", subject, u.messages())
	return nil
}

// relayConfig writes a config for a relay listening on 10.200.0.1:2525;
// extra holds more top-level settings.
func relayConfig(t *testing.T, up *upstream, extra string) string {
	t.Helper()
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "alice.pw")
	if err := os.WriteFile(pwFile, []byte(alicePW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`listen = [%q]
spool_dir = %q
hostname = "shim.lan.test"
sync_wait = "10s"
%s

[[account]]
address = %q
server = %q
security = "starttls"
ca_file = %q
password_command = %q
`, relayAddr, filepath.Join(dir, "spool"), extra, alice, up.addr, up.caFile, "cat "+pwFile)
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startRelay runs `smtpshim serve` inside namespace A and waits until it
// listens; it is stopped when the test ends.
func (l *lan) startRelay(t *testing.T, config string) *testbin.Buffer {
	t.Helper()
	out := &testbin.Buffer{}
	cmd := exec.Command(l.ip, "netns", "exec", l.a, shimBin, "--config", config, "serve")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("relay output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "listening on "+relayAddr) {
		select {
		case <-exited:
			t.Fatalf("the relay exited:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay did not start listening:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return out
}

// swaks runs swaks inside namespace B from the given source address and
// returns its transcript and whether it reported success.
func (l *lan) swaks(t *testing.T, from string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	all := append([]string{"--server", relayAddr, "--local-interface", from, "--from", alice, "--to", "bob@example.net",
		"--helo", "lan-printer", "--timeout", "20"}, args...)
	out, err := l.command(ctx, l.b, needTool(t, "swaks"), all...).CombinedOutput()
	return string(out), err
}

func subjectArgs(subject string) []string {
	return []string{"--header", "Subject: " + subject, "--body", "Scanned document from the office printer."}
}

// TestLANMode: in LAN mode the relay serves the allowed network, refuses
// every other address with 554 5.7.1, enforces local AUTH when required,
// and will not start listening on a LAN address without allow_networks.
func TestLANMode(t *testing.T) {
	l := newLAN(t)
	up := l.startUpstream(t)

	t.Run("allowed network relays, other address refused", func(t *testing.T) {
		relay := l.startRelay(t, relayConfig(t, up, `allow_networks = ["`+allowedIP+`/32"]`))
		before := len(up.messages())

		out, err := l.swaks(t, allowedIP, append([]string{"--protocol", "SMTP"}, subjectArgs("lan allowed")...)...)
		if err != nil || !strings.Contains(out, "<-  250 2.0.0 Ok: queued as SIM") {
			t.Fatalf("swaks from %s: %v\n%s", allowedIP, err, out)
		}
		m := up.waitMessage(t, "lan allowed")
		if m[1] != alice || m[2] != "bob@example.net" || m[3] != alice || m[4] != "TLS 1.3" {
			t.Fatalf("the provider got %q", m)
		}

		out, err = l.swaks(t, deniedIP, append([]string{"--protocol", "SMTP"}, subjectArgs("lan denied")...)...)
		if err == nil || !strings.Contains(out, "<** 554 5.7.1 smtpshim accepts connections only from this computer") {
			t.Fatalf("swaks from %s was not refused with 554 5.7.1: %v\n%s", deniedIP, err, out)
		}
		if strings.Contains(out, "-> MAIL") {
			t.Fatalf("the refused client got as far as MAIL:\n%s", out)
		}
		time.Sleep(300 * time.Millisecond)
		if n := len(up.messages()) - before; n != 1 {
			t.Fatalf("the provider got %d messages, want 1: %q", n, up.messages())
		}
		if !strings.Contains(relay.String(), "refused a client from a network that is not allowed") ||
			!strings.Contains(relay.String(), deniedIP) {
			t.Errorf("the relay's log does not name the refused client:\n%s", relay.String())
		}
	})

	t.Run("local_auth require", func(t *testing.T) {
		if os.Getenv("SMTPSHIM_TEST_KEYRING") != "1" {
			t.Fatal("the local password lives in the keychain: run this test under .ci/with-keyring (see the package doc)")
		}
		config := relayConfig(t, up, `allow_networks = ["`+allowedIP+`/32"]`+"\nlocal_auth = \"require\"")
		// Stored through the same D-Bus session the relay in namespace A
		// uses: the bus is a Unix socket, reachable across network
		// namespaces.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		set := exec.CommandContext(ctx, shimBin, "--config", config, "local-password", "--password-stdin")
		set.Stdin = strings.NewReader(localPW + "\n")
		if out, err := set.CombinedOutput(); err != nil {
			t.Fatalf("smtpshim local-password: %v\n%s", err, out)
		}
		l.startRelay(t, config)
		before := len(up.messages())

		out, err := l.swaks(t, allowedIP, append([]string{"--protocol", "ESMTP"}, subjectArgs("lan no auth")...)...)
		if err == nil || !strings.Contains(out, "<** 530 5.7.0 Authentication required") {
			t.Fatalf("swaks without AUTH was not refused with 530 5.7.0: %v\n%s", err, out)
		}
		out, err = l.swaks(t, allowedIP, append([]string{"--protocol", "ESMTP", "--auth", "PLAIN", "--auth-user", "printer",
			"--auth-password", localPW + "-wrong"}, subjectArgs("lan wrong auth")...)...)
		if err == nil || !strings.Contains(out, "<** 535 5.7.8") {
			t.Fatalf("swaks with a wrong password was not refused with 535 5.7.8: %v\n%s", err, out)
		}
		for _, mech := range []string{"PLAIN", "LOGIN"} {
			subject := "lan auth " + mech
			out, err = l.swaks(t, allowedIP, append([]string{"--protocol", "ESMTP", "--auth", mech, "--auth-user", "printer",
				"--auth-password", localPW}, subjectArgs(subject)...)...)
			if err != nil || !strings.Contains(out, "<-  235 2.0.0") || !strings.Contains(out, "<-  250 2.0.0 Ok: queued as SIM") {
				t.Fatalf("swaks with AUTH %s: %v\n%s", mech, err, out)
			}
			if m := up.waitMessage(t, subject); m[3] != alice {
				t.Fatalf("upstream login %q: the local credentials must not go upstream", m[3])
			}
		}
		time.Sleep(300 * time.Millisecond)
		if n := len(up.messages()) - before; n != 2 {
			t.Fatalf("the provider got %d messages, want 2: %q", n, up.messages())
		}
	})

	// A reload (here `smtpshim reload`, over the control socket) applies a
	// new allow_networks at once, and names a new listen address as
	// waiting for a restart instead of claiming it.
	t.Run("reload allow_networks", func(t *testing.T) {
		config := relayConfig(t, up, `allow_networks = ["`+allowedIP+`/32"]`)
		relay := l.startRelay(t, config)
		out, err := l.swaks(t, deniedIP, append([]string{"--protocol", "SMTP"}, subjectArgs("lan before reload")...)...)
		if err == nil || !strings.Contains(out, "<** 554 5.7.1") {
			t.Fatalf("swaks from %s before the reload: %v\n%s", deniedIP, err, out)
		}
		data, err := os.ReadFile(config)
		if err != nil {
			t.Fatal(err)
		}
		edited := strings.Replace(string(data), `allow_networks = ["`+allowedIP+`/32"]`, `allow_networks = ["`+allowedIP+`/32", "`+deniedIP+`/32"]`, 1)
		edited = strings.Replace(edited, "listen = [\""+relayAddr+"\"]", "listen = [\""+relayAddr+"\", \""+relayIP+":2526\"]", 1)
		if edited == string(data) || os.WriteFile(config, []byte(edited), 0o600) != nil {
			t.Fatalf("could not edit the config:\n%s", data)
		}
		reload, err := exec.Command(shimBin, "--config", config, "reload").CombinedOutput()
		if err != nil || !strings.Contains(string(reload), "now uses the new settings: allow_networks") ||
			!strings.Contains(string(reload), "listen changed: restart smtpshim to apply it") {
			t.Fatalf("smtpshim reload: %v\n%s", err, reload)
		}
		if !strings.Contains(relay.String(), "listen changed: restart smtpshim to apply it") {
			t.Errorf("the relay's log does not name the setting that needs a restart:\n%s", relay.String())
		}
		out, err = l.swaks(t, deniedIP, append([]string{"--protocol", "SMTP"}, subjectArgs("lan after reload")...)...)
		if err != nil || !strings.Contains(out, "<-  250 2.0.0 Ok: queued as SIM") {
			t.Fatalf("swaks from %s after allow_networks was reloaded: %v\n%s", deniedIP, err, out)
		}
		up.waitMessage(t, "lan after reload")
	})

	t.Run("no allow_networks: refuses to start", func(t *testing.T) {
		config := relayConfig(t, up, "")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := l.command(ctx, l.a, shimBin, "--config", config, "serve").CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Fatalf("smtpshim serve on %s without allow_networks: %v (want a non-zero exit)\n%s", relayAddr, err, out)
		}
		if ctx.Err() != nil {
			t.Fatalf("smtpshim serve ran until killed instead of refusing to start:\n%s", out)
		}
		if !bytes.Contains(out, []byte("allow_networks")) || !bytes.Contains(out, []byte(relayAddr)) {
			t.Fatalf("the refusal does not name allow_networks and the address:\n%s", out)
		}
	})
}
