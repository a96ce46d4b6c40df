package listener

import (
	"net/netip"
	"time"

	"github.com/smtpshim/smtpshim/shim/config"
)

// settings are the listener's settings a reload may change. The server
// reads them through an atomic pointer on every connection and command,
// so a reload is in force for the next command of every session, and a
// security setting (allow_networks, local_auth) never lingers in an old
// session.
type settings struct {
	syncWait, dataLimit time.Duration
	maxConns            int64
	perIP               int
	maxRcpts            int
	rate                *rateLimiter
	rateLocal           bool
	// localAuth, when set, is required before MAIL; authGen changes when
	// the policy or the password does, and ends earlier logins.
	localAuth CheckFunc
	authGen   uint64
	allowed   func(netip.Addr) bool
	minFree   uint64 // refuse new mail below this much free spool space
	// tlsForAuth refuses AUTH before TLS from non-loopback clients.
	tlsForAuth bool
}

// Live is what a reload hands the listener besides the config.
type Live struct {
	// LocalAuth, when set, is required before MAIL; when nil, any AUTH a
	// client sends is accepted and ignored.
	LocalAuth CheckFunc
	// AuthChanged ends the logins of sessions that authenticated before:
	// set it when the local_auth policy or password changed.
	AuthChanged bool
	// Allowed decides which client addresses may connect; nil means
	// loopback only.
	Allowed func(netip.Addr) bool
}

func newSettings(cfg *config.Config, l Live, old *settings) *settings {
	st := &settings{
		syncWait:   cfg.EffectiveSyncWait(),
		dataLimit:  cfg.EffectiveDataTimeout(),
		maxConns:   int64(cfg.EffectiveMaxConnections()),
		perIP:      cfg.EffectiveMaxConnectionsPerIP(),
		maxRcpts:   cfg.EffectiveMaxRecipients(),
		rateLocal:  cfg.RateLimitLoopback,
		localAuth:  l.LocalAuth,
		allowed:    l.Allowed,
		minFree:    uint64(cfg.EffectiveMinFreeSpace()),
		tlsForAuth: cfg.RequireTLSForAuth,
	}
	if st.allowed == nil {
		st.allowed = func(a netip.Addr) bool { return a.IsLoopback() }
	}
	perMinute, perDay := cfg.EffectiveSenderRates()
	if old != nil && old.rate.perMinute == perMinute && old.rate.perDay == perDay {
		st.rate = old.rate // the counts so far still apply
	} else {
		st.rate = newRateLimiter(perMinute, perDay)
	}
	if old != nil {
		st.authGen = old.authGen
		if l.AuthChanged {
			st.authGen++
		}
	}
	return st
}

// Apply installs the live settings of cfg: sync_wait, data_timeout,
// connection and recipient limits, rates, local_auth and allow_networks.
// Listen addresses, TLS, the host name, idle_timeout (go-smtp reads it
// unlocked), max_message_size and max_line_length stay as they were at
// New.
func (s *Server) Apply(cfg *config.Config, l Live) {
	s.live.Store(newSettings(cfg, l, s.live.Load()))
}

func (s *Server) cur() *settings { return s.live.Load() }
