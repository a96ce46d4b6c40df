package spool

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// setWriter changes the background writer's pacing for one test.
func setWriter(t *testing.T, quiet time.Duration, lagMessages int) {
	t.Helper()
	q, l := writeQuiet, writeLagMessages
	writeQuiet, writeLagMessages = quiet, lagMessages
	t.Cleanup(func() { writeQuiet, writeLagMessages = q, l })
}

// commitDeferred commits body as a Commit does while another message's
// files are being written: its own files are left to the background
// writer.
func commitDeferred(t *testing.T, s *Spool, body []byte, from string) string {
	t.Helper()
	s.j.mu.Lock()
	s.j.writing++
	s.j.mu.Unlock()
	defer func() {
		s.j.mu.Lock()
		s.j.writing--
		s.j.cond.Broadcast()
		s.j.mu.Unlock()
	}()
	return commitLazy(t, s, body, from)
}

// crashMidBatch kills s while the background writer still has messages
// to write: it writes none of them.
func crashMidBatch(s *Spool) {
	s.j.mu.Lock()
	s.j.closing = true
	close(s.j.stop)
	s.j.mu.Unlock()
	crash(s)
}

func hasFiles(s *Spool, id string) (body, meta bool) {
	_, errB := os.Lstat(s.bodyPath(id))
	_, errM := os.Lstat(s.metaPath(id))
	return errB == nil, errM == nil
}

// A message committed while others are being written is durable in the
// journal before its files exist; until they do, Get, Body and List read
// it from the journal.
func TestDeferredMessageIsReadableBeforeItsFiles(t *testing.T) {
	setWriter(t, time.Hour, 1<<20)
	s := openTest(t)
	id := commitDeferred(t, s, []byte("deferred\r\n"), "a@example.com")
	if b, m := hasFiles(s, id); b || m {
		t.Fatalf("files written at once (body %v, metadata %v); want them deferred", b, m)
	}
	m, err := s.Get(id)
	if err != nil || m.ID != id || m.From != "a@example.com" || m.Size != 10 {
		t.Fatalf("Get = %+v, %v", m, err)
	}
	if got := readBody(t, s, id); string(got) != "deferred\r\n" {
		t.Fatalf("Body = %q", got)
	}
	if got := s.Subject(id); got != "" {
		t.Fatalf("Subject = %q", got)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Fatalf("List = %v, %v", list, err)
	}
}

