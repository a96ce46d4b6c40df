//go:build !windows

package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadRefusesAConfigOthersCanChange: group- or world-writable, another
// user's, or in a directory others can write: refused with the command
// that fixes it. Readable by others is only doctor's warning.
func TestLoadRefusesAConfigOthersCanChange(t *testing.T) {
	const content = "max_recipients = 5\n"
	cases := []struct {
		name  string
		setup func(t *testing.T, dir, path string)
		want  string // "" means Load succeeds
	}{
		{"private", func(t *testing.T, dir, path string) {}, ""},
		{"readable by others", func(t *testing.T, dir, path string) { os.Chmod(path, 0o644) }, ""},
		{"group-writable", func(t *testing.T, dir, path string) { os.Chmod(path, 0o660) }, "chmod 600 PATH"},
		{"world-writable", func(t *testing.T, dir, path string) { os.Chmod(path, 0o606) }, "chmod 600 PATH"},
		{"directory writable by others", func(t *testing.T, dir, path string) { os.Chmod(dir, 0o777) }, "chmod go-w DIR"},
		{"sticky directory like /tmp", func(t *testing.T, dir, path string) { os.Chmod(dir, 0o777|os.ModeSticky) }, ""},
		{"another user's", func(t *testing.T, dir, path string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to give a file away")
			}
			os.Chown(path, 4242, 4242)
		}, "belongs to user id 4242"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "config.toml")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			c.setup(t, dir, path)
			cfg, err := Load(path)
			if c.want == "" {
				if err != nil || cfg.MaxRecipients != 5 {
					t.Fatalf("Load = %v", err)
				}
				return
			}
			want := strings.NewReplacer("PATH", path, "DIR", dir).Replace(c.want)
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "password_command") {
				t.Fatalf("Load = %v, want a refusal saying %q and why", err, want)
			}
		})
	}
}
