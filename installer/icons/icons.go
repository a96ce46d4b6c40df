// Package icons turns the app icon PNGs that the tray ships
// (tray/icons/app-<size>.png) into the icon formats the installers need: a
// Windows .ico, a macOS .icns, and the freedesktop hicolor theme layout.
// Each size is drawn by hand in its PNG; nothing here scales an image, so a
// size a format needs but the tray does not ship is an error.
package icons

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
)

// Set is the app icon in several sizes: the PNG file bytes by edge length.
type Set map[int][]byte

var nameRE = regexp.MustCompile(`^app-(\d+)\.png$`)

// Load reads dir/app-<size>.png and checks that each is a square PNG of
// its size.
func Load(dir string) (Set, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("app icons: %w (they come from the tray: tray/icons/app-<size>.png)", err)
	}
	s := Set{}
	for _, e := range ents {
		m := nameRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		size, _ := strconv.Atoi(m[1])
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		if err := s.Add(size, b); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, e.Name()), err)
		}
	}
	if len(s) == 0 {
		return nil, fmt.Errorf("app icons: no app-<size>.png in %s", dir)
	}
	return s, nil
}

// Add checks one PNG and adds it.
func (s Set) Add(size int, b []byte) error {
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("not a PNG: %w", err)
	}
	if cfg.Width != size || cfg.Height != size {
		return fmt.Errorf("is %dx%d, want %dx%d", cfg.Width, cfg.Height, size, size)
	}
	if _, err := png.Decode(bytes.NewReader(b)); err != nil {
		return fmt.Errorf("broken PNG: %w", err)
	}
	s[size] = b
	return nil
}

// Sizes lists the sizes present, smallest first.
func (s Set) Sizes() []int {
	var out []int
	for k := range s {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

func (s Set) need(what string, sizes ...int) error {
	for _, n := range sizes {
		if _, ok := s[n]; !ok {
			return fmt.Errorf("%s needs the app icon at %dx%d (tray/icons/app-%d.png), have %v", what, n, n, n, s.Sizes())
		}
	}
	return nil
}

// ICO writes a Windows icon with every size from 16 to 256 the set has,
// each stored as PNG (Windows Vista and later read those). 16, 32, 48 and
// 256 must be there: Explorer, the Start Menu and Add/Remove Programs use
// them.
func (s Set) ICO() ([]byte, error) {
	if err := s.need("the Windows icon", 16, 32, 48, 256); err != nil {
		return nil, err
	}
	var sizes []int
	for _, n := range s.Sizes() {
		if n <= 256 {
			sizes = append(sizes, n)
		}
	}
	var hdr, data bytes.Buffer
	binary.Write(&hdr, binary.LittleEndian, [3]uint16{0, 1, uint16(len(sizes))}) // reserved, type icon, count
	offset := 6 + 16*len(sizes)
	for _, n := range sizes {
		b := s[n]
		dim := byte(n) // 256 is written as 0
		hdr.Write([]byte{dim, dim, 0, 0})
		binary.Write(&hdr, binary.LittleEndian, [2]uint16{1, 32}) // planes, bits per pixel
		binary.Write(&hdr, binary.LittleEndian, [2]uint32{uint32(len(b)), uint32(offset + data.Len())})
		data.Write(b)
	}
	hdr.Write(data.Bytes())
	return hdr.Bytes(), nil
}

// icnsTypes are the PNG-bearing ICNS element types, by the pixel size of
// the image they hold; the @2x types hold the same pixels as the next
// larger 1x type.
var icnsTypes = []struct {
	typ  string
	size int
}{
	{"icp4", 16}, {"icp5", 32}, {"ic11", 32}, {"icp6", 64}, {"ic12", 64},
	{"ic07", 128}, {"ic08", 256}, {"ic13", 256}, {"ic09", 512}, {"ic14", 512}, {"ic10", 1024},
}

// ICNS writes a macOS icon from the set's PNGs. 16, 32, 128, 256 and 512
// must be there (Finder, the Dock, Get Info).
func (s Set) ICNS() ([]byte, error) {
	if err := s.need("the macOS icon", 16, 32, 128, 256, 512); err != nil {
		return nil, err
	}
	var body bytes.Buffer
	for _, t := range icnsTypes {
		b, ok := s[t.size]
		if !ok {
			continue
		}
		body.WriteString(t.typ)
		binary.Write(&body, binary.BigEndian, uint32(8+len(b)))
		body.Write(b)
	}
	var out bytes.Buffer
	out.WriteString("icns")
	binary.Write(&out, binary.BigEndian, uint32(8+body.Len()))
	out.Write(body.Bytes())
	return out.Bytes(), nil
}

// Hicolor maps paths under /usr/share/icons/hicolor to PNG bytes, one per
// size, for the app icon named name.
func (s Set) Hicolor(name string) (map[string][]byte, error) {
	if err := s.need("the Linux icon theme", 16, 32, 48, 256); err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for n, b := range s {
		if n > 512 {
			continue
		}
		out[fmt.Sprintf("%dx%d/apps/%s.png", n, n, name)] = b
	}
	return out, nil
}
