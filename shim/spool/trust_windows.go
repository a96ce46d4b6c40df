//go:build windows

package spool

import (
	"os"

	"golang.org/x/sys/windows"
)

// Windows has no O_NOFOLLOW; openTrusted's Lstat and regular-file checks
// still refuse links. Ownership and access are ACLs there, and the
// per-user data directory the spool lives in is private by default.
const (
	oNoFollow = 0
	oNonBlock = 0
)

func ownedByUs(string, os.FileInfo) error        { return nil }
func parentOwnerOK(string, os.FileInfo) error    { return nil }
func writableByOthers(os.FileInfo) bool          { return false }
func worldWritableNotSticky(fi os.FileInfo) bool { return false }

// FreeSpaceAt returns the bytes available to this user on the volume of
// dir.
func FreeSpaceAt(dir string) (uint64, error) {
	p, err := windows.UTF16PtrFromString(dir)
	if err != nil {
		return 0, err
	}
	var avail, total, free uint64
	if err := windows.GetDiskFreeSpaceEx(p, &avail, &total, &free); err != nil {
		return 0, err
	}
	return avail, nil
}
