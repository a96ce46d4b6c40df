package listener

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
)

func TestStockRepliesInSmtpshimsWords(t *testing.T) {
	for in, want := range map[string]string{
		"250 2.0.0 Roger, accepting mail from <a@example.com>\r\n":                                "250 2.0.0 Sender <a@example.com> OK\r\n",
		"250 2.0.0 I'll make sure <b@example.net> gets this\r\n":                                  "250 2.0.0 Recipient <b@example.net> OK\r\n",
		"501 5.5.2 Was expecting MAIL arg syntax of FROM:<address>\r\n":                           "501 5.5.2 Syntax error: write MAIL FROM:<you@example.com>, a full address with its domain, in angle brackets\r\n",
		"501 5.5.2 Was expecting RCPT arg syntax of TO:<address>\r\n":                             "501 5.5.2 Syntax error: write RCPT TO:<someone@example.com>, a full address with its domain, in angle brackets\r\n",
		"452 4.5.3 Maximum limit of 100 recipients reached\r\n":                                   "452 4.5.3 Too many recipients: smtpshim takes at most 100 per message (max_recipients); send the others in another message\r\n",
		"250-smtpshim\r\n250-PIPELINING\r\n250 8BITMIME\r\n":                                      "250-smtpshim\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
		"250 2.0.0 OK: queued as 12345\r\n":                                                       "250 2.0.0 OK: queued as 12345\r\n",
		"250 2.0.0 Roger, accepting mail from <>\r\n250 2.0.0 I'll make sure <x@y> gets this\r\n": "250 2.0.0 Sender <> OK\r\n250 2.0.0 Recipient <x@y> OK\r\n",
		"552 5.3.4 Max message size exceeded\r\n":                                                 "552 5.3.4 The message is larger than smtpshim's max_message_size; it was not sent\r\n",
		"354 Go ahead. End your data with <CR><LF>.<CR><LF>\r\n":                                  "354 Send the message; end it with a line holding only a dot\r\n",
		"502 5.5.1 Missing MAIL FROM command.\r\n":                                                "502 5.5.1 Give MAIL FROM first\r\n",
		"502 5.5.1 Missing RCPT TO command.\r\n":                                                  "502 5.5.1 Give at least one RCPT TO first\r\n",
		"500 5.4.0 Too long line, closing connection\r\n":                                         "500 5.4.0 Line too long; closing the connection\r\n",
		// Only whole stock replies are rewritten.
		"452 4.5.3 Maximum limit of many recipients reached\r\n": "452 4.5.3 Maximum limit of many recipients reached\r\n",
		"552 5.3.4 Max message size exceeded by far\r\n":         "552 5.3.4 Max message size exceeded by far\r\n",
		"354 Go ahead.\r\n": "354 Go ahead.\r\n",
	} {
		got, _ := rewriteReplies([]byte(in))
		if string(got) != want {
			t.Errorf("%q:\n got %q\nwant %q", in, got, want)
		}
		if in == want {
			continue // a deliberately unmatched line
		}
		for _, stock := range []string{"Roger", "I'll make sure", "Was expecting", "Maximum limit"} {
			if strings.Contains(string(got), stock) {
				t.Errorf("%q still says %q", got, stock)
			}
		}
	}
}

func TestRefusalsAreFoundAndSorted(t *testing.T) {
	for in, want := range map[string]string{
		"552 5.3.4 Max message size exceeded\r\n":                                  "too big",
		"500 5.5.2 line too long (over 65536 bytes); the message was not sent\r\n": "line too long",
		"421 4.4.2 timed out while receiving the message; it was not sent\r\n":     "timed out",
		"501 5.5.2 Was expecting MAIL arg syntax of FROM:<address>\r\n":            "bad syntax",
		"452 4.5.3 Maximum limit of 2 recipients reached\r\n":                      "over the recipient limit",
		"550 5.7.1 sender <x@unknown.example> has no account in smtpshim\r\n":      "refused sender",
		"553 5.1.8 the sender address <you> needs a domain\r\n":                    "refused sender",
	} {
		_, refusals := rewriteReplies([]byte(in))
		if len(refusals) != 1 {
			t.Fatalf("%q: refusals %q", in, refusals)
		}
		if _, why := refusalReason(refusals[0]); why != want {
			t.Errorf("%q: reason %q, want %q", in, why, want)
		}
	}
	if _, r := rewriteReplies([]byte("250-a\r\n250 b\r\n354 go\r\n")); len(r) != 0 {
		t.Errorf("refusals in a success: %q", r)
	}
}

func TestReplyWatchLogsEveryRefusal(t *testing.T) {
	var logBuf bytes.Buffer
	w := &replyWatch{log: slog.New(slog.NewTextHandler(&logBuf, nil)), client: "127.0.0.1:40000"}
	a, b := net.Pipe()
	defer a.Close()
	got := make(chan string, 1)
	go func() { d, _ := io.ReadAll(b); got <- string(d) }()
	w.setFrom("alice@example.com")
	for _, r := range []string{
		"250 2.0.0 Roger, accepting mail from <alice@example.com>\r\n",
		"452 4.5.3 Maximum limit of 1 recipients reached\r\n",
		"552 5.3.4 Max message size exceeded\r\n",
	} {
		if n, err := w.write(a, []byte(r)); n != len(r) || err != nil {
			t.Fatalf("write %q = %d, %v", r, n, err)
		}
	}
	tlsRecord := []byte{0x17, 0x03, 0x03, 0x00, 0x02, '\r', '\n'}
	w.write(a, tlsRecord)
	a.Close()
	out := <-got
	if !strings.HasPrefix(out, "250 2.0.0 Sender <alice@example.com> OK\r\n452 4.5.3 Too many recipients") || !strings.HasSuffix(out, string(tlsRecord)) {
		t.Errorf("the client got %q", out)
	}
	log := logBuf.String()
	for _, want := range []string{
		`msg=refused client=127.0.0.1:40000 from=alice@example.com code=452 reason="over the recipient limit"`,
		`code=552 reason="too big"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	}
	if strings.Count(log, "msg=refused") != 2 {
		t.Errorf("want two refusal lines:\n%s", log)
	}
}
