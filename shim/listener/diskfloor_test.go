package listener

import (
	"testing"
	"time"
)

func TestFreeSpaceCache(t *testing.T) {
	var c freeSpaceCache
	now := time.Now()
	const floor = 100 << 20
	if c.plenty(floor, now) {
		t.Fatal("no reading yet, but the cache answered")
	}
	c.store(10<<30, now)
	if !c.plenty(floor, now.Add(500*time.Millisecond)) {
		t.Fatal("a fresh reading far above the floor must stand")
	}
	if c.plenty(floor, now.Add(freeSpaceFresh)) {
		t.Fatal("a reading a second old must be taken again")
	}
	if c.plenty(6<<30, now) {
		t.Fatal("near a raised floor (reload), every message must ask the disk")
	}
	c.store(2*floor+(64<<20)-1, now)
	if c.plenty(floor, now) {
		t.Fatal("within twice the floor plus 64 MB, every message must ask the disk")
	}
}
