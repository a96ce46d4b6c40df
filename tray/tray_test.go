package tray

import (
	"context"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/tray/icons"
)

type rig struct {
	eng     *fakeEngine
	ui      *fakeUI
	pages   *fakePages
	auto    *fakeAutostart
	notesMu sync.Mutex
	notes   []string
	actions chan action
	c       *controller
	quit    atomic.Bool
	stop    func()
}

func startRig(t *testing.T, st api.Status, firstRun bool) *rig {
	t.Helper()
	r := &rig{eng: newFakeEngine(st), ui: newFakeUI(), pages: &fakePages{}, auto: &fakeAutostart{}, actions: make(chan action, 16)}
	c := newController(Options{
		Engine: r.eng, Pages: r.pages, Autostart: r.auto, FirstRun: firstRun,
		Notify: func(title, body string) { r.notesMu.Lock(); r.notes = append(r.notes, title); r.notesMu.Unlock() },
		Quit:   func() { r.quit.Store(true) },
	}, r.ui)
	r.c = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.run(ctx, r.actions); close(done) }()
	r.stop = func() { cancel(); <-done }
	t.Cleanup(r.stop)
	return r
}

func running(accounts ...api.Account) api.Status {
	return api.Status{State: api.Running, Listen: []string{"127.0.0.1:2525"}, Accounts: accounts}
}

func TestPauseCheckboxFollowsTheEngine(t *testing.T) {
	r := startRig(t, running(api.Account{Key: "a@example.com", State: api.AccountOK}), false)
	if !waitFor(func() bool { _, ok := r.ui.last(); return ok }) {
		t.Fatal("the tray never showed the first snapshot")
	}
	r.actions <- action{kind: "pause"}
	if !waitFor(func() bool { v, _ := r.ui.last(); return v.Paused && v.Icon == icons.Paused }) {
		t.Fatalf("after a click on Pause sending: %+v, calls %v", r.ui.views, r.eng.Calls())
	}
	r.actions <- action{kind: "pause"}
	if !waitFor(func() bool { v, _ := r.ui.last(); return !v.Paused && v.Icon == icons.Relaying }) {
		t.Fatalf("after a second click: %+v", r.ui.views)
	}
	if got := r.eng.Calls(); !slices.Equal(got, []string{"pause", "resume"}) {
		t.Errorf("engine calls %v, want pause then resume", got)
	}
}

func TestEventsRefreshTheView(t *testing.T) {
	r := startRig(t, running(api.Account{Key: "a@example.com", State: api.AccountOK}), false)
	waitFor(func() bool { _, ok := r.ui.last(); return ok })
	r.eng.set(func(s *api.Status) {
		s.Accounts[0] = api.Account{Key: "a@example.com", State: api.AccountNeedsAttention, Problem: "password rejected"}
	})
	r.eng.stream <- api.WatchItem{Event: &api.Event{Seq: 2, Kind: api.EventAccount, Account: "a@example.com"}}
	if !waitFor(func() bool {
		v, _ := r.ui.last()
		return v.Icon == icons.Attention && len(v.Accounts) == 1 && v.Accounts[0].Label == "a@example.com: password rejected"
	}) {
		t.Fatalf("after the account event: %+v", r.ui.views)
	}
	if !waitFor(func() bool { r.notesMu.Lock(); defer r.notesMu.Unlock(); return len(r.notes) == 1 }) {
		t.Errorf("notifications %q, want one", r.notes)
	}
}

func TestFirstRunOpensSetupOnlyWithoutAccounts(t *testing.T) {
	r := startRig(t, running(), true)
	if !waitFor(func() bool { return slices.Equal(r.pages.Opened(), []string{"/setup"}) }) {
		t.Fatalf("opened %v, want /setup", r.pages.Opened())
	}
	r2 := startRig(t, running(api.Account{Key: "a@example.com"}), true)
	waitFor(func() bool { _, ok := r2.ui.last(); return ok })
	r3 := startRig(t, running(), false) // started at login: no window
	waitFor(func() bool { _, ok := r3.ui.last(); return ok })
	r2.stop()
	r3.stop()
	if len(r2.pages.Opened())+len(r3.pages.Opened()) != 0 {
		t.Errorf("opened %v and %v, want nothing", r2.pages.Opened(), r3.pages.Opened())
	}
}

