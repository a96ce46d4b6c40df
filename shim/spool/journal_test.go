package spool

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// commitLazy stores body through an in-memory writer (the journal path).
func commitLazy(t testing.TB, s *Spool, body []byte, from string) string {
	t.Helper()
	w := s.CreateLazy(1 << 20)
	if _, err := w.Write(body); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := s.Commit(w, &Meta{From: from, Rcpts: []string{"r@example.org"}, Created: t0}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return w.ID()
}

// crash drops s as a killed process would: no checkpoint, no cleanup;
// only the lock goes, as the OS drops it.
func crash(s *Spool) {

	s.j.ckptWG.Wait()
	s.j.f.Close()
	s.lock.Close()
}

func journalFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "jnl", "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestJournalCommitIsReadable(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	id := commitLazy(t, s, []byte("hello\r\n"), "a@example.com")
	m, err := s.Get(id)
	if err != nil || m.From != "a@example.com" || m.Size != 7 {
		t.Fatalf("Get = %+v, %v", m, err)
	}
	if got := readBody(t, s, id); string(got) != "hello\r\n" {
		t.Fatalf("body %q", got)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Still queued: it lives on in the journal, across a restart.
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, s, id); string(got) != "hello\r\n" {
		t.Fatalf("body after reopening %q", got)
	}
	if list, err := s.List(); err != nil || len(list) != 1 || list[0].ID != id {
		t.Fatalf("List after reopening = %v, %v", list, err)
	}
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if f := journalFiles(t, dir); len(f) != 0 {
		t.Fatalf("Close with nothing queued left journal files %v", f)
	}
}

// After a crash whose unsynced file writes were lost (files missing,
// empty, or different), Open rewrites each message from the journal; a
// message removed before the crash stays removed; a torn record at the
// end is ignored.
func TestJournalReplayAfterCrash(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 5 {
		ids = append(ids, commitLazy(t, s, []byte(fmt.Sprintf("message %d\r\n", i)), fmt.Sprintf("u%d@example.com", i)))
	}
	if err := s.Remove(ids[4]); err != nil {
		t.Fatal(err)
	}
	crash(s)
	os.Remove(s.metaPath(ids[0]))
	os.Remove(s.bodyPath(ids[1]))
	os.WriteFile(s.metaPath(ids[2]), nil, 0o600)
	os.WriteFile(s.bodyPath(ids[3]), []byte("message X\r\n"), 0o600)
	j := journalFiles(t, dir)
	if len(j) != 1 {
		t.Fatalf("journal files %v", j)
	}
	f, _ := os.OpenFile(j[0], os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{200, 0, 0, 0, 1, 2, 3, 4, 'C'}) // torn: cut off mid-record
	f.Close()

	s2, err := Open(dir)
	if err != nil {
		t.Fatalf("Open after crash: %v", err)
	}
	defer s2.Close()
	list, err := s2.List()
	if err != nil || len(list) != 4 {
		t.Fatalf("List = %d entries, %v; want 4", len(list), err)
	}
	for i, id := range ids[:4] {
		m, err := s2.Get(id)
		if err != nil || m.From != fmt.Sprintf("u%d@example.com", i) {
			t.Errorf("Get(%s) = %+v, %v", id, m, err)
			continue
		}
		if got, want := readBody(t, s2, id), fmt.Sprintf("message %d\r\n", i); string(got) != want {
			t.Errorf("body of %s = %q, want %q", id, got, want)
		}
	}
	if _, err := s2.Get(ids[4]); err == nil {
		t.Error("a removed message came back")
	}
	for _, id := range ids[:4] {
		if err := s2.Remove(id); err != nil {
			t.Fatal(err)
		}
	}
	s2.Close()
	if f := journalFiles(t, dir); len(f) != 0 {
		t.Errorf("with every message removed: journal files %v", f)
	}
}

