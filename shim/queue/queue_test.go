package queue

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/secrets"
	"github.com/smtpshim/smtpshim/shim/spool"
	"github.com/smtpshim/smtpshim/shim/upstream"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	q := New(Options{RetryMin: time.Second, RetryMax: 20 * time.Second})
	// RetryMin doubling per attempt, capped at RetryMax (which need not be
	// a power of two times RetryMin).
	want := map[int]time.Duration{
		0: time.Second, 1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second,
		4: 8 * time.Second, 5: 16 * time.Second, 6: 20 * time.Second,
		7: 20 * time.Second, 50: 20 * time.Second, 1000: 20 * time.Second,
	}
	for attempts, base := range want {
		lo, hi := base-base/4, base+base/4
		var minSeen, maxSeen time.Duration
		for i := range 2000 {
			d := q.Backoff(attempts)
			if d < lo || d > hi {
				t.Fatalf("Backoff(%d) = %s, want %s ±25%% [%s, %s]", attempts, d, base, lo, hi)
			}
			if i == 0 || d < minSeen {
				minSeen = d
			}
			if d > maxSeen {
				maxSeen = d
			}
		}
		// Jitter spreads a batch: both sides of the base are used, and
		// most of the ±25% band.
		if minSeen >= base || maxSeen <= base || maxSeen-minSeen < base/4 {
			t.Errorf("Backoff(%d) stayed within [%s, %s]: no real jitter around %s", attempts, minSeen, maxSeen, base)
		}
	}

	// Defaults: a minute doubling to an hour.
	d := New(Options{})
	if b := d.Backoff(1); b < 45*time.Second || b > 75*time.Second {
		t.Errorf("default Backoff(1) = %s, want 1m ±25%%", b)
	}
	if b := d.Backoff(100); b < 45*time.Minute || b > 75*time.Minute {
		t.Errorf("default Backoff(100) = %s, want 1h ±25%%", b)
	}
}

// ---- Deliver against the simulated provider ----

const (
	user = "alice@example.com"
	pass = "sim-password-not-real"
)

func startSim(t *testing.T) *upstreamsim.Server {
	t.Helper()
	sim, err := upstreamsim.Start(upstreamsim.Options{Users: map[string]string{user: pass}, HashOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// newPool returns a fresh pool (healthy, nothing idle) for the sim.
func newPool(t *testing.T, sim *upstreamsim.Server, password string) *upstream.Pool {
	t.Helper()
	store := secrets.NewMemory()
	if err := store.Set(context.Background(), user, password); err != nil {
		t.Fatal(err)
	}
	acct := &config.Account{Address: user, Server: sim.Addr, Security: config.SecurityStartTLS}
	p := upstream.NewPool(acct, upstream.Options{
		Hostname:  "queue.test",
		Secrets:   store,
		TLSConfig: &tls.Config{RootCAs: sim.Cert.Pool},
	}, nil)
	t.Cleanup(p.Close)
	return p
}

func body(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: alice@example.com\r\nSubject: queue test\r\n\r\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "line %05d of the queue test body, long enough to matter\r\n", i)
	}
	return b.Bytes()
}

func smtpCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func rcptsOf(fs []spool.Failure) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Rcpt)
	}
	return out
}

