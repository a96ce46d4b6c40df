package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// The spool decides what is sent, from which account, to whom: a file
// someone else could plant or swap there would send mail on the user's
// login. So smtpshim trusts only directories that it owns, that no one
// else can write, and that are not symbolic links, and it opens spool
// files without following links and only when they are regular files it
// owns (as Postfix's queue and OpenSSH's StrictModes do).

// UnsafeError says why a spool path is not trusted and what to do.
type UnsafeError struct {
	Path string
	Why  string
	Fix  string
}

// Error says what is unsafe and how to fix it.
func (e *UnsafeError) Error() string {
	return fmt.Sprintf("the spool %s %s, so other users could make smtpshim send mail: %s", e.Path, e.Why, e.Fix)
}

// Check reports whether an existing spool directory is safe to use, as
// Open requires; it creates nothing.
func Check(dir string) error {
	if err := checkParent(dir); err != nil {
		return err
	}
	for _, d := range []string{dir, filepath.Join(dir, "tmp"), filepath.Join(dir, "msg")} {
		if err := checkDir(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// checkDir requires d to be a real directory, ours, writable by us alone.
func checkDir(d string) error {
	fi, err := os.Lstat(d)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return &UnsafeError{d, "is a symbolic link", "make it a real directory (or point spool_dir at the link's target)"}
	}
	if !fi.IsDir() {
		return &UnsafeError{d, "is not a directory", "remove it, or set spool_dir to another place"}
	}
	if err := ownedByUs(d, fi); err != nil {
		return err
	}
	if writableByOthers(fi) {
		return &UnsafeError{d, fmt.Sprintf("is writable by other users (mode %o)", fi.Mode().Perm()), "run chmod 700 " + d}
	}
	return nil
}

// checkParent refuses a spool inside a directory where anyone could
// rename it away and put another in its place: writable by all without
// the sticky bit, or owned by another user (the administrator aside).
func checkParent(dir string) error {
	parent := filepath.Dir(filepath.Clean(dir))
	fi, err := os.Stat(parent)
	if err != nil {
		return nil // MkdirAll will say what is wrong
	}
	if err := parentOwnerOK(parent, fi); err != nil {
		return err
	}
	if worldWritableNotSticky(fi) {
		return &UnsafeError{dir, fmt.Sprintf("is inside %s, which every user can write (mode %o)", parent, fi.Mode().Perm()), "set spool_dir to a directory of your own"}
	}
	return nil
}

// FreeSpace returns the bytes available to this user on the spool's disk.
func (s *Spool) FreeSpace() (uint64, error) { return FreeSpaceAt(s.dir) }

// openTrusted opens a spool file for reading: no symbolic links, only a
// regular file of ours.
func openTrusted(path string) (*os.File, error) {
	// The Lstat serves Windows, which has no O_NOFOLLOW, and a clear
	// message; O_NOFOLLOW closes the gap between the two calls.
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return nil, &UnsafeError{path, "is a symbolic link", "delete it; smtpshim never follows links in its spool"}
	}
	f, err := os.OpenFile(path, os.O_RDONLY|oNoFollow|oNonBlock, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = &UnsafeError{path, "is not a regular file", "delete it"}
	}
	if err == nil {
		err = ownedByUs(path, fi)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
