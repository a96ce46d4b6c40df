package listener

import (
	"sync"
	"time"
)

// rateLimiter counts messages per key (an account and a client address,
// see rateKey) in fixed minute and day windows. Fixed windows are coarse,
// but cheap and easy to explain in a reply.
type rateLimiter struct {
	perMinute, perDay int

	mu      sync.Mutex
	senders map[string]*senderCount
}

type senderCount struct {
	minute, day     time.Time
	inMinute, inDay int
}

func newRateLimiter(perMinute, perDay int) *rateLimiter {
	return &rateLimiter{perMinute: perMinute, perDay: perDay, senders: map[string]*senderCount{}}
}

// rateKey is what the limits count: the account and the client's
// address. Keyed on the sender, every spelling of an address and every
// local part under a domain account would get a fresh budget.
func (s *session) rateKey() string {
	return s.acct.Key() + " " + s.ip.String()
}

// check reports why key may not send now, or "" when it may.
func (r *rateLimiter) check(key string, now time.Time) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.senders[key]
	if c == nil {
		return ""
	}
	r.roll(c, now)
	switch {
	case c.inMinute >= r.perMinute:
		return "per minute"
	case c.inDay >= r.perDay:
		return "per day"
	}
	return ""
}

// record counts one message for key.
func (r *rateLimiter) record(k string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.senders[k]
	if c == nil {
		if len(r.senders) > 10000 {
			r.prune(now)
		}
		c = &senderCount{}
		r.senders[k] = c
	}
	r.roll(c, now)
	c.inMinute++
	c.inDay++
}

func (r *rateLimiter) roll(c *senderCount, now time.Time) {
	if now.Sub(c.minute) >= time.Minute {
		c.minute, c.inMinute = now, 0
	}
	if now.Sub(c.day) >= 24*time.Hour {
		c.day, c.inDay = now, 0
	}
}

// prune drops senders idle for a day, so the map cannot grow without bound.
func (r *rateLimiter) prune(now time.Time) {
	for k, c := range r.senders {
		if now.Sub(c.day) >= 24*time.Hour {
			delete(r.senders, k)
		}
	}
}
