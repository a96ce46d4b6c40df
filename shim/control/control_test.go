package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/shim/events"
)

// fake is an engine with a queue of two messages and a real event bus.
type fake struct {
	bus *events.Bus

	mu      sync.Mutex
	queue   []api.QueueEntry
	paused  bool
	retried []string
	reload  api.ReloadResult
	failing error // returned by Pause, Resume and Reload when set
}

func newFake() *fake {
	f := &fake{bus: &events.Bus{}}
	f.bus.SetAccounts([]events.AccountInfo{{Key: "a@example.com", Server: "smtp.example.com:587", Auth: "password"}})
	f.bus.SetState(api.Running)
	f.queue = []api.QueueEntry{
		{ID: "20260101T000000-aaaa", Account: "a@example.com", From: "a@example.com", Rcpts: []string{"b@example.net"}, Subject: "Scan 1", Size: 1234, Attempts: 2, LastError: "451 4.3.0 try later"},
		{ID: "20260101T000001-bbbb", Account: "a@example.com", From: "a@example.com", Rcpts: []string{"c@example.net", "d@example.net"}, Size: 99},
	}
	f.bus.SetQueued(2)
	return f
}

func (f *fake) Status() api.Status { return f.bus.Status() }

func (f *fake) Watch(buffer int) *events.Watcher { return f.bus.Watch(max(buffer, 64)) }

func (f *fake) QueueEntries() []api.QueueEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.queue)
}

func (f *fake) QueueEntry(id string) (api.QueueEntry, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.queue {
		if e.ID == id {
			return e, true
		}
	}
	return api.QueueEntry{}, false
}

func (f *fake) RetryNow(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, e := range f.queue {
		if id == "" || e.ID == id {
			n++
		}
	}
	f.retried = append(f.retried, id)
	return n
}

func (f *fake) Delete(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, e := range f.queue {
		if e.ID == id {
			f.queue = slices.Delete(f.queue, i, i+1)
			f.bus.Publish(events.Event{Kind: events.Deleted, MessageID: id})
			return nil
		}
	}
	return fmt.Errorf("no queued message %s", id)
}

func (f *fake) Pause() error {
	if f.failing != nil {
		return f.failing
	}
	f.bus.SetState(api.Paused)
	return nil
}

func (f *fake) Resume() error {
	if f.failing != nil {
		return f.failing
	}
	f.bus.SetState(api.Running)
	return nil
}

func (f *fake) Reload() (api.ReloadResult, error) {
	if f.failing != nil {
		return api.ReloadResult{}, f.failing
	}
	return f.reload, nil
}

// serve runs the handler on a real control socket in a temporary
// directory and returns a client for it.
func serve(t *testing.T, f *fake) (*Client, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctl") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: Handler(f)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c, err := Dial(dir)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(c.Close)
	return c, dir
}

func TestDialWithoutEngine(t *testing.T) {
	if _, err := Dial(t.TempDir()); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Dial of an empty directory = %v; want ErrNotRunning", err)
	}
}

func TestSocketIsPrivate(t *testing.T) {
	_, dir := serve(t, newFake())
	fi, err := os.Stat(SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("control socket mode %v: others can open it", fi.Mode().Perm())
	}
}

