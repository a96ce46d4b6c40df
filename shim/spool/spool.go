// Package spool stores queued messages durably on disk.
//
// Each message is two files in msg/: ID.eml, the normalized body, and
// ID.json, its metadata. Both are written under tmp/, fsynced, renamed
// into msg/, and the directory is fsynced, so after Commit returns a crash
// or power cut cannot lose the message. A body held in memory is made
// durable through the journal instead (journal.go): one group-committed
// record, its files written (when many messages arrive at once, after the
// burst) and synced later together. The metadata file is renamed last and
// removed first: its presence, or the message's record in the journal,
// is what makes an entry exist.
//
// A body that is delivered while the client waits never needs Commit: it
// is discarded unsynced, and the durability cost is paid only by mail that
// really has to wait.
package spool

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Meta is what the queue knows about one message.
type Meta struct {
	ID         string    `json:"id"`
	Account    string    `json:"account"`
	From       string    `json:"from"`
	Rcpts      []string  `json:"rcpts"`
	Failed     []Failure `json:"failed,omitempty"`
	Size       int64     `json:"size"`
	UTF8       bool      `json:"utf8,omitempty"`
	Created    time.Time `json:"created"`
	Attempts   int       `json:"attempts"`
	NextTry    time.Time `json:"next_try"`
	LastError  string    `json:"last_error,omitempty"`
	LastHint   string    `json:"last_hint,omitempty"`
	Bounce     bool      `json:"bounce,omitempty"`
	ClientAddr string    `json:"client_addr,omitempty"`
}

// Failure is a recipient refused permanently, kept for the bounce.
type Failure struct {
	Rcpt       string `json:"rcpt"`
	Status     string `json:"status"`
	Diagnostic string `json:"diagnostic"`
}

// Spool is one spool directory. It is safe for concurrent use.
type Spool struct {
	dir, tmp, msg string
	lock          *os.File
	dirSync       groupSync
	j             *journal // nil when opened without the lock
}

// ErrLocked means another smtpshim process owns the spool.
var ErrLocked = errors.New("the spool is in use by a running smtpshim")

// Open prepares dir and takes its lock. Leftover temp files from a crash
// are removed: nothing was promised for them. A spool that other users
// could write is refused with an *UnsafeError (see Check).
func Open(dir string) (*Spool, error) {
	s, err := openNoLock(dir)
	if err != nil {
		return nil, err
	}
	lf, err := lockFile(filepath.Join(dir, "lock"))
	if err != nil {
		return nil, err
	}
	s.lock = lf
	if err := s.cleanTmp(); err != nil {
		s.Close()
		return nil, err
	}
	if s.j, err = openJournal(s); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func openNoLock(dir string) (*Spool, error) {
	s := &Spool{dir: dir, tmp: filepath.Join(dir, "tmp"), msg: filepath.Join(dir, "msg")}
	if err := checkParent(dir); err != nil {
		return nil, err
	}
	for _, d := range []string{dir, s.tmp, s.msg} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		if err := checkDir(d); err != nil {
			return nil, err
		}
	}
	s.dirSync.path = s.msg
	return s, nil
}

// Dir returns the spool directory.
func (s *Spool) Dir() string { return s.dir }

// Close makes what the journal holds durable in its files, and releases
// the lock.
func (s *Spool) Close() error {
	var jerr error
	if s.j != nil {
		jerr = s.j.close()
		s.j = nil
	}
	if s.lock != nil {
		err := s.lock.Close()
		s.lock = nil
		return errors.Join(jerr, err)
	}
	return jerr
}

func (s *Spool) cleanTmp() error {
	ents, err := os.ReadDir(s.tmp)
	if err != nil {
		return err
	}
	for _, e := range ents {
		os.Remove(filepath.Join(s.tmp, e.Name()))
	}
	// A body whose metadata never made it was never acknowledged.
	ents, err = os.ReadDir(s.msg)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok {
			have[id] = true
		}
	}
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".eml"); ok && !have[id] {
			os.Remove(filepath.Join(s.msg, e.Name()))
		}
	}
	return nil
}

var idEnc = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// NewID returns a sortable, unique message ID.
func NewID() string {
	var b [8]byte
	rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405") + "-" + idEnc.EncodeToString(b[:])
}

