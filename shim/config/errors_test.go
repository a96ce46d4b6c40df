package config

import (
	"strings"
	"testing"
)

func TestTypeMistakesSayWhatIsExpected(t *testing.T) {
	for in, want := range map[string]string{
		"listen = \"127.0.0.1:2525\"\n":                                `line 1: listen must be a list in brackets, e.g. listen = ["127.0.0.1:2525"]; found a string`,
		"[account]\naddress = \"a@example.com\"\nserver = \"x:587\"\n": "line 1: accounts are written [[account]], with two brackets",
		"max_recipients = \"many\"\n":                                  "max_recipients must be a whole number without quotes",
		"starttls = \"yes\"\n":                                         "starttls must be true or false, without quotes",
		"hostname = 5\n":                                               "hostname must be text in double quotes",
		"[[account]]\naddress = \"a@example.com\"\nserver = \"x:587\"\nmax_connections = \"2\"\n": "line 4: account.max_connections must be a whole number",
	} {
		_, err := Parse([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", in, err, want)
		}
		if err != nil && (strings.Contains(err.Error(), "destination has type") || strings.Contains(err.Error(), "incompatible types")) {
			t.Errorf("%q: the error speaks Go: %v", in, err)
		}
	}
}

func TestSyntaxErrorAtTheEndOfALineIsOnThatLine(t *testing.T) {
	for in, want := range map[string]string{
		"hostname = \"relay\"\n[[account]\naddress = \"a@example.com\"\n": "line 2,",
		"hostname = \"relay\nmax_recipients = 5\n":                        "line 1,",
	} {
		_, err := Parse([]byte(in))
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: error %v, want it to start with %q", in, err, want)
		}
	}
}

func TestDuplicateListenAddressIsNamed(t *testing.T) {
	for in, want := range map[string]string{
		"listen = [\"127.0.0.1:2525\", \"127.0.0.1:2525\"]\n":                "listen: 127.0.0.1:2525 is listed twice",
		"listen = [\"[::1]:2525\", \"[0:0::1]:2525\"]\n":                     "listed twice",
		"listen = [\"127.0.0.1:2525\"]\nlisten_tls = [\"127.0.0.1:2525\"]\n": "in both listen and listen_tls",
		"listen_tls = [\"127.0.0.1:4650\", \"127.0.0.1:4650\"]\n":            "listen_tls: 127.0.0.1:4650 is listed twice",
	} {
		_, err := Parse([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", in, err, want)
		}
	}
	if _, err := Parse([]byte("listen = [\"127.0.0.1:2525\", \"[::1]:2525\"]\n")); err != nil {
		t.Errorf("two different addresses: %v", err)
	}
}
