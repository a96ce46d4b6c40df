//go:build unix

package secrets

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// shellCommand starts the command in its own process group so that a
// timeout kills the whole pipeline (`gpg ... | head -1`), not just the shell,
// whose children would otherwise keep running and hold our pipes open.
func shellCommand(ctx context.Context, command string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			// Already gone: exec treats ErrProcessDone as "nothing to cancel".
			return os.ErrProcessDone
		}
		return err
	}
	return cmd
}