func TestStatusQueueAndCommands(t *testing.T) {
	f := newFake()
	c, _ := serve(t, f)

	st, err := c.Status()
	if err != nil || st.State != api.Running || st.Queued != 2 || len(st.Accounts) != 1 || st.Accounts[0].State != api.AccountUnused {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	q, err := c.Queue()
	if err != nil || len(q) != 2 || q[0].Subject != "Scan 1" || q[0].LastError == "" || q[0].Attempts != 2 || len(q[1].Rcpts) != 2 {
		t.Fatalf("Queue = %+v, %v", q, err)
	}
	m, err := c.Get(q[1].ID)
	if err != nil || m.ID != q[1].ID || m.Size != 99 {
		t.Fatalf("Get = %+v, %v", m, err)
	}
	if _, err := c.Get("20000101T000000-nope"); err == nil || !strings.Contains(err.Error(), "no queued message") {
		t.Errorf("Get of an unknown ID: %v", err)
	}
	if n, err := c.Retry(""); err != nil || n != 2 {
		t.Errorf("Retry all = %d, %v", n, err)
	}
	if n, err := c.Retry(q[0].ID); err != nil || n != 1 {
		t.Errorf("Retry one = %d, %v", n, err)
	}
	if _, err := c.Retry("20000101T000000-nope"); err == nil {
		t.Error("Retry of an unknown ID succeeded")
	}
	if err := c.Delete(q[0].ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := c.Delete(q[0].ID); err == nil {
		t.Error("a second Delete succeeded")
	}
	if err := c.do("POST", "/v1/queue/delete?id="+q[1].ID, nil); err != nil {
		t.Errorf("POST delete: %v", err)
	}
	if err := c.do("POST", "/v1/queue/delete", nil); err == nil || !strings.Contains(err.Error(), "?id=") {
		t.Errorf("POST delete without an ID: %v", err)
	}
	if q, _ := c.Queue(); len(q) != 0 {
		t.Errorf("after two deletes the queue has %d entries", len(q))
	}

	if st, err := c.Pause(); err != nil || st.State != api.Paused {
		t.Errorf("Pause = %+v, %v", st.State, err)
	}
	if st, err := c.Resume(); err != nil || st.State != api.Running {
		t.Errorf("Resume = %+v, %v", st.State, err)
	}
	f.reload = api.ReloadResult{Applied: []string{"allow_networks"}, NeedsRestart: []string{"listen changed: restart smtpshim to apply it"}}
	if r, err := c.Reload(); err != nil || !slices.Equal(r.Applied, f.reload.Applied) || !slices.Equal(r.NeedsRestart, f.reload.NeedsRestart) {
		t.Errorf("Reload = %+v, %v", r, err)
	}
	f.failing = errors.New(`config.toml:3: unknown setting "lissen"`)
	if _, err := c.Reload(); err == nil || err.Error() != f.failing.Error() {
		t.Errorf("failed Reload: %v; want the engine's own message", err)
	}
	if _, err := c.Pause(); err == nil || err.Error() != f.failing.Error() {
		t.Errorf("failed Pause: %v", err)
	}
}

// The watch stream starts with the status, then carries every event in
// order, each line flushed as it happens.
func TestWatchStream(t *testing.T) {
	f := newFake()
	c, _ := serve(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	items := make(chan api.WatchItem, 100)
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(ctx, func(it api.WatchItem) error { items <- it; return nil })
	}()
	first := next(t, items)
	if first.Status == nil || first.Event != nil || first.Status.Queued != 2 {
		t.Fatalf("first item = %+v; want the status", first)
	}
	seq := first.Status.Seq
	// One at a time: each must arrive before the next is published, so
	// nothing waits for a buffer to fill.
	f.bus.Publish(events.Event{Kind: events.Delivered, Account: "a@example.com", MessageID: "x", Rcpts: []string{"b@example.net"}})
	it := next(t, items)
	if it.Event == nil || it.Event.Kind != api.EventDelivered || it.Event.Seq != seq+1 || it.Event.AccountState == nil || it.Event.AccountState.State != api.AccountOK {
		t.Fatalf("item = %+v", it.Event)
	}
	f.bus.Publish(events.Event{Kind: events.AccountHealth, Account: "a@example.com", Attention: true, Problem: "password rejected", Error: "535 5.7.8 no"})
	it = next(t, items)
	if it.Event == nil || it.Event.Kind != api.EventAccount || it.Event.AccountState.State != api.AccountNeedsAttention || it.Event.Seq != seq+2 {
		t.Fatalf("item = %+v", it.Event)
	}
	if err := c.Delete("20260101T000000-aaaa"); err != nil {
		t.Fatal(err)
	}
	it = next(t, items)
	if it.Event == nil || it.Event.Kind != api.EventDeleted || it.Event.MessageID != "20260101T000000-aaaa" {
		t.Fatalf("item = %+v", it.Event)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Watch returned %v; want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after cancel")
	}
}

// The wire format is one JSON object per line.
func TestWatchIsNDJSON(t *testing.T) {
	f := newFake()
	c, _ := serve(t, f)
	req, _ := http.NewRequest("GET", "http://smtpshim/v1/watch", nil)
	resp, err := c.stream.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("Content-Type = %q", ct)
	}
	f.bus.SetState(api.Paused)
	sc := bufio.NewScanner(resp.Body)
	for i, want := range []string{`"status"`, `"event"`} {
		if !sc.Scan() {
			t.Fatalf("line %d missing: %v", i, sc.Err())
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil || len(m) != 1 || !strings.Contains(sc.Text(), want) {
			t.Fatalf("line %d = %s (%v)", i, sc.Text(), err)
		}
	}
}

// A watcher that falls behind is cut off; Watch says the stream ended,
// and a new Watch starts from a fresh status.
func TestWatchEndsForAWatcherThatFellBehind(t *testing.T) {
	f := newFake()
	c, _ := serve(t, f)
	block := make(chan struct{})
	got := make(chan api.WatchItem, 1)
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(context.Background(), func(it api.WatchItem) error {
			if it.Status != nil {
				got <- it
				<-block // stop reading
			}
			return nil
		})
	}()
	<-got
	for range 20000 { // far more than the fake's buffer and the socket's
		f.bus.Publish(events.Event{Kind: events.Problem, Error: strings.Repeat("x", 200)})
	}
	close(block)
	select {
	case err := <-done:
		if !errors.Is(err, ErrStreamEnded) {
			t.Fatalf("Watch = %v; want ErrStreamEnded", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the stream of a watcher that fell behind did not end")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := c.Watch(ctx, func(it api.WatchItem) error {
		if it.Status == nil || it.Status.Seq < 20000 {
			t.Errorf("a new watch starts with %+v; want a fresh status", it)
		}
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("second Watch = %v", err)
	}
}

func next(t *testing.T, ch <-chan api.WatchItem) api.WatchItem {
	t.Helper()
	select {
	case it := <-ch:
		return it
	case <-time.After(5 * time.Second):
		t.Fatal("no watch item within 5s")
	}
	return api.WatchItem{}
}