// Removing a message before the writer reached it writes no file for it,
// ever, and leaves no journal behind.
func TestRemovedBeforeItsFilesNeverGetsThem(t *testing.T) {
	setWriter(t, time.Millisecond, 1<<20)
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.j.mu.Lock()
	s.j.writing++ // hold the writer's work back: the commits go to its backlog
	s.j.mu.Unlock()
	var ids []string
	for i := range 20 {
		ids = append(ids, commitLazy(t, s, []byte(fmt.Sprintf("m%d\r\n", i)), "a@example.com"))
	}
	for _, id := range ids[:10] {
		if err := s.Remove(id); err != nil {
			t.Fatalf("Remove(%s): %v", id, err)
		}
	}
	s.j.mu.Lock()
	s.j.writing--
	s.j.cond.Broadcast()
	s.j.mu.Unlock()
	// The writer catches up with the rest once the spool is quiet.
	deadline := time.Now().Add(5 * time.Second)
	for len(s.j.pendingIDs()) > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if p := s.j.pendingIDs(); len(p) != 0 {
		t.Fatalf("%d messages still without files after the spool went quiet", len(p))
	}
	var want []string
	for _, id := range ids[10:] {
		want = append(want, id+".eml", id+".json")
	}
	slices.Sort(want)
	if got := names(t, s.msg); !slices.Equal(got, want) {
		t.Fatalf("msg/ = %v\nwant %v", got, want)
	}
	for _, id := range ids[:10] {
		if _, err := s.Get(id); err == nil {
			t.Errorf("removed message %s is still there", id)
		}
		if err := s.Remove(id); err == nil {
			t.Errorf("removing %s twice did not fail", id)
		}
	}
	for _, id := range ids[10:] {
		if err := s.Remove(id); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if f := journalFiles(t, dir); len(f) != 0 {
		t.Fatalf("journal files left: %v", f)
	}
	if got := names(t, s.msg); len(got) != 0 {
		t.Fatalf("msg/ left: %v", got)
	}
}

// A crash while the writer is behind loses nothing: Open writes every
// message from the journal, once, with its body and its last metadata,
// and a message removed before the crash stays removed.
func TestCrashWithDeferredFilesRecoversEachMessageOnce(t *testing.T) {
	setWriter(t, time.Hour, 1<<20)
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	bodies := map[string]string{}
	var ids []string
	for i := range 12 {
		b := fmt.Sprintf("message %d\r\n%s", i, bytes.Repeat([]byte{'x'}, i*1000))
		id := commitDeferred(t, s, []byte(b), fmt.Sprintf("u%d@example.com", i))
		bodies[id] = b
		ids = append(ids, id)
	}
	// One removed, one updated (which writes its files first), the rest
	// still only in the journal when the process dies.
	if err := s.Remove(ids[0]); err != nil {
		t.Fatal(err)
	}
	delete(bodies, ids[0])
	m, err := s.Get(ids[1])
	if err != nil {
		t.Fatal(err)
	}
	m.Attempts = 4
	if err := s.Update(m); err != nil {
		t.Fatalf("Update of a message without files yet: %v", err)
	}
	if b, mf := hasFiles(s, ids[1]); !b || !mf {
		t.Fatalf("Update left files body %v, metadata %v", b, mf)
	}
	if b, mf := hasFiles(s, ids[5]); b || mf {
		t.Fatal("the test needs messages without files at the crash")
	}
	crashMidBatch(s)

	s2, err := Open(dir)
	if err != nil {
		t.Fatalf("Open after the crash: %v", err)
	}
	list, err := s2.List()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, m := range list {
		seen[m.ID]++
		want, ok := bodies[m.ID]
		if !ok {
			t.Errorf("%s came back after it was removed", m.ID)
			continue
		}
		if got := readBody(t, s2, m.ID); string(got) != want {
			t.Errorf("body of %s = %d bytes, want %d", m.ID, len(got), len(want))
		}
		if b, mf := hasFiles(s2, m.ID); !b || !mf {
			t.Errorf("%s has no files after Open (body %v, metadata %v)", m.ID, b, mf)
		}
		if m.ID == ids[1] && m.Attempts != 4 {
			t.Errorf("the update of %s was lost: Attempts %d", m.ID, m.Attempts)
		}
	}
	for id := range bodies {
		if seen[id] != 1 {
			t.Errorf("%s listed %d times, want once", id, seen[id])
		}
	}
	for id := range bodies {
		if err := s2.Remove(id); err != nil {
			t.Fatal(err)
		}
	}
	s2.Close()
	if f := journalFiles(t, dir); len(f) != 0 {
		t.Fatalf("journal files left: %v", f)
	}
}

// A graceful Close writes the files of every message still only in the
// journal, so a stopped smtpshim leaves the usual layout.
func TestCloseWritesDeferredFiles(t *testing.T) {
	setWriter(t, time.Hour, 1<<20)
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	a := commitDeferred(t, s, []byte("a\r\n"), "a@example.com")
	b := commitDeferred(t, s, []byte("b\r\n"), "b@example.com")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	want := []string{a + ".eml", a + ".json", b + ".eml", b + ".json"}
	slices.Sort(want)
	if got := names(t, s.msg); !slices.Equal(got, want) {
		t.Fatalf("msg/ after Close = %v, want %v", got, want)
	}
	if f := journalFiles(t, dir); len(f) != 0 {
		t.Fatalf("journal files left after Close: %v", f)
	}
}

// However busy the spool, at most writeLagMessages wait for their files:
// past that, each Commit writes the oldest waiting message's files.
func TestWriterLagIsBounded(t *testing.T) {
	setWriter(t, time.Hour, 3)
	s := openTest(t)
	var ids []string
	for i := range 5 {
		ids = append(ids, commitDeferred(t, s, []byte(fmt.Sprintf("m%d\r\n", i)), "a@example.com"))
	}
	for i, id := range ids {
		b, m := hasFiles(s, id)
		if written := i < 3; b != written || m != written {
			t.Errorf("message %d: files body %v, metadata %v; want written=%v", i, b, m, written)
		}
	}
	if n := len(s.j.pendingIDs()); n != 2 {
		t.Errorf("%d messages wait for their files, want 2", n)
	}
}

// A burst far longer than the writer's lag keeps the journal about that
// long: its oldest segments are trimmed as their messages get files.
func TestLongBurstKeepsTheJournalShort(t *testing.T) {
	oldCkpt := checkpointBytes
	checkpointBytes = 32 << 10
	defer func() { checkpointBytes = oldCkpt }()
	oldLag := writeLag
	writeLag = 64 << 10
	defer func() { writeLag = oldLag }()
	setWriter(t, time.Hour, 1<<20)
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range 100 { // 1 MB of mail, 32 times the segment size
		commitDeferred(t, s, body10KB, "a@example.com")
	}
	// Segments are trimmed in the background; wait for it to catch up.
	deadline := time.Now().Add(5 * time.Second)
	for len(journalFiles(t, dir)) > 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if f := journalFiles(t, dir); len(f) > 5 {
		t.Fatalf("%d journal segments after a long burst; want the lag's worth (64 KB of 32 KB segments) and a few more", len(f))
	}
	list, err := s.List()
	if err != nil || len(list) != 100 {
		t.Fatalf("List = %d messages, %v; want 100", len(list), err)
	}
}

// Many concurrent Commits and Removes, with the writer running, leave
// exactly the messages not removed, each with its files once the spool is
// closed, and no file of a removed one.
func TestConcurrentCommitRemoveWithWriter(t *testing.T) {
	setWriter(t, 0, 1<<20)
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	const workers, per = 8, 40
	kept := make([][]string, workers)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := range per {
				id := commitLazy(t, s, body10KB, fmt.Sprintf("u%d@example.com", g))
				if i%2 == 0 {
					if err := s.Remove(id); err != nil {
						t.Errorf("Remove: %v", err)
					}
					continue
				}
				kept[g] = append(kept[g], id)
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, ids := range kept {
		for _, id := range ids {
			want = append(want, id+".eml", id+".json")
		}
	}
	slices.Sort(want)
	if got := names(t, s.msg); !slices.Equal(got, want) {
		t.Fatalf("msg/ has %d files, want %d", len(got), len(want))
	}
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for _, ids := range kept {
		for _, id := range ids {
			if got := readBody(t, s2, id); !bytes.Equal(got, body10KB) {
				t.Fatalf("body of %s differs", id)
			}
		}
	}
}

// When the background writer cannot write a message's files, the message
// stays in the journal: still readable, and written at Close once the
// problem is gone.
func TestDeferredWriteFailureKeepsTheMessage(t *testing.T) {
	setWriter(t, 0, 1<<20)
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	w := s.CreateLazy(1 << 20)
	id := w.ID()
	w.Write([]byte("kept\r\n"))
	// A directory where the metadata file must go makes its write fail.
	if err := os.MkdirAll(filepath.Join(s.metaPath(id), "blocker"), 0o700); err != nil {
		t.Fatal(err)
	}
	s.j.mu.Lock()
	s.j.writing++ // as if another message's files were being written
	s.j.mu.Unlock()
	if err := s.Commit(w, &Meta{From: "a@example.com", Rcpts: []string{"r@example.org"}}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	s.j.mu.Lock()
	s.j.writing--
	s.j.cond.Broadcast()
	s.j.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.j.mu.Lock()
		failed, idle := s.j.writeErr != nil, !s.j.worker
		s.j.mu.Unlock()
		if failed && idle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the background writer did not try the message")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := readBody(t, s, id); string(got) != "kept\r\n" {
		t.Fatalf("Body after the failed write = %q", got)
	}
	if m, err := s.Get(id); err != nil || m.ID != id {
		t.Fatalf("Get after the failed write = %+v, %v", m, err)
	}
	if err := os.RemoveAll(s.metaPath(id)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if b, m := hasFiles(s, id); !b || !m {
		t.Fatalf("after Close: body file %v, metadata file %v", b, m)
	}
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := readBody(t, s2, id); string(got) != "kept\r\n" {
		t.Fatalf("Body after reopening = %q", got)
	}
}
