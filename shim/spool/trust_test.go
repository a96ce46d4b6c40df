//go:build !windows

package spool

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenRefusesUnsafeSpool: a spool directory others can write, one that
// is a symbolic link, or one of another user is refused with a message
// that says what to do; a private one opens.
func TestOpenRefusesUnsafeSpool(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"world-writable spool", func(t *testing.T, dir string) { os.Chmod(dir, 0o777) }, "chmod 700 " + "DIR"},
		{"group-writable msg", func(t *testing.T, dir string) { os.Chmod(filepath.Join(dir, "msg"), 0o770) }, "chmod 700 DIR/msg"},
		{"msg is a symbolic link", func(t *testing.T, dir string) {
			other := t.TempDir()
			os.RemoveAll(filepath.Join(dir, "msg"))
			if err := os.Symlink(other, filepath.Join(dir, "msg")); err != nil {
				t.Fatal(err)
			}
		}, "symbolic link"},
		{"tmp owned by another user", func(t *testing.T, dir string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to give a directory away")
			}
			if err := os.Chown(filepath.Join(dir, "tmp"), 4242, 4242); err != nil {
				t.Fatal(err)
			}
		}, "belongs to user id 4242"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "spool")
			s, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			c.setup(t, dir)
			want := strings.ReplaceAll(c.want, "DIR", dir)
			var ue *UnsafeError
			if s, err := Open(dir); !errors.As(err, &ue) || !strings.Contains(err.Error(), want) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("Open = %v, want an UnsafeError containing %q", err, want)
			}
			if err := Check(dir); !errors.As(err, &ue) {
				t.Fatalf("Check = %v, want an UnsafeError", err)
			}
		})
	}
	t.Run("inside a world-writable directory without the sticky bit", func(t *testing.T) {
		parent := t.TempDir()
		os.Chmod(parent, 0o777)
		if _, err := Open(filepath.Join(parent, "spool")); err == nil || !strings.Contains(err.Error(), "every user can write") {
			t.Fatalf("Open = %v, want a refusal", err)
		}
		os.Chmod(parent, 0o777|os.ModeSticky)
		s, err := Open(filepath.Join(parent, "spool"))
		if err != nil {
			t.Fatalf("a sticky parent like /tmp: %v", err)
		}
		s.Close()
	})
}

// TestPlantedEntriesNotFollowed: a metadata file or body that is a
// symbolic link (say, to a private file the message would carry to an
// attacker) is not read, and neither is a FIFO or another user's file.
func TestPlantedEntriesNotFollowed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	secret := filepath.Join(t.TempDir(), "private-key")
	os.WriteFile(secret, []byte("PRIVATE"), 0o600)
	meta, _ := json.Marshal(Meta{ID: "planted1", Account: "alice@example.com", From: "alice@example.com", Rcpts: []string{"mallory@evil.example"}})

	// A symlinked body next to a plain metadata file.
	os.WriteFile(filepath.Join(dir, "msg", "planted1.json"), meta, 0o600)
	os.Symlink(secret, filepath.Join(dir, "msg", "planted1.eml"))
	if _, err := s.Get("planted1"); err != nil {
		t.Fatalf("plain metadata: %v", err)
	}
	if f, err := s.Body("planted1"); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		if f != nil {
			f.Close()
		}
		t.Fatalf("Body followed a symbolic link: %v", err)
	}
	// A symlinked metadata file.
	os.WriteFile(filepath.Join(t.TempDir(), "m.json"), meta, 0o600)
	os.Symlink(filepath.Join(dir, "msg", "planted1.json"), filepath.Join(dir, "msg", "planted2.json"))
	if _, err := s.Get("planted2"); err == nil {
		t.Fatal("Get followed a symbolic link")
	}
	if _, err := s.List(); err == nil || !strings.Contains(err.Error(), "planted2") {
		t.Fatalf("List did not report the linked entry: %v", err)
	}
	// A FIFO as a body would block the queue forever.
	if err := mkfifo(filepath.Join(dir, "msg", "planted3.eml")); err == nil {
		if f, err := s.Body("planted3"); err == nil {
			f.Close()
			t.Fatal("Body opened a FIFO")
		}
	}
	if os.Geteuid() == 0 {
		p := filepath.Join(dir, "msg", "planted4.eml")
		os.WriteFile(p, []byte("x"), 0o600)
		os.Chown(p, 4242, 4242)
		if f, err := s.Body("planted4"); err == nil || !strings.Contains(err.Error(), "4242") {
			if f != nil {
				f.Close()
			}
			t.Fatalf("Body opened another user's file: %v", err)
		}
	}
}
