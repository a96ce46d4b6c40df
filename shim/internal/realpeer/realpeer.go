//go:build linux

// Package realpeer starts private, throwaway Postfix + Dovecot instances to be
// used as a real upstream SMTP submission server in end-to-end tests.
//
// Each instance lives in its own directory under os.TempDir() (or /tmp if
// that path is too long for unix sockets) (config,
// queue, data, Maildirs, logs, Dovecot base_dir, TLS material), listens only
// on 127.0.0.1 random free ports, and is torn down by t.Cleanup. Several
// instances can run at the same time, also from different test binaries.
//
// Requirements: root (Postfix's master and Dovecot must start as root) and
// the Debian packages installed by .ci/deps (postfix, dovecot-core). Missing
// binaries make StartPostfix fail the test; it never skips.
//
// Set REALPEER_KEEP=1 to keep the instance directory after the test (the
// daemons are still stopped) for post-mortem debugging.
package realpeer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/internal/testlog"
)

// Postfix is a running private Postfix with Dovecot SASL.
type Postfix struct {
	Dir            string // instance root
	SubmissionAddr string // "127.0.0.1:port": STARTTLS offered, AUTH only after STARTTLS (smtpd_tls_auth_only=yes), AUTH required to relay
	SMTPSAddr      string // implicit TLS (smtpd_tls_wrappermode=yes), AUTH required
	PlainAddr      string // no TLS offered at all, but AUTH PLAIN LOGIN advertised in the clear (to prove a client never sends credentials there)
	CAFile         string // PEM of a CA generated per instance; the server cert is signed by it, for DNS "localhost" and IP 127.0.0.1

	l          layout
	name       string
	introspect string     // OAuth2 introspection URL for Dovecot's oauth2 passdb
	chunking   bool       // offer CHUNKING (BDAT)
	mu         sync.Mutex // guards up, users, dovecot, dovecotDone
	up         bool       // postfix master running (between Start and Stop)
	users      map[string]string

	dovecot     *exec.Cmd
	dovecotDone chan struct{}
}

// Message is one delivered message as stored in a recipient's Maildir.
//
// Raw is the message as submitted, with Postfix's additions prepended:
// Return-Path, X-Original-To, Delivered-To and one Received header (which
// records TLS use and "(Authenticated sender: LOGIN)"). Postfix adds no
// other headers and rewrites none; like any Maildir it stores lines ending
// in LF, not CRLF, and the SMTP dot-stuffing is undone.
type Message struct {
	Path string // file in the Maildir
	Raw  []byte // full message as delivered, including the Received headers Postfix added
}

// Parse parses Raw as an RFC 5322 message.
func (m Message) Parse() (*mail.Message, error) {
	return mail.ReadMessage(bytes.NewReader(m.Raw))
}

var authSenderRE = regexp.MustCompile(`\(Authenticated sender: ([^)]*)\)`)

// AuthenticatedSender returns the SASL login Postfix recorded in the
// topmost Received header ("(Authenticated sender: LOGIN)"), or "" if the
// message was not submitted with SMTP AUTH.
func (m Message) AuthenticatedSender() string {
	hdr := m.Raw
	if i := bytes.Index(hdr, []byte("\n\n")); i >= 0 {
		hdr = hdr[:i]
	}
	if i := bytes.Index(hdr, []byte("\r\n\r\n")); i >= 0 {
		hdr = hdr[:i]
	}
	sm := authSenderRE.FindSubmatch(hdr)
	if sm == nil {
		return ""
	}
	return string(sm[1])
}

// Binary locations on Debian; PATH is consulted as a fallback.
const (
	postfixBin = "/usr/sbin/postfix"
	dovecotBin = "/usr/sbin/dovecot"
)

func findBin(path string) (string, error) {
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	return exec.LookPath(filepath.Base(path))
}

