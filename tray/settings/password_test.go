package settings

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

// An account whose password the provider rejected shows the provider's
// reply and a field for a new one; storing a working password tests it
// and sends the held mail.
func TestANewPasswordForARejectedAccountSendsTheHeldMail(t *testing.T) {
	sim, err := upstreamsim.Start(upstreamsim.Options{Users: map[string]string{"alice@example.com": "new-pw"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	s, eng, store := startServer(t)
	caf := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caf, sim.Cert.CAPEM, 0o644)
	os.WriteFile(s.o.ConfigPath, []byte(fmt.Sprintf("[[account]]\naddress = \"alice@example.com\"\nserver = %q\nca_file = %q\n", sim.Addr, caf)), 0o600)
	store.Set(context.Background(), "alice@example.com", "old-pw")
	eng.mu.Lock()
	eng.st.Accounts = []api.Account{{
		Key: "alice@example.com", State: api.AccountNeedsAttention, Problem: "password rejected", Queued: 2,
		LastError: "535 5.7.8 Username and Password not accepted", Hint: "the provider refused the password",
	}}
	eng.queue = []api.QueueEntry{{ID: "m1", Held: true}, {ID: "m2", Held: true}}
	eng.mu.Unlock()

	c := login(t, s, "/accounts/alice@example.com")
	_, body := get(t, c, s.URL()+"/accounts/alice@example.com")
	for _, want := range []string{"This account needs you", "535 5.7.8 Username and Password not accepted", `<label for="newpw">`, "2 waiting"} {
		if !strings.Contains(body, want) {
			t.Errorf("account page lacks %q", want)
		}
	}
	if strings.Contains(body, "old-pw") {
		t.Fatal("the page shows the stored password")
	}
	resp, err := c.PostForm(s.URL()+"/accounts/alice@example.com/password", url.Values{"csrf": {csrfOf(t, body)}, "password": {"new-pw"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "It works") || !strings.Contains(string(b), "2 waiting message(s) are on their way") {
		t.Errorf("after the new password:\n%s", b)
	}
	if pw, _ := store.Get(context.Background(), "alice@example.com"); pw != "new-pw" {
		t.Errorf("stored password %q", pw)
	}
	eng.mu.Lock()
	defer eng.mu.Unlock()
	if eng.reloads != 1 || len(eng.calls) != 1 || eng.calls[0] != "retry " {
		t.Errorf("engine: %d reloads, calls %v; want a reload and a retry of everything", eng.reloads, eng.calls)
	}
	if strings.Contains(string(b), "new-pw") {
		t.Error("the result page shows the password")
	}
}
