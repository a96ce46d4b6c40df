package spool

// The journal makes small queued messages durable with one fsync for many.
//
// Without it each Commit fsyncs two files and (shared) the directory. With
// it, Commit of a body held in memory appends one record (metadata and
// body) to the journal; concurrent Commits share one write and one
// fdatasync (group commit). Then the message's two files are written as
// before, but without syncs of their own: at once when no other message's
// files are being written, otherwise by a background writer once the
// spool is quiet (see place). Until then Get, Body and List read the
// message from the journal, and a message removed first never gets files.
//
// The journal is a series of segment files in jnl/; a new one starts once
// the current one passes checkpointBytes. A segment is deleted, oldest
// first, once each message in it is removed or has its files, after those
// files are made durable (syncfs on Linux, in the background). Open reads
// what segments are left: a message whose files are missing or differ from
// its record is written again from the journal; one removed since (a
// tombstone) stays removed; a torn record at the end (never acknowledged)
// is ignored.
//
// So the promise is unchanged: when Commit returns nil, the message is on
// disk and survives a crash or power cut. A journal whose write or fsync
// failed is not used again until the next start: Commit falls back to
// syncing each file.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// checkpointBytes is how far the journal file grows before it is
// checkpointed: about 3,000 messages of 10 KB. Replay after a crash reads
// one file at a time.
var checkpointBytes int64 = 32 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const (
	recCommit = 'C'
	recRemove = 'R'
)

type journal struct {
	s   *Spool
	dir string

	mu   sync.Mutex
	cond *sync.Cond
	f    *os.File
	seq  uint64
	size int64
	// live: messages in the current journal file, true once their files
	// are written (a checkpoint waits for that).
	live map[string]bool
	// Group commit: records appended since the last write wait in pend
	// (with their IDs) for the next leader, which writes and syncs them as
	// generation pendGen.
	pend    []byte
	pendIDs []string
	pendAt  []*pendingMsg // where each pending record starts in pend
	pendGen uint64
	doneGen uint64
	running bool
	broken  error
	// checkpoint in progress, and the files it waits to make durable
	ckpt   bool
	ckptWG sync.WaitGroup
	old    []oldFile
	// Messages durable in the journal whose files are not written yet:
	// for a moment after the group write, or after a crash until Open
	// has rewritten them.
	pending  map[string]*pendingMsg
	writeErr error // the first failure to write a message's files (Open reports it)
	// The background writer of messages' files (see place): the messages
	// it has yet to write, oldest first; whether it runs; how many writes
	// of files are in progress; closing stops it.
	backlog      []*pendingMsg
	backlogBytes int
	backlogN     int
	worker       bool
	writing      int
	closing      bool
	stop         chan struct{} // closed with closing set
	lastBusy     time.Time     // the last commit or removal
}

// The background writer waits for a pause of writeQuiet in the commits
// and removals before it writes files, so that a burst of queued mail is
// answered first, and mail delivered from the queue meanwhile (a removal
// each) needs no files at all. At most writeLag bytes of records (or
// writeLagMessages) wait for it: past that, each Commit writes the files
// of the oldest waiting message. That bound is also what Open has to
// write again after a crash.
var (
	writeQuiet       = 20 * time.Millisecond
	writeLag         = 64 << 20
	writeLagMessages = 8192
)

// pendingMsg is where a message's record lies in a journal file.
type pendingMsg struct {
	id               string
	f                *os.File
	off              int64 // of the metadata
	metaLen, bodyLen int
	state            int // pendWaiting, pendWriting, pendDone
	inBacklog        bool
}

const (
	pendWaiting = iota
	pendWriting
	pendDone
)

type oldFile struct {
	f    *os.File
	live map[string]bool
}

func journalPath(dir string, seq uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%016d.log", seq))
}

