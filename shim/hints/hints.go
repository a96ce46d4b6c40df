// Package hints turns well-known upstream refusals and connection failures
// into plain-language advice. Raw SMTP replies such as "535 5.7.139" mean
// nothing to most users, and the fix is usually one setting away; the log,
// the tray and `smtpshim account test` all show the same sentence so the
// advice is consistent wherever the user first meets the problem.
package hints

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/textproto"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/secrets"
)

// Hint texts are shared by several rules, and tests compare against them.
const (
	hintM365AuthDisabled = "the provider says SMTP AUTH is disabled for this mailbox: enable Authenticated SMTP for it in the Microsoft 365 admin center (Users → Mail → Manage email apps)"
	hintBasicAuthRetired = "the provider no longer accepts a plain password (basic authentication) for this mailbox: create an app password if the provider offers them and store it with `smtpshim account add ADDRESS`; otherwise the mailbox needs OAuth2 sign-in"
	hintAppPassword      = "the provider requires an app password instead of the normal password: create one in the Google account (Security → 2-Step Verification → App passwords, https://myaccount.google.com/apppasswords) or the provider's equivalent, and store it with `smtpshim account add ADDRESS`"
	hintBadCredentials   = "the provider rejected the username or password: check both, then store the password again with `smtpshim account add ADDRESS`"
	hintGmailCredentials = hintBadCredentials + "; Gmail accepts only an app password here (https://myaccount.google.com/apppasswords)"
	hintAuthRequired     = "the server wants a sign-in before it accepts mail: make sure the account has a username and a stored password (`smtpshim account add ADDRESS`)"
	hintNeedsTLS         = "the server requires encryption before sign-in: set security to starttls (port 587) or tls (port 465) for this account"
	hintSendAs           = "the provider refused the From address: it must be the mailbox's own address or one the mailbox is allowed to send as (in Microsoft 365, a \"Send As\" permission or an alias of the mailbox)"
	hintQuota            = "the account has hit the provider's sending limit (too many messages or recipients in a day): wait for the limit to reset or ask the provider to raise it"
	hintBlocked          = "the provider has blocked outgoing mail for this account or organisation, usually after it was flagged for sending spam: the administrator must get it unblocked (Microsoft 365: Defender portal → Restricted entities) and check the account is not compromised"
	hintMailboxFull      = "the recipient's mailbox is full: the recipient has to make room, or try again later"
	hintTooLarge         = "the message is too large for the provider: send smaller attachments, or share big files with a link instead"
	hintThrottled        = "the provider is throttling this account (too many connections or messages in a short time): smtpshim keeps the message and retries later"
	hintTempAuth         = "the provider could not check the credentials just now: smtpshim keeps the message and retries later"
	hintUnknownRcpt      = "the recipient address does not exist at the receiving end: check it for typos"
	hintRelay            = "the server will not relay this message: make sure the account signs in and that the From address belongs to the account"

	hintUnknownAuthority = "the server's certificate is not signed by an authority this computer trusts: something may be intercepting the connection (antivirus, corporate proxy); only if you run this mail server yourself with a private CA or a self-signed certificate, set ca_file to that certificate"
	hintHostname         = "the server's certificate is for a different name than the configured server: use the exact host name the provider documents (not an IP address or an alias)"
	hintExpired          = "the server's certificate has expired or is not valid yet: check this computer's date and time; if the server is your own, renew its certificate"
	hintBadCert          = "the server's certificate is not acceptable for a mail server: if the server is your own, fix its certificate; otherwise contact the provider"
	hintPortMismatch     = "the security setting does not match the port: use port 587 with security starttls, or port 465 with security tls"
	hintOldTLS           = "the server only offers an outdated TLS version or cipher that smtpshim refuses: the server needs updating, or use the provider's current submission host"

	hintOAuthAuthDisabled  = "the provider refused a fresh OAuth2 token for SMTP: SMTP AUTH is most likely disabled for this mailbox or the whole tenant. In Microsoft 365 turn on Authenticated SMTP for the mailbox (admin center → Users → Active users → the user → Mail → Manage email apps) and, if the tenant blocks it, for the organisation (Exchange admin center → Settings → Mail flow → untick \"Turn off SMTP AUTH protocol for your organization\", or Set-TransportConfig -SmtpClientAuthenticationDisabled $false); also check that the app registration has the delegated SMTP.Send permission. Then run `smtpshim account login ADDRESS`"
	hintTokenEndpoint      = "the provider's sign-in service (its OAuth2 token endpoint) could not be reached or failed, so smtpshim could not get a new access token: check the network connection; the mail is kept and smtpshim tries again by itself"
	hintPublicClientOff    = "the app registration does not allow public client flows: in the Azure portal open the app → Authentication → Advanced settings → set \"Allow public client flows\" to Yes, save, and sign in again (smtpshim is a desktop app and has no client secret)"
	hintPublicClientSecret = "a client secret was sent for a Microsoft public client: remove client_secret from the [[oauth_provider]] section; desktop apps sign in without one"
	hintConsent            = "the app has not been granted consent to send mail for this user: sign in again and accept the consent screen, or, if the organisation does not let users consent, ask an administrator to grant admin consent for the app's SMTP.Send and offline_access permissions (Entra admin center → Enterprise applications → the app → Permissions)"
	hintRedirectMismatch   = "the app registration does not list smtpshim's redirect address: in the Azure portal open the app → Authentication → Add a platform → \"Mobile and desktop applications\" → add the custom redirect URI http://localhost, save, and sign in again"
	hintSignInAgain        = "the provider ended smtpshim's sign-in (a password change, revoked consent, an administrator's sign-in policy, or a long time unused): run `smtpshim account login ADDRESS`; the account's held mail goes out afterwards"
	hintGoogleTesting      = "Google ended smtpshim's sign-in. If your Google Cloud app is still in \"Testing\", its sign-ins expire after 7 days: publish it (Google Auth Platform → Audience → Publish app; an app for your own use needs no verification) and run `smtpshim account login ADDRESS`; otherwise the access was revoked in the Google account, and signing in again fixes it too"
	hintGoogleDevice       = "Google does not allow the device sign-in for the mail scope: sign in with the browser instead (leave out --device)"
	hintOAuthChallenge     = "the server refused the OAuth2 access token; its own explanation is the JSON in the error. A status of 400 or invalid_request usually means a malformed request or the wrong user name; 401 or invalid_token a token that expired or was revoked (smtpshim fetches a new one and, if that fails too, asks for `smtpshim account login ADDRESS`); a scope in it names the permission the token lacks"

	hintNoPassword    = "no password is stored for this account: store it with `smtpshim account add ADDRESS`; until then new mail from it is refused with a temporary error (454), which mail clients try again later, and queued mail waits"
	hintNoKeychain    = "smtpshim could not read the password from the keychain (it is locked, or there is no desktop session, as under a system service or an SSH login): unlock the keychain, or set password_command for the account; its mail is kept meanwhile"
	hintCommandFailed = "the account's password_command failed: run it yourself to see why and fix it (smtpshim tries it again at the next attempt); its mail is kept meanwhile"
	hintRefused       = "nothing accepts connections at that server and port: check the server name and port (587 for starttls, 465 for tls) and that no firewall blocks it"
	hintNoSuchHost    = "the server name does not exist: check its spelling in the account settings"
	hintDNS           = "the server name could not be looked up: check the network connection and DNS"
	hintTimeout       = "the server did not answer in time: check the server name and port, the network, and that no firewall or ISP blocks outgoing mail ports; starttls on port 465 also looks like this, so use tls there"
	hintUnreach       = "the network or the server is unreachable: check the network connection"
	hintClosed        = "the server closed the connection without an answer: it may be down or overloaded, or refusing this computer's address, or the security setting does not match the port (587 = starttls, 465 = tls); try again later or check the server and port"
	hintReset         = "the connection was cut off: a firewall or antivirus may be interfering, or the security setting does not match the port (587 = starttls, 465 = tls)"
)

