//go:build realpeer

// Package e2e runs the real smtpshim binary against real peers: private
// Postfix + Dovecot instances (shim/internal/realpeer) upstream, and real
// legacy clients (swaks, msmtp, Python's smtplib, raw TCP) downstream,
// with passwords in a real Secret Service (a gnome-keyring on a session bus
// that TestMain starts for this test binary alone). Run it the way `make
// test` does:
//
//	.ci/with-keyring go test -tags realpeer -count=1 -v ./shim/e2e/
//
// A missing tool is a test failure that names .ci/deps, never a skip.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/smtpshim/smtpshim/shim/internal/realpeer"
	"github.com/smtpshim/smtpshim/shim/internal/rig"
	"github.com/smtpshim/smtpshim/shim/internal/testbin"
	"github.com/smtpshim/smtpshim/shim/secrets"
)

// shimBin is the smtpshim binary TestMain built for this run.
var shimBin string

// deliveryWait bounds how long a message may take to reach a Maildir.
const deliveryWait = 20 * time.Second

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "smtpshim-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	if shimBin, err = testbin.Build(tmp); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building smtpshim:", err)
		return 1
	}
	stop, err := startPrivateKeyring(filepath.Join(tmp, "keyring"))
	if err != nil {
		// Only the tests that use the keychain fail, each naming why.
		keyringErr = err
	} else {
		defer stop()
	}
	return m.Run()
}

// keyringErr says why there is no private Secret Service for this run.
var keyringErr error

// needKeyring fails the test unless the private Secret Service is up.
func needKeyring(t testing.TB) {
	t.Helper()
	if keyringErr != nil {
		t.Fatalf("no Secret Service for the keychain tests: %v", keyringErr)
	}
}

// startPrivateKeyring starts a D-Bus session bus and a gnome-keyring
// Secret Service on it, with an unlocked login keyring, all of them this
// test binary's own, and points DBUS_SESSION_BUS_ADDRESS at it for this
// process and the smtpshim commands it runs.
//
// The session bus `make test` provides (.ci/with-keyring) is shared with
// the other test binaries, which go test runs at the same time: the
// shim/secrets tests lock its login keyring for a moment, and a keychain
// call from here in that moment waits on an unlock prompt, which makes
// both sides fail. A keyring of our own avoids that and is just as real.
func startPrivateKeyring(dir string) (stop func(), err error) {
	const deps = "run .ci/deps to install dbus-daemon and gnome-keyring"
	busBin, err := exec.LookPath("dbus-daemon")
	if err != nil {
		return nil, fmt.Errorf("dbus-daemon not found (%v): %s", err, deps)
	}
	gkdBin, err := exec.LookPath("gnome-keyring-daemon")
	if err != nil {
		return nil, fmt.Errorf("gnome-keyring-daemon not found (%v): %s", err, deps)
	}
	for _, d := range []string{dir, dir + "/runtime", dir + "/data", dir + "/config"} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	addr := "unix:path=" + dir + "/bus"
	bus := exec.Command(busBin, "--session", "--nofork", "--nopidfile", "--address="+addr)
	busLog := &testbin.Buffer{}
	bus.Stdout, bus.Stderr = busLog, busLog
	if err := bus.Start(); err != nil {
		return nil, fmt.Errorf("starting dbus-daemon: %w", err)
	}
	busDone := make(chan struct{})
	go func() { bus.Wait(); close(busDone) }()
	var daemonPID int
	stop = func() {
		if daemonPID > 0 {
			stopPID(daemonPID)
		}
		bus.Process.Kill()
		<-busDone
	}
	fail := func(err error) (func(), error) {
		stop()
		return nil, fmt.Errorf("%w\ndbus-daemon output:\n%s", err, busLog.String())
	}

	var conn *dbus.Conn
	for deadline := time.Now().Add(10 * time.Second); ; {
		if conn, err = dbus.Connect(addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("the private session bus did not come up: %w", err))
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer conn.Close()

	// As .ci/with-keyring does: the daemon creates and unlocks the login
	// keyring with the password on stdin, then forks into the background.
	// Its runtime dir is ours, so it cannot find and unlock another one.
	gkd := exec.Command(gkdBin, "--unlock", "--components=secrets")
	gkd.Stdin = strings.NewReader("pw")
	gkd.Env = append(envWithout("DISPLAY", "WAYLAND_DISPLAY", "GNOME_KEYRING_CONTROL", "DBUS_SESSION_BUS_ADDRESS",
		"XDG_RUNTIME_DIR", "XDG_DATA_HOME", "XDG_CONFIG_HOME"),
		"DBUS_SESSION_BUS_ADDRESS="+addr, "XDG_RUNTIME_DIR="+dir+"/runtime",
		"XDG_DATA_HOME="+dir+"/data", "XDG_CONFIG_HOME="+dir+"/config")
	if out, err := gkd.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("gnome-keyring-daemon --unlock: %v\n%s", err, out))
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		var owned bool
		err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, "org.freedesktop.secrets").Store(&owned)
		if err == nil && owned {
			break
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("org.freedesktop.secrets did not appear on the private bus within 10s (%v)", err))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The daemon double-forked: ask the bus which process it is.
	var pid uint32
	if err := conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, "org.freedesktop.secrets").Store(&pid); err != nil {
		return fail(fmt.Errorf("finding gnome-keyring-daemon's process: %w", err))
	}
	daemonPID = int(pid)
	os.Setenv("DBUS_SESSION_BUS_ADDRESS", addr)
	return stop, nil
}

