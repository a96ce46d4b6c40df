package main

import "github.com/smtpshim/smtpshim/shim/addr"

// checkEnvelope refuses a sender or recipient that the relay would refuse
// too: without the relay, sendDirect writes them to the provider itself,
// and an address that needs quoting (say, from a web form's From: header)
// must not carry SMTP parameters there.
func checkEnvelope(o *sendOptions) error {
	if _, err := addr.Parse(o.from); err != nil {
		return exit(exDataErr, "sender %v", err)
	}
	for _, r := range o.rcpts {
		if _, err := addr.Parse(r); err != nil {
			return exit(exDataErr, "recipient %v", err)
		}
	}
	return nil
}
