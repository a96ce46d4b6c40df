package listener

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/events"
)

// checkFreeSpace refuses a new message while the spool's disk has less
// free space than min_free_space, as Postfix's queue_minfree does: the
// client keeps its copy and tries later, instead of smtpshim accepting a
// message it may not be able to store.
func (s *session) checkFreeSpace(live *settings) error {
	if s.s.o.Spool == nil || live.minFree == 0 {
		return nil
	}
	if s.s.disk.plenty(live.minFree, time.Now()) {
		return nil
	}
	free, err := s.s.o.Spool.FreeSpace()
	if err != nil || free >= live.minFree {
		if err == nil {
			s.s.disk.store(free, time.Now())
		}
		return nil // a failed check must not stop mail; writes still report a full disk
	}
	s.s.log.Error("the spool's disk is nearly full; refusing new mail", "free_bytes", free, "min_free_space", live.minFree, "spool", s.s.o.Spool.Dir())
	s.s.o.Bus.Publish(events.Event{Kind: events.Problem,
		Error: fmt.Sprintf("only %d MB free on the spool's disk, below min_free_space (%d MB): new mail is refused", free>>20, live.minFree>>20),
		Hint:  "free disk space (smtpshim doctor shows where the spool is), or lower min_free_space"})
	return smtpErr(452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage: smtpshim's disk is nearly full, try again later")
}

// freeSpaceCache spares a file-system call per message while the disk is
// far from the floor: a reading less than a second old, with room for the
// floor twice over and 64 MB more, still stands. Near the floor, every
// message asks again.
type freeSpaceCache struct {
	at   atomic.Int64 // UnixNano of the reading, 0 for none
	free atomic.Uint64
}

const freeSpaceFresh = time.Second

func (c *freeSpaceCache) plenty(floor uint64, now time.Time) bool {
	at := c.at.Load()
	return at != 0 && now.UnixNano()-at < int64(freeSpaceFresh) && c.free.Load() >= 2*floor+64<<20
}

func (c *freeSpaceCache) store(free uint64, now time.Time) {
	c.free.Store(free)
	c.at.Store(now.UnixNano())
}
