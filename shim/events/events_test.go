package events

import (
	"sync"
	"testing"

	"github.com/smtpshim/smtpshim/shim/api"
)

// Watchers that start while events are being published from many
// goroutines each see the status and then exactly the events after it:
// consecutive sequence numbers, none missing, none twice, and the
// status's counters plus the events seen add up to the final counters.
func TestWatchSeesEveryLaterEventExactlyOnce(t *testing.T) {
	b := &Bus{}
	b.SetAccounts([]AccountInfo{{Key: "a@example.com", Server: "smtp.example.com:587", Auth: "password"}})
	const publishers, perPublisher, watchers = 8, 500, 16
	var pub sync.WaitGroup
	start := make(chan struct{})
	for p := range publishers {
		pub.Add(1)
		go func() {
			defer pub.Done()
			<-start
			for i := range perPublisher {
				if (i+p)%3 == 0 {
					b.Publish(Event{Kind: Bounced, Account: "a@example.com"})
				} else {
					b.Publish(Event{Kind: Delivered, Account: "a@example.com"})
				}
			}
		}()
	}
	type result struct {
		snap      api.Status
		seqs      []uint64
		delivered uint64
	}
	results := make([]result, watchers)
	var watch sync.WaitGroup
	for i := range watchers {
		watch.Add(1)
		go func() {
			defer watch.Done()
			<-start
			w := b.Watch(publishers * perPublisher)
			r := result{snap: w.Status}
			const last = publishers*perPublisher + 1 // after AccountAdded
			for r.snap.Seq < last {
				e, ok := <-w.C
				if !ok {
					break
				}
				r.seqs = append(r.seqs, e.Seq)
				if e.Kind == Delivered {
					r.delivered++
				}
				if e.Seq == last {
					break
				}
			}
			w.Stop()
			results[i] = r
		}()
	}
	close(start)
	pub.Wait()
	watch.Wait()
	final := b.Status()
	if final.Seq != publishers*perPublisher+1 {
		t.Fatalf("final Seq = %d; want %d", final.Seq, publishers*perPublisher+1)
	}
	for i, r := range results {
		want := r.snap.Seq + 1
		for _, s := range r.seqs {
			if s != want {
				t.Fatalf("watcher %d (status at seq %d): got event %d, want %d", i, r.snap.Seq, s, want)
			}
			want++
		}
		if want-1 != final.Seq {
			t.Fatalf("watcher %d ended at seq %d; want %d", i, want-1, final.Seq)
		}
		if got := r.snap.Delivered + r.delivered; got != final.Delivered {
			t.Errorf("watcher %d: status %d + events %d delivered = %d; the bus counted %d", i, r.snap.Delivered, r.delivered, got, final.Delivered)
		}
	}
	if final.Accounts[0].Delivered != final.Delivered {
		t.Errorf("account delivered %d, total %d", final.Accounts[0].Delivered, final.Delivered)
	}
}

// A watcher that does not read is cut off, never silently skipped.
func TestWatchCutsOffASlowWatcher(t *testing.T) {
	b := &Bus{}
	w := b.Watch(2)
	for range 3 {
		b.Publish(Event{Kind: Problem, Error: "x"})
	}
	var n int
	for range w.C {
		n++
	}
	if n != 2 || !w.Lost() {
		t.Fatalf("read %d events, lost=%v; want 2 and the watch ended as lost", n, w.Lost())
	}
	w.Stop() // after the cut-off: harmless
	w2 := b.Watch(4)
	if w2.Status.Seq != 3 {
		t.Errorf("a new watch starts at seq %d; want 3", w2.Status.Seq)
	}
	w2.Stop()
	if _, ok := <-w2.C; ok {
		t.Error("C still open after Stop")
	}
}

func TestAccountStates(t *testing.T) {
	b := &Bus{}
	b.SetAccounts([]AccountInfo{
		{Key: "a@example.com", Server: "smtp.example.com:587", Auth: "password"},
		{Key: "@example.org", Server: "smtp.example.org:465", Auth: "password"},
		{Key: "c@example.net", Server: "smtp.example.net:587", Auth: "password"},
	})
	st := b.Status()
	if len(st.Accounts) != 3 {
		t.Fatalf("accounts = %+v; want all three", st.Accounts)
	}
	for _, a := range st.Accounts {
		if a.State != api.AccountUnused {
			t.Errorf("%s starts as %q; want unused", a.Key, a.State)
		}
	}
	w := b.Watch(16)
	defer w.Stop()
	b.Publish(Event{Kind: AccountHealth, Account: "a@example.com", Error: "dial tcp: connection refused", Hint: "is the server up?"})
	b.Publish(Event{Kind: AccountHealth, Account: "@example.org", Attention: true, Problem: "password rejected", Error: "535 5.7.8 bad credentials", Hint: "store the new password"})
	b.Publish(Event{Kind: Delivered, Account: "c@example.net"})
	ev := <-w.C
	if as := ev.API().AccountState; ev.API().Kind != api.EventAccount || as == nil || as.State != api.AccountFailing || as.Problem != "server unreachable" || as.LastError == "" || as.Hint == "" {
		t.Errorf("failing account event = %+v / %+v", ev.API(), ev.API().AccountState)
	}
	ev = <-w.C
	if as := ev.AccountState(); as == nil || as.State != api.AccountNeedsAttention || as.Problem != "password rejected" {
		t.Errorf("attention event's account = %+v", as)
	}
	ev = <-w.C
	if as := ev.AccountState(); as == nil || as.State != api.AccountOK || as.Delivered != 1 {
		t.Errorf("delivered event's account = %+v", as)
	}
	st = b.Status()
	if st.Accounts[0].State != api.AccountFailing || st.Accounts[1].State != api.AccountNeedsAttention || st.Accounts[2].State != api.AccountOK {
		t.Fatalf("states = %+v", st.Accounts)
	}
	if st.LastError == nil || st.LastError.Error != "535 5.7.8 bad credentials" {
		t.Errorf("LastError = %+v", st.LastError)
	}

	// A reload: one account unchanged (keeps its state), one changed
	// server (starts over), one removed, one added.
	b.SetAccounts([]AccountInfo{
		{Key: "@example.org", Server: "smtp.example.org:465", Auth: "password"},
		{Key: "a@example.com", Server: "smtp2.example.com:587", Auth: "password"},
		{Key: "d@example.net", Server: "smtp.example.net:587", Auth: "password"},
	})
	st = b.Status()
	got := map[string]api.AccountState{}
	var order []string
	for _, a := range st.Accounts {
		got[a.Key] = a.State
		order = append(order, a.Key)
	}
	if len(st.Accounts) != 3 || got["@example.org"] != api.AccountNeedsAttention || got["a@example.com"] != api.AccountUnused || got["d@example.net"] != api.AccountUnused {
		t.Fatalf("after reload: %+v", st.Accounts)
	}
	if order[0] != "@example.org" || order[2] != "d@example.net" {
		t.Errorf("accounts not in config order: %v", order)
	}
	var kinds []string
	for len(w.C) > 0 {
		e := <-w.C
		kinds = append(kinds, string(e.Kind)+" "+e.Account)
	}
	want := []string{"account_removed c@example.net", "account_added a@example.com", "account_added d@example.net"}
	if len(kinds) != len(want) {
		t.Fatalf("reload events = %v; want %v", kinds, want)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("reload events = %v; want %v", kinds, want)
		}
	}
}

