package listener

import (
	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/addr"
)

// checkSender refuses a MAIL FROM address that addr.Parse does not take:
// go-smtp has already removed the quotes of a quoted local part, and what
// is left must never be routed or written to the provider. The null
// sender is left to routing, which refuses it with its own explanation.
func checkSender(from string) error {
	if from == "" {
		return nil
	}
	if _, err := addr.Parse(from); err != nil {
		return smtpErr(501, smtp.EnhancedCode{5, 1, 7}, "bad sender address syntax: "+err.Error())
	}
	return nil
}

// checkRecipient is checkSender for RCPT TO.
func checkRecipient(to string) error {
	if _, err := addr.Parse(to); err != nil {
		return smtpErr(501, smtp.EnhancedCode{5, 1, 3}, "bad recipient address syntax: "+err.Error())
	}
	return nil
}

// errNoSender answers RCPT, DATA and BDAT when no sender is accepted: go-smtp
// counts a MAIL it saw as a sender even when the session refused it.
var errNoSender = smtpErr(503, smtp.EnhancedCode{5, 5, 1}, "send MAIL FROM with an accepted sender first")