// Writer receives one message body.
type Writer struct {
	s    *Spool
	f    *os.File
	id   string
	size int64
	err  error
	done bool
	// A lazy writer keeps the body in mem until it passes spillAt bytes:
	// most messages are delivered while the client waits and never need a
	// file, and creating and deleting one per message is the costliest
	// part of relaying small messages.
	mem     *[]byte
	spillAt int
}

// Create starts a new body file.
func (s *Spool) Create() (*Writer, error) {
	w := &Writer{s: s, id: NewID()}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

// CreateLazy starts a new body that stays in memory up to memLimit bytes
// and moves to a file beyond that, or at Commit. File errors are reported
// by Write or Commit.
func (s *Spool) CreateLazy(memLimit int) *Writer {
	return &Writer{s: s, id: NewID(), spillAt: memLimit, mem: memPool.Get().(*[]byte)}
}

// memPool recycles in-memory bodies; their capacity grows to what the
// messages need, up to the largest spillAt.
var memPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

func (w *Writer) open() error {
	f, err := os.OpenFile(filepath.Join(w.s.tmp, w.id+".eml"), os.O_WRONLY|os.O_CREATE|os.O_EXCL|oNoFollow, 0o600)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	w.f = f
	return nil
}

// spill moves the in-memory body to its file.
func (w *Writer) spill() error {
	if err := w.open(); err != nil {
		return err
	}
	buf := w.mem
	w.mem = nil
	_, err := w.f.Write(*buf)
	*buf = (*buf)[:0]
	memPool.Put(buf)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// ID returns the message's ID.
func (w *Writer) ID() string { return w.id }

// Size returns the bytes written so far.
func (w *Writer) Size() int64 { return w.size }

// Err returns the first write error.
func (w *Writer) Err() error { return w.err }

// Write appends to the body. After a failure it keeps failing.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, errors.New("spool: write after the body was finished")
	}
	if w.mem != nil {
		if len(*w.mem)+len(p) <= w.spillAt {
			*w.mem = append(*w.mem, p...)
			w.size += int64(len(p))
			return len(p), nil
		}
		if err := w.spill(); err != nil {
			w.err = err
			return 0, err
		}
	}
	n, err := w.f.Write(p)
	w.size += int64(n)
	if err != nil {
		w.err = fmt.Errorf("spool: %w", err)
	}
	return n, w.err
}

// Discard drops the body without syncing it.
func (w *Writer) Discard() {
	if w.done {
		return
	}
	w.done = true
	if w.mem != nil {
		*w.mem = (*w.mem)[:0]
		memPool.Put(w.mem)
		w.mem = nil
	}
	if w.f != nil {
		w.f.Close()
		os.Remove(w.f.Name())
		w.f = nil
	}
}

// Commit makes the message durable with metadata m (m.ID and m.Size are
// set from w). When it returns nil the message survives a crash.
func (s *Spool) Commit(w *Writer, m *Meta) error {
	if w.done {
		return errors.New("spool: writer already finished")
	}
	if w.err == nil && w.mem != nil && s.j != nil && s.j.usable() {
		return s.commitJournaled(w, m)
	}
	if w.err == nil && w.mem != nil {
		w.err = w.spill()
	}
	if w.err != nil {
		w.Discard()
		return w.err
	}
	w.done = true
	m.ID = w.id
	m.Size = w.size
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	tmpBody := w.f.Name()
	w.f = nil
	if err == nil {
		err = os.Rename(tmpBody, s.bodyPath(m.ID))
	}
	if err == nil {
		err = s.writeMeta(m, false)
	}
	if err == nil {
		err = s.dirSync.Sync()
	}
	if err != nil {
		os.Remove(tmpBody)
		os.Remove(s.metaPath(m.ID))
		os.Remove(s.bodyPath(m.ID))
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

func (s *Spool) bodyPath(id string) string { return filepath.Join(s.msg, id+".eml") }
func (s *Spool) metaPath(id string) string { return filepath.Join(s.msg, id+".json") }

// writeMeta writes m atomically; syncDir also makes the rename durable.
func (s *Spool) writeMeta(m *Meta, syncDir bool) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.tmp, m.ID+".json")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|oNoFollow, 0o600)
	if errors.Is(err, os.ErrExist) {
		// Left by an update that failed before its rename.
		os.Remove(tmp)
		f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|oNoFollow, 0o600)
	}
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.metaPath(m.ID))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if syncDir {
		return s.dirSync.Sync()
	}
	return nil
}

