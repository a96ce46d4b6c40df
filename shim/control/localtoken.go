package control

import "net/url"

// TokenIssuer is an engine that hands local tools one-time local AUTH
// tokens (see listener.TokenUser): the control socket is private to the
// user, so a token is proof to the tool that it talks to the real relay.
type TokenIssuer interface {
	LocalAuthToken(client string) (string, error)
}

type tokenReply struct {
	Token string `json:"token"`
}

// LocalAuthToken asks the running engine for a one-time AUTH token for
// the SMTP connection whose client end is client.
func (c *Client) LocalAuthToken(client string) (string, error) {
	var r tokenReply
	if err := c.do("POST", "/v1/local-token?client="+url.QueryEscape(client), &r); err != nil {
		return "", err
	}
	return r.Token, nil
}
