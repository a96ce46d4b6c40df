package upstreamsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"

	"github.com/emersion/go-smtp"
)

// Mechanism names for the OAuth2 mechanisms the simulator can offer.
const (
	XOAUTH2     = "XOAUTH2"
	OAUTHBEARER = "OAUTHBEARER"
)

var errTokenRefused = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication unsuccessful: the access token is not valid"}

// bearerServer is the server side of XOAUTH2 and OAUTHBEARER (RFC 7628)
// as the big providers run it: the initial response carries the user and
// the token; a refused token gets a 334 with a base64 JSON error, and after
// the client's dummy answer (an empty line, or %x01) the final 535.
type bearerServer struct {
	mech   string
	check  func(user, token string) error
	failed bool
	done   bool
}

func (b *bearerServer) Next(resp []byte) ([]byte, bool, error) {
	if b.failed {
		if b.mech == OAUTHBEARER && !bytes.Equal(resp, []byte{0x01}) {
			return nil, true, &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "OAUTHBEARER: expected %x01 after the error challenge"}
		}
		if b.mech == XOAUTH2 && len(resp) != 0 {
			return nil, true, &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "XOAUTH2: expected an empty line after the error challenge"}
		}
		return nil, true, errTokenRefused
	}
	if b.done {
		return nil, true, errors.New("unexpected response")
	}
	if resp == nil {
		return []byte{}, false, nil // ask for the initial response
	}
	b.done = true
	user, token, ok := parseBearer(b.mech, resp)
	if !ok {
		return nil, true, &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: b.mech + ": malformed initial response"}
	}
	if err := b.check(user, token); err != nil {
		b.failed = true
		ch, _ := json.Marshal(map[string]string{"status": "401", "schemes": "bearer", "scope": "smtp.send"})
		return ch, false, nil
	}
	return nil, true, nil
}

// parseBearer reads "user=U^Aauth=Bearer T^A^A" (XOAUTH2) or
// "n,a=U,^Ahost=…^Aauth=Bearer T^A^A" (OAUTHBEARER).
func parseBearer(mech string, resp []byte) (user, token string, ok bool) {
	s := string(resp)
	if mech == OAUTHBEARER {
		parts := strings.SplitN(s, ",", 3)
		if len(parts) != 3 || parts[0] != "n" {
			return "", "", false
		}
		user = strings.TrimPrefix(parts[1], "a=")
		s = parts[2]
	}
	for _, kv := range strings.Split(s, "\x01") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "user":
			user = v
		case "auth":
			if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
				token = v[7:]
			}
		}
	}
	return user, token, user != "" && token != ""
}
