// Package oauthtest gives tests outside shim/ (the settings page, the
// tray) the same loopback OAuth2 authorization server the engine's own
// tests sign in against, so every face is tested against one simulator.
package oauthtest

import "github.com/smtpshim/smtpshim/shim/internal/oauthsim"

type (
	// Server is a running test authorization server.
	Server = oauthsim.Server
	// Options configures a Server.
	Options = oauthsim.Options
)

// Start starts a test authorization server on 127.0.0.1.
func Start(o Options) *Server { return oauthsim.Start(o) }
