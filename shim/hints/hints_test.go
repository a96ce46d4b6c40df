package hints

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/textproto"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func smtpErr(code int, enh smtp.EnhancedCode, msg string) error {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

func TestForSMTPReplies(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"m365 smtp auth disabled", smtpErr(535, smtp.EnhancedCode{5, 7, 139}, "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox."), hintM365AuthDisabled},
		{"m365 smtp auth disabled by text only", smtpErr(535, smtp.EnhancedCodeNotSet, "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant."), hintM365AuthDisabled},
		{"basic auth retired by code", smtpErr(550, smtp.EnhancedCode{5, 7, 30}, "Basic authentication is not supported for Client Submission."), hintBasicAuthRetired},
		{"basic auth retired by text", smtpErr(535, smtp.EnhancedCode{5, 7, 3}, "basic authentication is not supported"), hintBasicAuthRetired},
		{"gmail app password", smtpErr(534, smtp.EnhancedCode{5, 7, 9}, "Application-specific password required. For more information, go to\nhttps://support.google.com/mail/?p=InvalidSecondFactor - gsmtp"), hintAppPassword},
		{"534 5.7.9 other text", smtpErr(534, smtp.EnhancedCode{5, 7, 9}, "Authentication mechanism is too weak"), hintAppPassword},
		{"wrong credentials 5.7.8", smtpErr(535, smtp.EnhancedCode{5, 7, 8}, "Error: authentication failed"), hintBadCredentials},
		{"wrong credentials m365 5.7.3", smtpErr(535, smtp.EnhancedCode{5, 7, 3}, "Authentication unsuccessful"), hintBadCredentials},
		{"wrong credentials no enhanced code", smtpErr(535, smtp.NoEnhancedCode, "authentication failed"), hintBadCredentials},
		{"gmail wrong credentials", smtpErr(535, smtp.EnhancedCode{5, 7, 8}, "Username and Password not accepted. For more information, go to\nhttps://support.google.com/mail/?p=BadCredentials - gsmtp"), hintGmailCredentials},
		{"must issue starttls", smtpErr(530, smtp.EnhancedCode{5, 7, 0}, "Must issue a STARTTLS command first."), hintNeedsTLS},
		{"530 5.7.0 no text", smtpErr(530, smtp.EnhancedCode{5, 7, 0}, ""), hintNeedsTLS},
		{"530 authentication required", smtpErr(530, smtp.EnhancedCode{5, 7, 0}, "Authentication Required."), hintAuthRequired},
		{"m365 client not authenticated", smtpErr(530, smtp.EnhancedCode{5, 7, 57}, "Client not authenticated to send mail."), hintAuthRequired},
		{"538 encryption required", smtpErr(538, smtp.EnhancedCode{5, 7, 11}, "Encryption required for requested authentication mechanism"), hintNeedsTLS},
		{"523 tls required", smtpErr(523, smtp.EnhancedCode{5, 7, 10}, "TLS is required"), hintNeedsTLS},
		{"send as denied by code", smtpErr(550, smtp.EnhancedCode{5, 7, 60}, "SMTP; Client does not have permissions to send as this sender"), hintSendAs},
		{"send as denied by text", smtpErr(554, smtp.EnhancedCode{5, 2, 0}, "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message"), hintSendAs},
		{"tenant blocked storedrv", smtpErr(554, smtp.EnhancedCode{5, 2, 0}, "STOREDRV.Submission.Exception:OutboundSpamException; WASCL UserAction verdict is not None"), hintBlocked},
		{"tenant blocked 5.7.708", smtpErr(550, smtp.EnhancedCode{5, 7, 708}, "Service unavailable. Access denied, traffic not accepted from this IP."), hintBlocked},
		{"tenant blocked 5.7.750", smtpErr(550, smtp.EnhancedCode{5, 7, 750}, "Service unavailable. Client blocked from sending from unregistered domains."), hintBlocked},
		{"daily sending limit", smtpErr(550, smtp.EnhancedCode{5, 4, 5}, "Daily user sending limit exceeded."), hintQuota},
		{"m365 submission quota", smtpErr(554, smtp.EnhancedCode{5, 2, 0}, "STOREDRV.Submission.Exception:SubmissionQuotaExceededException"), hintQuota},
		{"mailbox full", smtpErr(552, smtp.EnhancedCode{5, 2, 2}, "The email account that you tried to reach is over quota."), hintMailboxFull},
		{"message too large", smtpErr(552, smtp.EnhancedCode{5, 3, 4}, "Maximum message size exceeded"), hintTooLarge},
		{"too large by text", smtpErr(554, smtp.EnhancedCode{5, 3, 4}, "Message too large"), hintTooLarge},
		{"421 throttled", smtpErr(421, smtp.EnhancedCode{4, 7, 0}, "Try again later, closing connection."), hintThrottled},
		{"421 too many connections", smtpErr(421, smtp.NoEnhancedCode, "Too many concurrent SMTP connections; please try again later."), hintThrottled},
		{"451 4.7.0 rate", smtpErr(451, smtp.EnhancedCode{4, 7, 0}, "Temporary server error"), hintThrottled},
		{"m365 server busy", smtpErr(451, smtp.EnhancedCode{4, 7, 500}, "Server busy. Please try again later from [203.0.113.5]."), hintThrottled},
		{"rate limit text", smtpErr(450, smtp.NoEnhancedCode, "Rate limit exceeded for this account"), hintThrottled},
		{"454 temporary auth failure", smtpErr(454, smtp.EnhancedCode{4, 7, 0}, "Temporary authentication failure"), hintTempAuth},
		{"unknown recipient", smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "<bob@example.com>: Recipient address rejected: User unknown"), hintUnknownRcpt},
		{"m365 unknown recipient", smtpErr(550, smtp.EnhancedCode{5, 1, 10}, "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"), hintUnknownRcpt},
		{"relay denied", smtpErr(554, smtp.EnhancedCode{5, 7, 1}, "<bob@example.net>: Relay access denied"), hintRelay},
		{"textproto error", &textproto.Error{Code: 535, Msg: "5.7.139 Authentication unsuccessful"}, hintM365AuthDisabled},
		{"enhanced code only in message", smtpErr(550, smtp.EnhancedCodeNotSet, "5.7.60 SMTP; Client does not have permissions"), hintSendAs},
		{"spooled reply text", errors.New("550 5.1.1 User unknown"), hintUnknownRcpt},
		{"spooled m365 reply text", errors.New("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox."), hintM365AuthDisabled},
		{"spooled multi-line reply text", errors.New("534-5.7.9 Application-specific password required."), hintAppPassword},
		{"stringified go-smtp error", errors.New("SMTP error 535: Authentication unsuccessful"), hintBadCredentials},
		{"reply text after context", errors.New("deliver to bob@example.net: 552 5.3.4 Message size exceeds fixed limit"), hintTooLarge},
		{"port number is not a reply", errors.New("dial tcp 10.0.0.1:587: something odd"), ""},
		{"unrecognised refusal", smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "Message rejected due to content restrictions"), ""},
		{"unrecognised temporary", smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Local error in processing"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkHint(t, tt.err, tt.want)
		})
	}
}

