// Package loginauth is a SASL LOGIN server, which go-sasl lacks. Outlook
// Express and many printers only speak LOGIN.
package loginauth

import (
	"errors"

	"github.com/emersion/go-sasl"
)

// Authenticator checks a user name and password.
type Authenticator func(username, password string) error

type server struct {
	step     int
	username string
	check    Authenticator
}

// NewServer returns a LOGIN server. It accepts the user name as an initial
// response too, as some clients send it that way.
func NewServer(check Authenticator) sasl.Server {
	return &server{check: check}
}

func (s *server) Next(response []byte) ([]byte, bool, error) {
	switch s.step {
	case 0:
		s.step = 1
		if len(response) == 0 {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		s.username = string(response)
		s.step = 2
		return []byte("Password:"), false, nil
	case 2:
		s.step = 3
		return nil, true, s.check(s.username, string(response))
	}
	return nil, false, errors.New("unexpected LOGIN response")
}
