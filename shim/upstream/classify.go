package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"syscall"
)

// Verdict is what an attempt's error means for the message.
type Verdict int

// The verdicts, from the best to the one that needs a person.
const (
	// Delivered: no error.
	Delivered Verdict = iota
	// Temporary: keep the message and try again later (4xx, network
	// trouble, a credential that could not be read just now).
	Temporary
	// Permanent: the provider refused this message or recipient for good
	// (5xx to MAIL, RCPT or DATA); tell the client or bounce.
	Permanent
	// CredentialRefused: the provider refused the account's credential
	// (5xx to AUTH, a revoked token). It is not the message's fault: keep
	// it, hold the account's mail and ask the user to fix the credential,
	// as Postfix's smtp_sasl_auth_soft_bounce does.
	CredentialRefused
)

func (v Verdict) String() string {
	switch v {
	case Delivered:
		return "delivered"
	case Temporary:
		return "temporary"
	case Permanent:
		return "permanent"
	case CredentialRefused:
		return "credential refused"
	}
	return "unknown"
}

// Classify is the one place that tells what an error from the pool, a
// transaction or a dial means. The relay and the queue both decide by it.
func Classify(err error) Verdict {
	if err == nil {
		return Delivered
	}
	if errors.Is(err, ErrCredentialHeld) {
		return CredentialRefused
	}
	var de *DialError
	if errors.As(err, &de) {
		// Whatever the server said while we were connecting, no
		// message was refused yet. Only a refusal of AUTH itself (535
		// 5.7.8, 534 5.7.9, 5.7.139, ...) is the credential's fault; a
		// 454 4.7.0 to AUTH is the provider's temporary trouble.
		if de.Step == StepAuth {
			if se, ok := SMTPError(de.Err); ok && se.Code >= 500 && se.Code < 600 {
				return CredentialRefused
			}
		}
		// A credential the provider refused before any server saw it
		// (a revoked OAuth2 grant) is the same: a person must act.
		if de.Step == StepCredential && refusedCredential(de.Err) {
			return CredentialRefused
		}
		return Temporary
	}
	if se, ok := SMTPError(err); ok && se.Code >= 500 && se.Code < 600 {
		return Permanent
	}
	return Temporary
}

// TrustProblem reports whether the provider's identity could not be
// verified, or it would not encrypt: retrying blindly could hand the
// credential to an impostor, so a waiting client is told at once (454)
// instead of the message being queued.
func TrustProblem(err error) bool {
	if errors.Is(err, ErrNoTLS) {
		return true
	}
	var de *DialError
	if !errors.As(err, &de) || (de.Step != StepTLS && de.Step != StepStartTLS) {
		return false
	}
	var (
		cv *tls.CertificateVerificationError
		ua x509.UnknownAuthorityError
		he x509.HostnameError
		ci x509.CertificateInvalidError
	)
	if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) {
		return true
	}
	// A TLS alert from the server (e.g. "protocol version" from one that
	// stops at TLS 1.1) arrives as a *net.OpError "remote error" holding
	// crypto/tls's unexported alert type (tls.AlertError is only for
	// QUIC): the server and smtpshim cannot agree, and trying again will
	// not change that.
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" {
		return true
	}
	if networkFailure(err) {
		return false
	}
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		// Not TLS at all on that port: a setting mismatch, which the hint
		// explains; the client's message is queued meanwhile.
		return false
	}
	if _, ok := SMTPError(err); ok {
		return false // the server's own 4xx/5xx to STARTTLS
	}
	// What remains at the TLS step is crypto/tls refusing the handshake
	// itself, e.g. a server that chose TLS 1.1 or an unusable cipher, and
	// an unreadable ca_file. crypto/tls has no typed error for its own
	// handshake refusals, so they are known by elimination.
	return true
}

// networkFailure reports a connection that failed or was cut, as opposed to
// a peer that answered with something unacceptable.
func networkFailure(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op != "remote error"
}
