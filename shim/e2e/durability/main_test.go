//go:build realpeer

// Package durability tests smtpshim's delivery guarantee against the real
// binary: SIGKILL under load, SIGTERM and restart with a queue, queue
// commands online and offline, and a real Postfix outage. Every test talks
// only to 127.0.0.1.
package durability

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
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

	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/internal/testbin"
	"github.com/smtpshim/smtpshim/shim/internal/testlog"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

const (
	modulePath = "github.com/smtpshim/smtpshim"
	alice      = "alice@example.com"
	alicePW    = "durability-secret"
	bob        = "bob@example.net"
)

// relayBin is the smtpshim binary TestMain built for this run.
var relayBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "durability-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "durability:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if relayBin, err = testbin.Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "durability:", err)
		return 1
	}
	return m.Run()
}

// freePort returns a loopback port that was free a moment ago. The relay
// keeps it across restarts, as a real installation keeps 2525.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startSim starts the simulated provider with the user alice, healed.
func startSim(t testing.TB) *upstreamsim.Server {
	t.Helper()
	testlog.Secret(alicePW)
	sim, err := upstreamsim.Start(upstreamsim.Options{Users: map[string]string{alice: alicePW}})
	if err != nil {
		t.Fatalf("upstreamsim: %v", err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// relayConfig is what a test sets in the relay's config file.
type relayConfig struct {
	SyncWait, RetryMin, RetryMax string
	// Server, CAPEM or CAFile, and MaxConnections describe alice's account.
	Server         string
	CAPEM          []byte
	CAFile         string
	Password       string
	MaxConnections int
}

// relay is one smtpshim installation (config, spool, port) whose `serve`
// process the test starts, kills and restarts.
type relay struct {
	t       testing.TB
	dir     string
	cfgPath string
	addr    string
	spool   string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	starts int
}

func newRelay(t testing.TB, c relayConfig) *relay {
	t.Helper()
	// A short base keeps control.sock well under the 108-byte limit of a
	// Unix socket path.
	dir, err := os.MkdirTemp("", "dur-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if os.Getenv("DURABILITY_KEEP") != "" {
			t.Logf("DURABILITY_KEEP set, keeping %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	r := &relay{
		t:       t,
		dir:     dir,
		cfgPath: filepath.Join(dir, "config.toml"),
		addr:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		spool:   filepath.Join(dir, "spool"),
		logPath: filepath.Join(dir, "relay.log"),
	}
	pwFile := filepath.Join(dir, "alice.pw")
	if err := os.WriteFile(pwFile, []byte(c.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	caFile := c.CAFile
	if caFile == "" {
		caFile = filepath.Join(dir, "upstream-ca.pem")
		if err := os.WriteFile(caFile, c.CAPEM, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "listen = [%q]\n", r.addr)
	fmt.Fprintf(&b, "hostname = %q\n", "relay.durability.test")
	fmt.Fprintf(&b, "spool_dir = %q\n", r.spool)
	for _, kv := range [][2]string{{"sync_wait", c.SyncWait}, {"retry_min", c.RetryMin}, {"retry_max", c.RetryMax}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, "%s = %q\n", kv[0], kv[1])
		}
	}
	fmt.Fprintf(&b, "\n[[account]]\naddress = %q\nserver = %q\nca_file = %q\npassword_command = %q\n",
		alice, c.Server, caFile, "cat '"+pwFile+"'")
	if c.MaxConnections > 0 {
		fmt.Fprintf(&b, "max_connections = %d\n", c.MaxConnections)
	}
	if err := os.WriteFile(r.cfgPath, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.mu.Lock()
		cmd, done := r.cmd, r.done
		r.mu.Unlock()
		if cmd != nil {
			select {
			case <-done:
			default:
				cmd.Process.Kill()
				<-done
			}
		}
		if t.Failed() {
			t.Logf("relay log (last 80 lines of %s):\n%s", r.logPath, tail(r.logPath, 80))
		}
	})
	return r
}

// running reports whether the serve process is alive.
func (r *relay) running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return false
	}
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// start runs `smtpshim --config F serve` and waits until it greets on its
// port. It must be called from the test goroutine.
func (r *relay) start() {
	r.t.Helper()
	if r.running() {
		r.t.Fatal("relay already running")
	}
	logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		r.t.Fatal(err)
	}
	r.starts++
	fmt.Fprintf(logf, "===== test: start %d at %s =====\n", r.starts, time.Now().Format("15:04:05.000"))
	cmd := exec.Command(relayBin, "--config", r.cfgPath, "serve")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		r.t.Fatalf("starting smtpshim serve: %v", err)
	}
	logf.Close()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()

	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-done:
			r.t.Fatalf("smtpshim serve exited during start-up (%v):\n%s", cmd.ProcessState, tail(r.logPath, 30))
		default:
		}
		if err := greets(r.addr); err == nil {
			return
		} else if time.Now().After(deadline) {
			r.t.Fatalf("smtpshim serve does not greet on %s after 15s: %v\n%s", r.addr, err, tail(r.logPath, 30))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// greets dials addr and expects a 220 greeting.
func greets(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "220") {
		return fmt.Errorf("greeting %q", strings.TrimSpace(line))
	}
	c.Write([]byte("QUIT\r\n"))
	return nil
}

// kill sends SIGKILL, as a power cut or the OOM killer would, and reaps it.
func (r *relay) kill() {
	r.t.Helper()
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		r.t.Fatalf("SIGKILL: %v", err)
	}
	<-done
}

