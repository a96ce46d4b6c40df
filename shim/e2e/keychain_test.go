//go:build realpeer

package e2e

import (
	"context"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/internal/realpeer"
	"github.com/smtpshim/smtpshim/shim/secrets"
)

// keychainGet reads an entry through the same Secret Service smtpshim
// uses: the test process is on the same (private) session bus.
func keychainGet(key string) (string, error) {
	return secrets.NewKeychain(5*time.Second).Get(context.Background(), key)
}

func TestKeychainAccount(t *testing.T) {
	t.Parallel()
	needKeyring(t)
	const (
		carol = "carol@example.com"
		// Spaces, quotes, a backslash, a '#' and non-ASCII: it must
		// survive the pipe, the keychain and AUTH PLAIN unchanged.
		password = `c4r0l's "secret" \ pa#ss wörd`
	)
	p := realpeer.StartPostfix(t, map[string]string{carol: password})
	c := newConfig(t, "")
	t.Cleanup(func() { deleteKeychainEntry(carol) })

	var outputs []string
	seen := func(res result) result {
		outputs = append(outputs, res.Stdout, res.Stderr)
		return res
	}

	add := seen(addKeychainAccount(t, c, carol, password, "--server", p.SubmissionAddr, "--ca-file", p.CAFile))
	if !strings.Contains(add.Stdout, "account "+carol+" added (server "+p.SubmissionAddr+", starttls); the password is in the OS keychain") {
		t.Errorf("account add:\n%s", add)
	}
	cfgText, err := os.ReadFile(c.Path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(cfgText), password) || strings.Contains(string(cfgText), "pa#ss") {
		t.Errorf("the password is in the config file:\n%s", cfgText)
	}
	if !strings.Contains(string(cfgText), `address = "`+carol+`"`) || strings.Contains(string(cfgText), "password_command") {
		t.Errorf("the config file does not hold the keychain account:\n%s", cfgText)
	}
	if got, err := keychainGet(carol); err != nil || got != password {
		t.Fatalf("the Secret Service entry for %s: %q, %v; want the password as piped in", carol, got, err)
	}

	list := seen(shimKeychain(t, c.Path, "", "account", "list"))
	row := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(carol) + `\s+address\s+` + regexp.QuoteMeta(p.SubmissionAddr) + `\s+starttls\s+` + regexp.QuoteMeta(carol) + `\s+in keychain\s*$`)
	if list.Code != 0 || !row.MatchString(list.Stdout) {
		t.Errorf("account list: want carol's row saying \"in keychain\":\n%s", list)
	}

	r := startRelay(t, c)
	msg := message(carol, "dave@example.net", "3-keychain")
	rep := sendMail(t, r.Addr, carol, []string{"dave@example.net"}, msg)
	if rep.Code != 250 || !strings.Contains(rep.LastText(), "Ok: queued as") {
		t.Fatalf("end of DATA: %s; want Postfix's 250 2.0.0 Ok: queued as ...", rep)
	}
	m := waitMessage(t, p, "dave@example.net", "3-keychain")
	if got := m.AuthenticatedSender(); got != carol {
		t.Errorf("authenticated sender %q, want %s", got, carol)
	}
	sameBytes(t, "delivered message", asSubmitted(t, m), msg)

	rm := seen(shimKeychain(t, c.Path, "", "account", "remove", carol))
	if rm.Code != 0 || !strings.Contains(rm.Stdout, "account "+carol+" removed") ||
		!strings.Contains(rm.Stdout, "its password was removed from the keychain") {
		t.Errorf("account remove:\n%s", rm)
	}
	if _, err := keychainGet(carol); !errors.Is(err, secrets.ErrNotFound) {
		t.Errorf("after account remove, the keychain entry: %v; want ErrNotFound", err)
	}
	list = seen(shimKeychain(t, c.Path, "", "account", "list"))
	if list.Code != 0 || strings.Contains(list.Stdout, carol) || !strings.Contains(list.Stdout, "no accounts in ") {
		t.Errorf("account list after remove still shows %s:\n%s", carol, list)
	}
	// The running relay was told to reload: carol is refused now.
	cl := dialSMTP(t, r.Addr)
	cl.expect("HELO oldclient", 250)
	if rep := cl.cmd("MAIL FROM:<" + carol + ">"); rep.Code != 550 || !strings.Contains(rep.LastText(), "smtpshim account add "+carol) {
		t.Errorf("MAIL FROM carol after account remove: %s, want 550 5.7.1", rep)
	}
	cl.cmd("QUIT")

	outputs = append(outputs, r.Log())
	for _, o := range outputs {
		if strings.Contains(o, password) || strings.Contains(o, "pa#ss") {
			t.Errorf("the password appears in smtpshim's output:\n%s", o)
		}
	}
}

// TestServeWithoutKeychain: `smtpshim serve` where there is no session bus
// (a system service, an SSH login) says at start, naming the account, that
// its password cannot be read and what to do; the account's status says
// "keychain unavailable", not that its server is down; and mail for it is
// kept, not refused and not lost.
func TestServeWithoutKeychain(t *testing.T) {
	t.Parallel()
	const dora = "dora@example.com"
	c := newConfig(t, "", account{Address: dora, Server: closedPort(t)})
	env := append(envWithout("DBUS_SESSION_BUS_ADDRESS", "DISPLAY", "WAYLAND_DISPLAY"), "DBUS_SESSION_BUS_ADDRESS=")
	r := startRelayEnv(t, c, env)

	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(r.Log(), "cannot get the password of an account") {
		if time.Now().After(deadline) {
			t.Fatalf("no start-up warning about the password:\n%s", r.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	warn := regexp.MustCompile(`(?m)^.*cannot get the password of an account.*$`).FindString(r.Log())
	if !strings.Contains(warn, "account="+dora) || !strings.Contains(warn, `problem="keychain unavailable"`) ||
		!strings.Contains(warn, "password_command") {
		t.Errorf("start-up warning %q: want the account, \"keychain unavailable\" and what to do", warn)
	}
	if strings.Contains(r.Log(), "unreachable") {
		t.Errorf("the log calls the server unreachable:\n%s", r.Log())
	}

	st := shim(t, c.Path, "", "status", "--json")
	if st.Code != 0 || !regexp.MustCompile(`"key":\s*"`+regexp.QuoteMeta(dora)+`"`).MatchString(st.Stdout) ||
		!strings.Contains(st.Stdout, `"problem": "keychain unavailable"`) || !strings.Contains(st.Stdout, `"state": "needs_attention"`) {
		t.Errorf("status --json: want %s needing attention with \"keychain unavailable\":\n%s", dora, st)
	}

	rep := sendMail(t, r.Addr, dora, []string{"eve@example.net"}, message(dora, "eve@example.net", "5-no-keychain"))
	if rep.Code != 250 || !strings.Contains(rep.LastText(), "queued as ") {
		t.Errorf("a message for an account whose password can't be read: %s; want 250 queued", rep)
	}
}
