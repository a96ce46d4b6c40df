package upstream

import (
	"bufio"
	"net"
	"sync"
	"time"
)

// flushDelay bounds how long written bytes may wait in a coalescingConn
// when no read comes to push them out (a body arriving slowly from the
// client must still trickle on to the provider).
const flushDelay = 50 * time.Millisecond

// coalescingConn gathers writes and sends them when the connection is
// about to wait for the peer, when 64 KB have gathered, or after
// flushDelay. go-smtp writes each 4 KB of a message body as its own TLS
// record; gathered, a 10 KB message takes one system call instead of
// four, and a 10 MB one 160 instead of 2,560.
//
// It is safe because an SMTP client waits for the server only by reading:
// every Read flushes first.
type coalescingConn struct {
	net.Conn
	mu    sync.Mutex
	w     *bufio.Writer
	timer *time.Timer
	err   error
}

func newCoalescingConn(c net.Conn) *coalescingConn {
	cc := &coalescingConn{Conn: c}
	cc.w = bufio.NewWriterSize(c, 64<<10)
	return cc
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	if err != nil {
		c.err = err
		return n, err
	}
	if c.w.Buffered() > 0 && c.timer == nil {
		c.timer = time.AfterFunc(flushDelay, func() {
			c.mu.Lock()
			c.timer = nil
			c.flushLocked()
			c.mu.Unlock()
		})
	}
	return n, nil
}

func (c *coalescingConn) flushLocked() error {
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if c.err == nil && c.w.Buffered() > 0 {
		c.err = c.w.Flush()
	}
	return c.err
}

// Read flushes what was written, then waits for the peer.
func (c *coalescingConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	err := c.flushLocked()
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

// Close drops what was not sent: a polite end (QUIT) is written and read
// before, so nothing is pending then, and after an abort nothing more
// must go out. It takes no lock, so it also frees a flush that is stuck
// on a peer that stopped reading.
func (c *coalescingConn) Close() error {
	return c.Conn.Close()
}
