package listener

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"time"
)

// TokenUser is the AUTH user name with which a local tool (smtpshim send)
// logs in with a one-time token instead of the local password. The tool
// gets the token over the control socket, which only the user can open,
// for the one TCP connection it has already made: so the local password
// never goes to whatever listens on the port, and a token that some other
// program accepted in the relay's place is worth nothing elsewhere.
const TokenUser = "smtpshim-token"

// tokenLife bounds how long an issued token waits for its AUTH.
const tokenLife = time.Minute

type tokenGrant struct {
	client  string
	expires time.Time
}

// IssueAuthToken returns a one-time local AUTH token for the connection
// whose client end is client ("127.0.0.1:54321").
func (s *Server) IssueAuthToken(client string) (string, error) {
	if _, err := netip.ParseAddrPort(client); err != nil {
		return "", fmt.Errorf("client %q is not an address and port", client)
	}
	var b [32]byte
	rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	g := s.authGuard
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	for k, t := range g.tokens {
		if now.After(t.expires) {
			delete(g.tokens, k)
		}
	}
	if len(g.tokens) >= 1000 {
		return "", fmt.Errorf("too many local AUTH tokens waiting; try again in a minute")
	}
	g.tokens[tok] = tokenGrant{client: client, expires: now.Add(tokenLife)}
	return tok, nil
}

// takeToken spends tok if it was issued for client and is still valid.
func (g *authGuard) takeToken(tok, client string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	t, ok := g.tokens[tok]
	if !ok || t.client != client || g.now().After(t.expires) {
		return false
	}
	delete(g.tokens, tok)
	return true
}
