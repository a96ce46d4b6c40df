package shim_test

// The log an admin debugs a device with: every message that is not sent
// leaves a line naming the client, the sender, the reply code and why;
// "delivered" lines carry the client, the sender, the recipient count and
// the provider's queue ID; and the client hears smtpshim's own words, not
// go-smtp's stock replies.

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/internal/rig"
	"github.com/smtpshim/smtpshim/shim/internal/testbin"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

const (
	logUser = "logs@example.com"
	logPass = "log-test-password"
)

func startLogRig(t *testing.T) (*rig.Engine, *upstreamsim.Server, *testbin.Buffer) {
	t.Helper()
	sim := rig.Sim(t, upstreamsim.Options{Users: map[string]string{logUser: logPass}})
	sim.SetFault(upstreamsim.RejectSomeRcpt)
	dir := t.TempDir()
	cfg := &config.Config{
		Hostname:       "shim.test",
		SpoolDir:       filepath.Join(dir, "spool"),
		SyncWait:       config.Duration(10 * time.Second),
		MaxRecipients:  2,
		MaxMessageSize: 4 << 10,
		MaxLineLength:  1 << 10,
		IdleTimeout:    config.Duration(time.Second),
		Accounts:       []config.Account{{Address: logUser, Server: sim.Addr, Security: config.SecurityStartTLS}},
	}
	cfg.SetPath(filepath.Join(dir, "config.toml"))
	log := &testbin.Buffer{}
	e := rig.Start(t, cfg, rig.Options{Secrets: map[string]string{logUser: logPass}, UpstreamCAs: sim.Cert.Pool, Log: log})
	return e, sim, log
}

// logLine waits for a log line matching all of the patterns.
func logLine(t *testing.T, log *testbin.Buffer, what string, patterns ...string) string {
	t.Helper()
	var res []*regexp.Regexp
	for _, p := range patterns {
		res = append(res, regexp.MustCompile(p))
	}
	var found string
	rig.WaitUntil(t, 10*time.Second, what, func() bool {
		for _, l := range strings.Split(log.String(), "\n") {
			ok := true
			for _, re := range res {
				if !re.MatchString(l) {
					ok = false
					break
				}
			}
			if ok {
				found = l
				return true
			}
		}
		return false
	})
	return found
}

func TestEveryMessageNotSentIsLogged(t *testing.T) {
	e, _, log := startLogRig(t)
	client := `client=127\.0\.0\.1:\d+`
	cases := []struct {
		name   string
		run    func(cl *rig.Client)
		code   string
		reason string
		from   string
	}{
		{"refused sender", func(cl *rig.Client) { cl.Do("MAIL FROM:<stranger@unknown.example>", 550, "5.7.1") }, "550", "refused sender", "stranger@unknown.example"},
		{"bad syntax", func(cl *rig.Client) {
			rp := cl.Do("MAIL FROM:<broken@example.com", 501, "5.5.2")
			if strings.Contains(rp.Joined(), "Was expecting") || !strings.Contains(rp.Joined(), "MAIL FROM:<you@example.com>") {
				t.Errorf("bad MAIL syntax got %q", rp.Joined())
			}
		}, "501", "bad syntax", ""},
		{"no domain", func(cl *rig.Client) {
			rp := cl.Do("MAIL FROM:<you>", 501, "5.5.2")
			if !strings.Contains(rp.Joined(), "with its domain") {
				t.Errorf("MAIL FROM:<you> got %q", rp.Joined())
			}
		}, "501", "bad syntax", ""},
		{"over the recipient limit", func(cl *rig.Client) {
			cl.Do("MAIL FROM:<"+logUser+">", 250, "2.0.0")
			cl.Do("RCPT TO:<a@example.net>", 250, "2.0.0")
			cl.Do("RCPT TO:<b@example.net>", 250, "2.0.0")
			cl.Do("RCPT TO:<c@example.net>", 452, "4.5.3")
		}, "452", "over the recipient limit", logUser},
		{"too big", func(cl *rig.Client) {
			cl.Do("MAIL FROM:<"+logUser+">", 250, "2.0.0")
			cl.Do("RCPT TO:<a@example.net>", 250, "2.0.0")
			cl.Expect(cl.Data("Subject: big\r\n\r\n"+strings.Repeat("0123456789abcdef0123456789abcdef\r\n", 300)), 552, "5.3.4")
		}, "552", "too big", logUser},
		{"line too long", func(cl *rig.Client) {
			cl.Do("MAIL FROM:<"+logUser+">", 250, "2.0.0")
			cl.Do("RCPT TO:<a@example.net>", 250, "2.0.0")
			rp := cl.Data("Subject: long\r\n\r\n" + strings.Repeat("x", 3000))
			if rp.Code != 500 && rp.Code != 552 {
				t.Errorf("a long line got %s", rp)
			}
		}, "", "line too long|too big", logUser},
		{"timed out", func(cl *rig.Client) {
			cl.Do("MAIL FROM:<"+logUser+">", 250, "2.0.0")
			cl.Do("RCPT TO:<a@example.net>", 250, "2.0.0")
			cl.Do("DATA", 354, "")
			cl.Write("Subject: slow\r\n")
			if rp := cl.ReadOrClosed(); rp.Code != 0 && rp.Code != 421 {
				t.Errorf("a client silent inside DATA got %s", rp)
			}
		}, "421", "timed out", logUser},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl := rig.Dial(t, e.Addr)
			defer cl.Close()
			cl.EHLO()
			tc.run(cl)
			code := tc.code
			if code == "" {
				code = `\d+`
			}
			from := regexp.QuoteMeta(tc.from)
			if tc.from == "" {
				from = `(""|\S*)`
			}
			logLine(t, log, "a log line for "+tc.name, `msg=refused`, client, `from=`+from+` `, `code=`+code, `reason="(`+tc.reason+`)"`)
			if tc.name == "timed out" {
				time.Sleep(200 * time.Millisecond)
				if n := strings.Count(log.String(), "reason=\"timed out\""); n != 1 {
					t.Errorf("%d lines for one timeout, want 1", n)
				}
			}
		})
	}
}

