package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// pauseFile, in the spool directory, records that delivery is paused. It
// lives with the queue it holds, so a paused relay stays paused across a
// restart or a crash, and a second process reading the spool sees it.
const pauseFile = "paused"

type pauseState struct {
	Since time.Time `json:"since"`
}

// Paused reports whether delivery is paused, and since when.
func (s *Spool) Paused() (time.Time, bool) { return PausedIn(s.dir) }

// PausedIn reports whether delivery from the spool directory dir is
// paused, without opening (or locking) the spool.
func PausedIn(dir string) (time.Time, bool) {
	data, err := os.ReadFile(filepath.Join(dir, pauseFile))
	if err != nil {
		return time.Time{}, false
	}
	var st pauseState
	json.Unmarshal(data, &st) // an unreadable file still means paused
	return st.Since, true
}

// SetPaused records that delivery is paused (on) or not, durably: when it
// returns nil, a crash does not undo it.
func (s *Spool) SetPaused(on bool, since time.Time) error {
	p := filepath.Join(s.dir, pauseFile)
	if !on {
		err := os.Remove(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err == nil {
			err = syncDir(s.dir)
		}
		if err != nil {
			return fmt.Errorf("spool: recording the resume: %w", err)
		}
		return nil
	}
	data, _ := json.Marshal(pauseState{Since: since.UTC()})
	tmp := filepath.Join(s.tmp, pauseFile)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err == nil {
		_, err = f.Write(data)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("spool: recording the pause: %w", err)
	}
	return nil
}
