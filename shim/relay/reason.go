package relay

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/smtpshim/smtpshim/shim/upstream"
)

// What a local client hears about a failure is either the provider's own
// reply or TLS verdict (the client hears the truth) or general words next
// to the queue ID; the detail stays in the log under that ID. Internal error text
// can name files, commands and their output (a password_command's
// "gpg: decryption failed for /home/alice/.password-store/..."), which
// is the user's business and not every LAN client's.

// ownWords marks an error whose text smtpshim wrote for clients.
type ownWords struct{ error }

// publicReason describes err for a client in general words.
func publicReason(err error) string {
	var own ownWords
	if errors.As(err, &own) {
		return oneLine(own.Error())
	}
	if se, ok := upstream.SMTPError(err); ok {
		return truncate(oneLine(fmt.Sprintf("the provider answered %d %d.%d.%d %s", se.Code,
			se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)), 200)
	}
	var de *upstream.DialError
	var ne net.Error
	switch {
	case errors.Is(err, upstream.ErrNoTLS):
		return "the provider offers no encryption, so smtpshim will not send the password"
	case errors.Is(err, upstream.ErrAccountDown):
		return "the provider could not be reached a moment ago"
	case errors.As(err, &de):
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return "the provider closed the connection without answering"
		}
		switch de.Step {
		case upstream.StepCredential:
			return "smtpshim could not get the account's password"
		case upstream.StepTLS, upstream.StepStartTLS:
			return "the encrypted connection to the provider failed"
		case upstream.StepAuth:
			return "the provider refused the account's login"
		}
		return "the provider could not be reached" + networkCause(err)
	case errors.As(err, &ne) && ne.Timeout():
		return "the connection to the provider timed out"
	}
	return "a temporary problem"
}

// networkCause is the network's own short word for a failed connection
// ("connection refused", "no such host"), which names no local detail.
func networkCause(err error) string {
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return " (its name could not be resolved)"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return " (" + errno.Error() + ")"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return " (timed out)"
	}
	return ""
}