// Update rewrites an entry's metadata atomically.
func (s *Spool) Update(m *Meta) error {
	if !validID(m.ID) {
		return fmt.Errorf("spool: bad message ID %q", m.ID)
	}
	if s.j != nil {
		// A message still only in the journal gets its files first.
		if err := s.j.materialize(m.ID); err != nil {
			return err
		}
	}
	if _, err := os.Stat(s.metaPath(m.ID)); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := s.writeMeta(m, true); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// Remove deletes an entry: metadata first, so a crash in between leaves
// an orphan body that the next Open cleans, never an entry without a body.
func (s *Spool) Remove(id string) error {
	if !validID(id) {
		return fmt.Errorf("spool: bad message ID %q", id)
	}
	journaled := false
	if s.j != nil {
		// First, so that no file of it is written after the removal.
		journaled = s.j.cancel(id)
	}
	err := os.Remove(s.metaPath(id))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: %w", err)
	}
	os.Remove(s.bodyPath(id))
	if s.j != nil {
		s.j.removed(id)
	}
	if errors.Is(err, os.ErrNotExist) && !journaled {
		return fmt.Errorf("spool: no message %s", id)
	}
	return nil
}

// Get reads one entry's metadata.
func (s *Spool) Get(id string) (*Meta, error) {
	if !validID(id) {
		return nil, fmt.Errorf("spool: bad message ID %q", id)
	}
	var data []byte
	var err error
	inJournal := false
	if s.j != nil {
		data, _, inJournal, err = s.j.record(id, false)
	}
	if !inJournal {
		f, oerr := openTrusted(s.metaPath(id))
		if errors.Is(oerr, os.ErrNotExist) {
			return nil, fmt.Errorf("no queued message %s", id)
		}
		if oerr != nil {
			return nil, fmt.Errorf("spool: %w", oerr)
		}
		data, err = io.ReadAll(io.LimitReader(f, maxMeta+1))
		f.Close()
	}
	if err == nil && len(data) > maxMeta {
		err = errors.New("metadata file too large")
	}
	if err != nil {
		return nil, fmt.Errorf("spool: %s: %w", id, err)
	}
	var m Meta
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("spool: %s: %w", id, err)
	}
	return &m, nil
}

// maxMeta bounds a metadata file (a message's recipients fit easily).
const maxMeta = 16 << 20

// Body opens an entry's body for reading: from the journal while the
// message has no files yet, else its file, which must be a regular file
// of ours, never a link.
func (s *Spool) Body(id string) (io.ReadCloser, error) {
	if !validID(id) {
		return nil, fmt.Errorf("spool: bad message ID %q", id)
	}
	if s.j != nil {
		if _, body, ok, err := s.j.record(id, true); ok {
			if err != nil {
				return nil, fmt.Errorf("spool: %s: %w", id, err)
			}
			return io.NopCloser(bytes.NewReader(body)), nil
		}
	}
	f, err := openTrusted(s.bodyPath(id))
	if err != nil {
		return nil, err
	}
	return f, nil
}

// List returns every entry, oldest first. Unreadable metadata is reported
// in the error but does not hide the other entries.
func (s *Spool) List() ([]*Meta, error) {
	ents, err := os.ReadDir(s.msg)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	ids := map[string]bool{}
	if s.j != nil {
		for _, id := range s.j.pendingIDs() {
			ids[id] = true
		}
	}
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok {
			ids[id] = true
		}
	}
	var out []*Meta
	var errs []error
	for id := range ids {
		m, err := s.Get(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, errors.Join(errs...)
}

func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
			return false
		}
	}
	return true
}

// groupSync fsyncs a directory for many waiters at once: a caller whose
// rename happened before a sync started shares that sync; the rest share
// the next. Under load this turns N directory syncs into a few.
type groupSync struct {
	path    string
	mu      sync.Mutex
	cond    *sync.Cond
	running bool
	started uint64 // generation of the sync in progress or last started
	done    uint64 // generation of the last finished sync
	err     error
}

// Sync returns once a directory sync that began after the call has ended.
func (g *groupSync) Sync() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
	}
	need := g.started + 1
	for g.done < need {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		g.started++
		gen := g.started
		g.mu.Unlock()
		err := syncDir(g.path)
		g.mu.Lock()
		g.running = false
		g.done = gen
		g.err = err
		g.cond.Broadcast()
	}
	return g.err
}

var _ io.Writer = (*Writer)(nil)