// checkHint tests err bare and wrapped, because callers always add context
// ("deliver to x: %w") before an error reaches the log or the tray.
func checkHint(t *testing.T, err error, want string) {
	t.Helper()
	variants := []struct {
		name string
		err  error
	}{
		{"bare", err},
		{"wrapped", fmt.Errorf("auth as alice@example.com: %w", err)},
		{"wrapped twice", fmt.Errorf("account alice@example.com: %w", fmt.Errorf("send: %w", err))},
		{"joined", errors.Join(errors.New("attempt 1 of 3"), err)},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			if got := For(v.err); got != want {
				t.Errorf("For(%v)\n got %q\nwant %q", v.err, got, want)
			}
		})
	}
}

func TestForNil(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"nil", nil},
		{"plain error", errors.New("queue is full")},
		{"eof", io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := For(tt.err); got != "" {
				t.Errorf("For(%v) = %q, want empty", tt.err, got)
			}
		})
	}
}

func TestForNetErrors(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"connection refused", refused, hintRefused},
		{"connection refused windows text", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connectex: No connection could be made because the target machine actively refused it.")}, hintRefused},
		{"real connection refused", realRefused(t), hintRefused},
		{"no such host", &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "smtp.exmaple.com", IsNotFound: true}}, hintNoSuchHost},
		{"dns server failure", &net.DNSError{Err: "server misbehaving", Name: "smtp.example.com", Server: "127.0.0.53:53"}, hintDNS},
		{"dns timeout", &net.DNSError{Err: "i/o timeout", Name: "smtp.example.com", IsTimeout: true}, hintDNS},
		{"deadline exceeded", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, hintTimeout},
		{"real read timeout", realTimeout(t), hintTimeout},
		{"context deadline", context.DeadlineExceeded, hintTimeout},
		{"network unreachable", &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ENETUNREACH}}, hintUnreach},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}, hintReset},
		{"closed before the greeting", realClosed(t), hintClosed},
		{"closed mid-reply", fmt.Errorf("smtp.example.com:587: greeting: %w", io.ErrUnexpectedEOF), hintClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkHint(t, tt.err, tt.want)
		})
	}
}

