package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// quietGC stops the Go runtime from waking an idle smtpshim to collect
// garbage. Go forces a collection at least every two minutes, even when
// nothing was allocated since the last one; for a relay that sits in the
// tray all day with nothing to do, those collections are all that wakes
// it (some 30 context switches each). With GOGC off and a memory limit
// that follows the live heap, collections come from allocation only:
// after each one, the limit is set to the memory in use plus as much
// again as is live (at least 4 MiB), about where GOGC=100 would collect.
// So a busy relay collects as often as before, and an idle one never.
//
// GOGC or GOMEMLIMIT in the environment leave the runtime alone.
func quietGC() {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	if !setGCLimit() {
		return // a runtime without these metrics: keep its own pacing
	}
	debug.SetGCPercent(-1)
	gcHookOn.Store(true)
	armGCHook()
}

// gcHookOn keeps the hook armed; a test that restores the runtime's own
// pacing turns it off.
var gcHookOn atomic.Bool

// minGCHeadroom is the least that may be allocated between collections,
// GOGC's own minimum heap.
const minGCHeadroom = 4 << 20

var gcMetrics = [...]string{
	"/gc/heap/live:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/objects:bytes",
}

// setGCLimit sets the memory limit at which the next collection starts:
// what the process holds besides its heap objects and its free heap
// (stacks, the runtime's own data, fragmentation), plus the live heap,
// plus as much again (at least minGCHeadroom). Free heap memory is left
// out, or each cycle would add to the last; above the limit, the runtime
// returns it to the system. false when the runtime cannot tell.
func setGCLimit() bool {
	var s [len(gcMetrics)]metrics.Sample
	for i, name := range gcMetrics {
		s[i].Name = name
	}
	metrics.Read(s[:])
	for _, v := range s {
		if v.Value.Kind() != metrics.KindUint64 {
			return false
		}
	}
	live, total, released, free, objects := s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64(), s[3].Value.Uint64(), s[4].Value.Uint64()
	overhead := total - released - free - objects
	debug.SetMemoryLimit(int64(overhead + live + max(live, minGCHeadroom)))
	return true
}

// armGCHook sets the limit again after the next collection, and re-arms
// itself: a cleanup runs once the collector has found its object
// unreachable. The object is larger than the runtime's tiny allocations,
// whose cleanups may never run.
func armGCHook() {
	p := new([64]byte)
	runtime.AddCleanup(p, func(struct{}) {
		if gcHookOn.Load() {
			setGCLimit()
			armGCHook()
		}
	}, struct{}{})
}
