package accounts

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/secrets"
)

func newConfig(t *testing.T) *config.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestServerForKnownProviders(t *testing.T) {
	for in, want := range map[string]string{
		"alice@gmail.com":   "smtp.gmail.com:587",
		"Bob@Hotmail.COM":   "smtp-mail.outlook.com:587",
		"me.com":            "smtp.mail.me.com:587",
		"carol@example.com": "",
	} {
		got, _, _ := ServerFor(in)
		if got != want {
			t.Errorf("ServerFor(%q) = %q, want %q", in, got, want)
		}
	}
}

type brokenStore struct{ secrets.Store }

func (brokenStore) Set(context.Context, string, string) error {
	return errors.New("the keychain is locked")
}

func TestSaveStoresThePasswordBeforeTheConfig(t *testing.T) {
	ctx := context.Background()
	cfg := newConfig(t)
	store := secrets.NewMemory()
	acct := config.Account{Address: "alice@example.com", Server: "smtp.example.com:587"}
	added, err := Save(ctx, cfg, store, acct, "pw1")
	if err != nil || !added {
		t.Fatalf("Save: added %v, %v", added, err)
	}
	if pw, _ := store.Get(ctx, "alice@example.com"); pw != "pw1" {
		t.Errorf("keychain has %q", pw)
	}
	reloaded, err := config.Load(cfg.Path())
	if err != nil || len(reloaded.Accounts) != 1 || reloaded.Accounts[0].Server != "smtp.example.com:587" {
		t.Fatalf("config after Save: %+v, %v", reloaded.Accounts, err)
	}

	// A keychain that refuses leaves the config as it was.
	other := config.Account{Address: "bob@example.com", Server: "smtp.example.com:587"}
	_, err = Save(ctx, cfg, brokenStore{store}, other, "pw2")
	var ke *KeychainError
	if !errors.As(err, &ke) || !strings.Contains(err.Error(), "config was not changed") {
		t.Fatalf("Save with a locked keychain: %v", err)
	}
	if reloaded, _ := config.Load(cfg.Path()); len(reloaded.Accounts) != 1 {
		t.Errorf("the config changed although the password was not stored: %+v", reloaded.Accounts)
	}

	// Saving again updates in place, and an empty password keeps the old.
	acct.Server = "smtp.example.com:465"
	added, err = Save(ctx, cfg, store, acct, "")
	if err != nil || added {
		t.Fatalf("update: added %v, %v", added, err)
	}
	if pw, _ := store.Get(ctx, "alice@example.com"); pw != "pw1" {
		t.Errorf("an update without a password changed it to %q", pw)
	}
}

func TestRemoveDeletesConfigAndKeychainEntry(t *testing.T) {
	ctx := context.Background()
	cfg := newConfig(t)
	store := secrets.NewMemory()
	Save(ctx, cfg, store, config.Account{Address: "alice@example.com", Server: "smtp.example.com:587"}, "pw")
	kerr, err := Remove(ctx, cfg, store, "ALICE@example.com")
	if err != nil || kerr != nil {
		t.Fatalf("Remove: %v, %v", kerr, err)
	}
	if _, err := store.Get(ctx, "alice@example.com"); !errors.Is(err, secrets.ErrNotFound) {
		t.Errorf("keychain entry left: %v", err)
	}
	if reloaded, _ := config.Load(cfg.Path()); len(reloaded.Accounts) != 0 {
		t.Errorf("account left in the config: %+v", reloaded.Accounts)
	}
	if _, err := Remove(ctx, cfg, store, "nobody@example.com"); err == nil {
		t.Error("removing an unknown account succeeded")
	}
}
