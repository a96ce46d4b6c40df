package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// openTest opens a spool in a fresh directory and closes it at the end.
func openTest(t testing.TB) *Spool {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// commit stores body with metadata m and returns its ID.
func commit(t testing.TB, s *Spool, body []byte, m *Meta) string {
	t.Helper()
	w, err := s.Create()
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := w.Write(body); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := s.Commit(w, m); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return w.ID()
}

// names lists the entries of dir, sorted; a missing dir lists nothing.
func names(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadDir(%s): %v", dir, err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func readBody(t testing.TB, s *Spool, id string) []byte {
	t.Helper()
	f, err := s.Body(id)
	if err != nil {
		t.Fatalf("Body(%s): %v", id, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("reading body %s: %v", id, err)
	}
	return b
}

var (
	t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	t1 = time.Date(2026, 3, 1, 12, 5, 0, 0, time.UTC)
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		meta Meta
	}{
		{
			name: "empty body",
			body: nil,
			meta: Meta{Account: "alice@example.com", From: "alice@example.com", Rcpts: []string{"bob@example.org"}, Created: t0, NextTry: t0},
		},
		{
			name: "small message, every field",
			body: []byte("Subject: hi\r\n\r\nhello\r\n"),
			meta: Meta{
				Account:    "@example.com",
				From:       "bob@example.com",
				Rcpts:      []string{"a@x.test", "b@y.test"},
				Failed:     []Failure{{Rcpt: "c@z.test", Status: "5.1.1", Diagnostic: "550 no such user"}},
				UTF8:       true,
				Created:    t0,
				Attempts:   3,
				NextTry:    t1,
				LastError:  "421 try later",
				LastHint:   "the server is busy",
				Bounce:     true,
				ClientAddr: "127.0.0.1:40000",
			},
		},
		{
			name: "large multi-write body",
			body: bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"), 3000),
			meta: Meta{Account: "alice@example.com", From: "alice@example.com", Rcpts: []string{"bob@example.org"}, Created: t0, NextTry: t0},
		},
	}
	s := openTest(t)
	var ids []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := s.Create()
			if err != nil {
				t.Fatal(err)
			}
			if !validID(w.ID()) {
				t.Fatalf("Create gave invalid ID %q", w.ID())
			}
			// Write in uneven pieces.
			for rest := tt.body; len(rest) > 0; {
				n := min(len(rest), 4093)
				if k, err := w.Write(rest[:n]); err != nil || k != n {
					t.Fatalf("Write = %d, %v; want %d, nil", k, err, n)
				}
				rest = rest[n:]
			}
			if w.Size() != int64(len(tt.body)) || w.Err() != nil {
				t.Fatalf("Size, Err = %d, %v; want %d, nil", w.Size(), w.Err(), len(tt.body))
			}
			m := tt.meta
			m.ID, m.Size = "ignored", -1 // Commit sets both
			if err := s.Commit(w, &m); err != nil {
				t.Fatalf("Commit: %v", err)
			}
			ids = append(ids, w.ID())
			if m.ID != w.ID() || m.Size != int64(len(tt.body)) {
				t.Errorf("after Commit m.ID, m.Size = %q, %d; want %q, %d", m.ID, m.Size, w.ID(), len(tt.body))
			}
			if got := names(t, s.tmp); len(got) != 0 {
				t.Errorf("tmp/ holds %q after Commit, want nothing", got)
			}
			for _, ext := range []string{".eml", ".json"} {
				fi, err := os.Stat(filepath.Join(s.msg, w.ID()+ext))
				if err != nil {
					t.Errorf("committed %s: %v", ext, err)
				} else if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
					t.Errorf("%s mode = %v, want 0600", ext, fi.Mode().Perm())
				}
			}

			got, err := s.Get(w.ID())
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if !reflect.DeepEqual(*got, m) {
				t.Errorf("Get = %+v\nwant  %+v", *got, m)
			}
			if b := readBody(t, s, w.ID()); !bytes.Equal(b, tt.body) {
				t.Errorf("Body = %d bytes, want the %d bytes written", len(b), len(tt.body))
			}
			if err := s.Commit(w, &m); err == nil {
				t.Error("a second Commit of the same writer succeeded")
			}
		})
	}

	list, err := s.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var listed []string
	for _, m := range list {
		listed = append(listed, m.ID)
	}
	sort.Strings(ids)
	if !slices.Equal(listed, ids) {
		t.Errorf("List IDs = %q, want %q (sorted)", listed, ids)
	}
}