// cmdEnv is the environment for postfix/dovecot commands.
func cmdEnv() []string {
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "LC_ALL=C"}
	if tz, ok := os.LookupEnv("TZ"); ok {
		env = append(env, "TZ="+tz)
	}
	return env
}

// StartPostfix starts a private Postfix (three smtpd listeners, see the
// Postfix fields) with a private Dovecot providing SASL for users (login,
// e.g. "alice@example.com", -> password; logins are case-sensitive). It
// returns once every listener greets with 220, and stops everything in
// t.Cleanup. Any failure is fatal to the test.
//
// It offers no CHUNKING, so clients send DATA; StartPostfixChunking gives
// one that does, as Postfix does by default.
func StartPostfix(t testing.TB, users map[string]string) *Postfix {
	t.Helper()
	return start(t, users, "", false)
}

// StartPostfixChunking is StartPostfix offering CHUNKING (RFC 3030), so
// clients may send the message with BDAT.
func StartPostfixChunking(t testing.TB, users map[string]string) *Postfix {
	t.Helper()
	return start(t, users, "", true)
}

// StartPostfixOAuth is StartPostfix with OAuth2 as well: Dovecot offers
// XOAUTH2 and OAUTHBEARER besides the password mechanisms, and its oauth2
// passdb checks every token at introspectionURL (RFC 7662, form POST, as
// oauthsim serves it); the token's "username" must be the login.
func StartPostfixOAuth(t testing.TB, users map[string]string, introspectionURL string) *Postfix {
	t.Helper()
	return start(t, users, introspectionURL, false)
}

func start(t testing.TB, users map[string]string, introspect string, chunking bool) *Postfix {
	t.Helper()
	testlog.Secrets(users)
	if os.Geteuid() != 0 {
		t.Fatalf("realpeer: must run as root (Postfix master and Dovecot start as root); euid=%d", os.Geteuid())
	}
	if _, err := findBin(postfixBin); err != nil {
		t.Fatalf("realpeer: postfix binary not found (%v); run .ci/deps to install the test dependencies (postfix, dovecot-core)", err)
	}
	dvBin, err := findBin(dovecotBin)
	if err != nil {
		t.Fatalf("realpeer: dovecot binary not found (%v); run .ci/deps to install the test dependencies (postfix, dovecot-core)", err)
	}
	for login, pw := range users {
		if err := checkCred(login, pw); err != nil {
			t.Fatalf("realpeer: %v", err)
		}
	}

	sweepStale()

	dir, err := os.MkdirTemp(baseTempDir(), dirPrefix)
	if err != nil {
		t.Fatalf("realpeer: %v", err)
	}
	p := &Postfix{Dir: dir, l: newLayout(dir), name: "postfix-" + filepath.Base(dir), users: map[string]string{}, introspect: introspect, chunking: chunking}
	for k, v := range users {
		p.users[k] = v
	}
	p.CAFile = p.l.caFile
	t.Cleanup(func() { p.cleanup(t) })

	if err := p.prepare(); err != nil {
		t.Fatalf("realpeer: preparing %s: %v", dir, err)
	}
	if err := p.startDovecot(dvBin); err != nil {
		t.Fatalf("realpeer: starting dovecot: %v\n%s", err, p.logTail(40))
	}

	// Free ports are picked by binding :0 and closing again, so another
	// process may grab one before Postfix binds it: retry a few times.
	var lastErr error
	for attempt := 0; attempt < 4; attempt++ {
		ports, err := freePorts(3)
		if err != nil {
			t.Fatalf("realpeer: %v", err)
		}
		p.SubmissionAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
		p.SMTPSAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
		p.PlainAddr = fmt.Sprintf("127.0.0.1:%d", ports[2])
		if err := writeConfig(p.l.etc+"/master.cf", masterCF(ports[0], ports[1], ports[2])); err != nil {
			t.Fatalf("realpeer: %v", err)
		}
		lastErr = p.startPostfix()
		if lastErr == nil {
			return p
		}
		if !strings.Contains(p.Log(), "Address already in use") {
			break
		}
		t.Logf("realpeer: postfix start attempt %d failed, retrying: %v", attempt+1, lastErr)
		_ = p.stopPostfix() // in case part of it came up
		killPostfixLeftovers(p)
	}
	t.Fatalf("realpeer: starting postfix: %v\n%s", lastErr, p.logTail(60))
	return nil
}

