//go:build realpeer

// Tests against a real Secret Service. Run them through the sandbox script,
// which provides a private, throwaway gnome-keyring:
//
//	.ci/with-keyring go test -count=1 -tags realpeer -v ./shim/secrets/

package secrets

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	ss "github.com/zalando/go-keyring/secret_service"
)

const (
	howToRun = "run these tests through the sandbox: .ci/with-keyring go test -count=1 -tags realpeer -v ./shim/secrets/"

	// sandboxPassword is the login keyring password .ci/with-keyring
	// unlocks with; the lock tests need it to unlock again.
	sandboxPassword = "pw"

	loginCollection = dbus.ObjectPath("/org/freedesktop/secrets/collection/login")
)

// requireSecretService fails (never skips: a skipped real test looks like a
// passing one in CI) unless a Secret Service is on the session bus, and
// returns a private connection to it for checks behind go-keyring's back.
func requireSecretService(t *testing.T) *dbus.Conn {
	t.Helper()
	if os.Getenv("DBUS_SESSION_BUS_ADDRESS") == "" {
		t.Fatal("DBUS_SESSION_BUS_ADDRESS is not set, so there is no session bus to find a Secret Service on; " + howToRun)
	}
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		t.Fatalf("cannot connect to the session bus at %s: %v; %s", os.Getenv("DBUS_SESSION_BUS_ADDRESS"), err, howToRun)
	}
	t.Cleanup(func() { conn.Close() })
	var owned bool
	if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, "org.freedesktop.secrets").Store(&owned); err != nil {
		t.Fatalf("cannot ask the session bus for org.freedesktop.secrets: %v; %s", err, howToRun)
	}
	// Only a running service counts: D-Bus activation would start a
	// gnome-keyring whose locked login keyring nobody can unlock here.
	if !owned {
		t.Fatal("org.freedesktop.secrets is not running on the session bus; " + howToRun)
	}
	return conn
}

// requireSandbox guards tests that lock the keyring: on a real desktop that
// would lock the user's own login keyring, which we cannot unlock again.
func requireSandbox(t *testing.T) *dbus.Conn {
	t.Helper()
	conn := requireSecretService(t)
	if os.Getenv("SMTPSHIM_TEST_KEYRING") != "1" {
		t.Fatal("this test locks the login keyring and needs the throwaway one; " + howToRun)
	}
	return conn
}

func uniqueAccount(t *testing.T) string {
	return fmt.Sprintf("realpeer-%d-%d-%s@smtpshim.test", os.Getpid(), time.Now().UnixNano(), strings.ReplaceAll(t.Name(), "/", "-"))
}

// items finds entries by the attributes go-keyring files them under, to
// check what it really wrote.
func items(t *testing.T, conn *dbus.Conn, account string) []dbus.ObjectPath {
	t.Helper()
	var unlocked, locked []dbus.ObjectPath
	err := conn.Object("org.freedesktop.secrets", "/org/freedesktop/secrets").
		Call("org.freedesktop.Secret.Service.SearchItems", 0, map[string]string{"service": Service, "username": account}).
		Store(&unlocked, &locked)
	if err != nil {
		t.Fatalf("SearchItems: %v", err)
	}
	return append(unlocked, locked...)
}

func lockLogin(t *testing.T, conn *dbus.Conn) {
	t.Helper()
	var locked []dbus.ObjectPath
	var prompt dbus.ObjectPath
	err := conn.Object("org.freedesktop.secrets", "/org/freedesktop/secrets").
		Call("org.freedesktop.Secret.Service.Lock", 0, []dbus.ObjectPath{loginCollection}).Store(&locked, &prompt)
	if err != nil || len(locked) != 1 {
		t.Fatalf("locking the login keyring: %v (locked %v, prompt %s)", err, locked, prompt)
	}
	t.Cleanup(func() { unlockLogin(t, conn) })
}

// unlockLogin uses gnome-keyring's private unlock call, as the real unlock
// path is an interactive prompt.
func unlockLogin(t *testing.T, conn *dbus.Conn) {
	t.Helper()
	svc := conn.Object("org.freedesktop.secrets", "/org/freedesktop/secrets")
	var out dbus.Variant
	var session dbus.ObjectPath
	if err := svc.Call("org.freedesktop.Secret.Service.OpenSession", 0, "plain", dbus.MakeVariant("")).Store(&out, &session); err != nil {
		t.Fatalf("OpenSession: %v", err)
	}
	defer conn.Object("org.freedesktop.secrets", session).Call("org.freedesktop.Secret.Session.Close", 0)
	err := svc.Call("org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface.UnlockWithMasterPassword", 0,
		loginCollection, ss.NewSecret(session, sandboxPassword)).Err
	if err != nil {
		t.Fatalf("unlocking the login keyring: %v", err)
	}
}