func TestDeliveredLineAndOwnWords(t *testing.T) {
	e, _, log := startLogRig(t)
	cl := rig.Dial(t, e.Addr)
	defer cl.Close()
	cl.EHLO()
	if rp := cl.Do("MAIL FROM:<"+logUser+">", 250, "2.0.0"); !strings.HasSuffix(rp.Joined(), fmt.Sprintf("Sender <%s> OK", logUser)) {
		t.Errorf("MAIL got %q", rp.Joined())
	}
	if rp := cl.Do("RCPT TO:<bob@example.net>", 250, "2.0.0"); !strings.HasSuffix(rp.Joined(), "Recipient <bob@example.net> OK") {
		t.Errorf("RCPT got %q", rp.Joined())
	}
	cl.Do("RCPT TO:<reject-me@example.net>", 550, "")
	cl.Expect(cl.Data("Subject: logged\r\n\r\nhello\r\n"), 250, "2.0.0")
	line := logLine(t, log, "the delivered line", `msg=delivered`)
	for _, want := range []string{`client=127.0.0.1:`, `from=` + logUser, `rcpts=1 `, `queue_id=SIM`, `refused=reject-me@example.net`} {
		if !strings.Contains(line, want) {
			t.Errorf("the delivered line lacks %q: %s", want, line)
		}
	}
	logLine(t, log, "the refused recipient named", `the upstream refused a recipient`, `rcpt=reject-me@example.net`, `from=`+logUser)
	if strings.Contains(log.String(), "Roger, accepting") || strings.Contains(log.String(), "I'll make sure") {
		t.Error("go-smtp's stock words reached the log")
	}
}

// TestQueuedAfterAFailedLiveAttempt: a message queued because its own
// attempt failed shows that attempt in the queue, and its next try is
// when the account's server is tried again.
func TestQueuedAfterAFailedLiveAttempt(t *testing.T) {
	e, sim, _ := startLogRig(t)
	sim.SetFault(upstreamsim.Refuse)
	cl := rig.Dial(t, e.Addr)
	defer cl.Close()
	cl.EHLO()
	cl.Do("MAIL FROM:<"+logUser+">", 250, "2.0.0")
	cl.Do("RCPT TO:<bob@example.net>", 250, "2.0.0")
	if rp := cl.Data("Subject: later\r\n\r\nlater\r\n"); rp.Code != 250 || !strings.Contains(rp.Joined(), "queued as") {
		t.Fatalf("got %s", rp)
	}
	ms := e.List()
	if len(ms) != 1 {
		t.Fatalf("%d queued", len(ms))
	}
	if ms[0].Attempts != 1 || ms[0].LastError == "" {
		t.Errorf("queued with %d attempts (last error %q), want 1", ms[0].Attempts, ms[0].LastError)
	}
}