func TestMenuItemsOpenTheirPages(t *testing.T) {
	r := startRig(t, running(api.Account{Key: "a@example.com"}), false)
	for _, a := range []action{{kind: "account", key: "a@example.com"}, {kind: "outbox"}, {kind: "settings"}, {kind: "guide"}, {kind: "log"}} {
		r.actions <- a
	}
	want := []string{"/accounts/a@example.com", "/outbox", "/", "/guide", "/activity"}
	if !waitFor(func() bool { return slices.Equal(r.pages.Opened(), want) }) {
		t.Errorf("opened %v, want %v", r.pages.Opened(), want)
	}
	r.actions <- action{kind: "sendnow"}
	if !waitFor(func() bool { return slices.Contains(r.eng.Calls(), "retry") }) {
		t.Error("Send now did not ask the engine to retry")
	}
}

func TestStartAtLoginCheckboxShowsTheResult(t *testing.T) {
	r := startRig(t, running(), false)
	r.actions <- action{kind: "autostart"}
	if !waitFor(func() bool {
		r.ui.mu.Lock()
		defer r.ui.mu.Unlock()
		return r.ui.autostart != nil && *r.ui.autostart
	}) {
		t.Fatal("the checkbox was not ticked after turning autostart on")
	}
	if on, _ := r.auto.Enabled(); !on {
		t.Error("autostart not turned on")
	}
}

func TestQuitStopsTheEngineAndTheTray(t *testing.T) {
	r := startRig(t, running(), false)
	r.actions <- action{kind: "quit"}
	if !waitFor(func() bool { r.ui.mu.Lock(); defer r.ui.mu.Unlock(); return r.ui.quits == 1 }) || !r.quit.Load() {
		t.Error("Quit did not stop the engine and the tray")
	}
}

func TestWatchReconnectsAfterABreak(t *testing.T) {
	eng := newFakeEngine(running())
	eng.failN = 2
	ui := newFakeUI()
	c := newController(Options{Engine: eng}, ui)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.run(ctx, nil)
	if !waitFor(func() bool { _, ok := ui.last(); return ok }) {
		t.Fatal("no view after the engine came up")
	}
	eng.mu.Lock()
	defer eng.mu.Unlock()
	if eng.watches != 3 {
		t.Errorf("%d watch attempts, want 3", eng.watches)
	}
}

// An OAuth2 account whose sign-in lapsed: the menu line says so, one
// "Sign-in needed for ADDRESS" notification comes, and clicking the line
// opens the account's page, which has "Sign in again".
func TestALapsedSignInIsShownOnceAndOpensTheAccount(t *testing.T) {
	const key = "bob@contoso.example"
	r := startRig(t, running(api.Account{Key: key, Auth: "oauth2", State: api.AccountOK}), false)
	waitFor(func() bool { _, ok := r.ui.last(); return ok })
	for seq := uint64(2); seq <= 3; seq++ {
		r.eng.set(func(s *api.Status) {
			s.Accounts[0] = api.Account{Key: key, Auth: "oauth2", State: api.AccountNeedsAttention, Problem: "sign-in needed", Queued: 1}
		})
		r.eng.stream <- api.WatchItem{Event: &api.Event{Seq: seq, Kind: api.EventAccount, Account: key}}
	}
	if !waitFor(func() bool {
		v, _ := r.ui.last()
		return v.Icon == icons.Attention && len(v.Accounts) == 1 && v.Accounts[0].Label == key+": sign-in needed, click to sign in"
	}) {
		t.Fatalf("after the sign-in lapsed: %+v", r.ui.views)
	}
	if !waitFor(func() bool {
		r.notesMu.Lock()
		defer r.notesMu.Unlock()
		return slices.Equal(r.notes, []string{"Sign-in needed for " + key})
	}) {
		r.notesMu.Lock()
		t.Errorf("notifications %q, want one sign-in notice", r.notes)
		r.notesMu.Unlock()
	}
	r.actions <- action{kind: "account", key: key}
	if !waitFor(func() bool { return slices.Equal(r.pages.Opened(), []string{"/accounts/" + key}) }) {
		t.Errorf("opened %v, want the account's page", r.pages.Opened())
	}
	r.notesMu.Lock()
	defer r.notesMu.Unlock()
	if len(r.notes) != 1 {
		t.Errorf("notifications %q, want exactly one for the one change", r.notes)
	}
}

// wake is the moment the controller's clock timer is armed for; zero
// means no timer.
func (r *rig) wake() time.Time {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	return r.c.wake
}