// ForAccount is For with the account named: the commands in the hint
// name it instead of the ADDRESS placeholder (account is an address, or
// @domain for a domain account).
func ForAccount(err error, account string) string {
	h := For(err)
	if account == "" {
		return h
	}
	return strings.ReplaceAll(h, "account add ADDRESS", "account add "+account)
}

// For returns a one-sentence-or-two hint for err (which may wrap
// *smtp.SMTPError, x509/tls errors or net errors), or "" when there is
// nothing useful to add to the error itself.
func For(err error) string {
	if err == nil {
		return ""
	}
	if h := forOAuth(err.Error()); h != "" {
		return h
	}
	if errors.Is(err, secrets.ErrNotFound) {
		return hintNoPassword
	}
	if errors.Is(err, secrets.ErrUnavailable) {
		return hintNoKeychain
	}
	if errors.Is(err, secrets.ErrCommandFailed) {
		return hintCommandFailed
	}
	if code, enh, msg, ok := smtpReply(err); ok {
		if h := forReply(code, enh, msg); h != "" {
			return h
		}
	}
	if h := forTLS(err); h != "" {
		return h
	}
	if h := forNet(err); h != "" {
		return h
	}
	// Replies stored in the spool come back as plain text ("550 5.1.1
	// User unknown"), so the typed error is gone; read the text instead.
	if m := replyRE.FindStringSubmatch(err.Error()); m != nil {
		code, _ := strconv.Atoi(m[1])
		return forReply(code, m[2], m[3])
	}
	return ""
}