// An Update after the Commit is not undone by the replay.
func TestJournalReplayKeepsUpdates(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	id := commitLazy(t, s, []byte("x\r\n"), "a@example.com")
	m, _ := s.Get(id)
	m.Attempts = 3
	if err := s.Update(m); err != nil {
		t.Fatal(err)
	}
	crash(s)
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if m, err := s2.Get(id); err != nil || m.Attempts != 3 {
		t.Fatalf("after replay: %+v, %v; want the updated metadata", m, err)
	}
}

// Concurrent Commits share journal writes, and once the journal passes
// checkpointBytes it is checkpointed: its files are synced and the old
// journal file removed, in the background, with every message intact.
func TestJournalGroupCommitAndCheckpoint(t *testing.T) {
	old := checkpointBytes
	checkpointBytes = 32 << 10
	defer func() { checkpointBytes = old }()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("0123456789abcdef\r\n"), 500) // 9 KB
	const n = 64
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { ids[i] = commitLazy(t, s, body, fmt.Sprintf("u%d@example.com", i)) })
	}
	wg.Wait()
	s.j.mu.Lock()
	gens := s.j.doneGen
	s.j.mu.Unlock()
	if gens == 0 || gens > n {
		t.Errorf("%d journal syncs for %d commits", gens, n)
	}
	s.j.mu.Lock()
	seq := s.j.seq
	s.j.mu.Unlock()
	if seq < 3 {
		t.Errorf("journal at segment %d, want several rotations", seq)
	}
	for _, id := range ids {
		if got := readBody(t, s, id); !bytes.Equal(got, body) {
			t.Fatalf("body of %s differs", id)
		}
	}
	// Half get their files (an Update), half are removed.
	for i, id := range ids {
		if i%2 == 0 {
			if err := s.Remove(id); err != nil {
				t.Fatal(err)
			}
			continue
		}
		m, err := s.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		m.Attempts++
		if err := s.Update(m); err != nil {
			t.Fatal(err)
		}
	}
	crash(s)
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	list, err := s2.List()
	if err != nil || len(list) != n/2 {
		t.Fatalf("after crash and replay: %d entries, %v; want %d", len(list), err, n/2)
	}
	for _, m := range list {
		if m.Attempts != 1 {
			t.Errorf("%s: Attempts %d, want the update kept", m.ID, m.Attempts)
		}
	}
	// Every old segment is done (removed or written): all retire.
	s2.Close()
	if f := journalFiles(t, dir); len(f) != 0 {
		t.Errorf("journal files left: %v", f)
	}
}

func BenchmarkCommitLazy10KBParallel(b *testing.B) {
	s := openTest(b)
	b.SetBytes(int64(len(body10KB)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := s.CreateLazy(1 << 20)
			w.Write(body10KB)
			m := &Meta{Account: "alice@example.com", From: "alice@example.com", Rcpts: []string{"bob@example.org"}, Created: t0, NextTry: t0}
			if err := s.Commit(w, m); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// A tombstone written between group writes does not shift where later
// records are found: each message comes back intact after a restart.
func TestJournalRecordsAfterATombstone(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	a := commitLazy(t, s, []byte("first\r\n"), "a@example.com")
	b := commitLazy(t, s, []byte("second\r\n"), "b@example.com")
	if err := s.Remove(a); err != nil {
		t.Fatal(err)
	}
	c := commitLazy(t, s, []byte("third\r\n"), "c@example.com")
	if m, err := s.Get(c); err != nil || m.From != "c@example.com" {
		t.Fatalf("Get(%s) = %+v, %v", c, m, err)
	}
	crash(s)
	os.Remove(s.metaPath(c)) // lost in the crash: replayed from the journal
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	list, err := s2.List()
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %v, %v; want %s and %s", list, err, b, c)
	}
	if got := readBody(t, s2, c); string(got) != "third\r\n" {
		t.Fatalf("body of %s = %q", c, got)
	}
}