func TestDeliver(t *testing.T) {
	t.Parallel()
	msg := body(20 << 10)
	sum := sha256.Sum256(msg)
	failure := func(rcpt, status, diag string) spool.Failure {
		return spool.Failure{Rcpt: rcpt, Status: status, Diagnostic: diag}
	}
	const (
		perm     = "554 5.7.1 Message refused by policy"
		unknown  = "550 5.1.1 User unknown"
		bob      = "bob@example.net"
		carol    = "carol@example.net"
		reject1  = "reject1@example.net"
		reject2  = "reject2@example.net"
		later    = "later@example.net"
		password = pass
	)
	for _, tc := range []struct {
		name      string
		fault     upstreamsim.Fault
		password  string
		rcpts     []string
		delivered []string
		temp      []string
		failed    []spool.Failure
		errCode   int  // the SMTP code behind Err; -1: a non-SMTP error; 0: no error
		down      bool // Health reports the server down
		held      bool // the account's mail is held for a new credential
		stored    []string
	}{
		{name: "accepted", fault: upstreamsim.None, rcpts: []string{bob, carol},
			delivered: []string{bob, carol}, stored: []string{bob, carol}},
		{name: "connection refused", fault: upstreamsim.Refuse, rcpts: []string{bob, carol},
			temp: []string{bob, carol}, errCode: -1, down: true},
		{name: "451 at MAIL", fault: upstreamsim.TempFail, rcpts: []string{bob, carol},
			temp: []string{bob, carol}, errCode: 451},
		{name: "554 at end of DATA", fault: upstreamsim.PermFail, rcpts: []string{bob, carol},
			failed: []spool.Failure{failure(bob, "5.7.1", perm), failure(carol, "5.7.1", perm)}},
		{name: "451 at end of DATA", fault: upstreamsim.TempFailData, rcpts: []string{bob, carol},
			temp: []string{bob, carol}, errCode: 451},
		{name: "dropped mid-DATA", fault: upstreamsim.DropMidData, rcpts: []string{bob, carol},
			temp: []string{bob, carol}, errCode: -1},
		{name: "some recipients refused", fault: upstreamsim.RejectSomeRcpt, rcpts: []string{reject1, bob},
			delivered: []string{bob}, failed: []spool.Failure{failure(reject1, "5.1.1", unknown)}, stored: []string{bob}},
		{name: "all recipients refused", fault: upstreamsim.RejectSomeRcpt, rcpts: []string{reject1, reject2},
			failed: []spool.Failure{failure(reject1, "5.1.1", unknown), failure(reject2, "5.1.1", unknown)}},
		{name: "one recipient deferred", fault: upstreamsim.TempFailSomeRcpt, rcpts: []string{later, bob},
			delivered: []string{bob}, temp: []string{later}, errCode: 450, stored: []string{bob}},
		// A refused password is the account's problem, fixed by the user:
		// retried, never bounced.
		{name: "password refused", fault: upstreamsim.None, password: "wrong", rcpts: []string{bob},
			temp: []string{bob}, errCode: 535, held: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sim := startSim(t)
			sim.SetFault(tc.fault)
			pw := tc.password
			if pw == "" {
				pw = password
			}
			pool := newPool(t, sim, pw)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			o := Deliver(ctx, pool, user, tc.rcpts, &smtp.MailOptions{}, bytes.NewReader(msg))

			if !slices.Equal(o.Delivered, tc.delivered) {
				t.Errorf("Delivered = %v, want %v", o.Delivered, tc.delivered)
			}
			if !slices.Equal(o.Temp, tc.temp) {
				t.Errorf("Temp = %v, want %v", o.Temp, tc.temp)
			}
			if !slices.Equal(o.Failed, tc.failed) {
				t.Errorf("Failed = %+v, want %+v", o.Failed, tc.failed)
			}
			switch {
			case tc.errCode == 0 && o.Err != nil:
				t.Errorf("Err = %v, want none", o.Err)
			case tc.errCode == -1 && (o.Err == nil || smtpCode(o.Err) != 0):
				t.Errorf("Err = %v, want a connection error", o.Err)
			case tc.errCode > 0 && smtpCode(o.Err) != tc.errCode:
				t.Errorf("Err = %v, want SMTP %d", o.Err, tc.errCode)
			}
			if down := o.Health != nil && !o.Health.Healthy; down != tc.down {
				t.Errorf("Health = %+v, want down=%v", o.Health, tc.down)
			}
			if o.Held != tc.held {
				t.Errorf("Held = %v, want %v", o.Held, tc.held)
			}
			if o.Remote != "127.0.0.1" {
				t.Errorf("Remote = %q", o.Remote)
			}
			var got [][]string
			for _, m := range sim.Messages() {
				if m.SHA256 != sum {
					t.Errorf("the provider stored a different body (%d bytes, want %d)", m.Size, len(msg))
				}
				got = append(got, m.To)
			}
			var want [][]string
			if tc.stored != nil {
				want = [][]string{tc.stored}
			}
			if !slices.EqualFunc(got, want, slices.Equal) {
				t.Errorf("the provider stored messages to %v, want %v", got, want)
			}
		})
	}
}

