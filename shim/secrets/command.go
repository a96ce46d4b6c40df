package secrets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
	"unicode/utf8"
)

// defaultCommandTimeout applies when NewCommand is given no usable timeout.
// It is generous because commands like `pass` may wait for gpg-agent's
// pinentry.
const defaultCommandTimeout = 30 * time.Second

const (
	// maxStdout bounds what we keep of a command that prints far more than
	// a password, e.g. a mistyped `cat` of a large file.
	maxStdout = 64 << 10
	// maxStderr bounds what we keep of stderr; only its first line is shown.
	maxStderr = 4 << 10
	// maxStderrShown keeps the quoted stderr line readable in an SMTP reply
	// or log line.
	maxStderrShown = 200
	// commandWaitDelay bounds how long we wait for output pipes after the
	// process is killed, in case something outside its process group (e.g.
	// a daemon it started) still holds them open.
	commandWaitDelay = 2 * time.Second
)

// Command is a read-only Store that obtains the secret from an msmtp-style
// password_command, for machines without a keychain (servers, containers) or
// users who keep passwords in pass, gopass, a secrets mount, etc.
type Command struct {
	command string
	timeout time.Duration
}

// NewCommand returns a Command that runs command through the platform shell
// (sh -c on Unix, cmd /C on Windows), so users can write pipelines and
// quoting as they would in a terminal. Each run is killed after timeout (30s
// if timeout is not positive) so a command stuck on a prompt cannot stall
// delivery.
func NewCommand(command string, timeout time.Duration) *Command {
	if timeout <= 0 {
		timeout = defaultCommandTimeout
	}
	return &Command{command: command, timeout: timeout}
}

// Get runs the command and returns the first line of its standard output
// without its line ending. The same command serves every account; account is
// used only to say which one failed.
//
// The command text is left out of errors because users sometimes write the
// password into it (`echo hunter2`); stderr is included because it usually
// says what went wrong, but stdout never is.
func (c *Command) Get(ctx context.Context, account string) (string, error) {
	if strings.TrimSpace(c.command) == "" {
		return "", fmt.Errorf("password_command for %s is empty", account)
	}
	runCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	cmd := shellCommand(runCtx, c.command)
	// Stdin stays nil, which exec connects to the null device: the command
	// must not wait on our stdin, which may be a terminal or a socket.
	var stdout, stderr capped
	stdout.limit, stderr.limit = maxStdout, maxStderr
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = commandWaitDelay

	runErr := cmd.Run()
	secret := firstLine(stdout.buf.Bytes())

	switch {
	case ctx.Err() != nil:
		return "", fmt.Errorf("password_command for %s: %w: gave up waiting for it: %w", account, ErrUnavailable, ctx.Err())
	case runCtx.Err() != nil:
		return "", fmt.Errorf("password_command for %s: %w: it did not finish within %s and was killed; "+
			"if it waits for a passphrase or unlock prompt (gpg-agent, pass), unlock it first and try again",
			account, ErrUnavailable, c.timeout)
	case runErr != nil:
		msg := fmt.Sprintf("password_command for %s failed: %s", account, describeRunError(runErr))
		if line := stderrLine(stderr.buf.Bytes(), secret); line != "" {
			msg += ": " + line
		}
		return "", commandFailed(msg)
	case stdout.buf.Len() == 0:
		return "", fmt.Errorf("password_command printed nothing; it must print the password for %s on its first line", account)
	case secret == "":
		return "", fmt.Errorf("password_command printed nothing on its first line, where the password for %s must be", account)
	}
	return secret, nil
}

// Set refuses: the command owns the secret, and silently storing it
// elsewhere would leave two copies that drift apart.
func (c *Command) Set(_ context.Context, account, _ string) error {
	return fmt.Errorf("the secret for %s is managed by password_command; change it where that command reads it: %w",
		account, errors.ErrUnsupported)
}

// Delete refuses for the same reason as Set.
func (c *Command) Delete(_ context.Context, account string) error {
	return fmt.Errorf("the secret for %s is managed by password_command; remove it where that command reads it: %w",
		account, errors.ErrUnsupported)
}

// commandFailed is a failed password_command: its text says why, and it
// matches ErrCommandFailed.
type commandFailed string

func (e commandFailed) Error() string        { return string(e) }
func (e commandFailed) Is(target error) bool { return target == ErrCommandFailed }

// describeRunError keeps exec's wording (exit status, signal, not found)
// but never anything the process printed.
func describeRunError(err error) string {
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return exitErr.ProcessState.String()
	}
	return err.Error()
}

// firstLine is the msmtp convention: the secret is the first line, so a
// command may print extra lines (e.g. `pass show` metadata) after it.
func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	return strings.TrimRight(string(b), "\r\n")
}

// stderrLine picks the first non-empty line of stderr, shortened, with the
// secret scrubbed in case the command traced its own output (set -x).
func stderrLine(b []byte, secret string) string {
	var line string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			line = l
			break
		}
	}
	line = scrub(line, secret)
	if len(line) > maxStderrShown {
		cut := maxStderrShown
		for cut > 0 && !utf8.RuneStart(line[cut]) {
			cut--
		}
		line = line[:cut] + "…"
	}
	return line
}

// capped is a bytes.Buffer that silently drops output beyond limit, so a
// runaway command cannot exhaust memory; writes never fail, so the command
// is not killed by a broken pipe.
type capped struct {
	buf   bytes.Buffer
	limit int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.limit - c.buf.Len(); room > 0 {
		if len(p) > room {
			c.buf.Write(p[:room])
		} else {
			c.buf.Write(p)
		}
	}
	return len(p), nil
}