// envWithout returns the environment less the named variables.
func envWithout(names ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		keep := true
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// stopPID ends a process this test binary started (by its id) and waits a
// little for it to go.
func stopPID(pid int) {
	syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 50; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		// Reparented to a PID 1 that does not reap, it stays a zombie.
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) && b[i+2] == 'Z' {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
}

// needTool returns the path of a command the test needs, or fails the test
// naming .ci/deps, which installs it.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found on PATH (%v): run .ci/deps to install the test dependencies", name, err)
	}
	return p
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// closedPort returns "127.0.0.1:PORT" where nothing listens.
func closedPort(t testing.TB) string {
	return fmt.Sprintf("127.0.0.1:%d", freePort(t))
}

// account is one [[account]] table of a test config.
type account struct {
	Address  string
	Domain   string
	Username string
	Server   string
	Security string
	CAFile   string
	// Password, when set, is written to a file in the test's temp dir and
	// supplied with password_command = "cat FILE"; when empty, the password
	// comes from the keychain.
	Password string
}

// shimConfig is a config file in a test's temp dir.
type shimConfig struct {
	t    testing.TB
	Dir  string // temp dir: the config, the spool and password files
	Path string // the config file
	Addr string // the listen address, 127.0.0.1:PORT
	// Top holds extra top-level settings, one per line.
	Top      string
	Accounts []account
}

// newConfig writes a config that listens on a free loopback port, keeps its
// spool in t.TempDir(), and has a short sync_wait.
func newConfig(t testing.TB, top string, accounts ...account) *shimConfig {
	t.Helper()
	dir := t.TempDir()
	c := &shimConfig{t: t, Dir: dir, Path: filepath.Join(dir, "config.toml"), Top: top, Accounts: accounts}
	c.Addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	c.write()
	return c
}

