// Package route picks the upstream account for an envelope sender: the
// account for the exact address first, then the one for its domain.
//
// Routing is what keeps smtpshim from being an open relay: a sender with no
// account is refused before any recipient is accepted.
package route

import (
	"errors"
	"fmt"
	"strings"

	"github.com/smtpshim/smtpshim/shim/addr"
	"github.com/smtpshim/smtpshim/shim/config"
)

// ErrNullSender is returned for the null reverse-path "<>". smtpshim never
// relays it: a bounce from a local client has no account to authenticate
// as, and accepting it would let anyone send mail without a known sender.
var ErrNullSender = errors.New("the null sender <> is not relayed: smtpshim sends mail only for addresses it has an account for")

// NoAccountError says that no account serves a sender.
type NoAccountError struct {
	Sender string
}

// Error names the sender and how to add an account for it.
func (e *NoAccountError) Error() string {
	return fmt.Sprintf("no account for sender <%s>: add one with \"smtpshim account add %s\" (or a domain account for @%s)",
		e.Sender, e.Sender, domainOf(e.Sender))
}

// Table maps senders to accounts. The zero value routes nothing.
type Table struct {
	byAddress map[string]*config.Account
	byDomain  map[string]*config.Account
}

// New builds a table from accounts; it keeps pointers into the slice.
func New(accounts []config.Account) *Table {
	t := &Table{
		byAddress: make(map[string]*config.Account, len(accounts)),
		byDomain:  make(map[string]*config.Account),
	}
	for i := range accounts {
		a := &accounts[i]
		if a.Address != "" {
			t.byAddress[canonical(a.Address)] = a
		} else {
			t.byDomain[canonicalDomain(a.Domain)] = a
		}
	}
	return t
}

// Lookup returns the account for sender, matched by addr.Key: ASCII
// case-insensitively, with IDN domains in their ASCII form. A sender that
// addr.Parse refuses gets its *addr.Error: it is never routed.
func (t *Table) Lookup(sender string) (*config.Account, error) {
	if sender == "" {
		return nil, ErrNullSender
	}
	a, err := addr.Parse(sender)
	if err != nil {
		return nil, err
	}
	if acct, ok := t.byAddress[a.Key()]; ok {
		return acct, nil
	}
	if acct, ok := t.byDomain[a.ASCIIDomain]; ok {
		return acct, nil
	}
	return nil, &NoAccountError{Sender: sender}
}

// Len returns the number of accounts.
func (t *Table) Len() int { return len(t.byAddress) + len(t.byDomain) }

// canonical is an account address's key; config validation has refused
// addresses addr.Parse would not take, so the fallback only keeps a
// hand-built table usable.
func canonical(address string) string {
	address = strings.TrimSpace(address)
	if k, err := addr.Key(strings.TrimSuffix(address, ".")); err == nil {
		return k
	}
	return addr.FoldASCII(address)
}

func canonicalDomain(d string) string {
	d = strings.TrimSpace(d)
	if a, err := addr.Domain(d); err == nil {
		return a
	}
	return addr.FoldASCII(strings.TrimSuffix(d, "."))
}

func domainOf(addr string) string {
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		return addr[at+1:]
	}
	return addr
}
