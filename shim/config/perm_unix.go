//go:build !windows

package config

import (
	"fmt"
	"os"
	"syscall"
)

func fileTrusted(path string, fi os.FileInfo, isDir bool) error {
	what := path
	if isDir {
		what = "directory " + path
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if me := os.Geteuid(); int(st.Uid) != me && st.Uid != 0 {
			return unsafeConfig(what, fmt.Sprintf("belongs to user id %d, not to you (%d)", st.Uid, me),
				fmt.Sprintf("run chown %d %s as root, or use a config of your own with --config", me, path))
		}
	}
	perm := fi.Mode().Perm()
	if isDir {
		if perm&0o022 != 0 && fi.Mode()&os.ModeSticky == 0 {
			return unsafeConfig(what, fmt.Sprintf("is writable by other users (mode %o)", perm), "run chmod go-w "+path)
		}
		return nil
	}
	if perm&0o022 != 0 {
		return unsafeConfig(what, fmt.Sprintf("is writable by other users (mode %o)", perm), "run chmod 600 "+path)
	}
	return nil
}