// openJournal indexes what an earlier run left in dir/jnl and starts a
// fresh segment.
func openJournal(s *Spool) (*journal, error) {
	j := &journal{s: s, dir: filepath.Join(s.dir, "jnl"), live: map[string]bool{}, pendGen: 1, pending: map[string]*pendingMsg{}, stop: make(chan struct{})}
	j.cond = sync.NewCond(&j.mu)
	if err := os.MkdirAll(j.dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	// Held to the same rules as tmp/ and msg/ (trust.go).
	if err := checkDir(j.dir); err != nil {
		return nil, err
	}
	last, err := j.replay()
	if err != nil {
		for _, o := range j.old {
			o.f.Close()
		}
		return nil, fmt.Errorf("spool: reading the journal: %w", err)
	}
	j.seq = last + 1
	if j.f, err = os.OpenFile(journalPath(j.dir, j.seq), os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND|oNoFollow, 0o600); err == nil {
		err = syncDir(j.dir)
	}
	if err != nil {
		for _, o := range j.old {
			o.f.Close()
		}
		if j.f != nil {
			j.f.Close()
		}
		return nil, fmt.Errorf("spool: %w", err)
	}
	j.mu.Lock()
	// Files lost in a crash are written again now, so the spool
	// directory shows every queued message.
	j.materializeAll()
	err = j.writeErr
	j.writeErr = nil
	j.retireLocked()
	j.mu.Unlock()
	if err != nil {
		j.close()
		return nil, err
	}
	return j, nil
}

// replay indexes the segments left by an earlier run: each message still
// in them becomes pending again (its files, if any, are checked against
// its record and dropped when they differ). It returns the highest
// sequence number seen.
func (j *journal) replay() (uint64, error) {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return 0, err
	}
	var seqs []uint64
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".log"); ok {
			if seq, err := strconv.ParseUint(n, 10, 64); err == nil {
				seqs = append(seqs, seq)
			}
		}
	}
	if len(seqs) == 0 {
		return 0, nil
	}
	sort.Slice(seqs, func(a, b int) bool { return seqs[a] < seqs[b] })
	type loc struct {
		seg              int
		off              int64
		metaLen, bodyLen int
		crc              uint32
	}
	index := map[string]loc{}
	for i, seq := range seqs {
		data, err := os.ReadFile(journalPath(j.dir, seq))
		if err != nil {
			return 0, err
		}
		pos := 0
		// A torn record at the end was never acknowledged: stop there.
		for len(data)-pos >= 8 {
			n := int(binary.LittleEndian.Uint32(data[pos:]))
			if n > len(data)-pos-8 || crc32.Checksum(data[pos+8:pos+8+n], castagnoli) != binary.LittleEndian.Uint32(data[pos+4:]) {
				break
			}
			rec := data[pos+8 : pos+8+n]
			kind, id, meta, body, ok := parseRecord(rec)
			if ok && validID(id) {
				switch kind {
				case recCommit:
					index[id] = loc{seg: i, off: int64(pos + 8 + n - len(meta) - len(body)), metaLen: len(meta), bodyLen: len(body), crc: crc32.Checksum(body, castagnoli)}
				case recRemove:
					delete(index, id)
				}
			}
			pos += 8 + n
		}
	}
	for _, seq := range seqs {
		f, err := os.OpenFile(journalPath(j.dir, seq), os.O_RDWR|oNoFollow, 0)
		if err != nil {
			return 0, err
		}
		j.old = append(j.old, oldFile{f: f, live: map[string]bool{}})
	}
	for id, l := range index {
		o := j.old[l.seg]
		if j.s.filesMatch(id, l.bodyLen, l.crc) {
			o.live[id] = true // durable once the segment is retired
			continue
		}
		os.Remove(j.s.metaPath(id))
		os.Remove(j.s.bodyPath(id))
		o.live[id] = false
		j.pending[id] = &pendingMsg{id: id, f: o.f, off: l.off, metaLen: l.metaLen, bodyLen: l.bodyLen}
	}
	return seqs[len(seqs)-1], nil
}

