package macpkg

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"testing"
)

func TestCksumMatchesPOSIX(t *testing.T) {
	// `printf 'hello\n' | cksum` prints 3015617425 6; the empty input 4294967295 0.
	for in, want := range map[string]uint32{"hello\n": 3015617425, "": 4294967295} {
		if got := cksum([]byte(in)); got != want {
			t.Errorf("cksum(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestSortIsBreadthFirstAndNeedsParents(t *testing.T) {
	dir := fs.ModeDir | 0o755
	got, err := Sort([]Entry{
		{Path: "./a/b/c", Mode: 0o644}, {Path: "./b", Mode: dir}, {Path: "./a/b", Mode: dir},
		{Path: ".", Mode: dir}, {Path: "./a", Mode: dir}, {Path: "./b/z", Mode: 0o644},
	})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, e := range got {
		order = append(order, e.Path)
	}
	want := []string{".", "./a", "./b", "./a/b", "./b/z", "./a/b/c"}
	if len(order) != len(want) {
		t.Fatalf("order %v", order)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("order %v, want %v", order, want)
		}
	}
	if _, err := Sort([]Entry{{Path: ".", Mode: dir}, {Path: "./x/y", Mode: 0o644}}); err == nil {
		t.Error("a path without its parent directory was accepted")
	}
	if _, err := Sort([]Entry{{Path: ".", Mode: dir}, {Path: "/abs", Mode: 0o644}}); err == nil {
		t.Error("an absolute path was accepted")
	}
}

// A payload too large for one 4096-byte leaf gets several leaves, linked
// both ways, under one index node, and every path is still found.
func TestBOMSplitsLargeTrees(t *testing.T) {
	entries := []Entry{{Path: ".", Mode: fs.ModeDir | 0o755}, {Path: "./d", Mode: fs.ModeDir | 0o755}}
	for i := 0; i < 1200; i++ {
		entries = append(entries, Entry{Path: fmt.Sprintf("./d/f%04d", i), Mode: 0o644, Data: []byte{byte(i)}})
	}
	entries, err := Sort(entries)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := BOM(entries)
	if err != nil {
		t.Fatal(err)
	}
	u32 := func(b []byte, off int) uint32 { return binary.BigEndian.Uint32(b[off:]) }
	index := int(u32(raw, 16))
	block := func(i uint32) []byte {
		off, n := u32(raw, index+4+8*int(i)), u32(raw, index+8+8*int(i))
		return raw[off : off+n]
	}
	vars := int(u32(raw, 24))
	var paths uint32
	for p, n := vars+4, int(u32(raw, vars)); n > 0; n-- {
		l := int(raw[p+4])
		if string(raw[p+5:p+5+l]) == "Paths" {
			paths = u32(raw, p)
		}
		p += 5 + l
	}
	tree := block(paths)
	if got := u32(tree, 16); got != 1202 {
		t.Fatalf("tree counts %d paths, want 1202", got)
	}
	root := block(u32(tree, 8))
	if binary.BigEndian.Uint16(root) != 0 || binary.BigEndian.Uint16(root[2:]) != 3 {
		t.Fatalf("root: leaf flag %d, %d children; want an index node over 3 leaves", binary.BigEndian.Uint16(root), binary.BigEndian.Uint16(root[2:]))
	}
	leaf, prev, seen := u32(root, 12), uint32(0), 0
	for leaf != 0 {
		n := block(leaf)
		if binary.BigEndian.Uint16(n) != 1 || u32(n, 8) != prev {
			t.Fatalf("leaf %d: flag %d, back link %d, want 1 and %d", leaf, binary.BigEndian.Uint16(n), u32(n, 8), prev)
		}
		count := int(binary.BigEndian.Uint16(n[2:]))
		for i := 0; i < count; i++ {
			if id := u32(block(u32(n, 12+8*i)), 0); id != uint32(seen+1) {
				t.Fatalf("path %d has id %d", seen, id)
			}
			seen++
		}
		prev, leaf = leaf, u32(n, 4)
	}
	if seen != 1202 {
		t.Errorf("the leaves hold %d paths, want 1202", seen)
	}
}
