package shim

// LocalAuthToken returns a one-time local AUTH token for the listener
// connection whose client end is client (see listener.TokenUser).
func (e *Engine) LocalAuthToken(client string) (string, error) {
	return e.srv.IssueAuthToken(client)
}