// filesMatch reports whether message id's files are complete: metadata
// that parses and names it, and a body the size and checksum of its
// journal record.
func (s *Spool) filesMatch(id string, size int, crc uint32) bool {
	f, err := openTrusted(s.metaPath(id))
	if err != nil {
		return false
	}
	data, err := io.ReadAll(io.LimitReader(f, maxMeta))
	f.Close()
	if err != nil {
		return false
	}
	var m Meta
	if json.Unmarshal(data, &m) != nil || m.ID != id {
		return false
	}
	f, err = openTrusted(s.bodyPath(id))
	if err != nil {
		return false
	}
	defer f.Close()
	h := crc32.New(castagnoli)
	n, err := io.Copy(h, io.LimitReader(f, int64(size)+1))
	return err == nil && n == int64(size) && h.Sum32() == crc
}

func parseRecord(p []byte) (kind byte, id string, meta, body []byte, ok bool) {
	if len(p) < 3 {
		return 0, "", nil, nil, false
	}
	kind = p[0]
	idLen := int(binary.LittleEndian.Uint16(p[1:]))
	p = p[3:]
	if len(p) < idLen {
		return 0, "", nil, nil, false
	}
	id, p = string(p[:idLen]), p[idLen:]
	if kind == recRemove {
		return kind, id, nil, nil, true
	}
	if kind != recCommit || len(p) < 4 {
		return 0, "", nil, nil, false
	}
	metaLen := int(binary.LittleEndian.Uint32(p))
	p = p[4:]
	if len(p) < metaLen {
		return 0, "", nil, nil, false
	}
	return kind, id, p[:metaLen], p[metaLen:], true
}

