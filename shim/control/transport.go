//go:build !windows

package control

import (
	"context"
	"fmt"
	"net"
	"os"
)

// The transport: a Unix socket only the owner can open. Listen and
// dialSocket are all that depends on it; transport_windows.go has the
// Windows named pipe.

// Listen creates the socket, replacing a stale one left by a crash. The
// caller must hold the spool lock, so no live engine owns the old socket.
func Listen(spoolDir string) (net.Listener, error) {
	p := SocketPath(spoolDir)
	os.Remove(p)
	l, err := net.Listen("unix", p)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	os.Chmod(p, 0o600)
	return l, nil
}

// dialSocket connects to the control socket of spoolDir.
func dialSocket(ctx context.Context, spoolDir string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", SocketPath(spoolDir))
}
