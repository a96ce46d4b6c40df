//go:build linux

package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/godbus/dbus/v5"
)

// busMonitor counts the D-Bus messages to and from one process, as
// dbus-monitor would show them: the calls others make to it (a tray host
// reading the item's properties or menu) apart from what it sends on
// its own (signals, its own calls). A wake-up to answer a call is the
// caller's doing; a signal is ours.
type busMonitor struct {
	conn  *dbus.Conn
	names map[string]bool // the process's unique names on the bus
	done  chan struct{}

	mu       sync.Mutex
	callsIn  map[string]int // interface.member of each call to the process
	sent     map[string]int // signals and calls it sent (not replies)
	repliesO int            // replies it sent, to calls in
}

// monitorBus watches the bus at addr for the connections process pid
// holds now.
func monitorBus(addr string, pid int) (*busMonitor, error) {
	conn, err := dbus.Connect(addr)
	if err != nil {
		return nil, err
	}
	m := &busMonitor{conn: conn, names: map[string]bool{}, done: make(chan struct{}), callsIn: map[string]int{}, sent: map[string]int{}}
	var all []string
	if err := conn.BusObject().Call("org.freedesktop.DBus.ListNames", 0).Store(&all); err != nil {
		conn.Close()
		return nil, err
	}
	for _, n := range all {
		if !strings.HasPrefix(n, ":") {
			continue
		}
		var p uint32
		if conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, n).Store(&p) == nil && int(p) == pid {
			m.names[n] = true
		}
	}
	if len(m.names) == 0 {
		conn.Close()
		return nil, fmt.Errorf("process %d has no connection on the session bus", pid)
	}
	if err := conn.BusObject().Call("org.freedesktop.DBus.Monitoring.BecomeMonitor", 0, []string{}, uint32(0)).Err; err != nil {
		conn.Close()
		return nil, fmt.Errorf("BecomeMonitor: %w", err)
	}
	ch := make(chan *dbus.Message, 4096)
	conn.Eavesdrop(ch)
	go func() {
		defer close(m.done)
		for msg := range ch {
			m.count(msg)
		}
	}()
	return m, nil
}

func (m *busMonitor) count(msg *dbus.Message) {
	field := func(f dbus.HeaderField) string {
		v, ok := msg.Headers[f]
		if !ok {
			return ""
		}
		switch s := v.Value().(type) {
		case string:
			return s
		case dbus.ObjectPath:
			return string(s)
		}
		return ""
	}
	from, to := field(dbus.FieldSender), field(dbus.FieldDestination)
	name := field(dbus.FieldInterface) + "." + field(dbus.FieldMember)
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.names[to] && msg.Type == dbus.TypeMethodCall:
		m.callsIn[name]++
	case m.names[from] && (msg.Type == dbus.TypeMethodReply || msg.Type == dbus.TypeError):
		m.repliesO++
	case m.names[from]:
		m.sent[name]++
	}
}

// stop ends the monitor and returns what it counted.
func (m *busMonitor) stop() (callsIn, sent map[string]int) {
	m.conn.Close()
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.callsIn, m.sent
}

// tally writes counts as "3 (GetLayout 1, GetAll 2)", by interface.
func tally(c map[string]int) string {
	n := 0
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		n += c[k]
		short := k[strings.LastIndexByte(k, '.')+1:]
		parts = append(parts, fmt.Sprintf("%s %d", short, c[k]))
	}
	if n == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%s)", n, strings.Join(parts, ", "))
}
