//go:build linux

package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

func TestFactoryMessagesAreUniqueAndHashed(t *testing.T) {
	f := newFactory("t", 10<<10)
	seen := map[[32]byte]bool{}
	for range 100 {
		m := f.next()
		if got := sha256.Sum256(append(append([]byte(nil), m.prefix...), m.suffix...)); got != m.sum {
			t.Fatal("the precomputed hash differs from the message's SHA-256")
		}
		if seen[m.sum] {
			t.Fatal("two messages are the same")
		}
		seen[m.sum] = true
		if d := m.size() - 10<<10; d < -suffixLen || d > suffixLen {
			t.Fatalf("size %d, want about %d", m.size(), 10<<10)
		}
	}
}

func TestPercentile(t *testing.T) {
	lat := []time.Duration{5, 1, 4, 2, 3}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0, 1}, {0.5, 3}, {0.99, 5}, {1, 5}} {
		if got := percentile(lat, tc.p); got != tc.want {
			t.Errorf("percentile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if percentile(nil, 0.5) != 0 {
		t.Error("percentile of nothing should be 0")
	}
}

// TestVerify checks that the integrity check catches each way a message
// can go wrong, against a real simulated provider.
func TestVerify(t *testing.T) {
	sim, err := upstreamsim.Start(upstreamsim.Options{Users: map[string]string{benchSender: "pw"}, HashOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	b := &bench{sim: sim}
	direct := target{addr: sim.Addr, tls: &tls.Config{RootCAs: sim.Cert.Pool}, user: benchSender, pass: "pw"}
	res := runLoad(context.Background(), direct, loadSpec{conns: 2, msgs: newFactory("t", 4<<10), warmup: 1, perConn: 3})
	if err := res.firstErr(); err != nil {
		t.Fatal(err)
	}
	if len(res.sent) != 8 || res.msgs != 6 {
		t.Fatalf("sent %d messages (%d timed), want 8 (6)", len(res.sent), res.msgs)
	}
	if _, problems := b.verify(res.sent, time.Second); len(problems) > 0 {
		t.Fatalf("intact delivery reported as %q", problems)
	}

	want := func(problems []string, substr string) {
		t.Helper()
		if len(problems) != 1 || !strings.Contains(problems[0], substr) {
			t.Errorf("problems %q, want one saying %q", problems, substr)
		}
	}
	missing := maps.Clone(res.sent)
	missing[[32]byte{1}] = 10
	_, problems := b.verify(missing, 50*time.Millisecond)
	want(problems, "never reached")

	altered := maps.Clone(res.sent)
	for h := range altered {
		delete(altered, h)
		break
	}
	_, problems = b.verify(altered, time.Second)
	want(problems, "no client sent")

	c, err := dialTarget(direct)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := newFactory("dup", 1<<10).next()
	for range 2 {
		if _, err := send(c, m); err != nil {
			t.Fatal(err)
		}
	}
	dup := maps.Clone(res.sent)
	dup[m.sum] = m.size()
	_, problems = b.verify(dup, time.Second)
	want(problems, "more than once")
}

func TestBusMonitorTellsCallsInFromWhatTheProcessSends(t *testing.T) {
	m := &busMonitor{names: map[string]bool{":1.20": true}, callsIn: map[string]int{}, sent: map[string]int{}}
	msg := func(typ dbus.Type, from, to, iface, member string) *dbus.Message {
		h := map[dbus.HeaderField]dbus.Variant{
			dbus.FieldSender:    dbus.MakeVariant(from),
			dbus.FieldInterface: dbus.MakeVariant(iface),
			dbus.FieldMember:    dbus.MakeVariant(member),
		}
		if to != "" {
			h[dbus.FieldDestination] = dbus.MakeVariant(to)
		}
		return &dbus.Message{Type: typ, Headers: h}
	}
	for _, x := range []*dbus.Message{
		msg(dbus.TypeMethodCall, ":1.8", ":1.20", "org.freedesktop.DBus.Properties", "GetAll"),
		msg(dbus.TypeMethodCall, ":1.8", ":1.20", "org.freedesktop.DBus.Properties", "GetAll"),
		msg(dbus.TypeMethodCall, ":1.8", ":1.20", "com.canonical.dbusmenu", "GetLayout"),
		msg(dbus.TypeMethodReply, ":1.20", ":1.8", "", ""),
		msg(dbus.TypeSignal, ":1.20", "", "com.canonical.dbusmenu", "LayoutUpdated"),
		msg(dbus.TypeSignal, ":1.8", "", "org.kde.StatusNotifierWatcher", "StatusNotifierItemRegistered"),
		msg(dbus.TypeMethodCall, ":1.8", ":1.9", "org.freedesktop.DBus.Properties", "GetAll"),
	} {
		m.count(x)
	}
	if got := tally(m.callsIn); got != "3 (GetLayout 1, GetAll 2)" {
		t.Errorf("calls in: %s", got)
	}
	if got := tally(m.sent); got != "1 (LayoutUpdated 1)" {
		t.Errorf("sent: %s", got)
	}
	if m.repliesO != 1 {
		t.Errorf("%d replies, want 1", m.repliesO)
	}
	if got := tally(map[string]int{}); got != "0" {
		t.Errorf("nothing: %s", got)
	}
}
