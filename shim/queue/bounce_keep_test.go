package queue

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/spool"
	"github.com/smtpshim/smtpshim/shim/upstream"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

// TestOriginalKeptWhenBounceCannotBeWritten: a message refused for good
// whose bounce cannot be stored (the spool cannot take a new file) stays
// in the queue with the reason; once the spool works again the bounce is
// written and sent, and only then does the original go.
func TestOriginalKeptWhenBounceCannotBeWritten(t *testing.T) {
	sim := startSim(t)
	sim.SetFault(upstreamsim.RejectSomeRcpt)
	pool := newPool(t, sim, pass)
	dir := t.TempDir()
	sp, err := spool.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	q := New(Options{Spool: sp, Pool: func(string) *upstream.Pool { return pool }, RetryMin: time.Hour, RetryMax: time.Hour})
	w, err := sp.Create()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(body(200))
	m := &spool.Meta{Account: user, From: user, Rcpts: []string{"reject-me@example.net"}, NextTry: time.Now()}
	if err := q.Add(w, m, false); err != nil {
		t.Fatal(err)
	}
	// No new spool file can be created: tmp/ is not a directory.
	tmp := filepath.Join(dir, "tmp")
	os.RemoveAll(tmp)
	os.WriteFile(tmp, nil, 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	wait := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s; queue: %+v", what, q.List())
			}
		}
	}
	wait("the failed bounce", func() bool {
		got, ok := q.Get(m.ID)
		return ok && strings.Contains(got.LastError, "bounce to the sender could not be written")
	})
	if _, err := sp.Get(m.ID); err != nil {
		t.Fatalf("the original left the spool: %v", err)
	}
	if q.Len() != 1 {
		t.Fatalf("queue: %+v", q.List())
	}

	os.Remove(tmp)
	os.Mkdir(tmp, 0o700)
	q.RetryNow(m.ID)
	wait("the bounce to be delivered", func() bool {
		for _, msg := range sim.Messages() {
			if len(msg.To) == 1 && msg.To[0] == user {
				return true
			}
		}
		return false
	})
	wait("the original to go", func() bool { _, ok := q.Get(m.ID); return !ok })
	if _, err := sp.Get(m.ID); err == nil {
		t.Fatal("the original is still in the spool")
	}
}
