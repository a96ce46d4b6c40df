package tray

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

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
