package config

import (
	"strings"
	"testing"
)

// A whole-file setting added below the accounts is explained as such,
// while a real typo in an account is still called an unknown setting.
func TestSettingAfterAnAccountIsExplained(t *testing.T) {
	const acct = "[[account]]\naddress = \"alice@example.com\"\nserver = \"smtp.example.com:587\"\n"
	_, err := Parse([]byte(acct + "listen = [\"127.0.0.1:2526\"]\n"))
	if err == nil || !strings.Contains(err.Error(), "listen is a setting for the whole file") ||
		!strings.Contains(err.Error(), "above the first [[account]]") {
		t.Errorf("listen after an account: %v", err)
	}
	_, err = Parse([]byte(acct + "sever = \"x\"\n"))
	if err == nil || !strings.Contains(err.Error(), "unknown setting account.sever") {
		t.Errorf("a typo in an account: %v", err)
	}
	if _, err := Parse([]byte("listen = [\"127.0.0.1:2526\"]\n" + acct)); err != nil {
		t.Errorf("listen above the accounts: %v", err)
	}
}
