package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim"
	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/secrets"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

const (
	cliUser = "alice@example.com"
	cliPass = "cli-sim-password-not-real"
)

// relay is an in-process engine with its config file on disk, as
// `smtpshim serve` runs it, in front of a simulated provider.
type relay struct {
	cfgPath string
	addr    string
	sim     *upstreamsim.Server
	store   *secrets.Memory
	stop    func()
}

func startRelay(t *testing.T) *relay {
	t.Helper()
	sim, err := upstreamsim.Start(upstreamsim.Options{Users: map[string]string{cliUser: cliPass}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	dir, err := os.MkdirTemp("", "cli") // short: the control socket's path is limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := &config.Config{
		Hostname: "shim.test",
		SpoolDir: filepath.Join(dir, "spool"),
		RetryMin: config.Duration(50 * time.Millisecond),
		RetryMax: config.Duration(200 * time.Millisecond),
		Accounts: []config.Account{
			{Address: cliUser, Server: sim.Addr, Security: config.SecurityStartTLS},
			{Domain: "example.org", Username: "relay@example.org", Server: sim.Addr, Security: config.SecurityStartTLS},
		},
	}
	cfg.SetPath(filepath.Join(dir, "config.toml"))
	if err := cfg.Save(); err != nil {
		t.Fatal(err)
	}
	store := secrets.NewMemory()
	store.Set(context.Background(), cliUser, cliPass)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	eng, err := shim.New(cfg, shim.Options{Secrets: store, UpstreamTLS: &tls.Config{RootCAs: sim.Cert.Pool}, Listeners: []net.Listener{ln}, Version: "test"})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { eng.Run(ctx); close(done) }()
	r := &relay{cfgPath: cfg.Path(), addr: ln.Addr().String(), sim: sim, store: store}
	r.stop = func() { cancel(); <-done }
	t.Cleanup(r.stop)
	// Wait until it serves its control socket.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var out bytes.Buffer
		a := &app{configPath: r.cfgPath, stdout: &out, stderr: io.Discard}
		if a.run([]string{"status", "--json"}) == 0 && strings.Contains(out.String(), `"running"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the relay did not come up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

func (r *relay) cli(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	a := &app{configPath: r.cfgPath, stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut}
	code := a.run(args)
	return code, out.String(), errOut.String()
}

func (r *relay) send(t *testing.T, subject string) {
	t.Helper()
	c, err := smtp.Dial(r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.SendMail(cliUser, []string{"bob@example.net"},
		strings.NewReader("From: "+cliUser+"\r\nTo: bob@example.net\r\nSubject: "+subject+"\r\n\r\nhello\r\n"))
	if err != nil {
		t.Fatalf("sending: %v", err)
	}
}

func TestStatusJSONListsEveryAccountBeforeAnyMail(t *testing.T) {
	r := startRelay(t)
	code, out, errOut := r.cli(t, "", "status", "--json")
	if code != 0 {
		t.Fatalf("status --json exited %d: %s", code, errOut)
	}
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json is not JSON: %v\n%s", err, out)
	}
	if st.State != api.Running || len(st.Accounts) != 2 || st.Accounts[0].Key != cliUser || st.Accounts[1].Key != "@example.org" {
		t.Fatalf("status = %+v", st)
	}
	for _, a := range st.Accounts {
		if a.State != api.AccountUnused {
			t.Errorf("%s is %q before any mail; want unused", a.Key, a.State)
		}
	}
	if !sameFile(st.ConfigPath, r.cfgPath) {
		t.Errorf("config path %q; want %q", st.ConfigPath, r.cfgPath)
	}
	code, out, _ = r.cli(t, "", "status")
	if code != 0 || !strings.Contains(out, "smtpshim test: running") || !strings.Contains(out, "@example.org") || !strings.Contains(out, "not used yet") {
		t.Errorf("status:\n%s", out)
	}
}

// status --watch prints the delivered event within a second.
func TestStatusWatchPrintsADelivery(t *testing.T) {
	for _, asJSON := range []bool{false, true} {
		r := startRelay(t)
		pr, pw := io.Pipe()
		a := &app{configPath: r.cfgPath, stdout: pw, stderr: io.Discard}
		args := []string{"status", "--watch"}
		if asJSON {
			args = append(args, "--json")
		}
		exited := make(chan int, 1)
		go func() { exited <- a.run(args); pw.Close() }()
		lines := make(chan string, 100)
		go func() {
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// The status comes first.
		want := "--- following events"
		if asJSON {
			want = `{"status":`
		}
		for l := range lines {
			if strings.Contains(l, want) {
				break
			}
		}
		r.send(t, "watched")
		sent := time.Now()
		timeout := time.After(time.Second)
	wait:
		for {
			select {
			case l := <-lines:
				if asJSON {
					var it api.WatchItem
					if err := json.Unmarshal([]byte(l), &it); err != nil {
						t.Fatalf("not NDJSON: %q", l)
					}
					if it.Event != nil && it.Event.Kind == api.EventDelivered {
						break wait
					}
				} else if strings.Contains(l, " delivered "+cliUser) && strings.Contains(l, "bob@example.net") {
					break wait
				}
			case <-timeout:
				t.Fatalf("json=%v: no delivered line within a second", asJSON)
			}
		}
		t.Logf("json=%v: delivered line %s after the reply", asJSON, time.Since(sent))
		r.stop() // ends the watch
		select {
		case code := <-exited:
			if code != 0 {
				t.Errorf("status --watch exited %d when the relay stopped", code)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("status --watch kept running after the relay stopped")
		}
		go func() {
			for range lines {
			}
		}()
	}
}

func TestPauseAndResumeCommands(t *testing.T) {
	r := startRelay(t)
	code, out, errOut := r.cli(t, "", "pause")
	if code != 0 || !strings.Contains(out, "paused") {
		t.Fatalf("pause: %d %s %s", code, out, errOut)
	}
	r.send(t, "while paused")
	time.Sleep(400 * time.Millisecond)
	if n := len(r.sim.Messages()); n != 0 {
		t.Fatalf("the provider got %d messages while paused", n)
	}
	_, out, _ = r.cli(t, "", "status")
	if !strings.Contains(out, "PAUSED") || !strings.Contains(out, "1 message(s) waiting") {
		t.Errorf("status while paused:\n%s", out)
	}
	_, out, _ = r.cli(t, "", "queue", "list")
	if !strings.Contains(out, "paused") {
		t.Errorf("queue list while paused:\n%s", out)
	}
	if ids := regexp.MustCompile(`(?m)^(\d{8}T\d{6}-[0-9a-v]+)\s`).FindStringSubmatch(out); ids == nil {
		t.Errorf("no queue entry in:\n%s", out)
	} else if _, show, _ := r.cli(t, "", "queue", "show", ids[1]); !strings.Contains(show, "Subject:     while paused\n") || !strings.Contains(show, "Next try:    when smtpshim resumes") {
		t.Errorf("queue show while paused:\n%s", show)
	}
	code, out, _ = r.cli(t, "", "resume")
	if code != 0 || !strings.Contains(out, "resumed") {
		t.Fatalf("resume: %d %s", code, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(r.sim.Messages()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("nothing delivered after resume")
		}
		time.Sleep(20 * time.Millisecond)
	}

	r.stop()
	for _, cmd := range []string{"pause", "resume", "status"} {
		code, _, errOut := r.cli(t, "", cmd)
		if code != exUnavailable || !strings.Contains(errOut, "smtpshim is not running") || !strings.Contains(errOut, "smtpshim serve") {
			t.Errorf("%s without a relay: %d %q", cmd, code, errOut)
		}
	}
}

// A change to another config file (with the same spool) must not make
// the running relay reload its own file and claim the change.
func TestAccountAddReloadsOnlyTheRelayOfThatFile(t *testing.T) {
	r := startRelay(t)
	mem := secrets.NewMemory()
	old := keychain
	keychain = func(*config.Config) secrets.Store { return mem }
	defer func() { keychain = old }()

	other := filepath.Join(filepath.Dir(r.cfgPath), "other.toml")
	data, err := os.ReadFile(r.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var errOut bytes.Buffer
	a := &app{configPath: other, stdin: strings.NewReader("pw-for-new\n"), stdout: io.Discard, stderr: &errOut}
	if code := a.run([]string{"account", "add", "new@example.net", "--server", "127.0.0.1:1", "--password-stdin"}); code != 0 {
		t.Fatalf("account add: %d %s", code, errOut.String())
	}
	if !strings.Contains(errOut.String(), "no running smtpshim uses "+other) {
		t.Errorf("account add on another file said: %q", errOut.String())
	}
	_, out, _ := r.cli(t, "", "status", "--json")
	if strings.Contains(out, "new@example.net") {
		t.Fatalf("the relay picked up an account from a file it does not use:\n%s", out)
	}

	code, _, stderr := r.cli(t, "pw-for-new\n", "account", "add", "new@example.net", "--server", "127.0.0.1:1", "--password-stdin")
	if code != 0 || !strings.Contains(stderr, "now uses the new settings: accounts (added new@example.net)") {
		t.Fatalf("account add on the relay's file: %d %q", code, stderr)
	}
	_, out, _ = r.cli(t, "", "status", "--json")
	if !strings.Contains(out, "new@example.net") {
		t.Fatalf("the relay does not list the new account:\n%s", out)
	}
}

// Mail held because the provider refused the password is not "paused":
// the queue commands say why each message waits and what frees it, and a
// retry never claims to send what stays held.
func TestQueueCommandsSayWhyMailIsHeld(t *testing.T) {
	r := startRelay(t)
	if _, out, _ := r.cli(t, "", "queue", "retry"); !strings.Contains(out, "the queue is empty: nothing to retry") || strings.Contains(out, "retrying") {
		t.Errorf("queue retry on an empty queue:\n%s", out)
	}
	r.store.Set(context.Background(), cliUser, "a-wrong-password")
	r.send(t, "wrong password")
	_, out, _ := r.cli(t, "", "queue", "list")
	id := regexp.MustCompile(`(?m)^(\d{8}T\d{6}-[0-9a-v]+)\s`).FindStringSubmatch(out)
	if id == nil {
		t.Fatalf("no queue entry in:\n%s", out)
	}
	if strings.Contains(out, "paused") || !strings.Contains(out, " held ") ||
		!strings.Contains(out, "1 message(s) of "+cliUser+" held (password rejected)") {
		t.Errorf("queue list with a rejected password:\n%s", out)
	}
	if _, show, _ := r.cli(t, "", "queue", "show", id[1]); !strings.Contains(show, "Next try:    held: password rejected for "+cliUser) || strings.Contains(show, "resume") {
		t.Errorf("queue show with a rejected password:\n%s", show)
	}
	for _, args := range [][]string{{"queue", "retry", id[1]}, {"queue", "retry"}} {
		if _, out, _ := r.cli(t, "", args...); strings.Contains(out, "retrying") || !strings.Contains(out, "held (password rejected)") {
			t.Errorf("%v with a rejected password:\n%s", args, out)
		}
	}

	if code, _, errOut := r.cli(t, "", "pause"); code != 0 {
		t.Fatalf("pause: %d %s", code, errOut)
	}
	_, out, _ = r.cli(t, "", "queue", "retry")
	if strings.Contains(out, "retrying") || !strings.Contains(out, "smtpshim is paused") {
		t.Errorf("queue retry while paused:\n%s", out)
	}
}

// pause on a paused relay and resume on a running one change nothing,
// and say so instead of claiming a new pause or a resumed queue.
func TestPauseAndResumeSayWhenNothingChanges(t *testing.T) {
	r := startRelay(t)
	if code, out, _ := r.cli(t, "", "resume"); code != 0 || !strings.Contains(out, "smtpshim is not paused: nothing to resume") || strings.Contains(out, "resumed") {
		t.Errorf("resume while running: %d\n%s", code, out)
	}
	if code, out, _ := r.cli(t, "", "pause"); code != 0 || !strings.HasPrefix(out, "paused: ") {
		t.Fatalf("pause: %d\n%s", code, out)
	}
	if code, out, _ := r.cli(t, "", "pause"); code != 0 || !strings.Contains(out, "smtpshim is already paused (for ") {
		t.Errorf("pause while paused: %d\n%s", code, out)
	}
	if code, out, _ := r.cli(t, "", "resume"); code != 0 || !strings.HasPrefix(out, "resumed: ") {
		t.Errorf("resume while paused: %d\n%s", code, out)
	}
	r.store.Set(context.Background(), cliUser, "a-wrong-password")
	r.send(t, "held")
	if code, out, _ := r.cli(t, "", "resume"); code != 0 || !strings.Contains(out, `to try the 1 waiting message(s) now, run "smtpshim queue retry"`) {
		t.Errorf("resume while running with mail waiting: %d\n%s", code, out)
	}
}

// Mail of an account whose password_command fails is retried, not held:
// queue list shows when, and queue retry tries it.
func TestQueueCommandsDoNotCallRetriedMailHeld(t *testing.T) {
	r := startRelay(t)
	cfg, err := config.Load(r.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Accounts = append(cfg.Accounts, config.Account{Address: "cmd@example.com", Server: r.sim.Addr, Security: config.SecurityStartTLS, PasswordCommand: "false"})
	if err := cfg.Save(); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := r.cli(t, "", "reload"); code != 0 {
		t.Fatalf("reload: %d %s", code, errOut)
	}
	c, err := smtp.Dial(r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMail("cmd@example.com", []string{"bob@example.net"}, strings.NewReader("Subject: cmd\r\n\r\nhello\r\n")); err != nil {
		t.Fatalf("sending: %v", err)
	}
	_, out, _ := r.cli(t, "", "queue", "list")
	if strings.Contains(out, "held") || strings.Contains(out, "paused") {
		t.Errorf("queue list with a failing password_command:\n%s", out)
	}
	if _, out, _ := r.cli(t, "", "queue", "retry"); !strings.Contains(out, "retrying 1 message(s) now") {
		t.Errorf("queue retry with a failing password_command:\n%s", out)
	}
}

// Removing an account whose mail is still queued says that this mail
// waits, and how to see or drop it.
func TestAccountRemoveWarnsOfItsQueuedMail(t *testing.T) {
	r := startRelay(t)
	mem := secrets.NewMemory()
	old := keychain
	keychain = func(*config.Config) secrets.Store { return mem }
	defer func() { keychain = old }()
	if code, _, errOut := r.cli(t, "", "pause"); code != 0 {
		t.Fatalf("pause: %d %s", code, errOut)
	}
	r.send(t, "queued, then its account goes")
	code, _, errOut := r.cli(t, "", "account", "remove", cliUser)
	if code != 0 || !strings.Contains(errOut, "1 queued message(s) of "+cliUser+" stay in the queue") {
		t.Errorf("account remove with mail queued: %d %q", code, errOut)
	}
	code, _, errOut = r.cli(t, "", "account", "remove", "@example.org")
	if code != 0 || strings.Contains(errOut, "queued") {
		t.Errorf("account remove without mail queued: %d %q", code, errOut)
	}
}

// An unknown queue ID points to the list of the real ones.
func TestQueueUnknownIDPointsToTheList(t *testing.T) {
	r := startRelay(t)
	for _, cmd := range []string{"show", "retry", "delete"} {
		code, _, errOut := r.cli(t, "", "queue", cmd, "20000101T000000-nosuchid")
		if code != exNoUser || !strings.Contains(errOut, "no queued message 20000101T000000-nosuchid") || !strings.Contains(errOut, `see "smtpshim queue list"`) {
			t.Errorf("queue %s of an unknown ID: %d %q", cmd, code, errOut)
		}
	}
}

// Without a running relay the queue's next-try times are moot: the mail
// goes when smtpshim starts, and the queue commands say so.
func TestQueueWithoutARelaySaysMailGoesAtStart(t *testing.T) {
	r := startRelay(t)
	r.sim.SetFault(upstreamsim.Refuse)
	r.send(t, "queued, then the relay stops")
	r.stop()
	_, out, _ := r.cli(t, "", "queue", "list")
	id := regexp.MustCompile(`(?m)^(\d{8}T\d{6}-[0-9a-v]+)\s`).FindStringSubmatch(out)
	if id == nil || !strings.Contains(out, " at start ") || strings.Contains(out, " in ") || !strings.Contains(out, notRunning) {
		t.Fatalf("queue list without a relay:\n%s", out)
	}
	if _, show, _ := r.cli(t, "", "queue", "show", id[1]); !strings.Contains(show, "Next try:    when smtpshim starts") {
		t.Errorf("queue show without a relay:\n%s", show)
	}
}

// Storing a new password changes nothing in the file, but the running
// relay uses it: account add must not say that nothing changed.
func TestAccountAddOfANewPasswordSaysItIsUsed(t *testing.T) {
	r := startRelay(t)
	old := keychain
	keychain = func(*config.Config) secrets.Store { return r.store }
	defer func() { keychain = old }()
	code, _, errOut := r.cli(t, "new-password\n", "account", "add", cliUser, "--password-stdin")
	if code != 0 || strings.Contains(errOut, "nothing that applies") || !strings.Contains(errOut, "a new one is used from the next message") {
		t.Errorf("account add of a new password: %d %q", code, errOut)
	}
}
