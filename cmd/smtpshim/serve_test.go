//go:build unix

package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim"
)

// syncBuffer is a bytes.Buffer safe for the relay's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runServe runs `smtpshim serve args...` in this process until the
// banner appears in the log, then stops it with SIGTERM, which serve
// catches, and returns its standard error.
func runServe(t *testing.T, c *cli, logIn func() string, args ...string) string {
	t.Helper()
	var errb syncBuffer
	a := &app{configPath: c.path, stdin: strings.NewReader(""), stdout: &errb, stderr: &errb}
	done := make(chan int, 1)
	go func() { done <- a.run(append([]string{"serve"}, args...)) }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logIn()+errb.String(), "listening on") {
		select {
		case code := <-done:
			t.Fatalf("serve exited %d: %s", code, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start: %s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d: %s", code, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	return errb.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestServeLogFile(t *testing.T) {
	for _, viaConfig := range []bool{false, true} {
		t.Run(fmt.Sprint("config=", viaConfig), func(t *testing.T) {
			c := newCLI(t)
			logPath := filepath.Join(t.TempDir(), "logs", "smtpshim.log")
			cfg := fmt.Sprintf("listen = [%q]\nspool_dir = %q\n", freeAddr(t), t.TempDir())
			var args []string
			if viaConfig {
				cfg += fmt.Sprintf("log_file = %q\n", logPath)
			} else {
				args = []string{"--log-file", logPath}
			}
			os.WriteFile(c.path, []byte(cfg), 0o600)
			readLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }
			stderr := runServe(t, c, readLog, args...)
			log := readLog()
			if !strings.Contains(log, "listening on") || !strings.Contains(log, "no accounts yet") {
				t.Errorf("the log file lacks the start-up lines:\n%s", log)
			}
			if strings.Contains(stderr, "no accounts yet") || !strings.Contains(stderr, "logging to "+logPath) {
				t.Errorf("standard error:\n%s", stderr)
			}
			if st, err := os.Stat(logPath); err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("log file mode: %v %v", st.Mode(), err)
			}
		})
	}
}

func TestLogFileRotatesBySize(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "smtpshim.log")
	w, err := openLogFile(path, 1<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	line := []byte(strings.Repeat("x", 1023) + "\n")
	for i := 0; i < 5*1024; i++ { // 5 MB through a 1 MB file
		if _, err := w.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	st, err := os.Stat(path)
	if err != nil || st.Size() > 1<<20 {
		t.Fatalf("the current log is %d bytes (%v), want at most 1 MB", st.Size(), err)
	}
	// Old files are pruned in the background: wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		old, _ := filepath.Glob(filepath.Join(dir, "smtpshim-*.log"))
		if len(old) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d rotated files kept, want 2: %v", len(old), old)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLogFileInAnUnwritablePlaceFailsAtStart(t *testing.T) {
	c := newCLI(t)
	os.WriteFile(c.path, []byte(fmt.Sprintf("listen = [%q]\nspool_dir = %q\n", freeAddr(t), t.TempDir())), 0o600)
	code, _, stderr := c.run("", "serve", "--log-file", "/proc/nonexistent/x.log")
	if code != exIOErr || !strings.Contains(stderr, "log file") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}

func TestServeBannerWithLocalAuth(t *testing.T) {
	c := newCLI(t)
	c.store.Set(context.Background(), shim.LocalAuthKey, "local-pw")
	os.WriteFile(c.path, []byte(fmt.Sprintf("listen = [%q]\nspool_dir = %q\nlocal_auth = \"require\"\n", freeAddr(t), t.TempDir())), 0o600)
	stderr := runServe(t, c, func() string { return "" })
	if strings.Contains(stderr, "no authentication") || !strings.Contains(stderr, "must log in with the local password") {
		t.Fatalf("banner:\n%s", stderr)
	}
}
