//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Envelope of every benchmark message.
const (
	benchSender = "bench@example.com"
	benchRcpt   = "sink@example.net"
)

// target is where the load client submits.
type target struct {
	addr string
	// tls, when set, makes the client behave like a modern direct sender:
	// STARTTLS, then AUTH PLAIN as user, once per connection. Without it
	// the client is an old one: plain TCP, EHLO, no AUTH.
	tls        *tls.Config
	user, pass string
}

// loadSpec is one run of the load client.
type loadSpec struct {
	conns   int
	msgs    *msgFactory
	warmup  int           // untimed messages per connection before the clock starts
	dur     time.Duration // stop starting messages after this...
	perConn int           // ...or, when dur is 0, send exactly this many per connection
}

// runResult is what one run measured.
type runResult struct {
	msgs    int           // timed messages the server answered 250 to
	bytes   int64         // their size
	elapsed time.Duration // from the start signal to the last timed reply
	lat     []time.Duration
	// sent maps the hash of every accepted message, warm-up included, to
	// its size: what the upstream must end up with.
	sent map[[32]byte]int64
	// timed lists the hashes of the timed messages, to count which of them
	// had reached the upstream when the run ended.
	timed [][32]byte
	// queued counts final replies saying the message was queued rather
	// than delivered at once.
	queued int
	// errs are failed connections; each stops its connection.
	errs []error
}

// connResult is one connection's share of a runResult.
type connResult struct {
	lat    []time.Duration
	timed  []message
	warm   []message
	queued int
	last   time.Time
	err    error
}

// runLoad opens spec.conns connections to t, sends spec.warmup messages
// on each, then starts the clock for all of them at once and sends
// messages until spec.dur has passed (or spec.perConn each).
func runLoad(ctx context.Context, t target, spec loadSpec) runResult {
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	results := make([]connResult, spec.conns)
	for i := range results {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			results[i] = runConn(ctx, t, spec, &ready, start)
		}()
	}
	ready.Wait()
	t0 := time.Now()
	close(start)
	done.Wait()

	res := runResult{sent: map[[32]byte]int64{}}
	var last time.Time
	for _, cr := range results {
		if cr.err != nil {
			res.errs = append(res.errs, cr.err)
		}
		for _, m := range cr.warm {
			res.sent[m.sum] = m.size()
		}
		for _, m := range cr.timed {
			res.sent[m.sum] = m.size()
			res.timed = append(res.timed, m.sum)
			res.bytes += m.size()
		}
		res.msgs += len(cr.timed)
		res.lat = append(res.lat, cr.lat...)
		res.queued += cr.queued
		if cr.last.After(last) {
			last = cr.last
		}
	}
	if last.After(t0) {
		res.elapsed = last.Sub(t0)
	}
	return res
}

// runConn is one client connection. It marks ready once connected and
// warmed up (or failed), and starts timing when start closes.
func runConn(ctx context.Context, t target, spec loadSpec, ready *sync.WaitGroup, start <-chan struct{}) (cr connResult) {
	signalled := false
	defer func() {
		if !signalled {
			ready.Done()
		}
	}()
	c, err := dialTarget(t)
	if err != nil {
		cr.err = err
		return cr
	}
	defer c.Close()
	for range spec.warmup {
		m := spec.msgs.next()
		reply, err := send(c, m)
		if err != nil {
			cr.err = fmt.Errorf("warm-up: %w", err)
			return cr
		}
		cr.queued += isQueued(reply)
		cr.warm = append(cr.warm, m)
	}
	ready.Done()
	signalled = true
	<-start

	t0 := time.Now()
	for n := 0; ; n++ {
		timeUp := spec.dur > 0 && time.Since(t0) >= spec.dur
		countDone := spec.dur == 0 && n >= spec.perConn
		if timeUp || countDone || ctx.Err() != nil {
			break
		}
		m := spec.msgs.next()
		s := time.Now()
		reply, err := send(c, m)
		if err != nil {
			cr.err = err
			return cr
		}
		cr.last = time.Now()
		cr.lat = append(cr.lat, cr.last.Sub(s))
		cr.timed = append(cr.timed, m)
		cr.queued += isQueued(reply)
	}
	if err := c.Quit(); err != nil {
		cr.err = fmt.Errorf("QUIT: %w", err)
	}
	return cr
}

// dialTarget connects and, for a direct target, secures and logs in.
func dialTarget(t target) (*smtp.Client, error) {
	var (
		c   *smtp.Client
		err error
	)
	if t.tls != nil {
		c, err = smtp.DialStartTLS(t.addr, t.tls)
	} else {
		c, err = smtp.Dial(t.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", t.addr, err)
	}
	// A stuck server must fail the benchmark, not hang it.
	c.CommandTimeout = time.Minute
	c.SubmissionTimeout = 2 * time.Minute
	if err := c.Hello("bench-client.example"); err != nil {
		c.Close()
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	if t.tls != nil {
		if err := c.Auth(sasl.NewPlainClient("", t.user, t.pass)); err != nil {
			c.Close()
			return nil, fmt.Errorf("AUTH: %w", err)
		}
	}
	return c, nil
}

// send submits one message on an open connection and returns the final
// reply text. It is the span the per-message latency measures.
func send(c *smtp.Client, m message) (string, error) {
	if err := c.Mail(benchSender, nil); err != nil {
		return "", fmt.Errorf("MAIL: %w", err)
	}
	if err := c.Rcpt(benchRcpt, nil); err != nil {
		return "", fmt.Errorf("RCPT: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return "", fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(m.prefix); err != nil {
		return "", fmt.Errorf("writing the body: %w", err)
	}
	if _, err := w.Write(m.suffix); err != nil {
		return "", fmt.Errorf("writing the body: %w", err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", fmt.Errorf("end of DATA: %w", err)
	}
	return resp.StatusText, nil
}

// isQueued is 1 when smtpshim's final reply says the message was queued
// (listener.queuedReply: "queued as ID ..."), not accepted by the
// provider; the simulator's own acceptance, passed through, says "queued
// as SIM...".
func isQueued(reply string) int {
	if strings.Contains(reply, "queued as ") && !strings.Contains(reply, "queued as SIM") {
		return 1
	}
	return 0
}

// firstErr summarizes a run's connection failures.
func (r runResult) firstErr() error {
	if len(r.errs) == 0 {
		return nil
	}
	return fmt.Errorf("%d connection(s) failed, first: %w", len(r.errs), r.errs[0])
}