// forOAuth covers the OAuth2 sign-in: the token endpoint's errors (by their
// AADSTS numbers and Google's texts) and the server's refusal of a token.
// Those reach the log and the queue as text, so the text is what it reads.
func forOAuth(s string) string {
	l := strings.ToLower(s)
	has := func(subs ...string) bool {
		for _, sub := range subs {
			if strings.Contains(l, strings.ToLower(sub)) {
				return true
			}
		}
		return false
	}
	switch {
	case has("token endpoint could not be reached", "token endpoint failed"):
		return hintTokenEndpoint
	case has("AADSTS7000218"):
		return hintPublicClientOff
	case has("AADSTS700025"):
		return hintPublicClientSecret
	case has("AADSTS65001", "consent_required"):
		return hintConsent
	case has("AADSTS50011"):
		return hintRedirectMismatch
	case has("invalid_scope") && has("device"):
		return hintGoogleDevice
	case has("token has been expired or revoked"):
		return hintGoogleTesting
	case has("invalid_grant", "interaction_required", "login_required", "AADSTS70043", "AADSTS700082", "AADSTS50173", "AADSTS50076", "AADSTS50079"):
		return hintSignInAgain
	case has("refused a newly issued token", "refused an access token"):
		// A token issued a moment ago is not the problem: the mailbox's
		// SMTP AUTH (or the app's permission) is.
		return hintOAuthAuthDisabled
	case has("the server's OAuth2 error:"):
		if has("5.7.139", "smtpclientauthentication") {
			return hintOAuthAuthDisabled
		}
		return hintOAuthChallenge
	}
	return ""
}

// replyRE finds an SMTP failure reply at the start of an error text, after
// a "context: " prefix, on any line of a joined error, or in go-smtp's "SMTP error NNN: ..." form.
var replyRE = regexp.MustCompile(`(?m)(?:^|: |SMTP error )([45][0-9][0-9])(?:[ -]|: )(?:([45]\.[0-9]{1,3}\.[0-9]{1,3}) ?)?(.*)`)

// smtpReply extracts the reply from go-smtp's error, or from net/textproto's
// for code paths (or libraries) that never convert it.
func smtpReply(err error) (code int, enh string, msg string, ok bool) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		enh = ""
		if c := se.EnhancedCode; c != smtp.EnhancedCodeNotSet && c != smtp.NoEnhancedCode {
			enh = strconv.Itoa(c[0]) + "." + strconv.Itoa(c[1]) + "." + strconv.Itoa(c[2])
		}
		msg = se.Message
		if enh == "" {
			enh, msg = splitEnhanced(msg)
		}
		return se.Code, enh, msg, true
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		enh, msg = splitEnhanced(te.Msg)
		return te.Code, enh, msg, true
	}
	return 0, "", "", false
}

// splitEnhanced pulls a leading "x.y.z" enhanced status code off msg.
func splitEnhanced(msg string) (enh, rest string) {
	first, rest, _ := strings.Cut(strings.TrimSpace(msg), " ")
	parts := strings.Split(first, ".")
	if len(parts) != 3 {
		return "", msg
	}
	for _, p := range parts {
		if _, err := strconv.Atoi(p); err != nil || p == "" {
			return "", msg
		}
	}
	return first, rest
}