func TestRealSecretServiceRoundTrip(t *testing.T) {
	conn := requireSecretService(t)
	t.Logf("SMTPSHIM_TEST_KEYRING=%q", os.Getenv("SMTPSHIM_TEST_KEYRING"))
	ctx := context.Background()
	k := NewKeychain(10 * time.Second)
	acct := uniqueAccount(t)
	t.Cleanup(func() { _ = k.Delete(context.Background(), acct) })

	if _, err := k.Get(ctx, acct); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get before Set: want ErrNotFound, got %v", err)
	}
	if err := k.Delete(ctx, acct); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete before Set: want ErrNotFound, got %v", err)
	}

	const first = "first s3cret with spaces, ünïcödé and trailing space "
	if err := k.Set(ctx, acct, first); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if got, err := k.Get(ctx, acct); err != nil || got != first {
		t.Fatalf("Get = %q, %v; want %q", got, err, first)
	}

	const second = "second-s3cret"
	if err := k.Set(ctx, acct, second); err != nil {
		t.Fatalf("overwrite: %v", err)
	}
	if got, err := k.Get(ctx, acct); err != nil || got != second {
		t.Fatalf("Get after overwrite = %q, %v; want %q", got, err, second)
	}
	// Overwriting must replace the item, not add a second one that a
	// later lookup could pick instead.
	if n := len(items(t, conn, acct)); n != 1 {
		t.Fatalf("%d keychain items for the account after overwrite, want 1", n)
	}

	if err := k.Delete(ctx, acct); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := k.Get(ctx, acct); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: want ErrNotFound, got %v", err)
	}
	if err := k.Delete(ctx, acct); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete: want ErrNotFound, got %v", err)
	}
	if n := len(items(t, conn, acct)); n != 0 {
		t.Fatalf("%d keychain items left after Delete", n)
	}
}

// With no display, gnome-keyring cannot show its unlock prompt and the call
// fails at once. Nothing may change while locked.
func TestRealSecretServiceLockedKeyring(t *testing.T) {
	conn := requireSandbox(t)
	ctx := context.Background()
	k := NewKeychain(10 * time.Second)
	acct := uniqueAccount(t)
	t.Cleanup(func() { _ = k.Delete(context.Background(), acct) })
	if err := k.Set(ctx, acct, "kept"); err != nil {
		t.Fatal(err)
	}

	lockLogin(t, conn)
	start := time.Now()
	_, getErr := k.Get(ctx, acct)
	setErr := k.Set(ctx, acct, "locked-new-s3cret")
	delErr := k.Delete(ctx, acct)
	for name, err := range map[string]error{"get": getErr, "set": setErr, "delete": delErr} {
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "unlock") {
			t.Errorf("%s on a locked keyring: want ErrUnavailable telling to unlock, got %v", name, err)
		}
		assertNoSecret(t, err, "locked-new-s3cret")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("locked calls took %s", d)
	}

	unlockLogin(t, conn)
	if got, err := k.Get(ctx, acct); err != nil || got != "kept" {
		t.Fatalf("after unlocking, Get = %q, %v; want the untouched %q", got, err, "kept")
	}
}

// stuckPrompter stands in for gcr-prompter with a user who never answers
// the unlock dialog: the case where go-keyring blocks forever.
type stuckPrompter struct {
	once    sync.Once
	called  chan struct{}
	release chan struct{}
}

// BeginPrompting is what gnome-keyring calls first; not replying keeps its
// prompt, and go-keyring's wait for the Completed signal, pending.
func (p *stuckPrompter) BeginPrompting(dbus.ObjectPath) *dbus.Error {
	p.once.Do(func() { close(p.called) })
	<-p.release
	return dbus.MakeFailedError(errors.New("test prompter dismissed"))
}

func TestRealSecretServiceHungUnlockPromptTimesOut(t *testing.T) {
	conn := requireSandbox(t)
	ctx := context.Background()
	k := NewKeychain(10 * time.Second)
	acct := uniqueAccount(t)
	t.Cleanup(func() { _ = k.Delete(context.Background(), acct) })
	if err := k.Set(ctx, acct, "kept"); err != nil {
		t.Fatal(err)
	}

	p := &stuckPrompter{called: make(chan struct{}), release: make(chan struct{})}
	released := false
	release := func() {
		if !released {
			released = true
			close(p.release)
		}
	}
	t.Cleanup(release)
	if err := conn.Export(p, "/org/gnome/keyring/Prompter", "org.gnome.keyring.internal.Prompter"); err != nil {
		t.Fatal(err)
	}
	reply, err := conn.RequestName("org.gnome.keyring.SystemPrompter", dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("cannot stand in for the system prompter (reply %v, %v); %s", reply, err, howToRun)
	}
	lockLogin(t, conn)

	const timeout = 1500 * time.Millisecond
	short := NewKeychain(timeout)
	start := time.Now()
	_, err = short.Get(ctx, acct)
	elapsed := time.Since(start)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "did not answer within 1.5s") {
		t.Fatalf("want the timeout error, got %v", err)
	}
	if elapsed < timeout || elapsed > timeout+2*time.Second {
		t.Fatalf("Get returned after %s, want about %s", elapsed, timeout)
	}
	select {
	case <-p.called:
	default:
		t.Fatal("the prompter was never asked: the timeout came from somewhere else")
	}

	// The abandoned call finishes once the prompt is dismissed; then the
	// same Keychain works again and the entry is untouched.
	release()
	unlockLogin(t, conn)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := short.Get(ctx, acct)
		if err == nil && got == "kept" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the prompt ended and the keyring was unlocked, Get = %q, %v", got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