func TestDiscard(t *testing.T) {
	s := openTest(t)
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("body\r\n")); err != nil {
		t.Fatal(err)
	}
	if got := names(t, s.tmp); len(got) != 1 {
		t.Fatalf("tmp/ holds %q while writing, want one body", got)
	}
	w.Discard()
	w.Discard() // a second Discard is harmless
	if got := names(t, s.tmp); len(got) != 0 {
		t.Errorf("tmp/ holds %q after Discard, want nothing", got)
	}
	if got := names(t, s.msg); len(got) != 0 {
		t.Errorf("msg/ holds %q after Discard, want nothing", got)
	}
	if err := s.Commit(w, &Meta{}); err == nil {
		t.Error("Commit after Discard succeeded")
	}
	if got := names(t, s.msg); len(got) != 0 {
		t.Errorf("msg/ holds %q after a refused Commit, want nothing", got)
	}
}

func TestRemove(t *testing.T) {
	s := openTest(t)
	keep := commit(t, s, []byte("keep\r\n"), &Meta{From: "a@example.com", Created: t0})
	gone := commit(t, s, []byte("gone\r\n"), &Meta{From: "b@example.com", Created: t0})

	if err := s.Remove(gone); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if got, want := names(t, s.msg), []string{keep + ".eml", keep + ".json"}; !slices.Equal(got, want) {
		t.Errorf("msg/ = %q after Remove, want %q", got, want)
	}
	if _, err := s.Get(gone); err == nil {
		t.Error("Get of a removed entry succeeded")
	}
	if f, err := s.Body(gone); err == nil {
		f.Close()
		t.Error("Body of a removed entry succeeded")
	}
	err := s.Remove(gone)
	if err == nil || !strings.Contains(err.Error(), gone) {
		t.Errorf("second Remove = %v, want an error naming %s", err, gone)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].ID != keep {
		t.Errorf("List = %v, %v; want only %s", list, err, keep)
	}

	// The metadata is what makes an entry exist: a body without it (a
	// crash between the two removals) is not an entry, and Remove still
	// clears it away.
	orphan := commit(t, s, []byte("orphan\r\n"), &Meta{Created: t0})
	if err := os.Remove(s.metaPath(orphan)); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(orphan); err == nil {
		t.Error("Remove of an entry without metadata succeeded")
	}
	if _, err := os.Stat(s.bodyPath(orphan)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan body still there after Remove (stat: %v)", err)
	}
}