func realRefused(t *testing.T) error {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := net.Dial("tcp", addr)
	if err == nil {
		c.Close()
		t.Skip("port was reused before the dial")
	}
	return err
}

func realTimeout(t *testing.T) error {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if err := a.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err := a.Read(make([]byte, 1))
	if err == nil {
		t.Fatal("read past deadline succeeded")
	}
	return err
}

func TestForTLSErrors(t *testing.T) {
	now := time.Now()
	ca := newTestCert(t, certSpec{name: "Test CA", isCA: true, notBefore: now.Add(-time.Hour), notAfter: now.Add(time.Hour)}, nil)
	good := newTestCert(t, certSpec{name: "mail.example.com", notBefore: now.Add(-time.Hour), notAfter: now.Add(time.Hour)}, ca)
	expired := newTestCert(t, certSpec{name: "mail.example.com", notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-24 * time.Hour)}, ca)
	selfSigned := newTestCert(t, certSpec{name: "mail.example.com", notBefore: now.Add(-time.Hour), notAfter: now.Add(time.Hour)}, nil)

	tests := []struct {
		name string
		err  error
		want string
	}{
		{"real unknown authority", handshakeErr(t, selfSigned, ca, "mail.example.com"), hintUnknownAuthority},
		{"real hostname mismatch", handshakeErr(t, good, ca, "smtp.other.example"), hintHostname},
		{"real expired", handshakeErr(t, expired, ca, "mail.example.com"), hintExpired},
		{"real tls to plaintext port", plaintextGreetingErr(t), hintPortMismatch},
		{"unknown authority value", x509.UnknownAuthorityError{}, hintUnknownAuthority},
		{"hostname value", x509.HostnameError{Certificate: good.leaf, Host: "smtp.other.example"}, hintHostname},
		{"expired value", x509.CertificateInvalidError{Cert: expired.leaf, Reason: x509.Expired}, hintExpired},
		{"other invalid value", x509.CertificateInvalidError{Cert: good.leaf, Reason: x509.IncompatibleUsage}, hintBadCert},
		{"record header value", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, hintPortMismatch},
		{"binary greeting", textproto.ProtocolError("short response: \x15\x03\x01\x00\x02\x02"), hintPortMismatch},
		{"old server tls", errors.New("tls: server selected unsupported protocol version 301"), hintOldTLS},
		{"verification error wraps unknown authority", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, hintUnknownAuthority},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkHint(t, tt.err, tt.want)
		})
	}
}

type certSpec struct {
	name                string
	isCA                bool
	notBefore, notAfter time.Time
}

type testCert struct {
	leaf *x509.Certificate
	key  *ecdsa.PrivateKey
	tls  tls.Certificate
}

func newTestCert(t *testing.T, spec certSpec, parent *testCert) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: spec.name},
		NotBefore:             spec.notBefore,
		NotAfter:              spec.notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  spec.isCA,
	}
	if !spec.isCA {
		tmpl.DNSNames = []string{spec.name}
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.leaf, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCert{leaf: leaf, key: key, tls: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}}
}

// handshakeErr runs a real handshake so the test sees exactly the error
// chain crypto/tls produces, not one assembled by hand.
func handshakeErr(t *testing.T, server, trusted *testCert, serverName string) error {
	t.Helper()
	sc, cc := loopbackPair(t)
	go func() {
		srv := tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{server.tls}})
		_ = srv.Handshake()
		sc.Close()
	}()
	pool := x509.NewCertPool()
	pool.AddCert(trusted.leaf)
	err := tls.Client(cc, &tls.Config{RootCAs: pool, ServerName: serverName}).Handshake()
	if err == nil {
		t.Fatal("handshake succeeded, want a certificate error")
	}
	return err
}

// loopbackPair uses real TCP rather than net.Pipe: an unbuffered pipe
// deadlocks when both TLS sides write at once (server flight vs. alert).
func loopbackPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		client.Close()
		t.Fatal("accept failed")
	}
	deadline := time.Now().Add(10 * time.Second)
	_ = server.SetDeadline(deadline)
	_ = client.SetDeadline(deadline)
	t.Cleanup(func() {
		server.Close()
		client.Close()
	})
	return server, client
}

// plaintextGreetingErr starts TLS against a server that greets in plain
// SMTP, as happens with security = tls on port 587.
func plaintextGreetingErr(t *testing.T) error {
	t.Helper()
	sc, cc := loopbackPair(t)
	go func() {
		_, _ = sc.Read(make([]byte, 4096)) // the ClientHello
		_, _ = io.WriteString(sc, "220 mail.example.com ESMTP ready\r\n")
		sc.Close()
	}()
	err := tls.Client(cc, &tls.Config{ServerName: "mail.example.com"}).Handshake()
	if err == nil {
		t.Fatal("handshake succeeded against a plaintext server")
	}
	return err
}