func appendRecord(dst []byte, kind byte, id string, meta, body []byte) []byte {
	n := 3 + len(id)
	if kind == recCommit {
		n += 4 + len(meta) + len(body)
	}
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
	dst = binary.LittleEndian.AppendUint32(dst, 0) // CRC, below
	dst = append(dst, kind)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(id)))
	dst = append(dst, id...)
	if kind == recCommit {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(meta)))
		dst = append(dst, meta...)
		dst = append(dst, body...)
	}
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[start+8:], castagnoli))
	return dst
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|oNoFollow, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func writeDirect(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|oNoFollow, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func writeFileVia(s *Spool, path, name string, data []byte, doSync bool) error {
	tmp := filepath.Join(s.tmp, name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|oNoFollow, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && doSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// usable reports whether Commit may use the journal.
func (j *journal) usable() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.broken == nil
}

// commit appends the record of message id and returns once it is on
// disk; p (metaLen and bodyLen set) gets the record's place.
func (j *journal) commit(rec []byte, p *pendingMsg) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.broken != nil {
		return j.broken
	}
	j.lastBusy = time.Now()
	p.off = int64(len(j.pend)) + int64(len(rec)-p.metaLen-p.bodyLen)
	j.pend = append(j.pend, rec...)
	j.pendIDs = append(j.pendIDs, p.id)
	j.pendAt = append(j.pendAt, p)
	gen := j.pendGen
	for j.doneGen < gen {
		if j.running {
			j.cond.Wait()
			continue
		}
		if j.broken != nil {
			return j.broken
		}
		j.lead()
	}
	return j.broken
}

// lead writes and syncs what is pending as one generation. It is called
// with j.mu held, and drops it while the disk works.
func (j *journal) lead() {
	j.running = true
	buf, ids, at, gen, f := j.pend, j.pendIDs, j.pendAt, j.pendGen, j.f
	base := j.size
	j.pend, j.pendIDs, j.pendAt = nil, nil, nil
	j.pendGen++
	j.mu.Unlock()
	_, err := f.Write(buf)
	if err == nil {
		err = fdatasync(f)
	}
	j.mu.Lock()
	j.running = false
	j.doneGen = gen
	if err != nil {
		j.broken = fmt.Errorf("spool journal: %w", err)
	} else {
		j.size += int64(len(buf))
		for _, id := range ids {
			j.live[id] = false
		}
		for _, p := range at {
			p.f = f
			p.off += base
			j.pending[p.id] = p
		}
		if j.size >= checkpointBytes {
			j.rotate()
		}
	}
	j.cond.Broadcast()
}

// markWritten notes that message id's files are in place. Called with
// j.mu held.
func (j *journal) markWritten(id string) {
	if _, in := j.live[id]; in {
		j.live[id] = true
	}
	for _, o := range j.old {
		if _, in := o.live[id]; in {
			o.live[id] = true
		}
	}
	j.retireLocked()
}

// removed records that message id is gone, if the journal still holds it.
func (j *journal) removed(id string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.removeLocked(id)
}

func (j *journal) removeLocked(id string) {
	j.lastBusy = time.Now()
	_, inCur := j.live[id]
	inOld := false
	for _, o := range j.old {
		if _, in := o.live[id]; in {
			delete(o.live, id)
			inOld = true
		}
	}
	if !inCur && !inOld || j.broken != nil {
		return
	}
	delete(j.live, id)
	// Written at once, not synced: it survives a kill of the process, and
	// after a power cut the worst is a message sent twice. Not during a
	// group write: the records' places in the file are counted from j.size.
	for j.running {
		j.cond.Wait()
	}
	if j.broken != nil || j.f == nil {
		return
	}
	rec := appendRecord(nil, recRemove, id, nil, nil)
	if _, err := j.f.Write(rec); err != nil {
		j.broken = fmt.Errorf("spool journal: %w", err)
		return
	}
	j.size += int64(len(rec))
	j.retireLocked()
	j.cond.Broadcast()
}

// rotate starts a new segment. Called with j.mu held and no write in
// progress.
func (j *journal) rotate() {
	nf, err := os.OpenFile(journalPath(j.dir, j.seq+1), os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND|oNoFollow, 0o600)
	if err == nil {
		err = syncDir(j.dir)
	}
	if err != nil {
		if nf != nil {
			nf.Close()
			os.Remove(nf.Name())
		}
		return // try again at the next write
	}
	j.old = append(j.old, oldFile{f: j.f, live: j.live})
	j.f, j.live, j.size = nf, map[string]bool{}, 0
	j.seq++
	j.retireLocked()
}

// retireLocked starts deleting the oldest segments whose messages are all
// removed or have their files. Segments go oldest first: a tombstone in a
// later one may cancel a record in an earlier one. Called with j.mu held.
func (j *journal) retireLocked() {
	if j.ckpt || len(j.old) == 0 {
		return
	}
	n := 0
	for n < len(j.old) && j.done(j.old[n]) {
		n++
	}
	if n == 0 {
		return
	}
	retire := j.old[:n]
	var paths []string
	for _, o := range retire {
		for id := range o.live {
			paths = append(paths, j.s.bodyPath(id), j.s.metaPath(id))
		}
	}
	j.ckpt = true
	j.ckptWG.Add(1)
	go func() {
		defer j.ckptWG.Done()
		var err error
		if len(paths) > 0 {
			// The files were written without syncs: make them durable
			// before the records that vouch for them go.
			if err = syncFiles(j.s.msg, paths); err == nil {
				err = syncDir(j.s.msg)
			}
		}
		j.mu.Lock()
		defer j.mu.Unlock()
		j.ckpt = false
		if err != nil {
			return // kept; the next Open looks at them again
		}
		for _, o := range retire {
			o.f.Close()
			os.Remove(o.f.Name())
		}
		j.old = j.old[len(retire):]
		syncDir(j.dir)
		j.retireLocked()
		j.cond.Broadcast()
	}()
}

// done reports whether every message of segment o is removed or has its
// files.
func (j *journal) done(o oldFile) bool {
	for _, written := range o.live {
		if !written {
			return false
		}
	}
	return true
}

// close ends the journal. It writes the files of the messages that have
// none yet; segments that still hold messages without files (their writes
// failed) are kept for the next Open. A spool closed with nothing queued
// has no journal left.
func (j *journal) close() error {
	j.mu.Lock()
	for j.running {
		j.cond.Wait()
	}
	// The files of messages still only in the journal are written now,
	// so a stopped smtpshim leaves every queued message in msg/.
	j.broken = errors.New("spool: closed")
	j.closing = true
	close(j.stop)
	j.materializeAll()
	for j.worker || j.writing > 0 {
		j.cond.Wait()
	}
	j.old = append(j.old, oldFile{f: j.f, live: j.live})
	j.live = map[string]bool{}
	j.f = nil
	for j.ckpt {
		j.cond.Wait()
	}
	j.retireLocked()
	for j.ckpt {
		j.cond.Wait()
	}
	for _, o := range j.old {
		o.f.Close()
	}
	j.old = nil
	j.mu.Unlock()
	j.ckptWG.Wait()
	return nil
}

// commitJournaled is Commit for a body held in memory.
func (s *Spool) commitJournaled(w *Writer, m *Meta) error {
	w.done = true
	m.ID = w.id
	m.Size = w.size
	mem := w.mem
	w.mem = nil
	defer func() {
		*mem = (*mem)[:0]
		memPool.Put(mem)
	}()
	meta, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	p := &pendingMsg{id: m.ID, metaLen: len(meta), bodyLen: len(*mem)}
	rec := appendRecord(make([]byte, 0, 64+len(w.id)+len(meta)+len(*mem)), recCommit, w.id, meta, *mem)
	if err := s.j.commit(rec, p); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	// Durable now. Its files are written without syncs of their own: the
	// segment is retired only after they are made durable.
	if err := s.j.place(p.id); err != nil {
		s.j.cancel(p.id)
		s.j.removed(p.id)
		return err
	}
	return nil
}

// place writes the files of message id, durable in the journal, at once
// when no other message's files are being written; otherwise it hands
// them to the background writer and returns.
//
// Creating a file is the costliest step of queueing a message: on ext4
// without a journal (as on many VMs) each new inode is found by scanning
// past the inodes deleted in the last seconds, and concurrent creators
// contend for the directory's lock. When many clients queue at once, one
// writer creates the files while the clients are answered, and a message
// delivered before its turn never gets files at all (see cancel). Until
// its files exist, Get and Body read the message from the journal.
func (j *journal) place(id string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	p, ok := j.pending[id]
	if !ok || p.state != pendWaiting {
		return nil
	}
	if j.writing == 0 && len(j.backlog) == 0 || j.closing {
		return j.materializeLocked(p)
	}
	j.backlog = append(j.backlog, p)
	j.backlogBytes += p.metaLen + p.bodyLen
	j.backlogN++
	p.inBacklog = true
	if !j.worker {
		j.worker = true
		j.ckptWG.Add(1)
		go j.work()
	}
	if j.lagging() {
		// As far behind as allowed: this Commit writes the files of the
		// oldest waiting message, one out for one in. Oldest first, so
		// that the journal, trimmed oldest segment first, stays about
		// writeLag long however long the burst. A failure leaves that
		// message in the journal; this one is durable regardless.
		if q := j.popBacklog(); q != nil {
			j.materializeLocked(q)
		}
	}
	return nil
}

// popBacklog takes the oldest message still waiting for its files off
// the backlog, or returns nil. Called with j.mu held.
func (j *journal) popBacklog() *pendingMsg {
	for len(j.backlog) > 0 {
		p := j.backlog[0]
		j.backlog[0] = nil
		j.backlog = j.backlog[1:]
		j.leaveBacklog(p)
		if p.state == pendWaiting && j.pending[p.id] == p {
			return p
		}
	}
	return nil
}

// work writes the files of the messages in the backlog, oldest first, and
// ends when the backlog is empty. A message whose files fail to write
// stays in the journal (Open writes them again), and is still readable.
func (j *journal) work() {
	defer j.ckptWG.Done()
	j.mu.Lock()
	defer j.mu.Unlock()
	for len(j.backlog) > 0 && !j.closing {
		if wait := writeQuiet - time.Since(j.lastBusy); wait > 0 {
			j.mu.Unlock()
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-j.stop:
				t.Stop()
			}
			j.mu.Lock()
			continue
		}
		if p := j.popBacklog(); p != nil {
			j.materializeLocked(p)
		}
	}
	for _, p := range j.backlog { // closing: close writes them
		j.leaveBacklog(p)
	}
	j.backlog = nil
	j.worker = false
	j.cond.Broadcast()
}

