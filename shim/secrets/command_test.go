//go:build unix

package secrets

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func getCmd(t *testing.T, command string, timeout time.Duration) (string, error) {
	t.Helper()
	return NewCommand(command, timeout).Get(context.Background(), "alice@example.com")
}

func TestCommandFirstLineOfStdout(t *testing.T) {
	for _, tc := range []struct{ name, command, want string }{
		{"no newline", `printf 'hunter2'`, "hunter2"},
		{"LF", `echo hunter2`, "hunter2"},
		{"CRLF", `printf 'hunter2\r\n'`, "hunter2"},
		{"extra lines ignored", `printf 'hunter2\nlogin: alice\nurl: x\n'`, "hunter2"},
		{"inner and edge spaces kept", `printf ' a b \n'`, " a b "},
		{"shell pipeline", `printf 'x\nhunter2\n' | tail -n 1`, "hunter2"},
		{"file via cat", `cat ` + writeFile(t, "pw", "hunter2\n"), "hunter2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := getCmd(t, tc.command, 10*time.Second)
			if err != nil || got != tc.want {
				t.Fatalf("Get = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestCommandFailureShowsStderrNotStdout(t *testing.T) {
	const secret = "stdout-s3cr3t"
	_, err := getCmd(t, `echo `+secret+`; echo 'gpg: decryption failed: No secret key' >&2; echo second line >&2; exit 2`, 10*time.Second)
	if err == nil {
		t.Fatal("want an error for exit status 2")
	}
	msg := err.Error()
	for _, want := range []string{"alice@example.com", "exit status 2", "gpg: decryption failed: No secret key"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "second line") {
		t.Errorf("error should carry only the first stderr line: %q", msg)
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) {
		t.Errorf("a failing command is neither unavailable nor not-found: %v", err)
	}
	assertNoSecret(t, err, secret)
}

func TestCommandLongStderrIsTruncated(t *testing.T) {
	_, err := getCmd(t, `printf '%0500d\n' 0 >&2; exit 1`, 10*time.Second)
	if err == nil {
		t.Fatal("want an error")
	}
	if n := strings.Count(err.Error(), "0"); n > maxStderrShown+10 || n < maxStderrShown-10 {
		t.Fatalf("stderr should be cut to about %d chars, error has %d zeros: %q", maxStderrShown, n, err)
	}
}

func TestCommandPrintedNothing(t *testing.T) {
	_, err := getCmd(t, `true`, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "password_command printed nothing") {
		t.Fatalf("want 'printed nothing', got %v", err)
	}
	_, err = getCmd(t, `printf '\nsecond-line-s3cr3t\n'`, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "printed nothing") {
		t.Fatalf("empty first line: want 'printed nothing', got %v", err)
	}
	assertNoSecret(t, err, "second-line-s3cr3t")
}

func TestCommandStdinIsNull(t *testing.T) {
	// cat would block forever on an inherited stdin; with /dev/null it sees
	// EOF at once and prints nothing.
	start := time.Now()
	_, err := getCmd(t, `cat`, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "printed nothing") {
		t.Fatalf("want 'printed nothing', got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cat took %s: stdin is not the null device", d)
	}
}

func TestCommandTimeoutKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	const secret = "printed-before-hang"
	// The background sleep is a grandchild: only killing the whole process
	// group gets rid of it.
	command := fmt.Sprintf(`echo %s; sleep 30 & echo $! > %s; wait`, secret, pidFile)
	start := time.Now()
	_, err := getCmd(t, command, 300*time.Millisecond)
	elapsed := time.Since(start)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("want ErrUnavailable, got %v", err)
	}
	if !strings.Contains(err.Error(), "did not finish within 300ms") {
		t.Errorf("error should give the timeout: %v", err)
	}
	assertNoSecret(t, err, secret)
	if elapsed > 5*time.Second {
		t.Fatalf("Get returned after %s; the timeout was 300ms", elapsed)
	}
	b, rerr := os.ReadFile(pidFile)
	if rerr != nil {
		t.Fatalf("command did not record its child: %v", rerr)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	waitDead(t, pid)
}

func TestCommandPlainSleepTimesOut(t *testing.T) {
	start := time.Now()
	_, err := getCmd(t, `sleep 30`, 200*time.Millisecond)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("want ErrUnavailable, got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("sleep 30 was not killed: Get took %s", d)
	}
}

func TestCommandContextCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := NewCommand(`sleep 30`, time.Minute).Get(ctx, "alice@example.com")
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want ErrUnavailable wrapping the ctx error, got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Get ignored ctx: took %s", d)
	}
}

func TestCommandIsReadOnly(t *testing.T) {
	c := NewCommand(`echo x`, time.Second)
	if err := c.Set(context.Background(), "alice@example.com", "new-s3cr3t"); !errors.Is(err, errors.ErrUnsupported) ||
		!strings.Contains(err.Error(), "managed by password_command") {
		t.Fatalf("Set: %v", err)
	} else {
		assertNoSecret(t, err, "new-s3cr3t")
	}
	if err := c.Delete(context.Background(), "alice@example.com"); !errors.Is(err, errors.ErrUnsupported) ||
		!strings.Contains(err.Error(), "managed by password_command") {
		t.Fatalf("Delete: %v", err)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitDead waits for pid to be gone. A killed orphan may linger as a zombie
// where PID 1 does not reap (containers), which counts as dead too.
func waitDead(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			// The state follows the parenthesised command name.
			if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
				return
			}
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d outlived the timeout: the process group was not killed", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
