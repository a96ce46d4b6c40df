// Package sessionbus tells whether a D-Bus session bus can be reached,
// without the side effects of asking godbus: dbus.SessionBus() starts a
// dbus-launch daemon when none is set, which outlives smtpshim, and
// fyne.io/systray's Quit panics when there is no bus at all. So the
// address is read from DBUS_SESSION_BUS_ADDRESS and its socket dialled
// here.
package sessionbus

import (
	"net"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"
)

// Available reports whether this process has a session bus to talk to.
// Only Linux and the BSDs use D-Bus for the tray; elsewhere it is true.
func Available() bool {
	if runtime.GOOS == "windows" || runtime.GOOS == "darwin" {
		return true
	}
	return Reachable(os.Getenv("DBUS_SESSION_BUS_ADDRESS"))
}

// Reachable reports whether one of the D-Bus server addresses in addr
// (e.g. "unix:path=/run/user/1000/bus;tcp:host=...") accepts a
// connection. Only local transports count.
func Reachable(addr string) bool {
	for _, a := range strings.Split(addr, ";") {
		transport, params, ok := strings.Cut(a, ":")
		if !ok {
			continue
		}
		kv := map[string]string{}
		for _, p := range strings.Split(params, ",") {
			k, v, _ := strings.Cut(p, "=")
			if u, err := url.PathUnescape(v); err == nil {
				v = u
			}
			kv[k] = v
		}
		var network, target string
		switch {
		case transport == "unix" && kv["path"] != "":
			network, target = "unix", kv["path"]
		case transport == "unix" && kv["abstract"] != "":
			network, target = "unix", "@"+kv["abstract"]
		default:
			continue
		}
		c, err := net.DialTimeout(network, target, time.Second)
		if err == nil {
			c.Close()
			return true
		}
	}
	return false
}

// HasOwner reports whether some program owns name on the session bus,
// e.g. "org.kde.StatusNotifierWatcher", the tray host. Call it only after
// Available said yes.
func HasOwner(name string) (bool, error) {
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		return false, err
	}
	defer conn.Close()
	var has bool
	err = conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, name).Store(&has)
	return has, err
}