// leaveBacklog stops counting p in the writer's lag. Called with j.mu
// held.
func (j *journal) leaveBacklog(p *pendingMsg) {
	if p.inBacklog {
		p.inBacklog = false
		j.backlogBytes -= p.metaLen + p.bodyLen
		j.backlogN--
	}
}

// lagging reports whether the background writer is as far behind as it
// may be. Called with j.mu held.
func (j *journal) lagging() bool {
	return j.backlogBytes >= writeLag || j.backlogN >= writeLagMessages
}

// materialize writes message id's files now, if they are not written yet,
// waiting for a write already in progress.
func (j *journal) materialize(id string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for {
		p, ok := j.pending[id]
		if !ok {
			return nil
		}
		if p.state == pendWriting {
			j.cond.Wait()
			continue
		}
		return j.materializeLocked(p)
	}
}

// cancel takes message id out of the journal's care before it is removed:
// a message whose files are not written yet never gets them (then cancel
// reports true), and a write in progress is waited for, so that no file
// appears after the removal.
func (j *journal) cancel(id string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	for {
		p, ok := j.pending[id]
		if !ok {
			return false
		}
		if p.state == pendWriting {
			j.cond.Wait()
			continue
		}
		p.state = pendDone
		delete(j.pending, id)
		j.leaveBacklog(p)
		return true
	}
}