// checkCred rejects logins/passwords that cannot be stored in a Dovecot
// passwd-file (the password is stored base64-encoded, so it may contain
// anything).
func checkCred(login, pw string) error {
	if login == "" || strings.ContainsAny(login, ":\r\n\x00") || strings.TrimSpace(login) != login {
		return fmt.Errorf("login %q cannot be used (empty, or contains ':', NUL, CR, LF or surrounding spaces)", login)
	}
	if strings.ContainsRune(pw, 0) {
		return fmt.Errorf("password for %q contains NUL", login)
	}
	return nil
}

// prepare creates the directory tree, TLS material and config files.
func (p *Postfix) prepare() error {
	l := p.l
	// Postfix (user postfix) and virtual(8) (uid 65534) must traverse DIR.
	if err := os.Chmod(l.dir, 0o755); err != nil {
		return err
	}
	if err := writeOwner(l.ownerFile); err != nil {
		return err
	}
	for _, d := range []string{l.etc, l.queue, l.logDir, l.tlsDir, l.dovDir, l.dovState} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// data_directory is created by "postfix start" (post-install
	// create-missing) with the right owner; the mail base must be writable
	// by the virtual delivery uid.
	if err := os.MkdirAll(l.mail, 0o755); err != nil {
		return err
	}
	if err := os.Chown(l.mail, mailUID, mailGID); err != nil {
		return err
	}
	// The Postfix log file is opened by postlogd; create it up front so that
	// Log() works before the first line and ownership is predictable.
	for _, f := range []string{l.postfixLog, l.dovLog} {
		fh, err := os.OpenFile(f, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		fh.Close()
	}
	if err := writeCerts(l.caFile, l.certFile, l.keyFile); err != nil {
		return err
	}
	files := map[string]string{
		l.etc + "/main.cf":          mainCF(l, p.name, p.chunking),
		l.etc + "/master.cf":        masterCF(1, 2, 3), // rewritten with real ports
		l.etc + "/vmailbox":         vmailboxMap(),
		l.etc + "/recipient_access": recipientAccess(),
		l.dovConf:                   dovecotConf(l, filepath.Base(l.dir), p.introspect != ""),
	}
	if p.introspect != "" {
		files[l.dovOAuth] = dovecotOAuth2Conf(p.introspect)
	}
	for name, content := range files {
		if err := writeConfig(name, content); err != nil {
			return err
		}
	}
	return p.writeUsers()
}

// writeConfig writes a config file with an mtime 10 s in the past. Postfix
// refuses to read a main.cf (or lookup table) modified within the last two
// seconds: it rereads it every 300 ms until it is old enough ("file
// stability" check), which would add ~1.5 s to each start.
func writeConfig(name, content string) error {
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		return err
	}
	past := time.Now().Add(-10 * time.Second)
	return os.Chtimes(name, past, past)
}