// eofSignal closes done when the body has been read to its end.
type eofSignal struct {
	r    io.Reader
	done chan struct{}
}

func (e *eofSignal) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		select {
		case <-e.done:
		default:
			close(e.done)
		}
	}
	return n, err
}

// A provider that never answers the end of DATA holds Deliver; when it
// finally answers 451, every recipient is still to deliver.
func TestDeliverStall(t *testing.T) {
	t.Parallel()
	sim := startSim(t)
	sim.SetFault(upstreamsim.Stall)
	pool := newPool(t, sim, pass)
	src := &eofSignal{r: bytes.NewReader(body(20 << 10)), done: make(chan struct{})}
	res := make(chan Outcome, 1)
	go func() {
		res <- Deliver(context.Background(), pool, user, []string{"bob@example.net"}, &smtp.MailOptions{}, src)
	}()
	select {
	case <-src.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the body was never sent")
	}
	select {
	case o := <-res:
		t.Fatalf("Deliver returned %+v while the provider stalled", o)
	case <-time.After(300 * time.Millisecond):
	}
	// TempFailData releases the stall with a 451 and answers 451 to a
	// late DATA too, so the outcome does not depend on timing.
	sim.SetFault(upstreamsim.TempFailData)
	var o Outcome
	select {
	case o = <-res:
	case <-time.After(20 * time.Second):
		t.Fatal("Deliver did not return after the provider answered")
	}
	if len(o.Delivered) != 0 || len(o.Failed) != 0 || !slices.Equal(o.Temp, []string{"bob@example.net"}) || smtpCode(o.Err) != 451 {
		t.Fatalf("outcome %+v (err %v), want bob still to deliver after a 451", o, o.Err)
	}
	if n := len(sim.Messages()); n != 0 {
		t.Fatalf("the provider stored %d messages", n)
	}
}

func TestFailureOf(t *testing.T) {
	t.Parallel()
	se := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown"}
	for _, tc := range []struct {
		name   string
		err    error
		status string
		diag   string
	}{
		{"enhanced code", se, "5.1.1", "550 5.1.1 User unknown"},
		{"wrapped", fmt.Errorf("RCPT TO: %w", se), "5.1.1", "550 5.1.1 User unknown"},
		{"policy", &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Message refused by policy"},
			"5.7.1", "554 5.7.1 Message refused by policy"},
		{"size", &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message too big"},
			"5.3.4", "552 5.3.4 Message too big"},
		{"no enhanced code", &smtp.SMTPError{Code: 554, EnhancedCode: smtp.NoEnhancedCode, Message: "go away"},
			"5.0.0", "554 5.0.0 go away"},
		{"enhanced code not set", &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCodeNotSet, Message: "bad address"},
			"5.0.0", "553 5.0.0 bad address"},
		{"not an SMTP reply", errors.New("connection reset by peer"), "5.0.0", "connection reset by peer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := FailureOf("bob@example.net", tc.err)
			want := spool.Failure{Rcpt: "bob@example.net", Status: tc.status, Diagnostic: tc.diag}
			if f != want {
				t.Fatalf("FailureOf(%v) = %+v, want %+v", tc.err, f, want)
			}
		})
	}

	// What a real provider's refusal becomes, through go-smtp's client.
	sim := startSim(t)
	sim.SetFault(upstreamsim.RejectSomeRcpt)
	o := Deliver(context.Background(), newPool(t, sim, pass), user, []string{"reject-me@example.net"}, &smtp.MailOptions{}, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
	if len(o.Failed) != 1 || o.Failed[0].Status != "5.1.1" || o.Failed[0].Diagnostic != "550 5.1.1 User unknown" {
		t.Fatalf("Failed = %+v, want 5.1.1 with the provider's reply", o.Failed)
	}
}