// forReply maps an SMTP reply to advice. Order matters: provider-specific
// codes come before the generic meaning of the basic reply code, since
// e.g. Microsoft 365 reports a disabled mailbox as a plain 535.
func forReply(code int, enh, msg string) string {
	m := strings.ToLower(msg)
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(m, s) {
				return true
			}
		}
		return false
	}

	switch {
	case enh == "5.7.139" || has("smtpclientauthentication is disabled"):
		return hintM365AuthDisabled
	case enh == "5.7.30" || has("basic authentication is not supported", "basic authentication is disabled", "basic auth is disabled"):
		return hintBasicAuthRetired
	case has("application-specific password"), code == 534, enh == "5.7.9":
		return hintAppPassword
	case enh == "5.7.60" || has("sendasdenied", "not allowed to send as", "send as denied"):
		return hintSendAs
	case enh == "5.4.5" || has("submissionquotaexceeded", "submission quota", "sending limit", "sending quota"):
		return hintQuota
	case enh == "5.2.2" || has("mailbox full", "mailbox is full", "over quota"):
		return hintMailboxFull
	case enh == "5.7.708" || enh == "5.7.750" || enh == "5.7.705" ||
		(enh == "5.2.0" && has("storedrv")) || has("outboundspam", "bad outbound sender"):
		return hintBlocked
	case code == 535 && has("gsmtp"):
		return hintGmailCredentials
	case code == 535:
		return hintBadCredentials
	case code == 530 && has("starttls", "tls", "encrypt"):
		return hintNeedsTLS
	case code == 530 && has("auth"):
		return hintAuthRequired
	case code == 530 || code == 538 || code == 523 || enh == "5.7.11" || enh == "5.7.10":
		return hintNeedsTLS
	case code == 552 || enh == "5.3.4" || enh == "5.2.3" || has("message size", "too large", "size limit", "exceeds size"):
		return hintTooLarge
	case code == 454 && has("auth"):
		return hintTempAuth
	case code == 421, enh == "4.7.0" || enh == "4.7.28" || enh == "4.7.500",
		code/100 == 4 && has("too many", "rate limit", "throttl", "try again later"):
		return hintThrottled
	case enh == "5.1.1" || enh == "5.1.10" ||
		code/100 == 5 && has("user unknown", "unknown user", "recipientnotfound", "no such user", "does not exist"):
		return hintUnknownRcpt
	case has("relay access denied", "relaying denied", "not permitted to relay", "relay not permitted", "unable to relay"):
		return hintRelay
	}
	return ""
}

// forTLS covers certificate problems and protocol mismatches, which show up
// before any SMTP reply exists.
func forTLS(err error) string {
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return hintUnknownAuthority
	}
	var he x509.HostnameError
	if errors.As(err, &he) {
		return hintHostname
	}
	var ci x509.CertificateInvalidError
	if errors.As(err, &ci) {
		if ci.Reason == x509.Expired {
			return hintExpired
		}
		return hintBadCert
	}
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		return hintPortMismatch
	}
	// A TLS server on 465 answering a plaintext EHLO sends binary alert
	// bytes, which textproto rejects as a malformed reply.
	var pe textproto.ProtocolError
	if errors.As(err, &pe) {
		return hintPortMismatch
	}
	s := err.Error()
	if strings.Contains(s, "unsupported protocol version") || strings.Contains(s, "no cipher suite supported") ||
		strings.Contains(s, "tls: handshake failure") || strings.Contains(s, "tls: protocol version not supported") {
		return hintOldTLS
	}
	return ""
}

// forNet covers failures to reach the server at all. errors.Is on errno
// values does not match on Windows, hence the text fallbacks.
func forNet(err error) string {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsNotFound {
			return hintNoSuchHost
		}
		return hintDNS
	}
	s := strings.ToLower(err.Error())
	switch {
	case errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(s, "connection refused") || strings.Contains(s, "actively refused"):
		return hintRefused
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) ||
		strings.Contains(s, "i/o timeout"):
		return hintTimeout
	case errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH) ||
		strings.Contains(s, "network is unreachable") || strings.Contains(s, "no route to host"):
		return hintUnreach
	case errors.Is(err, syscall.ECONNRESET) || strings.Contains(s, "connection reset") ||
		strings.Contains(s, "forcibly closed"):
		return hintReset
	case (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) && err != io.EOF && err != io.ErrUnexpectedEOF:
		// Only with context ("server: starttls: EOF"): a bare EOF does
		// not say that a server hung up.
		return hintClosed
	}
	return ""
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
