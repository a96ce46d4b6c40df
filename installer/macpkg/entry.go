// Package macpkg writes the parts of a macOS flat installer package that
// no tool on Linux writes: the Bill of Materials (Bom), and the Payload
// and Scripts archives (gzip-compressed cpio in the portable "odc"
// format, the one pkgbuild writes). The xar container around them is
// bsdtar's (installer/build).
//
// The BOM layout follows the published format notes on "BOMStore" files
// (block table, named blocks, B-tree "tree" nodes, receipt path records);
// no code was taken from any implementation.
package macpkg

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// Entry is one path of a payload.
type Entry struct {
	Path   string      // "." or "./Applications/smtpshim.app/..."
	Mode   fs.FileMode // permission bits plus fs.ModeDir or fs.ModeSymlink
	UID    uint32
	GID    uint32
	MTime  uint32
	Data   []byte // a file's contents
	Target string // a symlink's target
}

func (e *Entry) size() uint32 {
	switch {
	case e.Mode.IsDir():
		return 0
	case e.Mode&fs.ModeSymlink != 0:
		return uint32(len(e.Target))
	}
	return uint32(len(e.Data))
}

// unixMode is the st_mode value: type bits and permissions.
func (e *Entry) unixMode() uint32 {
	m := uint32(e.Mode.Perm())
	if e.Mode&fs.ModeSetuid != 0 {
		m |= 0o4000
	}
	if e.Mode&fs.ModeSetgid != 0 {
		m |= 0o2000
	}
	if e.Mode&fs.ModeSticky != 0 {
		m |= 0o1000
	}
	switch {
	case e.Mode.IsDir():
		return m | 0o040000
	case e.Mode&fs.ModeSymlink != 0:
		return m | 0o120000
	}
	return m | 0o100000
}

// Sort checks a payload and puts it in breadth-first order: ".", then
// every entry of depth one by name, then depth two, and so on. Every
// parent directory must be present; the BOM's path records refer to
// their parents, and Installer walks the payload in this order.
func Sort(entries []Entry) ([]Entry, error) {
	seen := map[string]*Entry{}
	for i := range entries {
		e := &entries[i]
		if rel, ok := strings.CutPrefix(e.Path, "./"); e.Path != "." && (!ok || rel == "" || path.Clean(rel) != rel || rel == ".." || strings.HasPrefix(rel, "../")) {
			return nil, fmt.Errorf("payload path %q must be \".\" or start with \"./\" and be clean", e.Path)
		}
		if seen[e.Path] != nil {
			return nil, fmt.Errorf("payload path %q twice", e.Path)
		}
		seen[e.Path] = e
	}
	if seen["."] == nil || !seen["."].Mode.IsDir() {
		return nil, fmt.Errorf(`payload has no "." directory`)
	}
	for p := range seen {
		if p == "." {
			continue
		}
		if dir, _ := splitPath(p); seen[dir] == nil || !seen[dir].Mode.IsDir() {
			return nil, fmt.Errorf("payload path %q has no parent directory %q", p, dir)
		}
	}
	out := append([]Entry(nil), entries...)
	sort.SliceStable(out, func(i, j int) bool {
		di, dj := depth(out[i].Path), depth(out[j].Path)
		if di != dj {
			return di < dj
		}
		return out[i].Path < out[j].Path
	})
	return out, nil
}

func depth(p string) int {
	if p == "." {
		return 0
	}
	return strings.Count(p, "/")
}
