//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// shimProc is a running `smtpshim serve`, a real process like a user's.
type shimProc struct {
	bin, config, addr, logPath string
	cmd                        *exec.Cmd
	exited                     chan struct{}
	waitErr                    error
}

// startShim runs `bin --config config serve`, its log going to logPath,
// and returns once it accepts connections on addr. With profile set, the
// shim writes a CPU profile there until it stops (SMTPSHIM_CPUPROFILE).
func startShim(bin, config, addr, logPath, profile string) (*shimProc, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(bin, "--config", config, "serve")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = os.Environ()
	if profile != "" {
		cmd.Env = append(cmd.Env, "SMTPSHIM_CPUPROFILE="+profile)
	}
	// If the benchmark dies, the shim must not outlive it holding the port.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p := &shimProc{bin: bin, config: config, addr: addr, logPath: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() { p.waitErr = cmd.Wait(); close(p.exited) }()

	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p, nil
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("smtpshim exited at start (%v); its log:\n%s", p.waitErr, tail(logPath, 20))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.kill()
			return nil, fmt.Errorf("smtpshim did not listen on %s within 15 s; its log:\n%s", addr, tail(logPath, 20))
		}
	}
}

// stop ends the shim gracefully, as a service manager would, so that it
// closes its upstream connections and writes its CPU profile.
func (p *shimProc) stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		p.kill()
		return fmt.Errorf("smtpshim did not stop within 20 s of SIGTERM")
	}
	if p.waitErr != nil {
		return fmt.Errorf("smtpshim exited with %v; its log:\n%s", p.waitErr, tail(p.logPath, 20))
	}
	return nil
}

func (p *shimProc) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// queueRetry runs `smtpshim queue retry`, which reaches the running shim
// over its control socket and makes every queued message due now.
func (p *shimProc) queueRetry() error {
	out, err := exec.Command(p.bin, "--config", p.config, "queue", "retry").CombinedOutput()
	if err != nil {
		return fmt.Errorf("smtpshim queue retry: %v: %s", err, out)
	}
	if !bytes.Contains(out, []byte("retrying")) {
		return fmt.Errorf("smtpshim queue retry did not reach the running shim: %s", out)
	}
	return nil
}

// peakRSS returns the process's high-water resident set size (VmHWM).
func (p *shimProc) peakRSS() (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v) // "12345 kB"
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports; reading it would need
// sysconf(_SC_CLK_TCK) and so cgo.
const clockTick = 10 * time.Millisecond

// cpuTime returns the user plus system CPU time the process has used.
func (p *shimProc) cpuTime() (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, may hold spaces; the fields after it
	// start past its closing parenthesis. utime and stime are fields 14
	// and 15, so the 12th and 13th after the name.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * clockTick, nil
}

// selfCPU returns the CPU time this process (load client and simulator)
// has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// buildShim compiles smtpshim into tmp/ at the module root and returns the
// binary's path.
func buildShim(root string) (string, error) {
	out := filepath.Join(root, "tmp", "smtpshim")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/smtpshim")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/smtpshim: %w", err)
	}
	return out, nil
}

// moduleRoot finds the directory of go.mod from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the smtpshim module (no go.mod found); run from the repository or pass -shim")
		}
		dir = parent
	}
}
