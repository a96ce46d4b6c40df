//go:build !windows

package control

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// SocketName is the socket's file name inside the spool directory.
const SocketName = "control.sock"

// SocketPath returns the control socket for a spool directory.
func SocketPath(spoolDir string) string { return filepath.Join(spoolDir, SocketName) }

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

func dialControl(ctx context.Context, spoolDir string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", SocketPath(spoolDir))
}