func TestOpenCleansUp(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("Subject: kept\r\n\r\nkept\r\n")
	kept := commit(t, s, body, &Meta{From: "a@example.com", Created: t0})
	// A body being received when the process "crashes".
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("half a message"))
	s.Close()

	for path, data := range map[string]string{
		filepath.Join(dir, "tmp", "20260101T000000-stale.json"): "{}",
		filepath.Join(dir, "msg", "20260101T000000-orphan.eml"): "no metadata",
	} {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	s2, err := Open(dir)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s2.Close()
	if got := names(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Errorf("tmp/ = %q after Open, want empty", got)
	}
	if got, want := names(t, filepath.Join(dir, "msg")), []string{kept + ".eml", kept + ".json"}; !slices.Equal(got, want) {
		t.Errorf("msg/ = %q after Open, want %q", got, want)
	}
	list, err := s2.List()
	if err != nil || len(list) != 1 || list[0].ID != kept {
		t.Fatalf("List = %v, %v; want only %s", list, err, kept)
	}
	if b := readBody(t, s2, kept); !bytes.Equal(b, body) {
		t.Errorf("kept body = %q, want %q", b, body)
	}
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	s1, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	w, err := s1.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Discard()

	s2, err := Open(dir)
	if !errors.Is(err, ErrLocked) {
		if s2 != nil {
			s2.Close()
		}
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if s2 != nil {
		t.Errorf("second Open returned a spool with ErrLocked")
	}
	// The refused Open must not have cleaned the running spool's tmp/.
	if _, err := os.Stat(filepath.Join(dir, "tmp", w.ID()+".eml")); err != nil {
		t.Errorf("in-progress body of the first spool is gone: %v", err)
	}

	if err := s1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s1.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	s3, err := Open(dir)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s3.Close()
}

func TestUpdate(t *testing.T) {
	s := openTest(t)
	body := []byte("x\r\n")
	id := commit(t, s, body, &Meta{From: "a@example.com", Rcpts: []string{"b@example.org"}, Created: t0, NextTry: t0})
	m, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	m.Attempts++
	m.NextTry = t1
	m.LastError = "451 4.7.0 try again"
	m.Failed = append(m.Failed, Failure{Rcpt: "b@example.org", Status: "5.1.1", Diagnostic: "550 unknown"})
	if err := s.Update(m); err != nil {
		t.Fatalf("Update: %v", err)
	}
	got, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("Get after Update = %+v\nwant %+v", got, m)
	}
	if b := readBody(t, s, id); !bytes.Equal(b, body) {
		t.Errorf("body changed by Update: %q", b)
	}
	if got := names(t, s.tmp); len(got) != 0 {
		t.Errorf("tmp/ = %q after Update, want empty", got)
	}

	tests := []struct {
		name string
		id   string
	}{
		{"bad ID", "../x"},
		{"empty ID", ""},
		{"no such entry", "20260101T000000-none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := names(t, s.msg)
			if err := s.Update(&Meta{ID: tt.id}); err == nil {
				t.Errorf("Update(%q) succeeded", tt.id)
			}
			if after := names(t, s.msg); !slices.Equal(before, after) {
				t.Errorf("msg/ changed from %q to %q by a refused Update", before, after)
			}
		})
	}
}

