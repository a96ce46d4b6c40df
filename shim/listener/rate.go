package listener

import (
	"strings"
	"sync"
	"time"
)

// rateLimiter counts messages per sender in fixed minute and day windows.
// Fixed windows are coarse, but cheap and easy to explain in a reply.
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

// check reports why sender may not send now, or "" when it may.
func (r *rateLimiter) check(sender string, now time.Time) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.senders[strings.ToLower(sender)]
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

// record counts one message from sender.
func (r *rateLimiter) record(sender string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := strings.ToLower(sender)
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