// term sends SIGTERM and expects a clean exit within 15 s.
func (r *relay) term() {
	r.t.Helper()
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		r.t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
		r.t.Fatalf("smtpshim serve did not exit within 15s of SIGTERM:\n%s", tail(r.logPath, 30))
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		r.t.Fatalf("smtpshim serve exited with %d after SIGTERM, want 0:\n%s", code, tail(r.logPath, 30))
	}
}

// cli runs `smtpshim --config F ARGS...` and returns its output and exit
// code.
func (r *relay) cli(args ...string) (stdout, stderr string, code int) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, relayBin, append([]string{"--config", r.cfgPath}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		r.t.Fatalf("smtpshim %s: %v", strings.Join(args, " "), err)
	}
	return o.String(), e.String(), code
}

// cliOK is cli for a command that must succeed.
func (r *relay) cliOK(args ...string) string {
	r.t.Helper()
	out, errOut, code := r.cli(args...)
	if code != 0 {
		r.t.Fatalf("smtpshim %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// spoolFiles counts the files in the spool's msg/ and tmp/ directories,
// and the queue entries (msg/*.json) among them.
func (r *relay) spoolFiles() (entries, msgFiles, tmpFiles int) {
	r.t.Helper()
	msg, err := os.ReadDir(filepath.Join(r.spool, "msg"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		r.t.Fatal(err)
	}
	for _, e := range msg {
		if strings.HasSuffix(e.Name(), ".json") {
			entries++
		}
	}
	tmp, err := os.ReadDir(filepath.Join(r.spool, "tmp"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		r.t.Fatal(err)
	}
	return entries, len(msg), len(tmp)
}

var queueRowRE = regexp.MustCompile(`(?m)^(\d{8}T\d{6}-[0-9a-v]+)\s`)

// queueIDs parses the IDs out of `smtpshim queue list`.
func queueIDs(list string) []string {
	var ids []string
	for _, m := range queueRowRE.FindAllStringSubmatch(list, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

// queuedAsRE matches the relay's own "queued as ID" (a spool ID), not a
// provider's "Ok: queued as ABC123" passed through on live delivery.
var queuedAsRE = regexp.MustCompile(`queued as (\d{8}T\d{6}-[0-9a-v]+)`)

// queuedID returns the spool ID from the relay's "250 ... queued as ID"
// reply, or "" for any other reply.
func queuedID(reply string) string {
	m := queuedAsRE.FindStringSubmatch(reply)
	if m == nil {
		return ""
	}
	return m[1]
}

// newClient opens an SMTP session to the relay with go-smtp's client.
func newClient(addr string) (*smtp.Client, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	c := smtp.NewClient(conn)
	c.CommandTimeout = 10 * time.Second
	c.SubmissionTimeout = 20 * time.Second
	if err := c.Hello("client.durability.test"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// sendOn sends one message in an open session and returns the text of the
// final reply to DATA; err is nil only for a 250.
func sendOn(c *smtp.Client, from string, to []string, body []byte) (string, error) {
	if err := c.Mail(from, nil); err != nil {
		return "", err
	}
	for _, rc := range to {
		if err := c.Rcpt(rc, nil); err != nil {
			return "", err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := w.Write(body); err != nil {
		// No w.Close: ending DATA now would submit a truncated message.
		// The caller drops the connection.
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	return resp.StatusText, nil
}

// sendOne sends one message over a fresh session.
func sendOne(addr, from string, to []string, body []byte) (string, error) {
	c, err := newClient(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	reply, err := sendOn(c, from, to, body)
	if err == nil {
		c.Quit()
	}
	return reply, err
}

// makeBody returns a message with CRLF line endings (so it reaches the
// provider byte for byte) of about size bytes, unique by tag.
func makeBody(tag string, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@durability.test>\r\n\r\n", alice, bob, tag, strings.ReplaceAll(tag, " ", "."))
	seed := sha256.Sum256([]byte(tag))
	for i := 0; b.Len() < size; i++ {
		// Hex lines never start with a dot, so no dot-stuffing changes them.
		h := sha256.Sum256(append(seed[:], byte(i), byte(i>>8)))
		fmt.Fprintf(&b, "%x%x\r\n", h, h[:6])
	}
	return b.Bytes()
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFor polls cond every 50 ms until it is true or d has passed.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// arrivals counts the messages the provider accepted, by SHA-256.
func arrivals(sim *upstreamsim.Server) map[[32]byte]int {
	got := map[[32]byte]int{}
	for _, m := range sim.Messages() {
		got[m.SHA256]++
	}
	return got
}