func TestBadIDs(t *testing.T) {
	s := openTest(t)
	// A valid metadata file just outside msg/, which "../x" would reach.
	outside := filepath.Join(s.dir, "x.json")
	if err := os.WriteFile(outside, []byte(`{"id":"x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "x.eml"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"../x", "", "..", "a/b", `a\b`, "x.json", "a b", "x\x00", strings.Repeat("a", 65), "é"} {
		t.Run(fmt.Sprintf("%q", id), func(t *testing.T) {
			if m, err := s.Get(id); err == nil || !strings.Contains(err.Error(), "bad message ID") {
				t.Errorf("Get = %+v, %v; want a bad message ID error", m, err)
			}
			if err := s.Remove(id); err == nil || !strings.Contains(err.Error(), "bad message ID") {
				t.Errorf("Remove = %v; want a bad message ID error", err)
			}
			if f, err := s.Body(id); err == nil || !strings.Contains(err.Error(), "bad message ID") {
				if f != nil {
					f.Close()
				}
				t.Errorf("Body = %v; want a bad message ID error", err)
			}
			if err := s.Update(&Meta{ID: id}); err == nil || !strings.Contains(err.Error(), "bad message ID") {
				t.Errorf("Update = %v; want a bad message ID error", err)
			}
		})
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("file outside msg/ was touched: %v", err)
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	var length int
	for i := range 1000 {
		id := NewID()
		if !validID(id) {
			t.Fatalf("NewID() = %q, not a valid ID", id)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
		if i == 0 {
			length = len(id)
		} else if len(id) != length {
			t.Fatalf("NewID() lengths differ (%d, %d): IDs would not sort by time", length, len(id))
		}
	}
}

func TestListReportsBadMetadata(t *testing.T) {
	s := openTest(t)
	good := commit(t, s, []byte("x\r\n"), &Meta{Created: t0})
	bad := commit(t, s, []byte("y\r\n"), &Meta{Created: t0})
	if err := os.WriteFile(s.metaPath(bad), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	list, err := s.List()
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("List error = %v, want one naming %s", err, bad)
	}
	if len(list) != 1 || list[0].ID != good {
		t.Errorf("List = %v, want the good entry %s despite the bad one", list, good)
	}
}

func TestConcurrentCommits(t *testing.T) {
	s := openTest(t)
	const n = 16
	ids := make([]string, n)
	errs := make([]error, n)
	var start, wg sync.WaitGroup
	start.Add(1)
	for i := range n {
		wg.Go(func() {
			w, err := s.Create()
			if err != nil {
				errs[i] = err
				return
			}
			ids[i] = w.ID()
			fmt.Fprintf(w, "message %d\r\n", i)
			start.Wait() // commit all at once, so syncs overlap
			errs[i] = s.Commit(w, &Meta{From: fmt.Sprintf("u%d@example.com", i), Created: t0})
		})
	}
	start.Done()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Commit %d: %v", i, err)
		}
	}
	list, err := s.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(list) != n {
		t.Fatalf("List has %d entries, want %d", len(list), n)
	}
	for i, id := range ids {
		m, err := s.Get(id)
		if err != nil {
			t.Errorf("Get(%s): %v", id, err)
			continue
		}
		if want := fmt.Sprintf("u%d@example.com", i); m.From != want {
			t.Errorf("entry %s From = %q, want %q", id, m.From, want)
		}
		if b, want := readBody(t, s, id), fmt.Sprintf("message %d\r\n", i); string(b) != want {
			t.Errorf("entry %s body = %q, want %q", id, b, want)
		}
	}
	// Every Commit waited for a directory sync, but overlapping Commits may
	// share one: never more syncs than Commits.
	s.dirSync.mu.Lock()
	started, done := s.dirSync.started, s.dirSync.done
	s.dirSync.mu.Unlock()
	if started != done || started == 0 || started > n {
		t.Errorf("directory syncs started %d, done %d; want equal and between 1 and %d", started, done, n)
	}
}

func TestGroupSync(t *testing.T) {
	dir := t.TempDir()
	t.Run("concurrent callers all succeed", func(t *testing.T) {
		g := &groupSync{path: dir}
		const n = 32
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() { errs <- g.Sync() })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("Sync: %v", err)
			}
		}
		if g.running || g.started != g.done || g.started < 1 || g.started > n {
			t.Errorf("after %d Syncs: running %v, started %d, done %d", n, g.running, g.started, g.done)
		}
	})
	t.Run("sequential callers each get a fresh sync", func(t *testing.T) {
		g := &groupSync{path: dir}
		for i := range uint64(3) {
			if err := g.Sync(); err != nil {
				t.Fatal(err)
			}
			if g.done != i+1 {
				t.Errorf("after Sync %d done = %d, want %d", i+1, g.done, i+1)
			}
		}
	})
	t.Run("errors are reported and not sticky", func(t *testing.T) {
		path := filepath.Join(dir, "later")
		g := &groupSync{path: path}
		if err := g.Sync(); err == nil {
			t.Fatal("Sync of a missing directory succeeded")
		}
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := g.Sync(); err != nil {
			t.Errorf("Sync after the directory appeared: %v", err)
		}
	})
}

func TestCommitFailureLeavesNothing(t *testing.T) {
	// Running as root bypasses permission bits, so failures are made by
	// taking the paths Commit needs away.
	tests := []struct {
		name     string
		sabotage func(t *testing.T, s *Spool, w *Writer)
		// msgLeft is what msg/ may still hold afterwards (the obstacle).
		msgLeft func(w *Writer) []string
	}{
		{
			name: "msg directory removed",
			sabotage: func(t *testing.T, s *Spool, w *Writer) {
				if err := os.RemoveAll(s.msg); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "msg directory replaced by a file",
			sabotage: func(t *testing.T, s *Spool, w *Writer) {
				if err := os.RemoveAll(s.msg); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(s.msg, []byte("not a directory"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			// The body lands in msg/, then the metadata rename fails: the
			// body must be taken back out.
			name: "metadata name taken by a directory",
			sabotage: func(t *testing.T, s *Spool, w *Writer) {
				if err := os.MkdirAll(filepath.Join(s.metaPath(w.ID()), "blocker"), 0o700); err != nil {
					t.Fatal(err)
				}
			},
			msgLeft: func(w *Writer) []string { return []string{w.ID() + ".json"} },
		},
		{
			name: "write error",
			sabotage: func(t *testing.T, s *Spool, w *Writer) {
				w.f.Close() // the next Write fails
				if _, err := w.Write([]byte("more")); err == nil {
					t.Fatal("Write to a closed file succeeded")
				}
				if w.Err() == nil {
					t.Fatal("Err() is nil after a failed Write")
				}
				if _, err := w.Write([]byte("more")); err == nil {
					t.Fatal("Write after a failure succeeded")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t)
			w, err := s.Create()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write([]byte("Subject: x\r\n\r\nbody\r\n")); err != nil {
				t.Fatal(err)
			}
			tt.sabotage(t, s, w)
			m := &Meta{From: "a@example.com", Created: t0}
			if err := s.Commit(w, m); err == nil {
				t.Fatal("Commit succeeded, want an error")
			}
			if got := names(t, s.tmp); len(got) != 0 {
				t.Errorf("tmp/ = %q after a failed Commit, want empty", got)
			}
			if fi, err := os.Stat(s.msg); err == nil && fi.IsDir() {
				var want []string
				if tt.msgLeft != nil {
					want = tt.msgLeft(w)
				}
				if got := names(t, s.msg); !slices.Equal(got, want) {
					t.Errorf("msg/ = %q after a failed Commit, want %q", got, want)
				}
			}
			if _, err := s.Get(w.ID()); err == nil {
				t.Error("Get finds the entry of a failed Commit")
			}
			if err := s.Commit(w, m); err == nil {
				t.Error("retrying Commit on a finished writer succeeded")
			}
		})
	}
}

var body10KB = func() []byte {
	line := []byte(strings.Repeat("x", 76) + "\r\n")
	return bytes.Repeat(line, 10240/len(line)+1)[:10240]
}()

// commitTimed does one create+write+commit and returns how long Commit took.
func commitTimed(s *Spool) (time.Duration, error) {
	w, err := s.Create()
	if err != nil {
		return 0, err
	}
	if _, err := w.Write(body10KB); err != nil {
		w.Discard()
		return 0, err
	}
	m := &Meta{Account: "alice@example.com", From: "alice@example.com", Rcpts: []string{"bob@example.org"}, Created: t0, NextTry: t0}
	start := time.Now()
	err = s.Commit(w, m)
	return time.Since(start), err
}

// reportCommitLatency reports the median and 99th percentile Commit time
// and how many directory syncs each Commit cost.
func reportCommitLatency(b *testing.B, s *Spool, durs []time.Duration) {
	if len(durs) == 0 {
		return
	}
	slices.Sort(durs)
	rank := func(p float64) time.Duration { // nearest-rank percentile
		i := int(p*float64(len(durs))+0.999999) - 1
		return durs[max(0, min(i, len(durs)-1))]
	}
	b.ReportMetric(float64(rank(0.50).Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(rank(0.99).Nanoseconds())/1e3, "p99-µs")
	s.dirSync.mu.Lock()
	syncs := s.dirSync.done
	s.dirSync.mu.Unlock()
	b.ReportMetric(float64(syncs)/float64(len(durs)), "dirsyncs/op")
}

func BenchmarkCommit10KB(b *testing.B) {
	s := openTest(b)
	durs := make([]time.Duration, 0, b.N)
	b.SetBytes(int64(len(body10KB)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		d, err := commitTimed(s)
		if err != nil {
			b.Fatal(err)
		}
		durs = append(durs, d)
	}
	b.StopTimer()
	reportCommitLatency(b, s, durs)
}

// BenchmarkCommit10KBParallel commits from GOMAXPROCS goroutines (vary it
// with -cpu 1,8): concurrent Commits share directory syncs.
func BenchmarkCommit10KBParallel(b *testing.B) {
	s := openTest(b)
	var mu sync.Mutex
	durs := make([]time.Duration, 0, b.N)
	b.SetBytes(int64(len(body10KB)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var local []time.Duration
		for pb.Next() {
			d, err := commitTimed(s)
			if err != nil {
				b.Error(err) // not Fatal: this is not the benchmark's goroutine
				break
			}
			local = append(local, d)
		}
		mu.Lock()
		durs = append(durs, local...)
		mu.Unlock()
	})
	b.StopTimer()
	reportCommitLatency(b, s, durs)
}
