package spool

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPauseIsKeptInTheSpoolDirectory(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, paused := s.Paused(); paused {
		t.Fatal("a new spool is paused")
	}
	since := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if err := s.SetPaused(true, since); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPaused(true, since); err != nil { // again: harmless
		t.Fatal(err)
	}
	s.Close()

	// A new process, and a reader that does not lock the spool, see it.
	if at, paused := PausedIn(dir); !paused || !at.Equal(since) {
		t.Fatalf("PausedIn = %v, %v; want paused since %v", at, paused, since)
	}
	s, err = Open(dir) // cleans tmp/: the pause must not live there
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if at, paused := s.Paused(); !paused || !at.Equal(since) {
		t.Fatalf("after reopening: %v, %v", at, paused)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Errorf("tmp/ holds %d leftovers", len(ents))
	}
	if err := s.SetPaused(false, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPaused(false, time.Time{}); err != nil { // again: harmless
		t.Fatal(err)
	}
	if _, paused := PausedIn(dir); paused {
		t.Fatal("still paused after resume")
	}
}

// A damaged pause file still means paused: holding mail is the safe side.
func TestDamagedPauseFileMeansPaused(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "paused"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, paused := PausedIn(dir); !paused {
		t.Fatal("a damaged pause file reads as not paused")
	}
}

func TestSubjectOf(t *testing.T) {
	tests := []struct{ msg, want string }{
		{"From: a@example.com\r\nSubject: Scan from printer\r\n\r\nbody", "Scan from printer"},
		{"Subject: folded\r\n  over two lines\r\nTo: b@example.net\r\n\r\n", "folded over two lines"},
		{"Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n\r\n", "Grüße"},
		{"Subject: =?ISO-8859-1?Q?caf=E9?=\r\n\r\n", "café"},
		{"To: b@example.net\r\n\r\nSubject: in the body\r\n", ""},
		{"Subject: header cut short", "header cut short"},
	}
	for _, tc := range tests {
		if got := subjectOf(strings.NewReader(tc.msg)); got != tc.want {
			t.Errorf("subjectOf(%q) = %q; want %q", tc.msg, got, tc.want)
		}
	}
}
