//go:build windows

package control

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/Microsoft/go-winio"
	"golang.org/x/sys/windows"
)

// On Windows the channel is a named pipe, not a Unix socket: AF_UNIX is
// missing from Windows 10 before 1803 and from Wine (WSAEAFNOSUPPORT,
// 10047). The pipe's DACL admits only the user running smtpshim and
// refuses network logons, and go-winio rejects remote clients; its name is
// derived from the user and the spool directory, so each configuration has
// its own. The first instance is created exclusively, so while a relay
// runs no other process can serve that name; a process of another user
// that took the name while no relay ran makes the relay's Listen fail
// (logged) rather than share it. The channel carries no secrets.

// pipeName returns the control pipe's name for a spool directory.
func pipeName(spoolDir string) string {
	sid, err := userSID()
	if err != nil {
		sid = "unknown-user"
	}
	abs, err := filepath.Abs(spoolDir)
	if err != nil {
		abs = spoolDir
	}
	h := sha256.Sum256([]byte(strings.ToLower(filepath.Clean(abs))))
	return `\\.\pipe\smtpshim-` + sid + "-" + hex.EncodeToString(h[:8])
}

func userSID() (string, error) {
	u, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return "", err
	}
	return u.User.Sid.String(), nil
}

// Listen creates the control pipe. The caller holds the spool lock.
func Listen(spoolDir string) (net.Listener, error) {
	sid, err := userSID()
	if err != nil {
		return nil, fmt.Errorf("control pipe: finding the current user: %w", err)
	}
	// Protected DACL: network logons denied, the user allowed, nobody else.
	sddl := "D:P(D;;GA;;;NU)(A;;GA;;;" + sid + ")"
	l, err := winio.ListenPipe(pipeName(spoolDir), &winio.PipeConfig{SecurityDescriptor: sddl})
	if err != nil {
		return nil, fmt.Errorf("control pipe: %w", err)
	}
	return l, nil
}

// dialSocket connects to the control pipe of spoolDir.
func dialSocket(ctx context.Context, spoolDir string) (net.Conn, error) {
	return winio.DialPipeContext(ctx, pipeName(spoolDir))
}