// With nothing queued, only the engine's events change what the tray
// shows: it arms no timer, so an idle desktop is never woken by it.
func TestAnIdleTrayArmsNoTimer(t *testing.T) {
	r := startRig(t, running(api.Account{Key: "a@example.com", State: api.AccountOK}), false)
	if !waitFor(func() bool { _, ok := r.ui.last(); return ok }) {
		t.Fatal("the tray never showed the first snapshot")
	}
	if w := r.wake(); !w.IsZero() {
		t.Fatalf("idle with nothing queued, the tray armed a timer for %v", w)
	}

	// Mail starts waiting: the timer is for the moment it has waited an
	// hour. Once it is sent, the timer goes.
	oldest := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	r.eng.set(func(s *api.Status) { s.Queued, s.OldestQueued = 1, oldest })
	r.eng.stream <- api.WatchItem{Event: &api.Event{Seq: 2, Kind: api.EventQueued}}
	if !waitFor(func() bool { return r.wake().Equal(oldest.Add(Waiting)) }) {
		t.Fatalf("with mail queued since %v, the timer is armed for %v, want %v", oldest, r.wake(), oldest.Add(Waiting))
	}
	r.eng.set(func(s *api.Status) { s.Queued, s.OldestQueued = 0, time.Time{} })
	r.eng.stream <- api.WatchItem{Event: &api.Event{Seq: 3, Kind: api.EventDelivered}}
	if !waitFor(func() bool { return r.wake().IsZero() }) {
		t.Fatalf("the outbox emptied, and the tray still arms a timer for %v", r.wake())
	}
	r.ui.mu.Lock()
	n := len(r.ui.views)
	r.ui.mu.Unlock()
	time.Sleep(100 * time.Millisecond)
	r.ui.mu.Lock()
	defer r.ui.mu.Unlock()
	if len(r.ui.views) != n {
		t.Errorf("the tray refreshed by itself while idle: %+v", r.ui.views[n:])
	}
}

// Mail that has waited an hour shows as waiting, and gives its notice,
// with no event from the engine: the clock alone changes it.
func TestMailWaitingShowsWhenTheHourIsUp(t *testing.T) {
	st := running(api.Account{Key: "a@example.com", State: api.AccountOK, Queued: 1})
	st.Queued, st.OldestQueued = 1, time.Now().Add(-Waiting+300*time.Millisecond)
	r := startRig(t, st, false)
	if !waitFor(func() bool { _, ok := r.ui.last(); return ok }) {
		t.Fatal("the tray never showed the first snapshot")
	}
	if v, _ := r.ui.last(); v.Icon != icons.Relaying {
		t.Fatalf("before the hour is up: icon %q, want relaying", v.Icon)
	}
	if !waitFor(func() bool { v, _ := r.ui.last(); return v.Icon == icons.Waiting }) {
		t.Fatalf("the hour passed and the tray still shows %+v", r.ui.views)
	}
	if !waitFor(func() bool {
		r.notesMu.Lock()
		defer r.notesMu.Unlock()
		return slices.Equal(r.notes, []string{"smtpshim: mail is waiting"})
	}) {
		r.notesMu.Lock()
		t.Errorf("notifications %q, want one about the waiting mail", r.notes)
		r.notesMu.Unlock()
	}
}

func TestClockChange(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	queued := func(n int, oldest time.Time) api.Status { return api.Status{Queued: n, OldestQueued: oldest} }
	for _, tc := range []struct {
		name string
		s    api.Status
		now  time.Time
		want time.Time
	}{
		{"nothing queued", queued(0, time.Time{}), t0, time.Time{}},
		{"queued, age unknown", queued(2, time.Time{}), t0, time.Time{}},
		{"queued a minute ago", queued(1, t0), t0.Add(time.Minute), t0.Add(time.Hour)},
		{"the hour is just up", queued(1, t0), t0.Add(time.Hour), t0.Add(2 * time.Hour)},
		{"over an hour", queued(1, t0), t0.Add(90 * time.Minute), t0.Add(2 * time.Hour)},
		{"hours", queued(1, t0), t0.Add(5*time.Hour + time.Second), t0.Add(6 * time.Hour)},
		{"days", queued(1, t0), t0.Add(50 * time.Hour), t0.Add(72 * time.Hour)},
	} {
		got := clockChange(tc.s, tc.now)
		if !got.Equal(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			continue
		}
		if got.IsZero() {
			continue
		}
		// Nothing the tray shows changes before that moment, and
		// something does at it.
		before, at := ViewOf(tc.s, got.Add(-time.Millisecond)), ViewOf(tc.s, got)
		if !reflect.DeepEqual(ViewOf(tc.s, tc.now), before) {
			t.Errorf("%s: the view changes before %v", tc.name, got)
		}
		if reflect.DeepEqual(before, at) {
			t.Errorf("%s: the view does not change at %v", tc.name, got)
		}
	}
}
