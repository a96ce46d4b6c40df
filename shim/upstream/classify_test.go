package upstream

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/secrets"
)

func TestClassify(t *testing.T) {
	reply := func(code int, enh smtp.EnhancedCode) error {
		return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: "text"}
	}
	dial := func(step Step, err error) error {
		return &DialError{Server: "smtp.example.com:587", Step: step, Err: err}
	}
	for _, tc := range []struct {
		name string
		err  error
		want Verdict
	}{
		{"nil", nil, Delivered},
		{"550 to RCPT", reply(550, smtp.EnhancedCode{5, 1, 1}), Permanent},
		{"553 to MAIL, wrapped", fmt.Errorf("MAIL: %w", reply(553, smtp.EnhancedCode{5, 7, 1})), Permanent},
		{"552 to DATA", reply(552, smtp.EnhancedCode{5, 3, 4}), Permanent},
		{"451 to DATA", reply(451, smtp.EnhancedCode{4, 3, 0}), Temporary},
		{"421 to MAIL", reply(421, smtp.EnhancedCode{4, 4, 2}), Temporary},
		{"no SMTPUTF8", ErrNoSMTPUTF8, Permanent},
		{"connection reset", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, Temporary},
		{"EOF", io.EOF, Temporary},
		{"account down", ErrAccountDown, Temporary},
		{"535 to AUTH", dial(StepAuth, reply(535, smtp.EnhancedCode{5, 7, 8})), CredentialRefused},
		{"534 to AUTH", dial(StepAuth, reply(534, smtp.EnhancedCode{5, 7, 9})), CredentialRefused},
		{"454 to AUTH", dial(StepAuth, reply(454, smtp.EnhancedCode{4, 7, 0})), Temporary},
		{"no common mechanism", dial(StepAuth, ErrNoAuth), Temporary},
		{"server hangs up in AUTH", dial(StepAuth, io.EOF), Temporary},
		{"554 greeting", dial(StepGreeting, reply(554, smtp.EnhancedCode{5, 0, 0})), Temporary},
		{"keychain locked", dial(StepCredential, secrets.ErrUnavailable), Temporary},
		{"no password", dial(StepCredential, secrets.ErrNotFound), Temporary},
		{"held", fmt.Errorf("%w (535)", ErrCredentialHeld), CredentialRefused},
		{"grant revoked at the token endpoint", dial(StepCredential, fmt.Errorf("refresh: %w", refusedErr(true))), CredentialRefused},
		{"token endpoint down", dial(StepCredential, refusedErr(false)), Temporary},
		{"untrusted certificate", dial(StepTLS, x509.UnknownAuthorityError{}), Temporary},
	} {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("%s: Classify(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestTrustProblem(t *testing.T) {
	dial := func(step Step, err error) error {
		return &DialError{Server: "smtp.example.com:587", Step: step, Err: err}
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"no STARTTLS", dial(StepStartTLS, ErrNoTLS), true},
		{"unknown authority", dial(StepTLS, x509.UnknownAuthorityError{}), true},
		{"wrong host name", dial(StepTLS, x509.HostnameError{Host: "x"}), true},
		{"expired", dial(StepTLS, x509.CertificateInvalidError{Reason: x509.Expired}), true},
		{"server alert", dial(StepTLS, &net.OpError{Op: "remote error", Err: errors.New("tls: protocol version not supported")}), true},
		{"crypto/tls refuses the version", dial(StepTLS, errors.New("tls: server selected unsupported protocol version 302")), true},
		{"unreadable ca_file", dial(StepTLS, &os.PathError{Op: "open", Path: "/x.pem", Err: syscall.ENOENT}), true},
		{"reset in the handshake", dial(StepTLS, &net.OpError{Op: "read", Err: syscall.ECONNRESET}), false},
		{"EOF in the handshake", dial(StepTLS, io.EOF), false},
		{"454 to STARTTLS", dial(StepStartTLS, &smtp.SMTPError{Code: 454, Message: "TLS not available"}), false},
		{"connect refused", dial(StepConnect, syscall.ECONNREFUSED), false},
		{"535 to AUTH", dial(StepAuth, &smtp.SMTPError{Code: 535}), false},
	} {
		if got := TrustProblem(tc.err); got != tc.want {
			t.Errorf("%s: TrustProblem(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestCredentialProblem(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&DialError{Step: StepAuth, Mechanism: MechPlain, Err: &smtp.SMTPError{Code: 535}}, ProblemPasswordRejected},
		{&DialError{Step: StepAuth, Mechanism: MechXOAUTH2, Err: &smtp.SMTPError{Code: 535}}, ProblemSignInNeeded},
		{&DialError{Step: StepCredential, Err: secrets.ErrUnavailable}, ProblemKeychainUnavailable},
		{&DialError{Step: StepCredential, Err: secrets.ErrNotFound}, ProblemNoPassword},
		{&DialError{Step: StepConnect, Err: syscall.ECONNREFUSED}, ""},
		{&smtp.SMTPError{Code: 550}, ""},
	} {
		if got := CredentialProblem(tc.err); got != tc.want {
			t.Errorf("CredentialProblem(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// refusedErr is a credential error that says whether the provider refused
// the credential (RefusedCredential).
type refusedErr bool

func (r refusedErr) Error() string           { return "token endpoint said no" }
func (r refusedErr) CredentialRefused() bool { return bool(r) }
