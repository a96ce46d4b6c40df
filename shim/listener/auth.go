package listener

import (
	"crypto/subtle"

	"github.com/emersion/go-smtp"
)

// CheckFunc verifies local AUTH credentials.
type CheckFunc func(username, password string) error

// errLocalAuth is the reply for wrong local credentials; it says nothing
// about which part was wrong.
var errLocalAuth = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication failed: wrong local smtpshim user name or password"}

// PasswordChecker returns a CheckFunc that accepts one local password, for
// any user name, compared in constant time.
func PasswordChecker(password string) CheckFunc {
	return func(_, pw string) error {
		if password == "" || subtle.ConstantTimeCompare([]byte(pw), []byte(password)) != 1 {
			return errLocalAuth
		}
		return nil
	}
}
