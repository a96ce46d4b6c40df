package listener

import (
	"sync/atomic"
	"time"
)

// Overload: idle connections must not keep a client that speaks out.
//
// Without this, clients that connect and say nothing (a stuck script, a
// port scanner, a device that keeps its connection open) hold their
// places under max_connections until idle_timeout (5 minutes by
// default), and a real client meanwhile hears "421 too many connections".
// As Postfix does under stress (smtpd_timeout drops to 10 s), once the
// connections reach stressShare of the cap, a connection waiting for its
// client's next command gets at most stressIdle; and at the cap a new
// client takes the place of the connection that has waited longest, if
// it has waited at least evictAfter. A connection inside DATA is never
// touched: its client is sending.
var (
	stressShare = 0.8
	stressIdle  = 10 * time.Second
	evictAfter  = 5 * time.Second
)

// busyReply is what an idle client hears when it is closed to make room.
const busyReply = "421 4.7.0 smtpshim is busy and closed this idle connection; connect again when you have mail to send\r\n"

// idleState is a connection's part in the overload rules.
type idleState struct {
	// waitingSince is when the connection began to wait for its client's
	// next command (UnixNano), 0 while it is not waiting.
	waitingSince atomic.Int64
	// evicted: closed to make room; the timeout reply says so.
	evicted atomic.Bool
}

// takePlace counts a new connection against limit; at the cap it first
// tries to free the place of the longest-idle connection.
func (s *Server) takePlace(limit int64) bool {
	if s.conns.Add(1) <= limit {
		s.relieve(limit, false)
		return true
	}
	s.conns.Add(-1)
	if !s.relieve(limit, true) {
		return false
	}
	if s.conns.Add(1) <= limit {
		return true
	}
	s.conns.Add(-1)
	return false
}

// stressed reports whether the connections are near the cap.
func (s *Server) stressed(limit int64) bool {
	return float64(s.conns.Load()) >= stressShare*float64(limit)
}

// beginWait notes that c waits for its client now, and, under stress,
// shortens how long it may wait. Called by Read before it blocks outside
// DATA.
func (c *clientConn) beginWait() {
	now := time.Now()
	c.idle.waitingSince.Store(now.UnixNano())
	if c.s.stressed(c.s.cur().maxConns) && stressIdle < c.s.idle {
		c.Conn.SetReadDeadline(now.Add(stressIdle))
	}
}

func (c *clientConn) endWait() { c.idle.waitingSince.Store(0) }

// relieve applies the overload rules when a client arrives: it shortens
// the wait of every idle connection under stress and, at the cap, evicts
// the one that has waited longest. It reports whether a place was freed.
func (s *Server) relieve(limit int64, atCap bool) bool {
	if !s.stressed(limit) && !atCap {
		return false
	}
	now := time.Now()
	var oldest *clientConn
	var oldestSince int64
	s.mu.Lock()
	for c := range s.open {
		since := c.idle.waitingSince.Load()
		if since == 0 || c.idle.evicted.Load() {
			continue
		}
		if stressIdle < s.idle {
			// Shorten a wait that began before the stress did.
			c.Conn.SetReadDeadline(time.Unix(0, since).Add(stressIdle))
		}
		if oldest == nil || since < oldestSince {
			oldest, oldestSince = c, since
		}
	}
	s.mu.Unlock()
	if !atCap || oldest == nil || now.Sub(time.Unix(0, oldestSince)) < evictAfter {
		return false
	}
	if oldest.idle.evicted.Swap(true) {
		return false
	}
	s.log.Info("at the connection limit: closing the longest-idle connection to make room", "client", oldest.RemoteAddr().String(), "idle_ms", now.Sub(time.Unix(0, oldestSince)).Milliseconds())
	// Its place is free now; its Read times out at once and says why.
	oldest.release()
	oldest.Conn.SetReadDeadline(now)
	return true
}
