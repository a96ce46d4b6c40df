package oauth

import (
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

func TestXOAUTH2(t *testing.T) {
	c := NewXOAUTH2Client("alice@example.com", "tok")
	mech, ir, err := c.Start()
	if err != nil || mech != "XOAUTH2" || string(ir) != "user=alice@example.com\x01auth=Bearer tok\x01\x01" {
		t.Fatalf("start: %q %q %v", mech, ir, err)
	}
	resp, err := c.Next([]byte(`{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}`))
	if err != nil || resp == nil || len(resp) != 0 {
		t.Fatalf("an error challenge must be answered with an empty line: %q %v", resp, err)
	}
	if d := ChallengeOf(c); d == nil || d.Status != "400" || d.Scope != "https://mail.google.com/" {
		t.Fatalf("challenge not recorded: %+v", d)
	}
	if _, err := c.Next(nil); err == nil {
		t.Fatal("a second challenge was answered")
	}
}

func TestOAuthBearer(t *testing.T) {
	c, _ := NewSASLClient("oauthbearer", "alice@example.com", "tok", "smtp.example.com:587")
	mech, ir, _ := c.Start()
	if mech != "OAUTHBEARER" || !strings.Contains(string(ir), "auth=Bearer tok\x01\x01") || !strings.Contains(string(ir), "host=smtp.example.com\x01port=587") {
		t.Fatalf("start: %q %q", mech, ir)
	}
	resp, err := c.Next([]byte(`{"status":"invalid_token"}`))
	if err != nil || string(resp) != "\x01" {
		t.Fatalf("an error challenge must be answered with %%x01: %q %v", resp, err)
	}
	err = WrapAuthError(c, &smtp.SMTPError{Code: 535, Message: "denied"})
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 535 || !strings.Contains(err.Error(), `"status":"invalid_token"`) {
		t.Fatalf("wrapped: %v", err)
	}
	// Not JSON: nothing of it is kept.
	c2 := NewXOAUTH2Client("u", "secret-token")
	c2.Next([]byte("secret-token echoed"))
	if strings.Contains(ChallengeOf(c2).String(), "secret-token") {
		t.Fatal("an unreadable challenge was kept verbatim")
	}
}

func TestScrubRemovesTheToken(t *testing.T) {
	for _, c := range []sasl.Client{NewXOAUTH2Client("u", "tok-123456"), NewOAuthBearerClient("u", "tok-123456", "h:1")} {
		err := c.(interface{ Scrub(error) error }).Scrub(&smtp.SMTPError{Code: 535, Message: "bad token tok-123456"})
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 535 || strings.Contains(err.Error(), "tok-123456") {
			t.Fatalf("scrubbed: %v", err)
		}
	}
}
