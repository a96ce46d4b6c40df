package secrets

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zalando/go-keyring"
)

// fakeBackend is a keychain whose calls can be made to hang, like the
// Secret Service waiting on an unlock prompt, and which records what it was
// asked to do.
type fakeBackend struct {
	mu      sync.Mutex
	calls   []string
	data    map[string]string
	block   chan struct{} // when non-nil, calls wait for it to close
	entered chan string   // when non-nil, gets the op name as a call starts
	err     error
}

func newFake() *fakeBackend { return &fakeBackend{data: map[string]string{}} }

func (f *fakeBackend) enter(op string) {
	f.mu.Lock()
	f.calls = append(f.calls, op)
	block, entered := f.block, f.entered
	f.mu.Unlock()
	if entered != nil {
		entered <- op
	}
	if block != nil {
		<-block
	}
}

func (f *fakeBackend) backend() keyringBackend {
	return keyringBackend{
		get: func(service, user string) (string, error) {
			f.enter("get")
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.err != nil {
				return "", f.err
			}
			v, ok := f.data[service+"/"+user]
			if !ok {
				return "", keyring.ErrNotFound
			}
			return v, nil
		},
		set: func(service, user, password string) error {
			f.enter("set")
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.err != nil {
				return f.err
			}
			f.data[service+"/"+user] = password
			return nil
		},
		del: func(service, user string) error {
			f.enter("delete")
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.err != nil {
				return f.err
			}
			if _, ok := f.data[service+"/"+user]; !ok {
				return keyring.ErrNotFound
			}
			delete(f.data, service+"/"+user)
			return nil
		},
	}
}

func (f *fakeBackend) callLog() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, ",")
}

func fakeKeychain(t *testing.T, timeout time.Duration) (*Keychain, *fakeBackend) {
	t.Helper()
	f := newFake()
	k := NewKeychain(timeout)
	k.backend = f.backend()
	return k, f
}

// hang makes every backend call block until the test ends, so that
// goroutines given up on do not outlive it.
func (f *fakeBackend) hang(t *testing.T) {
	f.mu.Lock()
	f.block = make(chan struct{})
	release := f.block
	f.mu.Unlock()
	t.Cleanup(func() { close(release) })
}

func TestKeychainTimeoutWhenBackendHangs(t *testing.T) {
	k, f := fakeKeychain(t, 150*time.Millisecond)
	f.hang(t)

	start := time.Now()
	_, err := k.Get(context.Background(), "alice@example.com")
	elapsed := time.Since(start)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("want ErrUnavailable, got %v", err)
	}
	if elapsed < 100*time.Millisecond || elapsed > 2*time.Second {
		t.Fatalf("Get returned after %s, want about the 150ms timeout", elapsed)
	}
	for _, want := range []string{"did not answer within 150ms", "locked", "unlock", "alice@example.com"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("timeout error lacks %q: %v", want, err)
		}
	}
}

func TestKeychainContextBeatsTimeout(t *testing.T) {
	k, f := fakeKeychain(t, time.Minute)
	f.hang(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()

	start := time.Now()
	err := k.Set(ctx, "alice@example.com", "pw")
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want ErrUnavailable wrapping the ctx error, got %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Set ignored ctx: took %s", d)
	}
}

// A call given up on is still pending in the keychain. A later call must
// not overtake it, or a stale Delete could remove a secret stored after it.
func TestKeychainCallsAfterATimeoutWaitTheirTurn(t *testing.T) {
	k, f := fakeKeychain(t, 100*time.Millisecond)
	f.mu.Lock()
	release := make(chan struct{})
	f.block = release
	f.mu.Unlock()

	if err := k.Delete(context.Background(), "alice@example.com"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Delete: want ErrUnavailable, got %v", err)
	}
	// The Delete is still stuck; Set must not reach the backend at all.
	err := k.Set(context.Background(), "alice@example.com", "new")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "earlier keychain call is still waiting") {
		t.Fatalf("Set while Delete is pending: want ErrUnavailable, got %v", err)
	}
	if got := f.callLog(); got != "delete" {
		t.Fatalf("backend calls = %q, want only the stuck delete", got)
	}

	f.mu.Lock()
	f.block = nil
	f.mu.Unlock()
	close(release)
	// Once the stuck call is over, the keychain is usable again.
	deadline := time.Now().Add(2 * time.Second)
	for {
		err = k.Set(context.Background(), "alice@example.com", "new")
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("Set after the stuck call finished: %v", err)
	}
	if got, err := k.Get(context.Background(), "alice@example.com"); err != nil || got != "new" {
		t.Fatalf("Get = %q, %v", got, err)
	}
}

