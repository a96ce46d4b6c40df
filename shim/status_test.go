package shim_test

// Engine tests of the status API, pause and reload, through the control
// socket as the CLI and the tray use it.

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim"
	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/control"
	"github.com/smtpshim/smtpshim/shim/internal/rig"
)

func dialControl(t *testing.T, r *engineRig) *control.Client {
	t.Helper()
	c, err := control.Dial(r.spoolDir)
	if err != nil {
		t.Fatalf("control.Dial: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// shortSpool is a spool directory with a path short enough for a Unix
// socket (t.TempDir's can exceed the limit with long test names).
func shortSpool(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "shim")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Every configured account is in the status from the start, before any
// mail: the tray has a line for each.
func TestStatusListsEveryAccountBeforeAnyMail(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{control: true, spoolDir: shortSpool(t), tune: func(c *config.Config) {
		c.Accounts = append(c.Accounts,
			config.Account{Domain: "example.org", Username: simUser, Server: sim.Addr, Security: config.SecurityStartTLS},
			config.Account{Address: "carol@example.net", Server: "127.0.0.1:1", Security: config.SecurityStartTLS})
	}})
	c := dialControl(t, r)
	rig.WaitUntil(t, 5*time.Second, "the engine to run", func() bool {
		st, err := c.Status()
		return err == nil && st.State == api.Running
	})
	st, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, a := range st.Accounts {
		keys = append(keys, a.Key)
		if a.State != api.AccountUnused || a.Auth != "password" || a.Server == "" {
			t.Errorf("account %+v; want unused, with its server", a)
		}
	}
	if !slices.Equal(keys, []string{simUser, "@example.org", "carol@example.net"}) {
		t.Fatalf("accounts %v; want all three in config order", keys)
	}
	if st.SpoolDir != r.spoolDir || len(st.Listen) != 1 || st.Listen[0] != r.addr {
		t.Errorf("status = %+v", st)
	}

	// After a delivery the account is ok and counts it; the others stay.
	mustProviderOK(t, send(t, r.addr, simUser, []string{"bob@example.net"}, message("hello", 500)))
	st, _ = c.Status()
	if a := st.Accounts[0]; a.State != api.AccountOK || a.Delivered != 1 || st.Delivered != 1 {
		t.Errorf("after a delivery: %+v", a)
	}
	if st.Accounts[1].State != api.AccountUnused {
		t.Errorf("an unused account became %q", st.Accounts[1].State)
	}
}

// A watcher gets the status first and the delivered event within a
// second of the delivery.
func TestWatchShowsADeliveryWithinASecond(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	r := startRig(t, sim, rigOptions{control: true, spoolDir: shortSpool(t)})
	c := dialControl(t, r)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type item struct {
		api.WatchItem
		at time.Time
	}
	items := make(chan item, 100)
	go c.Watch(ctx, func(it api.WatchItem) error { items <- item{it, time.Now()}; return nil })
	first := <-items
	if first.Status == nil {
		t.Fatalf("first watch item %+v; want the status", first)
	}
	s := send(t, r.addr, simUser, []string{"bob@example.net"}, message("watched", 500))
	replied := time.Now()
	mustProviderOK(t, s)
	deadline := time.After(time.Second)
	for {
		select {
		case it := <-items:
			if it.Event == nil || it.Event.Kind != api.EventDelivered {
				continue
			}
			if it.Event.Account != simUser || !slices.Equal(it.Event.Rcpts, []string{"bob@example.net"}) || it.Event.Seq <= first.Status.Seq {
				t.Fatalf("delivered event %+v", it.Event)
			}
			if lag := it.at.Sub(replied); lag > time.Second {
				t.Fatalf("the event arrived %s after the delivery", lag)
			}
			return
		case <-deadline:
			t.Fatal("no delivered event within a second of the delivery")
		}
	}
}

// Pause: new mail is accepted and made durable with "250 … (smtpshim is
// paused)", nothing goes upstream (no message, no probe, not even on a
// retry), the pause outlives a restart, and resume sends the queue.
func TestPauseHoldsMailAcrossARestartAndResumeSendsIt(t *testing.T) {
	t.Parallel()
	sim := startSim(t, false)
	dir := shortSpool(t)
	r := startRig(t, sim, rigOptions{control: true, spoolDir: dir})
	c := dialControl(t, r)
	rec := rig.Record(t, r.eng.Bus())
	st, err := c.Pause()
	if err != nil || st.State != api.Paused || st.PausedSince.IsZero() {
		t.Fatalf("Pause = %+v, %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "paused")); err != nil {
		t.Fatalf("the pause is not kept in the spool directory: %v", err)
	}
	conns := sim.Connections()
	body := message("Held while paused", 2000)
	s := send(t, r.addr, simUser, []string{"bob@example.net"}, body)
	id := mustQueued(t, s)
	if !strings.Contains(s.text, "queued as "+id+" (smtpshim is paused)") {
		t.Errorf("reply %q; want it to say smtpshim is paused", s.text)
	}
	if f := spoolFiles(t, dir); !slices.Contains(f, "msg/"+id+".json") {
		t.Fatalf("the paused message is not in the spool: %v", f)
	}
	q, err := c.Queue()
	if err != nil || len(q) != 1 || q[0].ID != id || !q[0].Held || q[0].Subject != "Held while paused" || q[0].LastError != "" {
		t.Fatalf("Queue = %+v, %v", q, err)
	}
	if n, err := c.Retry(""); err != nil || n != 1 {
		t.Fatalf("Retry = %d, %v", n, err)
	}
	time.Sleep(500 * time.Millisecond) // retry_max is 200 ms: a retry would have run
	if n := sim.Connections(); n != conns || len(sim.Messages()) != 0 {
		t.Fatalf("while paused the provider saw %d new connections and %d messages", n-conns, len(sim.Messages()))
	}
	if rec.Count(rig.IsEvent("retry", "")) != 1 {
		t.Errorf("the retry request published no event")
	}

	// A restart keeps the pause.
	r.stop()
	r = startRig(t, sim, rigOptions{control: true, spoolDir: dir})
	c = dialControl(t, r)
	rig.WaitUntil(t, 5*time.Second, "the restarted engine to run", func() bool {
		st, err := c.Status()
		return err == nil && st.State != api.Starting
	})
	st, _ = c.Status()
	if st.State != api.Paused || st.Queued != 1 {
		t.Fatalf("after a restart: state %q, %d queued; want paused with the message", st.State, st.Queued)
	}
	time.Sleep(300 * time.Millisecond) // a restart tries the queue at once: it must not
	if n := sim.Connections(); n != conns || len(sim.Messages()) != 0 {
		t.Fatalf("after a restart while paused the provider saw %d connections and %d messages", n-conns, len(sim.Messages()))
	}

	rec = rig.Record(t, r.eng.Bus())
	if st, err := c.Resume(); err != nil || st.State != api.Running {
		t.Fatalf("Resume = %+v, %v", st.State, err)
	}
	rec.WaitFor(t, eventWait, "the held message to be delivered", rig.IsEvent("delivered", id))
	waitSpoolEmpty(t, r)
	checkDeliveredOnce(t, r, body)
	if _, err := os.Stat(filepath.Join(dir, "paused")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the pause file is still there after resume: %v", err)
	}
}

// lanListener makes connections look as if they came from a LAN
// address while fromLAN is set.
type lanListener struct {
	net.Listener
	fromLAN *atomic.Bool
}

type lanConn struct{ net.Conn }

func (c lanConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.ParseIP("192.168.1.50"), Port: 40000}
}

func (l lanListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil && l.fromLAN.Load() {
		return lanConn{c}, nil
	}
	return c, err
}

// configOnDisk gives the rig's config a file, as serve has, so that a
// reload reads it; edit changes and saves it.
type configOnDisk struct {
	mu  sync.Mutex
	cfg *config.Config
}

func (d *configOnDisk) tune(path string) func(*config.Config) {
	return func(c *config.Config) {
		c.SetPath(path)
		d.cfg = c
	}
}

func (d *configOnDisk) edit(t *testing.T, fn func(*config.Config)) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	c, err := config.Load(d.cfg.Path())
	if err != nil {
		t.Fatal(err)
	}
	fn(c)
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
}

func startReloadRig(t *testing.T, fromLAN *atomic.Bool) (*engineRig, *configOnDisk) {
	sim := startSim(t, false)
	d := &configOnDisk{}
	path := filepath.Join(t.TempDir(), "config.toml")
	r := startRig(t, sim, rigOptions{control: true, spoolDir: shortSpool(t), tune: d.tune(path),
		wrap: func(l net.Listener) net.Listener { return lanListener{l, fromLAN} }})
	if err := d.cfg.Save(); err != nil {
		t.Fatal(err)
	}
	return r, d
}

// greeting connects and returns the server's first line.
func greeting(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

func smtpCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// A reload of allow_networks and local_auth is in force at once, for
// new connections and for sessions that are already open.
func TestReloadAppliesAccessSettingsAtOnce(t *testing.T) {
	t.Parallel()
	var fromLAN atomic.Bool
	r, d := startReloadRig(t, &fromLAN)
	c := dialControl(t, r)

	fromLAN.Store(true)
	if g := greeting(t, r.addr); !strings.HasPrefix(g, "554 5.7.1") {
		t.Fatalf("a LAN client before allow_networks got %q; want 554 5.7.1", g)
	}
	d.edit(t, func(c *config.Config) { c.AllowNetworks = []string{"192.168.1.0/24"} })
	res, err := c.Reload()
	if err != nil || !slices.Contains(res.Applied, "allow_networks") || len(res.NeedsRestart) != 0 {
		t.Fatalf("Reload = %+v, %v", res, err)
	}
	lan := dialClient(t, r.addr) // from 192.168.1.50, now allowed
	defer lan.Close()
	fromLAN.Store(false)
	if err := lan.Mail(simUser, nil); err != nil {
		t.Fatalf("MAIL from an allowed LAN client: %v", err)
	}
	lan.Reset()

	// Taking the network out again shuts the open session out too.
	d.edit(t, func(c *config.Config) { c.AllowNetworks = nil })
	if _, err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := lan.Mail(simUser, nil); smtpCode(err) != 554 {
		t.Fatalf("MAIL on a session from a network no longer allowed: %v; want 554", err)
	}
	fromLAN.Store(true)
	if g := greeting(t, r.addr); !strings.HasPrefix(g, "554 5.7.1") {
		t.Fatalf("a new LAN client after the reload got %q", g)
	}
	fromLAN.Store(false)

	// local_auth = "require": a session that logged in while AUTH was
	// ignored (with any password) must log in again.
	early := dialClient(t, r.addr)
	defer early.Close()
	if err := early.Auth(sasl.NewPlainClient("", "printer", "anything")); err != nil {
		t.Fatalf("AUTH while ignored: %v", err)
	}
	const localPW = "office-local-pw-Q3x"
	if err := r.store.Set(context.Background(), shim.LocalAuthKey, localPW); err != nil {
		t.Fatal(err)
	}
	d.edit(t, func(c *config.Config) { c.LocalAuth = config.LocalAuthRequire })
	res, err = c.Reload()
	if err != nil || !slices.Contains(res.Applied, "local_auth") {
		t.Fatalf("Reload = %+v, %v", res, err)
	}
	if err := early.Mail(simUser, nil); smtpCode(err) != 530 {
		t.Fatalf("MAIL on a session authenticated before local_auth = require: %v; want 530", err)
	}
	anon := dialClient(t, r.addr)
	defer anon.Close()
	if err := anon.Mail(simUser, nil); smtpCode(err) != 530 {
		t.Fatalf("MAIL without AUTH: %v; want 530", err)
	}
	good := dialClient(t, r.addr)
	defer good.Close()
	if err := good.Auth(sasl.NewPlainClient("", "printer", "wrong")); err == nil {
		t.Fatal("AUTH with a wrong local password succeeded")
	}
	good2 := dialClient(t, r.addr)
	defer good2.Close()
	if err := good2.Auth(sasl.NewPlainClient("", "printer", localPW)); err != nil {
		t.Fatalf("AUTH with the local password: %v", err)
	}
	if err := good2.Mail(simUser, nil); err != nil {
		t.Fatalf("MAIL after AUTH: %v", err)
	}
	good2.Reset()

	// Back to ignore: no AUTH needed.
	d.edit(t, func(c *config.Config) { c.LocalAuth = "" })
	if _, err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	mustProviderOK(t, send(t, r.addr, simUser, []string{"bob@example.net"}, message("after reload", 300)))
}

// A setting that needs a restart is named, as long as it differs from
// what is in force; a bad file changes nothing and says why.
func TestReloadNamesWhatNeedsARestart(t *testing.T) {
	t.Parallel()
	var fromLAN atomic.Bool
	r, d := startReloadRig(t, &fromLAN)
	c := dialControl(t, r)
	rec := rig.Record(t, r.eng.Bus())

	res, err := c.Reload()
	if err != nil || len(res.Applied) != 0 || len(res.NeedsRestart) != 0 {
		t.Fatalf("a reload of the unchanged file = %+v, %v", res, err)
	}
	d.edit(t, func(c *config.Config) {
		c.Listen = []string{"127.0.0.1:2626"}
		c.MaxConnections = 7
		c.Accounts = append(c.Accounts, config.Account{Address: "dave@example.net", Server: "127.0.0.1:1", Security: config.SecurityStartTLS})
	})
	const sentence = "listen changed: restart smtpshim to apply it"
	for range 2 { // the second reload still says so: the old addresses are in force
		res, err = c.Reload()
		if err != nil || !slices.Equal(res.NeedsRestart, []string{sentence}) {
			t.Fatalf("Reload = %+v, %v; want %q", res, err, sentence)
		}
	}
	rig.WaitUntil(t, 5*time.Second, "three reloaded events", func() bool { return rec.Count(rig.IsEvent("reloaded", "")) == 3 })
	var evs []*api.ReloadResult
	for _, e := range rec.All() {
		if e.Kind == "reloaded" {
			evs = append(evs, e.Reload)
		}
	}
	if len(evs) != 3 || !slices.Equal(evs[1].Applied, []string{"accounts (added dave@example.net)", "max_connections"}) || !slices.Equal(evs[2].NeedsRestart, []string{sentence}) {
		for _, ev := range evs {
			t.Errorf("reloaded event: %+v", *ev)
		}
	}
	st, _ := c.Status()
	if len(st.Accounts) != 2 || st.Accounts[1].Key != "dave@example.net" || st.Accounts[1].State != api.AccountUnused {
		t.Errorf("accounts after adding one = %+v", st.Accounts)
	}

	if err := os.WriteFile(d.cfg.Path(), []byte("lissen = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reload(); err == nil || !strings.Contains(err.Error(), "lissen") {
		t.Fatalf("a bad file: %v; want an error naming the setting", err)
	}
	st2, _ := c.Status()
	if len(st2.Accounts) != 2 {
		t.Errorf("a failed reload changed the accounts: %+v", st2.Accounts)
	}
	// A file that is gone must not read as "no accounts".
	if err := os.Remove(d.cfg.Path()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reload(); err == nil {
		t.Fatal("a reload of a deleted config file succeeded")
	}
	if st, _ := c.Status(); len(st.Accounts) != 2 {
		t.Errorf("a reload of a deleted file changed the accounts: %+v", st.Accounts)
	}
	mustProviderOK(t, send(t, r.addr, simUser, []string{"bob@example.net"}, message("still relaying", 300)))
}