// record returns message id's metadata (and body, with withBody) from the
// journal while its files are not written yet; ok is false once they are,
// or for a message the journal does not hold.
func (j *journal) record(id string, withBody bool) (meta, body []byte, ok bool, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for {
		p, in := j.pending[id]
		if !in {
			return nil, nil, false, nil
		}
		if p.state == pendWriting {
			j.cond.Wait()
			continue
		}
		n := p.metaLen
		if withBody {
			n += p.bodyLen
		}
		// Read under the lock: the segment cannot be retired (and its
		// file closed) while it holds a message without files.
		buf := make([]byte, n)
		if _, err := p.f.ReadAt(buf, p.off); err != nil {
			return nil, nil, true, err
		}
		return buf[:p.metaLen], buf[p.metaLen:], true, nil
	}
}

// pendingIDs returns the messages whose files are not written yet.
func (j *journal) pendingIDs() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	ids := make([]string, 0, len(j.pending))
	for id := range j.pending {
		ids = append(ids, id)
	}
	return ids
}

// materializeAll writes the files of every message waiting for them.
// Called with j.mu held.
func (j *journal) materializeAll() {
	var todo []*pendingMsg
	for _, p := range j.pending {
		if p.state == pendWaiting {
			todo = append(todo, p)
		}
	}
	for _, p := range todo {
		if p.state == pendWaiting && j.pending[p.id] == p {
			j.materializeLocked(p)
		}
	}
}

// materializeLocked writes p's files from its journal record. Called with
// j.mu held; drops it while writing. On failure p stays in the journal,
// waiting, and the error is returned.
func (j *journal) materializeLocked(p *pendingMsg) error {
	p.state = pendWriting
	j.writing++
	j.mu.Unlock()
	s := j.s
	buf := make([]byte, p.metaLen+p.bodyLen)
	_, err := p.f.ReadAt(buf, p.off)
	meta, body := buf[:p.metaLen], buf[p.metaLen:]
	// Body first: the metadata file is what makes the entry exist, so the
	// body goes straight to msg/ (a body without metadata is invisible,
	// and Open removes it); the metadata is renamed into place.
	if err == nil {
		err = writeDirect(s.bodyPath(p.id), body)
	}
	if err == nil {
		err = writeFileVia(s, s.metaPath(p.id), p.id+".json", meta, false)
	}
	if err != nil {
		os.Remove(s.metaPath(p.id))
		os.Remove(s.bodyPath(p.id))
	}
	j.mu.Lock()
	j.writing--
	if err != nil {
		// Not marked written: its segment stays until the message is
		// removed (a failed Commit does so at once).
		p.state = pendWaiting
		err = fmt.Errorf("spool: writing a queued message: %w", err)
		if j.writeErr == nil {
			j.writeErr = err
		}
	} else {
		p.state = pendDone
		delete(j.pending, p.id)
		j.leaveBacklog(p)
		j.markWritten(p.id)
	}
	j.cond.Broadcast()
	return err
}