func TestStateAndQueueEvents(t *testing.T) {
	b := &Bus{}
	w := b.Watch(8)
	defer w.Stop()
	b.SetState(api.Running)
	b.SetState(api.Running) // no change, no event
	b.SetState(api.Paused)
	b.SetQueued(0) // no change
	b.SetQueued(3)
	var got []string
	for len(w.C) > 0 {
		e := <-w.C
		got = append(got, string(e.Kind)+":"+string(e.State))
	}
	if len(got) != 3 || got[0] != "state:running" || got[1] != "state:paused" || got[2] != "queue:" {
		t.Fatalf("events = %v", got)
	}
	if st := b.Status(); st.State != api.Paused || st.Queued != 3 {
		t.Errorf("status = %+v", st)
	}
}

// When the engine stops, watchers get what was sent and then the end,
// and a watch that starts afterwards ends at once.
func TestEndWatches(t *testing.T) {
	b := &Bus{}
	w := b.Watch(8)
	b.SetState(api.Stopping)
	b.EndWatches()
	var got []Kind
	for e := range w.C {
		got = append(got, e.Kind)
	}
	if len(got) != 1 || got[0] != State || w.Lost() {
		t.Fatalf("events %v, lost %v; want the stopping state, then a clean end", got, w.Lost())
	}
	late := b.Watch(8)
	if _, ok := <-late.C; ok || late.Status.State != api.Stopping {
		t.Fatalf("a late watch: open channel or status %q", late.Status.State)
	}
	late.Stop()
	w.Stop()
}

// BenchmarkPublish is the cost the mail path pays per event, with the
// tray, the settings page, a CLI watcher and the test recorder listening.
func BenchmarkPublish(b *testing.B) {
	bus := &Bus{}
	bus.SetAccounts([]AccountInfo{{Key: "a@example.com", Server: "smtp.example.com:587", Auth: "password"}})
	var done sync.WaitGroup
	for range 4 {
		w := bus.Watch(4096)
		done.Add(1)
		go func() {
			defer done.Done()
			for range w.C {
			}
		}()
		defer w.Stop()
	}
	ev := Event{Kind: Delivered, Account: "a@example.com", MessageID: "20260101T000000-aaaa", Rcpts: []string{"b@example.net"}}
	b.ReportAllocs()
	for b.Loop() {
		bus.Publish(ev)
	}
	b.StopTimer()
	bus.EndWatches()
	done.Wait()
}

// An account a reload adds, or starts over because its server changed,
// comes with its new state, so a watcher needs no second request to show
// it (the old state, e.g. "needs attention", must not linger).
func TestAccountAddedCarriesTheNewAccount(t *testing.T) {
	b := &Bus{}
	b.SetAccounts([]AccountInfo{{Key: "a@example.com", Server: "smtp.example.com:587", Auth: "password"}})
	b.Publish(Event{Kind: AccountHealth, Account: "a@example.com", Attention: true, Problem: "password rejected", Error: "535 5.7.8 bad credentials"})
	w := b.Watch(16)
	defer w.Stop()
	b.SetAccounts([]AccountInfo{
		{Key: "a@example.com", Server: "smtp2.example.com:587", Auth: "password"},
		{Key: "d@example.net", Server: "smtp.example.net:587", Auth: "password"},
	})
	for _, want := range []struct{ key, server string }{{"a@example.com", "smtp2.example.com:587"}, {"d@example.net", "smtp.example.net:587"}} {
		ev := <-w.C
		as := ev.API().AccountState
		if ev.Kind != AccountAdded || ev.Account != want.key || as == nil || as.Key != want.key || as.Server != want.server || as.State != api.AccountUnused || as.Problem != "" || as.LastError != "" {
			t.Fatalf("event %+v with account %+v; want account_added %s with its new server, unused", ev.API(), as, want.key)
		}
	}
}