// write (re)writes the config file.
func (c *shimConfig) write() {
	c.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "listen = [%q]\n", c.Addr)
	fmt.Fprintf(&b, "spool_dir = %q\n", filepath.Join(c.Dir, "spool"))
	fmt.Fprintf(&b, "hostname = %q\n", "shim.test")
	if !strings.Contains(c.Top, "sync_wait") {
		b.WriteString("sync_wait = \"10s\"\n")
	}
	if c.Top != "" {
		b.WriteString(strings.TrimSpace(c.Top) + "\n")
	}
	for i, a := range c.Accounts {
		b.WriteString("\n[[account]]\n")
		field := func(k, v string) {
			if v != "" {
				fmt.Fprintf(&b, "%s = %q\n", k, v)
			}
		}
		field("address", a.Address)
		field("domain", a.Domain)
		field("username", a.Username)
		field("server", a.Server)
		field("security", a.Security)
		field("ca_file", a.CAFile)
		if a.Password != "" {
			pwFile := filepath.Join(c.Dir, fmt.Sprintf("password-%d", i))
			if err := os.WriteFile(pwFile, []byte(a.Password+"\n"), 0o600); err != nil {
				c.t.Fatal(err)
			}
			field("password_command", "cat "+pwFile)
		}
	}
	if err := os.WriteFile(c.Path, []byte(b.String()), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// relay is a running `smtpshim serve`.
type relay struct {
	cfg    *shimConfig
	Addr   string
	cmd    *exec.Cmd
	stderr *testbin.Buffer
	exited chan struct{}
}

// Log returns what the relay wrote to stderr so far.
func (r *relay) Log() string { return r.stderr.String() }

// startRelay runs `smtpshim --config F serve` and returns once its port
// accepts connections. It is stopped with SIGTERM in t.Cleanup, and its
// stderr is printed if the test failed.
func startRelay(t testing.TB, c *shimConfig) *relay {
	t.Helper()
	return startRelayEnv(t, c, nil)
}

// startRelayEnv is startRelay with the environment env (nil: this
// process's).
func startRelayEnv(t testing.TB, c *shimConfig, env []string) *relay {
	t.Helper()
	for attempt := 1; ; attempt++ {
		r, err := tryStartRelay(t, c, env)
		if err == nil {
			return r
		}
		// The free port may have been taken between freePort and serve.
		if attempt < 3 && strings.Contains(err.Error(), "address already in use") {
			c.Addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
			c.write()
			continue
		}
		t.Fatalf("smtpshim serve did not come up: %v", err)
	}
}

func tryStartRelay(t testing.TB, c *shimConfig, env []string) (*relay, error) {
	r := &relay{cfg: c, Addr: c.Addr, stderr: &testbin.Buffer{}, exited: make(chan struct{})}
	r.cmd = exec.Command(shimBin, "--config", c.Path, "serve")
	r.cmd.Env = env
	r.cmd.Stdout = r.stderr
	r.cmd.Stderr = r.stderr
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	var waitErr error
	go func() { waitErr = r.cmd.Wait(); close(r.exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-r.exited:
			return nil, fmt.Errorf("it exited (%v):\n%s", waitErr, r.Log())
		default:
		}
		if conn, err := net.DialTimeout("tcp", c.Addr, time.Second); err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			r.cmd.Process.Kill()
			<-r.exited
			return nil, fmt.Errorf("%s does not accept connections after 15s:\n%s", c.Addr, r.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() {
		r.stop(t)
		if t.Failed() {
			t.Logf("smtpshim serve (%s) stderr:\n%s", c.Path, r.Log())
		}
	})
	return r, nil
}

// stop sends SIGTERM and waits for the relay to exit.
func (r *relay) stop(t testing.TB) {
	select {
	case <-r.exited:
		return
	default:
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(20 * time.Second):
		t.Errorf("smtpshim serve did not exit within 20s of SIGTERM; killing it")
		r.cmd.Process.Kill()
		<-r.exited
	}
}

// result is a finished smtpshim CLI command.
type result struct {
	Stdout, Stderr string
	Code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s--- stderr:\n%s", r.Code, r.Stdout, r.Stderr)
}

// shim runs `smtpshim --config CFG ARGS...` with stdin and waits for it.
func shim(t testing.TB, cfgPath, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, shimBin, append([]string{"--config", cfgPath}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	default:
		t.Fatalf("running smtpshim %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("smtpshim %s did not finish within 60s:\n%s", strings.Join(args, " "), res)
	}
	return res
}

// shimKeychain runs a smtpshim command that uses the keychain.
func shimKeychain(t testing.TB, cfgPath, stdin string, args ...string) result {
	t.Helper()
	needKeyring(t)
	return shim(t, cfgPath, stdin, args...)
}

// addKeychainAccount stores an account with `smtpshim account add
// --password-stdin`, the password piped on stdin, and removes its keychain
// entry when the test ends.
func addKeychainAccount(t testing.TB, c *shimConfig, who, password string, flags ...string) result {
	t.Helper()
	args := append([]string{"account", "add", who}, flags...)
	args = append(args, "--password-stdin")
	res := shimKeychain(t, c.Path, password+"\n", args...)
	if res.Code != 0 {
		t.Fatalf("smtpshim account add %s failed:\n%s", who, res)
	}
	t.Cleanup(func() { deleteKeychainEntry(who) })
	return res
}

func deleteKeychainEntry(key string) {
	secrets.NewKeychain(5*time.Second).Delete(context.Background(), strings.ToLower(key))
}

// uniq returns a short string unique within this process run, for account
// addresses in the shared keychain and for message markers.
func uniq() string {
	uniqMu.Lock()
	defer uniqMu.Unlock()
	uniqN++
	return fmt.Sprintf("%d-%d", os.Getpid(), uniqN)
}

var (
	uniqMu sync.Mutex
	uniqN  int
)

// ---- a raw SMTP client, as an old mail client talks ----

// reply is one (possibly multi-line) SMTP reply.
type reply = rig.Reply

// smtpClient is the rig's raw client with the habits of these tests: a
// closed connection reads as Code 0, and every read and write has a fresh
// 60 s deadline (a real provider can be slow).
type smtpClient struct{ *rig.Client }

// dialSMTP connects and reads the greeting, which must be a 220.
func dialSMTP(t testing.TB, addr string) *smtpClient {
	t.Helper()
	return &smtpClient{rig.Dial(t, addr)}
}

// read reads one reply; a closed connection gives Code 0.
func (c *smtpClient) read() reply {
	c.T.Helper()
	c.Conn.SetDeadline(time.Now().Add(60 * time.Second))
	return c.ReadOrClosed()
}

// write sends raw bytes.
func (c *smtpClient) write(b []byte) {
	c.T.Helper()
	c.Conn.SetDeadline(time.Now().Add(60 * time.Second))
	c.WriteBytes(b)
}

// cmd sends one command line and returns the reply.
func (c *smtpClient) cmd(line string) reply {
	c.T.Helper()
	c.write([]byte(line + "\r\n"))
	return c.read()
}

// expect sends a command and fails unless the reply has the given code.
func (c *smtpClient) expect(line string, code int) reply {
	c.T.Helper()
	r := c.cmd(line)
	if r.Code != code {
		c.T.Fatalf("%s: got %s, want %d", line, r, code)
	}
	return r
}

// data sends DATA and the message (CRLF line endings; it is dot-stuffed
// here) and returns the final reply.
func (c *smtpClient) data(msg []byte) reply {
	c.T.Helper()
	c.expect("DATA", 354)
	c.write(rig.DotStuff(msg))
	c.write([]byte(".\r\n"))
	return c.read()
}

// sendMail runs one HELO-only transaction and returns the DATA reply.
func sendMail(t testing.TB, addr, from string, to []string, msg []byte) reply {
	t.Helper()
	c := dialSMTP(t, addr)
	defer c.Close()
	c.expect("HELO oldclient", 250)
	c.expect("MAIL FROM:<"+from+">", 250)
	for _, r := range to {
		c.expect("RCPT TO:<"+r+">", 250)
	}
	r := c.data(msg)
	c.cmd("QUIT")
	return r
}

// message builds a test message with CRLF line endings whose Subject
// carries marker, so it can be found in a shared Maildir.
func message(from, to, marker string, bodyLines ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: e2e %s\r\nMessage-ID: <%s@e2e.test>\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\n\r\n", from, to, marker, marker)
	if len(bodyLines) == 0 {
		bodyLines = []string{"Hello from the e2e test " + marker + "."}
	}
	for _, l := range bodyLines {
		b.WriteString(l + "\r\n")
	}
	return []byte(b.String())
}

// ---- checking what Postfix delivered ----

// waitMessage waits until a message containing marker is delivered to
// mailbox and returns it.
func waitMessage(t testing.TB, p *realpeer.Postfix, mailbox, marker string) realpeer.Message {
	t.Helper()
	deadline := time.Now().Add(deliveryWait)
	for {
		var found []realpeer.Message
		for _, m := range p.Messages(mailbox) {
			if bytes.Contains(m.Raw, []byte(marker)) {
				found = append(found, m)
			}
		}
		if len(found) > 1 {
			t.Fatalf("%d messages with %q for %s, want 1", len(found), marker, mailbox)
		}
		if len(found) == 1 {
			return found[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message with %q delivered to %s within %v\n%s", marker, mailbox, deliveryWait, tail(p.Log(), 40))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// noMessage fails if a message containing marker reached mailbox.
func noMessage(t testing.TB, p *realpeer.Postfix, mailbox, marker string) {
	t.Helper()
	for _, m := range p.Messages(mailbox) {
		if bytes.Contains(m.Raw, []byte(marker)) {
			t.Errorf("a message with %q was delivered to %s:\n%s", marker, mailbox, m.Raw)
		}
	}
}

// postfixAdded are the header fields Postfix's virtual(8) and smtpd put on
// top of a stored message, in this order.
var postfixAdded = []string{"Return-Path", "X-Original-To", "Delivered-To", "Received"}

// asSubmitted returns a stored message as it was submitted to Postfix: the
// four header fields Postfix added at the top are removed (each must be
// there, once, in order, with its continuation lines), and Postfix's LF line
// endings become CRLF again.
func asSubmitted(t testing.TB, m realpeer.Message) []byte {
	t.Helper()
	raw := m.Raw
	if bytes.Contains(raw, []byte("\r")) {
		t.Fatalf("stored message %s contains a CR; Postfix stores LF line endings:\n%q", m.Path, raw)
	}
	for _, name := range postfixAdded {
		prefix := []byte(name + ":")
		if !bytes.HasPrefix(raw, prefix) {
			t.Fatalf("stored message %s: want Postfix's %s header next, got:\n%s", m.Path, name, raw)
		}
		// The field ends at the first line that does not start with
		// white space (a folded Received header spans several lines).
		end := 0
		for {
			nl := bytes.IndexByte(raw[end:], '\n')
			if nl < 0 {
				t.Fatalf("stored message %s ends inside its header", m.Path)
			}
			end += nl + 1
			if end >= len(raw) || (raw[end] != ' ' && raw[end] != '\t') {
				break
			}
		}
		raw = raw[end:]
	}
	return bytes.ReplaceAll(raw, []byte("\n"), []byte("\r\n"))
}

// sameBytes fails with a readable diff position if got != want.
func sameBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	lo := max(0, i-60)
	t.Errorf("%s differs at byte %d (got %d bytes, want %d)\n got: …%q…\nwant: …%q…\nfull got:\n%q\nfull want:\n%q",
		what, i, len(got), len(want), got[lo:min(len(got), i+60)], want[lo:min(len(want), i+60)], got, want)
}

// toCRLF turns every line ending (CRLF, bare LF, bare CR) into CRLF.
func toCRLF(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	b = bytes.ReplaceAll(b, []byte("\r"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---- the Postfix/Dovecot logs ----

var logHeaderRE = regexp.MustCompile(`(?m)^==== (.+?) log \(.*\) ====\n`)

// logSections splits realpeer's Log() into its postfix, dovecot and
// dovecot stderr parts.
func logSections(p *realpeer.Postfix) map[string]string {
	s := p.Log()
	out := map[string]string{}
	idx := logHeaderRE.FindAllStringSubmatchIndex(s, -1)
	for i, m := range idx {
		end := len(s)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		out[s[m[2]:m[3]]] = s[m[1]:end]
	}
	return out
}

// logMark remembers how far the logs went, to look only at what follows.
type logMark map[string]int

func markLogs(p *realpeer.Postfix) logMark {
	m := logMark{}
	for k, v := range logSections(p) {
		m[k] = len(v)
	}
	return m
}

// since returns the log lines written after the mark, per section.
func (m logMark) since(p *realpeer.Postfix) map[string]string {
	out := map[string]string{}
	for k, v := range logSections(p) {
		if n := m[k]; n <= len(v) {
			out[k] = v[n:]
		}
	}
	return out
}

// ---- a recording proxy, to see exactly what a real client sent ----

// recorder forwards TCP connections to a target and keeps every byte the
// clients sent, one buffer per connection.
type recorder struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu       sync.Mutex
	sessions []*testbin.Buffer
	wg       sync.WaitGroup
}

func startRecorder(t testing.TB, target string) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{t: t, ln: ln, target: target}
	go r.serve()
	t.Cleanup(func() { ln.Close(); r.wg.Wait() })
	return r
}

func (r *recorder) Addr() string { return r.ln.Addr().String() }

func (r *recorder) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		buf := &testbin.Buffer{}
		r.mu.Lock()
		r.sessions = append(r.sessions, buf)
		r.wg.Add(1)
		r.mu.Unlock()
		go func() {
			defer r.wg.Done()
			defer c.Close()
			up, err := net.DialTimeout("tcp", r.target, 10*time.Second)
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{})
			go func() {
				io.Copy(c, up)
				c.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			io.Copy(io.MultiWriter(up, buf), c)
			up.(*net.TCPConn).CloseWrite()
			<-done
		}()
	}
}

// sent returns everything clients sent through the proxy so far,
// connection after connection.
func (r *recorder) sent() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []byte
	for _, s := range r.sessions {
		all = append(all, s.String()...)
	}
	return all
}

// dataPayloads returns the messages in a client's SMTP byte stream: what
// follows each DATA command up to the line holding a single dot, with the
// dot-stuffing undone and the client's line endings kept as they were.
func dataPayloads(stream []byte) [][]byte {
	var out [][]byte
	lines := bytes.SplitAfter(stream, []byte("\n"))
	for i := 0; i < len(lines); i++ {
		if !strings.EqualFold(strings.TrimRight(string(lines[i]), "\r\n"), "DATA") {
			continue
		}
		var msg []byte
		for i++; i < len(lines); i++ {
			l := lines[i]
			if strings.TrimRight(string(l), "\r\n") == "." {
				break
			}
			if len(l) > 0 && l[0] == '.' {
				l = l[1:]
			}
			msg = append(msg, l...)
		}
		out = append(out, msg)
	}
	return out
}
