package listener

import (
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/config"
)

func TestAuthTokensAreOneTimeAndBoundToTheConnection(t *testing.T) {
	srv := New(Options{Config: &config.Config{Hostname: "shim.test"}})
	now := time.Now()
	srv.authGuard.now = func() time.Time { return now }
	if _, err := srv.IssueAuthToken("not an address"); err == nil {
		t.Fatal("a token for no address")
	}
	tok, err := srv.IssueAuthToken("127.0.0.1:40001")
	if err != nil {
		t.Fatal(err)
	}
	g := srv.authGuard
	if g.takeToken(tok, "127.0.0.1:40002") {
		t.Fatal("the token worked on another connection")
	}
	if !g.takeToken(tok, "127.0.0.1:40001") {
		t.Fatal("the token did not work on its connection")
	}
	if g.takeToken(tok, "127.0.0.1:40001") {
		t.Fatal("the token worked twice")
	}
	late, _ := srv.IssueAuthToken("127.0.0.1:40003")
	now = now.Add(tokenLife + time.Second)
	if g.takeToken(late, "127.0.0.1:40003") {
		t.Fatal("an expired token worked")
	}
}