func TestHintsNeverEmptyOrMultiline(t *testing.T) {
	all := []string{
		hintM365AuthDisabled, hintBasicAuthRetired, hintAppPassword, hintBadCredentials, hintGmailCredentials,
		hintAuthRequired, hintNeedsTLS, hintSendAs, hintQuota, hintBlocked, hintMailboxFull, hintTooLarge,
		hintThrottled, hintTempAuth, hintUnknownRcpt, hintRelay, hintUnknownAuthority, hintHostname, hintExpired,
		hintBadCert, hintPortMismatch, hintOldTLS, hintRefused, hintNoSuchHost, hintDNS, hintTimeout, hintUnreach, hintReset, hintClosed,
	}
	for i, h := range all {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			if h == "" || strings.ContainsAny(h, "\r\n") {
				t.Errorf("hint %q must be a non-empty single line for the log and tray", h)
			}
		})
	}
}

func TestForAccountNamesTheAccount(t *testing.T) {
	err := &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Username and Password not accepted"}
	h := ForAccount(err, "alice@example.com")
	if !strings.Contains(h, "smtpshim account add alice@example.com") || strings.Contains(h, "ADDRESS") {
		t.Fatalf("hint %q does not name the account", h)
	}
	if h := ForAccount(err, "@example.org"); !strings.Contains(h, "account add @example.org") {
		t.Fatalf("hint %q does not name the domain account", h)
	}
}

// realClosed is what a server that hangs up before its greeting gives a
// STARTTLS client (an overloaded provider, or one that blocks the address).
func realClosed(t *testing.T) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = smtp.NewClientStartTLS(conn, &tls.Config{ServerName: "localhost"})
	if err == nil {
		t.Fatal("no error from a server that hung up")
	}
	return fmt.Errorf("%s: starttls: %w", ln.Addr(), err)
}

func TestForOAuth(t *testing.T) {
	challenge := func(reply error, json string) error {
		return fmt.Errorf("%w (the server's OAuth2 error: %s)", reply, json)
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"token endpoint down", errors.New(`a@example.com: the provider's token endpoint could not be reached: Post "https://login.microsoftonline.com/common/oauth2/v2.0/token": dial tcp: connection refused`), hintTokenEndpoint},
		{"public client flows off", errors.New("a@example.com: the provider refused the sign-in: invalid_client: AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'."), hintPublicClientOff},
		{"secret sent by a public client", errors.New("invalid_client: AADSTS700025: Client is public so neither 'client_assertion' nor 'client_secret' should be presented."), hintPublicClientSecret},
		{"consent", errors.New("a@example.com: Microsoft did not complete the sign-in: consent_required: AADSTS65001: The user or administrator has not consented to use the application"), hintConsent},
		{"redirect mismatch", errors.New("invalid_request: AADSTS50011: The redirect URI 'http://localhost:5555/' specified in the request does not match"), hintRedirectMismatch},
		{"google device scope", errors.New("cannot sign in with a device code: invalid_scope: device flow"), hintGoogleDevice},
		{"google testing expiry", errors.New("a@gmail.com: the provider refused the saved sign-in: invalid_grant: Token has been expired or revoked.; sign in again"), hintGoogleTesting},
		{"revoked grant", errors.New("a@example.com: the provider refused the saved sign-in: invalid_grant: AADSTS50173: The provided grant has expired due to it being revoked"), hintSignInAgain},
		{"sign-in frequency", errors.New("interaction_required: AADSTS70043: The refresh token has expired or is invalid due to sign-in frequency checks by conditional access"), hintSignInAgain},
		{"fresh token refused, auth disabled", fmt.Errorf("smtp.office365.com:587: authentication failed: the server refused a newly issued token too: %w", smtpErr(535, smtp.EnhancedCode{5, 7, 3}, "Authentication unsuccessful [SN4PR0201CA0045.namprd02.prod.outlook.com]")), hintOAuthAuthDisabled},
		{"334 json with 5.7.139", challenge(smtpErr(535, smtp.EnhancedCode{5, 7, 139}, "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant."), `{"status":"401"}`), hintOAuthAuthDisabled},
		{"334 json", challenge(smtpErr(535, smtp.EnhancedCode{5, 7, 8}, "Username and Password not accepted"), `{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`), hintOAuthChallenge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := For(tc.err); got != tc.want {
				t.Errorf("For(%v)\n got %q\nwant %q", tc.err, got, tc.want)
			}
		})
	}
}
