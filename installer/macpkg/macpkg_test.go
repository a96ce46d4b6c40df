package macpkg

import (
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
