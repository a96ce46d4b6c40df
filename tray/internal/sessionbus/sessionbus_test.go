package sessionbus

import (
	"net"
	"path/filepath"
	"testing"
)

func TestReachable(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "bus")
	l, err := net.Listen("unix", live)
	if err != nil {
		t.Skip("no unix sockets here:", err)
	}
	defer l.Close()
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"", false},
		{"unix:path=" + live, true},
		{"unix:path=" + live + ",guid=abc", true},
		{"unix:path=" + filepath.Join(dir, "gone"), false},
		{"unix:path=" + filepath.Join(dir, "gone") + ";unix:path=" + live, true},
		{"tcp:host=127.0.0.1,port=1", false},
		{"garbage", false},
	} {
		if got := Reachable(tc.addr); got != tc.want {
			t.Errorf("Reachable(%q) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}
