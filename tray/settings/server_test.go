package settings

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/shim/secrets"
)

func startServer(t *testing.T) (*Server, *fakeEngine, *secrets.Memory) {
	t.Helper()
	return startServerWith(t, Options{})
}

// startServerWith starts a server with o's extra options (the engine,
// config path, store and version are the test's own).
func startServerWith(t *testing.T, o Options) (*Server, *fakeEngine, *secrets.Memory) {
	t.Helper()
	eng := newFakeEngine()
	store := secrets.NewMemory()
	o.Engine, o.ConfigPath, o.Store, o.Version = eng, filepath.Join(t.TempDir(), "config.toml"), store, "test"
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s, eng, store
}

// browser is an HTTP client with cookies that does not follow redirects.
func browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func login(t *testing.T, s *Server, path string) *http.Client {
	t.Helper()
	c := browser()
	resp, _ := get(t, c, s.OneTimeURL(path))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != path {
		t.Fatalf("login: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	ck := resp.Header.Get("Set-Cookie")
	for _, want := range []string{"HttpOnly", "SameSite=Strict", cookieName + "="} {
		if !strings.Contains(ck, want) {
			t.Errorf("session cookie %q lacks %s", ck, want)
		}
	}
	return c
}

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	_, rest, ok := strings.Cut(body, `name="csrf" value="`)
	if !ok {
		t.Fatal("no CSRF token in the page")
	}
	tok, _, _ := strings.Cut(rest, `"`)
	return tok
}

func TestTheOneTimeLinkWorksOnce(t *testing.T) {
	s, _, _ := startServer(t)
	link := s.OneTimeURL("/outbox")
	c := browser()
	if resp, _ := get(t, c, link); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("first use: %s", resp.Status)
	}
	if resp, body := get(t, browser(), link); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "works once") {
		t.Errorf("second use of the link: %s", resp.Status)
	}
	if resp, _ := get(t, browser(), s.URL()+"/login?t=made-up"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("made-up token: %s", resp.Status)
	}
	if resp, _ := get(t, c, s.URL()+"/outbox"); resp.StatusCode != http.StatusOK {
		t.Errorf("with the session: %s", resp.Status)
	}
}

func TestRequestsWithoutTheSessionAreRefused(t *testing.T) {
	s, _, _ := startServer(t)
	for _, p := range []string{"/", "/accounts", "/outbox", "/activity", "/events", "/guide", "/presets.json"} {
		resp, body := get(t, browser(), s.URL()+p)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "works once") || strings.Contains(body, `aria-label="Sections"`) {
			t.Errorf("GET %s without a session: %s", p, resp.Status)
		}
	}
	resp, err := http.PostForm(s.URL()+"/outbox/retry", url.Values{"csrf": {"x"}})
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST without a session: %v %v", resp.Status, err)
	}
}

func TestAWrongHostIsRefused(t *testing.T) {
	s, _, _ := startServer(t)
	c := login(t, s, "/")
	for _, host := range []string{"evil.example", "evil.example:" + s.port(), "127.0.0.1", "localhost:1"} {
		req, _ := http.NewRequest("GET", s.URL()+"/guide", nil)
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("Host %q: %s", host, resp.Status)
		}
	}
	// A rebinding page can't even use a fresh link.
	req, _ := http.NewRequest("GET", s.OneTimeURL("/"), nil)
	req.Host = "evil.example:" + s.port()
	resp, _ := browser().Do(req)
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("login under another Host: %s", resp.Status)
	}
}

func TestWritesNeedTheCSRFToken(t *testing.T) {
	s, eng, _ := startServer(t)
	eng.mu.Lock()
	eng.queue = []api.QueueEntry{{ID: "m1", From: "a@example.com"}}
	eng.mu.Unlock()
	c := login(t, s, "/outbox")
	_, body := get(t, c, s.URL()+"/outbox")
	tok := csrfOf(t, body)

	for name, form := range map[string]url.Values{"none": {}, "wrong": {"csrf": {"nope"}}} {
		resp, err := c.PostForm(s.URL()+"/outbox/m1/delete", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("delete with %s CSRF token: %s", name, resp.Status)
		}
	}
	req, _ := http.NewRequest("POST", s.URL()+"/outbox/m1/delete", strings.NewReader(url.Values{"csrf": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	if resp, _ := c.Do(req); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin delete: %s", resp.Status)
	}
	if len(eng.calls) != 0 {
		t.Fatalf("a refused write reached the engine: %v", eng.calls)
	}
	resp, err := c.PostForm(s.URL()+"/outbox/m1/delete", url.Values{"csrf": {tok}})
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete with the token: %v %v", resp.Status, err)
	}
	if len(eng.calls) != 1 || eng.calls[0] != "delete m1" {
		t.Errorf("engine calls %v", eng.calls)
	}
}

func TestLaunchNeedsTheHandoffKey(t *testing.T) {
	s, _, _ := startServer(t)
	dir := t.TempDir()
	remove, err := s.WriteHandoff(dir)
	if err != nil {
		t.Fatal(err)
	}
	link, err := RequestURL(dir, "/guide")
	if err != nil || !strings.HasPrefix(link, s.URL()+"/login?t=") {
		t.Fatalf("RequestURL: %q, %v", link, err)
	}
	req, _ := http.NewRequest("POST", s.URL()+"/launch", nil)
	req.Header.Set(LaunchHeader, "guess")
	if resp, _ := http.DefaultClient.Do(req); resp.StatusCode != http.StatusForbidden {
		t.Errorf("launch with a wrong key: %s", resp.Status)
	}
	remove()
	if _, err := RequestURL(dir, "/"); err != ErrNoPage {
		t.Errorf("after removal: %v", err)
	}
}

func TestFirstRunRedirectsToSetupAndRefusesAnIncompleteForm(t *testing.T) {
	s, _, store := startServer(t)
	c := login(t, s, "/")
	resp, _ := get(t, c, s.URL()+"/")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/setup" {
		t.Fatalf("home without accounts: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	_, body := get(t, c, s.URL()+"/setup")
	for _, want := range []string{`<label for="address">`, `<label for="password">`, "Gmail", "smtp.gmail.com:587"} {
		if !strings.Contains(body, want) {
			t.Errorf("setup page lacks %q", want)
		}
	}
	tok := csrfOf(t, body)
	resp, err := c.PostForm(s.URL()+"/accounts", url.Values{"csrf": {tok}, "address": {"carol@unknown.example"}, "password": {"pw"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(b), "outgoing (SMTP) server") {
		t.Errorf("no server for an unknown provider: %s", resp.Status)
	}
	if _, err := store.Get(context.Background(), "carol@unknown.example"); err == nil {
		t.Error("a password was stored for a refused form")
	}
}
