package relay

import (
	"errors"
	"io"
	"testing"

	"github.com/smtpshim/smtpshim/shim/upstream"
)

// A provider that hangs up before its greeting is not a failed encryption:
// the client hears that the provider closed the connection.
func TestPublicReasonOfAHangUp(t *testing.T) {
	for _, step := range []upstream.Step{upstream.StepStartTLS, upstream.StepGreeting, upstream.StepTLS} {
		err := &upstream.DialError{Server: "smtp.example.com:587", Step: step, Err: io.EOF}
		if got, want := publicReason(err), "the provider closed the connection without answering"; got != want {
			t.Errorf("%s: %q, want %q", step, got, want)
		}
	}
	err := &upstream.DialError{Server: "smtp.example.com:587", Step: upstream.StepTLS, Err: errors.New("tls: handshake failure")}
	if got := publicReason(err); got != "the encrypted connection to the provider failed" {
		t.Errorf("a TLS failure: %q", got)
	}
}