// writeUsers (re)writes the Dovecot passwd-file (atomically, by rename).
// Dovecot re-reads it when its mtime or size changed, checking at most once
// per second (see waitUsersVisible). Callers hold p.mu or have exclusive
// access.
func (p *Postfix) writeUsers() error {
	logins := make([]string, 0, len(p.users))
	for login := range p.users {
		logins = append(logins, login)
	}
	sort.Strings(logins)
	var b strings.Builder
	for _, login := range logins {
		// {PLAIN.b64}: plaintext (so CRAM-MD5 works) but base64-encoded so
		// that any byte (including ':') is allowed in the password.
		fmt.Fprintf(&b, "%s:{PLAIN.b64}%s::::::nodelay=y\n", login, base64.StdEncoding.EncodeToString([]byte(p.users[login])))
	}
	tmp := p.l.dovUsers + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o640); err != nil {
		return err
	}
	// readable by dovecot's auth process (runs as default_internal_user).
	if g, err := user.LookupGroup("dovecot"); err == nil {
		if gid, err := strconv.Atoi(g.Gid); err == nil {
			_ = os.Chown(tmp, 0, gid)
		}
	} else {
		_ = os.Chmod(tmp, 0o644)
	}
	// Dovecot reloads the file when its mtime (whole seconds) or size
	// changed: make sure the seconds differ from the previous version.
	now := time.Now()
	if fi, err := os.Stat(p.l.dovUsers); err == nil && now.Unix() <= fi.ModTime().Unix() {
		now = time.Unix(fi.ModTime().Unix()+1, 0)
	}
	_ = os.Chtimes(tmp, now, now)
	return os.Rename(tmp, p.l.dovUsers)
}

// waitUsersVisible sleeps until Dovecot is sure to see a rewritten
// passwd-file: its auth process stat()s the file at most once per second
// of its clock (and the mtime may have been pushed into the next second),
// so wait until a second after the file's mtime has begun.
func (p *Postfix) waitUsersVisible() {
	fi, err := os.Stat(p.l.dovUsers)
	if err != nil {
		return
	}
	sec := fi.ModTime().Unix()
	if now := time.Now().Unix(); now > sec {
		sec = now
	}
	time.Sleep(time.Until(time.Unix(sec+1, 0).Add(20 * time.Millisecond)))
}

