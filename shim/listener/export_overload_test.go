package listener

import "time"

// SetOverloadTiming sets the overload rules' times for a test and returns
// what restores them.
func SetOverloadTiming(idle, evict time.Duration) (restore func()) {
	oldIdle, oldEvict := stressIdle, evictAfter
	stressIdle, evictAfter = idle, evict
	return func() { stressIdle, evictAfter = oldIdle, oldEvict }
}
