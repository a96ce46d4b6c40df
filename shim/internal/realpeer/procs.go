//go:build linux

package realpeer

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ownerFileName is written into every instance root: "PID STARTTIME" of the
// test process that owns the instance. A later StartPostfix removes instances
// whose owner is gone (e.g. a test binary killed by -timeout, which skips
// t.Cleanup).
const ownerFileName = "realpeer.owner"

// dirPrefix is the prefix of instance roots under os.TempDir().
const dirPrefix = "realpeer-"

// procStartTime returns the start time (in clock ticks since boot, field 22
// of /proc/PID/stat) of a process, or "" if it does not exist.
func procStartTime(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// comm (field 2) may contain spaces; it ends at the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

func writeOwner(path string) error {
	pid := os.Getpid()
	return os.WriteFile(path, []byte(fmt.Sprintf("%d %s\n", pid, procStartTime(pid))), 0o644)
}

// ownerAlive reports whether the process recorded in an owner file still runs.
func ownerAlive(path string) (alive, known bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return false, false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil {
		return false, false
	}
	return procStartTime(pid) == f[1], true
}

// instanceProcs lists processes belonging to the instance rooted at dir:
// those whose working directory is inside dir (Postfix daemons chdir to
// their queue_directory, Dovecot processes to their base_dir) or whose
// environment has MAIL_CONFIG pointing at the instance's config directory
// (Postfix passes it to every daemon).
func instanceProcs(dir string) []int {
	self := os.Getpid()
	envNeedle := []byte("MAIL_CONFIG=" + dir + "/")
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || pid <= 1 {
			continue
		}
		if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil {
			if cwd == dir || strings.HasPrefix(cwd, dir+"/") {
				pids = append(pids, pid)
				continue
			}
		}
		if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); err == nil {
			for _, kv := range bytes.Split(env, []byte{0}) {
				if bytes.HasPrefix(kv, envNeedle) || bytes.Equal(kv, envNeedle[:len(envNeedle)-1]) {
					pids = append(pids, pid)
					break
				}
			}
		}
	}
	return pids
}

// killInstanceProcs SIGKILLs every process of the instance until none is
// left (or a few seconds passed). It returns the pids still alive.
func killInstanceProcs(dir string) []int {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := instanceProcs(dir)
		// Zombies still show up in /proc until reaped by their parent; ignore
		// them (their cwd link is gone, so they normally do not match anyway).
		var live []int
		for _, pid := range pids {
			if !isZombie(pid) {
				live = append(live, pid)
			}
		}
		if len(live) == 0 || time.Now().After(deadline) {
			return live
		}
		for _, pid := range live {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // gone
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X')
}

// baseTempDir is where instance roots are created: os.TempDir(), unless
// that path is so long that Dovecot's unix sockets (DIR/dovecot/run/NAME)
// could exceed the 108-byte sun_path limit.
func baseTempDir() string {
	if d := os.TempDir(); len(d) <= 40 {
		return d
	}
	return "/tmp"
}

// sweepStale removes instance roots left behind by test processes that died
// without running their cleanups, killing whatever still runs in them.
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(baseTempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		alive, known := ownerAlive(filepath.Join(dir, ownerFileName))
		if alive {
			continue
		}
		if !known {
			// Possibly being created right now by another process: only
			// sweep it when clearly old.
			fi, err := os.Stat(dir)
			if err != nil || time.Since(fi.ModTime()) < 10*time.Minute {
				continue
			}
		}
		killInstanceProcs(dir)
		_ = os.RemoveAll(dir)
	}
}
