//go:build !windows

package spool

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// oNonBlock keeps a FIFO planted in the spool from blocking the open; it
// has no effect on the regular files that pass the checks.
const (
	oNoFollow = syscall.O_NOFOLLOW
	oNonBlock = syscall.O_NONBLOCK
)

func ownedByUs(path string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if me := os.Geteuid(); int(st.Uid) != me {
		return &UnsafeError{path, fmt.Sprintf("belongs to user id %d, not to the user smtpshim runs as (%d)", st.Uid, me),
			fmt.Sprintf("run chown -R %d %s as root, or set spool_dir to a directory of your own", me, path)}
	}
	return nil
}

func parentOwnerOK(path string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 || int(st.Uid) == os.Geteuid() {
		return nil
	}
	return &UnsafeError{path, fmt.Sprintf("is inside a directory of user id %d", st.Uid), "set spool_dir to a directory of your own"}
}

func writableByOthers(fi os.FileInfo) bool { return fi.Mode().Perm()&0o022 != 0 }

func worldWritableNotSticky(fi os.FileInfo) bool {
	return fi.Mode().Perm()&0o002 != 0 && fi.Mode()&os.ModeSticky == 0
}

// FreeSpaceAt returns the bytes available to this user on the file
// system of dir.
func FreeSpaceAt(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
