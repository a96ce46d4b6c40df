package main

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
)

func TestCommandLineParsing(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stdout string // substring of standard output
		stderr string // substring of standard error
	}{
		{args: []string{"--config"}, code: exUsage, stderr: "--config needs a file"},
		{args: []string{"serve", "--config"}, code: exUsage, stderr: "--config needs a file"},
		{args: []string{"--config", "--verbose", "serve"}, code: exUsage, stderr: "--config needs a file"},
		{args: []string{"--config="}, code: exUsage, stderr: "--config needs a file"},
		{args: []string{"serve", "extra"}, code: exUsage, stderr: `serve takes no arguments (got "extra")`},
		{args: []string{"account", "list", "extra"}, code: exUsage, stderr: "takes no arguments"},
		{args: []string{"queue", "list", "extra"}, code: exUsage, stderr: "takes no arguments"},
		{args: []string{"queue", "retry", "a", "b"}, code: exUsage, stderr: "one ID"},
		{args: []string{"version", "extra"}, code: exUsage, stderr: "takes no arguments"},
		{args: []string{"local-password", "extra"}, code: exUsage, stderr: "takes no arguments"},
		{args: []string{"serve", "-h"}, stdout: "usage: smtpshim serve"},
		{args: []string{"serve", "--help"}, stdout: "--log-file"},
		{args: []string{"account", "--help"}, stdout: "usage: smtpshim account add|list|remove|test"},
		{args: []string{"account", "add", "--help"}, stdout: "--password-command"},
		{args: []string{"account", "add", "you@example.com", "-h"}, stdout: "--password-stdin"},
		{args: []string{"account", "test", "-h"}, stdout: "usage: smtpshim account test"},
		{args: []string{"account", "rm", "--help"}, stdout: "usage: smtpshim account remove"},
		{args: []string{"queue", "show", "-h"}, stdout: "usage: smtpshim queue show ID"},
		{args: []string{"queue", "delete", "--help"}, stdout: "usage: smtpshim queue delete ID"},
		{args: []string{"send", "--help"}, stdout: "--read-envelope-from"},
		{args: []string{"doctor", "-h"}, stdout: "usage: smtpshim doctor"},
		{args: []string{"cert", "export", "--help"}, stdout: "usage: smtpshim cert export"},
		{args: []string{"help", "queue"}, stdout: "usage: smtpshim queue"},
		{args: []string{"--help"}, stdout: "with no command: the relay with its tray icon"},
		{args: []string{"help"}, stdout: "COMMAND --help"},
		{args: []string{"nonsense"}, code: exUsage, stderr: `unknown command "nonsense"`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			c := newCLI(t)
			// A taken listen address and a private spool: a serve that
			// wrongly runs fails at once instead of serving.
			busy, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer busy.Close()
			os.WriteFile(c.path, []byte(fmt.Sprintf("listen = [%q]\nspool_dir = %q\n", busy.Addr().String(), t.TempDir())), 0o600)
			code, out, stderr := c.run("", tc.args...)
			if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(stderr, tc.stderr) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tc.code, out, stderr)
			}
			if tc.code == 0 && strings.Contains(stderr, "help requested") {
				t.Fatalf("stderr: %s", stderr)
			}
		})
	}
}
