package main

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

var gcSink []byte

// TestQuietGC: with quietGC the runtime's own pacing is off (no forced
// collection while idle), yet allocation still brings collections, and
// the limit follows a live heap that grows, so the process neither grows
// without bound nor collects without pause.
func TestQuietGC(t *testing.T) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		t.Skip("GOGC or GOMEMLIMIT is set: quietGC leaves the runtime alone")
	}
	oldPct := debug.SetGCPercent(100)
	oldLimit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() {
		gcHookOn.Store(false)
		debug.SetGCPercent(oldPct)
		debug.SetMemoryLimit(oldLimit)
	})
	runtime.GC()

	quietGC()
	if pct := debug.SetGCPercent(-1); pct != -1 {
		t.Fatalf("GOGC is %d after quietGC, want off (-1)", pct)
	}
	limit := debug.SetMemoryLimit(-1)
	if limit == math.MaxInt64 {
		t.Fatal("quietGC set no memory limit: nothing would ever collect")
	}

	// 256 MiB of garbage: collections must come, and memory stay bounded.
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gcs := ms.NumGC
	for range 256 {
		gcSink = make([]byte, 1<<20)
	}
	runtime.ReadMemStats(&ms)
	if n := ms.NumGC - gcs; n < 8 {
		t.Fatalf("%d collections for 256 MiB of garbage, want one every few MiB", n)
	}
	if ms.HeapSys > 128<<20 {
		t.Fatalf("the heap grew to %d MiB for garbage collected every few MiB", ms.HeapSys>>20)
	}

	// A live heap of 48 MiB: after a collection the limit leaves room for
	// as much again, or the collector would run without pause.
	live := make([]byte, 48<<20)
	for i := range live {
		live[i] = 1
	}
	runtime.GC()
	deadline := time.Now().Add(5 * time.Second)
	for debug.SetMemoryLimit(-1) < int64(len(live))*2 {
		if time.Now().After(deadline) {
			t.Fatalf("the limit stayed at %d MiB with 48 MiB live", debug.SetMemoryLimit(-1)>>20)
		}
		runtime.GC() // the cleanup that sets it runs after a collection
		time.Sleep(10 * time.Millisecond)
	}
	runtime.KeepAlive(live)
}
