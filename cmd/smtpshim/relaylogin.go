package main

import (
	"fmt"
	"net"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/control"
	"github.com/smtpshim/smtpshim/shim/listener"
	"github.com/smtpshim/smtpshim/shim/spool"
)

// relayLogin logs in to the relay on conn when it requires local AUTH,
// without the local password: the relay that holds the spool hands out a
// one-time token, over its control socket (private to the user), for this
// very connection. When no smtpshim runs with the spool, whatever answers
// on the port is someone else's program (another user may have bound it
// while the relay was down): it gets nothing, and errNoListener sends the
// message straight to the provider instead.
func (a *app) relayLogin(cfg *config.Config, conn net.Conn, c *smtp.Client) error {
	dir, err := cfg.EffectiveSpoolDir()
	if err != nil {
		return exit(exConfig, "%v", err)
	}
	if err := spool.Check(dir); err != nil {
		return exit(exConfig, "%v", err)
	}
	ctl, err := control.Dial(dir)
	if err != nil {
		fmt.Fprintf(a.stderr, "smtpshim send: something answers on %s, but no smtpshim runs with the spool %s; it was not given the local login, and the message goes straight to the provider\n", conn.RemoteAddr(), dir)
		return errNoListener
	}
	defer ctl.Close()
	tok, err := ctl.LocalAuthToken(conn.LocalAddr().String())
	if err != nil {
		return exit(exTempFail, "the running smtpshim gave no login for this message: %v", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", listener.TokenUser, tok)); err != nil {
		return exit(exTempFail, "%s refused the login the running smtpshim issued for this connection, so it is not that smtpshim: another program may have taken the port (check listen in the config): %v", conn.RemoteAddr(), err)
	}
	return nil
}
