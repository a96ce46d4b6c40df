package main

import (
	"bufio"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestParseSendmailArgs(t *testing.T) {
	tests := []struct {
		args      []string
		from      string
		rcpts     []string
		fromHdr   bool
		dotStops  bool
		wantError bool
	}{
		{args: []string{"bob@example.net"}, rcpts: []string{"bob@example.net"}, dotStops: true},
		{args: []string{"-t", "-i"}, fromHdr: true},
		{args: []string{"-ti"}, fromHdr: true},
		{args: []string{"-it", "x@y.org"}, fromHdr: true, rcpts: []string{"x@y.org"}},
		{args: []string{"-oi", "-f", "<alice@example.com>", "a@x.org,b@x.org"}, from: "alice@example.com", rcpts: []string{"a@x.org", "b@x.org"}},
		{args: []string{"-falice@example.com", "-F", "Alice", "-oem", "--", "-odd@x.org"}, from: "alice@example.com", rcpts: []string{"-odd@x.org"}, dotStops: true},
		{args: []string{"-bs"}, wantError: true},
		{args: []string{"-f"}, wantError: true},
		{args: []string{"-Z"}, wantError: true},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			o, err := parseSendmailArgs(tc.args)
			if tc.wantError {
				if err == nil {
					t.Fatalf("no error for %v", tc.args)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.from != tc.from || o.fromHdr != tc.fromHdr || o.dotStops != tc.dotStops || !slices.Equal(o.rcpts, tc.rcpts) {
				t.Fatalf("got %+v", o)
			}
		})
	}
}

func TestReadHeaderTakesRecipientsAndDropsBcc(t *testing.T) {
	msg := "From: Alice <alice@example.com>\nTo: bob@example.net\nCc: carol@example.net\nBcc: dave@example.net,\n eve@example.net\nSubject: hi\n\nbody\n"
	o := &sendOptions{fromHdr: true}
	hdr, err := readHeader(bufio.NewReader(strings.NewReader(msg)), o)
	if err != nil {
		t.Fatal(err)
	}
	// The From: header is read, but it is not the envelope sender unless
	// --read-envelope-from asks for it.
	if o.hdrFrom != "alice@example.com" || o.from != "" {
		t.Errorf("hdrFrom = %q, from = %q", o.hdrFrom, o.from)
	}
	want := []string{"bob@example.net", "carol@example.net", "dave@example.net", "eve@example.net"}
	if !slices.Equal(o.rcpts, want) {
		t.Errorf("rcpts = %v, want %v", o.rcpts, want)
	}
	if strings.Contains(string(hdr), "Bcc") || strings.Contains(string(hdr), "eve@") {
		t.Errorf("Bcc survived:\n%s", hdr)
	}
	if !strings.Contains(string(hdr), "Subject: hi\n\n") {
		t.Errorf("header lost its end:\n%q", hdr)
	}
}

func TestDotReaderStopsAtLoneDot(t *testing.T) {
	for in, want := range map[string]string{
		"a\nb\n.\nc\n":    "a\nb\n",
		"a\r\n.\r\nafter": "a\r\n",
		"a\n..b\n":        "a\n..b\n",
		"no dot at all":   "no dot at all",
	} {
		got, err := io.ReadAll(&dotReader{r: bufio.NewReader(strings.NewReader(in))})
		if err != nil || string(got) != want {
			t.Errorf("%q: got %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestCheckEnvelopeRefusesQuotedAddresses(t *testing.T) {
	// The From: header of a web form, as net/mail gives it back.
	o := &sendOptions{}
	if _, err := readHeader(bufio.NewReader(strings.NewReader("From: \"bob@other.com> X=\"@example.org\n\nbody\n")), o); err != nil {
		t.Fatal(err)
	}
	o.from = o.hdrFrom // as with --read-envelope-from
	o.rcpts = []string{"bob@example.net"}
	if err := checkEnvelope(o); err == nil || !strings.Contains(err.Error(), "more than one @") {
		t.Fatalf("checkEnvelope(from %q) = %v, want a refusal", o.from, err)
	}
	for _, rc := range []string{"x@example.net> NOTIFY=NEVER", "x@example.net.", "x"} {
		o := &sendOptions{from: "alice@example.com", rcpts: []string{"bob@example.net", rc}}
		if err := checkEnvelope(o); err == nil {
			t.Errorf("checkEnvelope accepted recipient %q", rc)
		}
	}
	if err := checkEnvelope(&sendOptions{from: "alice@example.com", rcpts: []string{"bob@example.net"}}); err != nil {
		t.Fatal(err)
	}
}
