// Package testlog lets the test suite prove that no secret reaches a log:
// tests register the passwords they use with Secret and log through
// Logger; smtpshim binaries they start copy their output to the same
// directory (`make test` sets LogCopyEnv for them); then `make test`
// scans every log line written during the run for every registered
// secret (.ci/scan-secrets). Without SMTPSHIM_TEST_LOGDIR set, logs go to t.Log
// only and nothing is recorded.
package testlog

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// DirEnv names the directory that collects logs and secrets for the scan.
const DirEnv = "SMTPSHIM_TEST_LOGDIR"

// LogCopyEnv makes an smtpshim binary copy its output into a file in the
// named directory (see cmd/smtpshim).
const LogCopyEnv = "SMTPSHIM_LOG_COPY"

var (
	mu      sync.Mutex
	logFile *os.File
)

func dir() string { return os.Getenv(DirEnv) }

// Secret records a password the test hands to smtpshim or to a provider.
func Secret(pw string) {
	d := dir()
	if d == "" || pw == "" {
		return
	}
	f, err := os.OpenFile(filepath.Join(d, fmt.Sprintf("secrets-%d.txt", os.Getpid())), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	// One per line: a password with a line break can't be scanned for
	// as a line, so its pieces are scanned instead.
	for _, part := range strings.FieldsFunc(pw, func(r rune) bool { return r == '\n' || r == '\r' }) {
		fmt.Fprintln(f, part)
	}
}

// Secrets records several passwords, e.g. a provider's user table.
func Secrets(users map[string]string) {
	for _, pw := range users {
		Secret(pw)
	}
}

// Writer returns where in-process log output of this test process goes
// besides the test's own output: a per-process file in the scan
// directory, or nil.
func Writer() io.Writer {
	d := dir()
	if d == "" {
		return nil
	}
	mu.Lock()
	defer mu.Unlock()
	if logFile == nil {
		f, err := os.OpenFile(filepath.Join(d, fmt.Sprintf("inproc-%d.log", os.Getpid())), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil
		}
		logFile = f
	}
	return lockedWriter{logFile}
}

type lockedWriter struct{ f *os.File }

func (w lockedWriter) Write(p []byte) (int, error) {
	mu.Lock()
	defer mu.Unlock()
	return w.f.Write(p)
}

// Logger returns a debug-level logger that writes to t.Log and to the
// scan directory.
func Logger(t testing.TB) *slog.Logger {
	var w io.Writer = tWriter{t}
	if f := Writer(); f != nil {
		w = io.MultiWriter(w, f)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