// SetUser adds a SASL user or changes its password. It returns once the
// change is in effect for the next authentication (after up to ~1 s, as
// Dovecot checks its passwd-file at most once per second).
func (p *Postfix) SetUser(t testing.TB, login, password string) {
	t.Helper()
	testlog.Secret(password)
	if err := checkCred(login, password); err != nil {
		t.Fatalf("realpeer: %v", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.users[login] = password
	if err := p.writeUsers(); err != nil {
		t.Fatalf("realpeer: writing users: %v", err)
	}
	p.waitUsersVisible()
}

// RemoveUser deletes a SASL user; once it returns (after up to ~1 s), its
// next authentication fails.
func (p *Postfix) RemoveUser(t testing.TB, login string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.users, login)
	if err := p.writeUsers(); err != nil {
		t.Fatalf("realpeer: writing users: %v", err)
	}
	p.waitUsersVisible()
}

// startDovecot runs "dovecot -F -c conf" in its own process group and waits
// for the auth-client socket to accept connections.
func (p *Postfix) startDovecot(bin string) error {
	stderr, err := os.OpenFile(p.l.dovStderr, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer stderr.Close()
	cmd := exec.Command(bin, "-F", "-c", p.l.dovConf)
	cmd.Dir = p.l.dovDir
	cmd.Env = cmdEnv()
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.mu.Lock()
	p.dovecot, p.dovecotDone = cmd, done
	p.mu.Unlock()

	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("dovecot exited during startup: %s", cmd.ProcessState)
		default:
		}
		if c, err := net.DialTimeout("unix", p.l.authSocket, time.Second); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("auth socket %s did not appear", p.l.authSocket)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *Postfix) stopDovecot() {
	p.mu.Lock()
	cmd, done := p.dovecot, p.dovecotDone
	p.dovecot = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	// A graceful SIGTERM shutdown of Dovecot takes over a second (its master
	// waits for the children); the instance is thrown away and Dovecot keeps
	// no state that matters here, so SIGKILL the whole process group. The
	// master is not reaped yet (done is still open), so the group id is
	// still ours. Stragglers outside the group are found by
	// killInstanceProcs.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// postfixCmd runs "postfix -c ETC args..." and returns its combined output.
func (p *Postfix) postfixCmd(args ...string) (string, error) {
	bin, err := findBin(postfixBin)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-c", p.l.etc}, args...)...)
	cmd.Env = cmdEnv()
	cmd.Dir = p.l.dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// startPostfix runs "postfix start" and waits for the greetings.
func (p *Postfix) startPostfix() error {
	out, err := p.postfixCmd("start")
	if err != nil {
		return fmt.Errorf("postfix -c %s start: %v\n%s", p.l.etc, err, out)
	}
	p.mu.Lock()
	p.up = true
	p.mu.Unlock()
	return p.waitGreetings(20 * time.Second)
}

func killPostfixLeftovers(p *Postfix) {
	// Only Postfix processes: Dovecot's live in dovDir and must survive.
	for _, pid := range instanceProcs(p.l.dir) {
		cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if cwd == p.l.dovDir || strings.HasPrefix(cwd, p.l.dovDir+"/") {
			continue
		}
		if p.isDovecotProc(pid) {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	p.mu.Lock()
	p.up = false
	p.mu.Unlock()
}

func (p *Postfix) isDovecotProc(pid int) bool {
	p.mu.Lock()
	cmd := p.dovecot
	p.mu.Unlock()
	if cmd == nil {
		return false
	}
	pgid, err := syscall.Getpgid(pid)
	return err == nil && pgid == cmd.Process.Pid
}

// Stop stops Postfix for outage tests and waits until all three ports
// refuse connections. Dovecot keeps running. It does what "postfix -c DIR
// stop" does (SIGTERM to the master, which then terminates its children)
// but polls for the master's exit instead of postfix-script's 1 s sleeps,
// falling back to "postfix stop" itself.
func (p *Postfix) Stop(t testing.TB) {
	t.Helper()
	// A message Postfix has delivered stays in its active queue until qmgr
	// removes it moments later; a stop in between makes Postfix deliver it
	// again after the next start (at-least-once). Let in-flight deliveries
	// finish first, for a bounded time.
	for deadline := time.Now().Add(10 * time.Second); p.inFlight() > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if err := p.stopPostfix(); err != nil {
		t.Fatalf("realpeer: postfix stop: %v\n%s", err, p.logTail(40))
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, addr := range p.addrs() {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				break
			}
			c.Close()
			if time.Now().After(deadline) {
				t.Fatalf("realpeer: %s still accepts connections after postfix stop\n%s", addr, p.logTail(40))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// inFlight counts the queue files of messages Postfix is receiving or
// delivering (its incoming and active queues).
func (p *Postfix) inFlight() int {
	n := 0
	for _, q := range []string{"incoming", "active"} {
		filepath.WalkDir(filepath.Join(p.l.queue, q), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				n++
			}
			return nil
		})
	}
	return n
}

// masterPID returns the pid of this instance's running Postfix master, or 0.
// The pid file is only trusted if that process runs in our queue directory
// (the master chdirs there), so a recycled pid is never signalled.
func (p *Postfix) masterPID() int {
	b, err := os.ReadFile(p.l.queue + "/pid/master.pid")
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 || isZombie(pid) {
		return 0
	}
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err != nil || cwd != p.l.queue {
		return 0
	}
	return pid
}

// stopPostfix terminates the master (if running) and waits for it to exit.
func (p *Postfix) stopPostfix() error {
	defer func() {
		p.mu.Lock()
		p.up = false
		p.mu.Unlock()
	}()
	pid := p.masterPID()
	if pid == 0 {
		return nil // not running
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for !isZombie(pid) {
		if time.Now().After(deadline) {
			// postfix-script's stop escalates to SIGKILL of the group.
			out, err := p.postfixCmd("stop")
			if err != nil {
				return fmt.Errorf("master %d ignored SIGTERM; postfix stop: %v\n%s", pid, err, out)
			}
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// Start starts Postfix again on the same ports after Stop and waits until
// every listener greets.
func (p *Postfix) Start(t testing.TB) {
	t.Helper()
	// The queue was set up by the first start: let postfix-script skip its
	// integrity checks (saves ~0.2 s).
	_ = os.WriteFile(p.l.queue+"/quick-start", nil, 0o644)
	if err := p.startPostfix(); err != nil {
		t.Fatalf("realpeer: postfix start: %v\n%s", err, p.logTail(60))
	}
}

func (p *Postfix) addrs() []string {
	return []string{p.SubmissionAddr, p.SMTPSAddr, p.PlainAddr}
}

// CertPool returns a pool holding the instance's CA, for tls.Config.RootCAs.
func (p *Postfix) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	if pem, err := os.ReadFile(p.CAFile); err == nil {
		pool.AppendCertsFromPEM(pem)
	}
	return pool
}

// waitGreetings waits until each listener answers with a 220 greeting
// (the SMTPS one after a TLS handshake verified against CAFile).
func (p *Postfix) waitGreetings(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	pool := p.CertPool()
	for i, addr := range p.addrs() {
		useTLS := i == 1
		var lastErr error
		for {
			lastErr = greet(addr, useTLS, pool)
			if lastErr == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("no 220 greeting from %s: %v", addr, lastErr)
			}
			time.Sleep(30 * time.Millisecond)
		}
	}
	return nil
}

func greet(addr string, useTLS bool, pool *x509.CertPool) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if useTLS {
		tc := tls.Client(c, &tls.Config{ServerName: "localhost", RootCAs: pool})
		if err := tc.Handshake(); err != nil {
			return err
		}
		c = tc
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "220") {
			return fmt.Errorf("unexpected greeting %q", strings.TrimSpace(line))
		}
		if len(line) >= 4 && line[3] == ' ' {
			break
		}
	}
	_, _ = c.Write([]byte("QUIT\r\n"))
	_, _ = r.ReadString('\n')
	return nil
}

// freePorts returns n distinct currently-free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Messages returns the messages delivered so far to mailbox (a full address
// such as "bob@example.net"; compared case-insensitively), oldest first.
// Every address of a domain shares the catch-all Maildir Dir/mail/<domain>/;
// a message belongs to mailbox when the Delivered-To header that Postfix's
// virtual(8) prepended to the stored copy names it (one copy is stored per
// recipient).
func (p *Postfix) Messages(mailbox string) []Message {
	mailbox = strings.Trim(strings.TrimSpace(mailbox), "<>")
	at := strings.LastIndexByte(mailbox, '@')
	if at <= 0 {
		return nil
	}
	domain := strings.ToLower(mailbox[at+1:])
	if domain == "" || strings.ContainsAny(domain, "/") || strings.HasPrefix(domain, ".") {
		return nil
	}
	md := filepath.Join(p.l.mail, domain)
	type entry struct {
		key  maildirKey
		path string
		raw  []byte
	}
	var entries []entry
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(md, sub))
		for _, e := range ents {
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			path := filepath.Join(md, sub, e.Name())
			raw, err := os.ReadFile(path)
			if err != nil || !strings.EqualFold(deliveredTo(raw), mailbox) {
				continue
			}
			entries = append(entries, entry{parseMaildirName(e.Name(), path), path, raw})
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].key.less(entries[j].key) })
	msgs := make([]Message, 0, len(entries))
	for _, e := range entries {
		msgs = append(msgs, Message{Path: e.path, Raw: e.raw})
	}
	return msgs
}

// deliveredTo returns the address in the topmost Delivered-To header.
func deliveredTo(raw []byte) string {
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			break // end of header
		}
		const h = "delivered-to:"
		if len(line) > len(h) && strings.EqualFold(string(line[:len(h)]), h) {
			return strings.Trim(strings.TrimSpace(string(line[len(h):])), "<>")
		}
	}
	return ""
}

// maildirKey orders Maildir files by delivery time. Postfix's virtual(8)
// names them "SECONDS.VdevIinodeMmicros.host".
type maildirKey struct {
	sec, usec int64
	name      string
}

func (a maildirKey) less(b maildirKey) bool {
	if a.sec != b.sec {
		return a.sec < b.sec
	}
	if a.usec != b.usec {
		return a.usec < b.usec
	}
	return a.name < b.name
}

var maildirNameRE = regexp.MustCompile(`^(\d+)\.[^.]*M(\d+)`)

func parseMaildirName(name, path string) maildirKey {
	k := maildirKey{name: name}
	if m := maildirNameRE.FindStringSubmatch(name); m != nil {
		k.sec, _ = strconv.ParseInt(m[1], 10, 64)
		k.usec, _ = strconv.ParseInt(m[2], 10, 64)
		return k
	}
	if fi, err := os.Stat(path); err == nil {
		k.sec, k.usec = fi.ModTime().Unix(), int64(fi.ModTime().Nanosecond()/1000)
	}
	return k
}

// WaitMessages waits until at least n messages have been delivered to
// mailbox and returns all of them (oldest first). It fails the test, with
// the queue and the logs, on timeout.
func (p *Postfix) WaitMessages(t testing.TB, mailbox string, n int, timeout time.Duration) []Message {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msgs := p.Messages(mailbox)
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			q, _ := p.postqueue()
			t.Fatalf("realpeer: %d message(s) for %s after %v, want %d\nqueue:\n%s\n%s", len(msgs), mailbox, timeout, n, q, p.logTail(60))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// postqueue returns "postqueue -p" output for the instance.
func (p *Postfix) postqueue() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/sbin/postqueue", "-c", p.l.etc, "-p")
	cmd.Env = cmdEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Log returns the Postfix and Dovecot logs so far.
func (p *Postfix) Log() string {
	var b strings.Builder
	for _, f := range []struct{ title, path string }{
		{"postfix", p.l.postfixLog},
		{"dovecot", p.l.dovLog},
		{"dovecot stderr", p.l.dovStderr},
	} {
		data, err := os.ReadFile(f.path)
		if err != nil || len(data) == 0 {
			continue
		}
		fmt.Fprintf(&b, "==== %s log (%s) ====\n", f.title, f.path)
		b.Write(data)
		if !bytes.HasSuffix(data, []byte("\n")) {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// logTail returns the last n lines of each log.
func (p *Postfix) logTail(n int) string {
	var b strings.Builder
	for _, f := range []struct{ title, path string }{
		{"postfix", p.l.postfixLog},
		{"dovecot", p.l.dovLog},
		{"dovecot stderr", p.l.dovStderr},
	} {
		data, err := os.ReadFile(f.path)
		if err != nil || len(data) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "==== last %d lines of %s log (%s) ====\n%s\n", len(lines), f.title, f.path, strings.Join(lines, "\n"))
	}
	return b.String()
}

// cleanup stops both daemons, kills leftovers and removes the directory.
func (p *Postfix) cleanup(t testing.TB) {
	p.mu.Lock()
	up := p.up
	p.mu.Unlock()
	if err := p.stopPostfix(); err != nil && up {
		t.Logf("realpeer: stopping postfix: %v", err)
	}
	p.stopDovecot()
	if left := killInstanceProcs(p.l.dir); len(left) > 0 {
		t.Errorf("realpeer: processes of %s survived SIGKILL: %v", p.l.dir, left)
	}
	if t.Failed() {
		t.Logf("realpeer: instance %s logs:\n%s", p.l.dir, p.logTail(80))
	}
	if os.Getenv("REALPEER_KEEP") != "" {
		t.Logf("realpeer: REALPEER_KEEP set, keeping %s", p.l.dir)
		_ = os.Remove(p.l.ownerFile) // let a later sweep remove it eventually
		return
	}
	if err := os.RemoveAll(p.l.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Logf("realpeer: removing %s: %v", p.l.dir, err)
	}
}
