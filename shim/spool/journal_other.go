//go:build !linux

package spool

import (
	"errors"
	"os"
)

func fdatasync(f *os.File) error { return f.Sync() }

// syncFiles makes the named files durable, one by one; a file removed
// meanwhile (delivered) needs nothing.
func syncFiles(_ string, paths []string) error {
	for _, p := range paths {
		if err := syncFile(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