// Failures must not make Keychain "repair" anything by deleting or
// rewriting entries.
func TestKeychainFailuresNeverWrite(t *testing.T) {
	k, f := fakeKeychain(t, time.Second)
	f.data[Service+"/alice@example.com"] = "old"
	f.err = errors.New("org.freedesktop.DBus.Error.NoReply")

	if _, err := k.Get(context.Background(), "alice@example.com"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get: %v", err)
	}
	if err := k.Set(context.Background(), "alice@example.com", "new"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Set: %v", err)
	}
	if got := f.callLog(); got != "get,set" {
		t.Fatalf("backend calls = %q, want exactly get,set", got)
	}
	if f.data[Service+"/alice@example.com"] != "old" {
		t.Fatal("entry changed")
	}
}

func TestKeychainBackendPanicIsAnError(t *testing.T) {
	k, _ := fakeKeychain(t, time.Second)
	k.backend.set = func(_, _, password string) error { panic("boom: " + password) }
	err := k.Set(context.Background(), "alice@example.com", "panic-s3cr3t")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("want ErrUnavailable about a panic, got %v", err)
	}
	assertNoSecret(t, err, "panic-s3cr3t")
	// And the keychain is not left marked busy.
	k.backend.set = func(_, _, _ string) error { return nil }
	if err := k.Set(context.Background(), "alice@example.com", "x"); err != nil {
		t.Fatalf("Set after a panic: %v", err)
	}
}

func TestKeychainEntryLayout(t *testing.T) {
	k, f := fakeKeychain(t, time.Second)
	if err := k.Set(context.Background(), "@example.com", "pw"); err != nil {
		t.Fatal(err)
	}
	if f.data["smtpshim/@example.com"] != "pw" {
		t.Fatalf("entry not filed as (Service, account): %v", f.data)
	}
	if err := k.Set(context.Background(), "", "pw"); err == nil {
		t.Fatal("empty account accepted")
	}
}

// go-keyring's mock replaces the real provider for the rest of the process,
// so these run in a child process of their own.
func TestKeychainWithGoKeyringMock(t *testing.T) {
	if !isolated(t) {
		return
	}
	keyring.MockInit()
	ctx := context.Background()
	k := NewKeychain(time.Second)
	// Straight to go-keyring: the platform guard would look for a real bus.
	k.backend = keyringBackend{get: keyring.Get, set: keyring.Set, del: keyring.Delete}
	const acct = "alice@example.com"

	_, err := k.Get(ctx, acct)
	if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get before Set: want only ErrNotFound, got %v", err)
	}
	if !strings.Contains(err.Error(), acct) || !strings.Contains(err.Error(), "smtpshim account add") {
		t.Fatalf("not-found error should name the account and the fix: %v", err)
	}
	if err := k.Delete(ctx, acct); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete of missing entry: want ErrNotFound, got %v", err)
	}
	if err := k.Set(ctx, acct, "one"); err != nil {
		t.Fatal(err)
	}
	if v, err := keyring.Get(Service, acct); err != nil || v != "one" {
		t.Fatalf("entry not stored under service %q: %q, %v", Service, v, err)
	}
	if err := k.Set(ctx, acct, "two"); err != nil {
		t.Fatal(err)
	}
	if got, err := k.Get(ctx, acct); err != nil || got != "two" {
		t.Fatalf("Get after overwrite = %q, %v", got, err)
	}
	if err := k.Delete(ctx, acct); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Get(ctx, acct); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}

	keyring.MockInitWithError(errors.New("keychain exploded"))
	if _, err := k.Get(ctx, acct); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "keychain exploded") {
		t.Fatalf("backend error: want ErrUnavailable with its text, got %v", err)
	}
	if err := k.Set(ctx, acct, "mock-s3cr3t"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Set with backend error: %v", err)
	} else {
		assertNoSecret(t, err, "mock-s3cr3t")
	}
	if err := k.Delete(ctx, acct); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Delete with backend error: %v", err)
	}

	keyring.MockInitWithError(keyring.ErrSetDataTooBig)
	if err := k.Set(ctx, acct, "x"); err == nil || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "too long") {
		t.Fatalf("too-big secret: want a plain 'too long' error, got %v", err)
	}
}

func TestKeychainConcurrentCallers(t *testing.T) {
	k, _ := fakeKeychain(t, 5*time.Second)
	var wg sync.WaitGroup
	var failures atomic.Int32
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acct := string(rune('a'+i)) + "@example.com"
			for range 50 {
				if err := k.Set(context.Background(), acct, "pw"); err != nil {
					failures.Add(1)
				}
				if _, err := k.Get(context.Background(), acct); err != nil {
					failures.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d calls failed", n)
	}
}
