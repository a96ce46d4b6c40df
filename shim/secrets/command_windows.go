//go:build windows

package secrets

import (
	"context"
	"os/exec"
	"syscall"
)

// shellCommand hands the command line to cmd.exe verbatim: Go's argument
// quoting follows the C runtime's rules, which cmd /C does not, and would
// mangle commands that contain quotes. /S makes cmd strip exactly the outer
// pair of quotes we add, whatever the command contains.
//
// A timeout kills only cmd.exe; WaitDelay in Get stops us waiting on any
// child it left behind.
func shellCommand(ctx context.Context, command string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "cmd.exe")
	cmd.SysProcAttr = &syscall.SysProcAttr{CmdLine: `cmd.exe /S /C "` + command + `"`}
	return cmd
}
