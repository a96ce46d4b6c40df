//go:build !unix && !windows

package secrets

import (
	"context"
	"os/exec"
)

// shellCommand falls back to a plain sh -c where process groups are not
// available; a timeout then kills only the shell.
func shellCommand(ctx context.Context, command string) *exec.Cmd {
	return exec.CommandContext(ctx, "sh", "-c", command)
}
