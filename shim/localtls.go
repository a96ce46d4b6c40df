package shim

import (
	"net"
	"net/netip"

	"github.com/smtpshim/smtpshim/shim/config"
)

// localTLSNames are the names the local certificate must carry besides
// localhost: every specific listen address, and the host name when any
// listener is reachable from other computers, so LAN clients can verify
// the name they connect to.
func localTLSNames(cfg *config.Config) []string {
	var names []string
	lan := false
	for _, l := range append(append([]string{}, cfg.ListenAddrs()...), cfg.ListenTLS...) {
		host, _, err := net.SplitHostPort(l)
		if err != nil {
			continue
		}
		ip, err := netip.ParseAddr(host)
		switch {
		case host == "" || err == nil && ip.IsUnspecified():
			lan = true
		case err == nil && ip.IsLoopback(), host == "localhost":
		default:
			lan = true
			names = append(names, host)
		}
	}
	if lan {
		names = append(names, cfg.HostnameOrDefault())
	}
	return names
}
