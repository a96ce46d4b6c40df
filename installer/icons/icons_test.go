package icons

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

func pngOf(t *testing.T, n int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, n, n))
	for i := 0; i < n; i++ {
		img.Set(i, i, color.NRGBA{R: 200, A: 255})
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func fullSet(t *testing.T) Set {
	s := Set{}
	for _, n := range []int{16, 24, 32, 48, 64, 128, 256, 512} {
		if err := s.Add(n, pngOf(t, n)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func TestLoadChecksSizes(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "app-16.png"), pngOf(t, 16), 0o644)
	os.WriteFile(filepath.Join(dir, "other.png"), []byte("x"), 0o644)
	s, err := Load(dir)
	if err != nil || len(s) != 1 {
		t.Fatalf("Load = %v, %v", s.Sizes(), err)
	}
	os.WriteFile(filepath.Join(dir, "app-32.png"), pngOf(t, 16), 0o644)
	if _, err := Load(dir); err == nil {
		t.Fatal("a 16x16 image named app-32.png was accepted")
	}
	if _, err := Load(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing directory was accepted")
	}
}

func TestICO(t *testing.T) {
	s := fullSet(t)
	b, err := s.ICO()
	if err != nil {
		t.Fatal(err)
	}
	var h [3]uint16
	binary.Read(bytes.NewReader(b), binary.LittleEndian, &h)
	if h != [3]uint16{0, 1, 7} { // 512 is too big for ICO
		t.Fatalf("header %v", h)
	}
	for i := 0; i < 7; i++ {
		e := b[6+16*i:]
		size := binary.LittleEndian.Uint32(e[8:])
		off := binary.LittleEndian.Uint32(e[12:])
		cfg, err := png.DecodeConfig(bytes.NewReader(b[off : off+size]))
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		w := int(e[0])
		if w == 0 {
			w = 256
		}
		if cfg.Width != w {
			t.Errorf("entry %d says %d, holds %d", i, w, cfg.Width)
		}
	}
	delete(s, 48)
	if _, err := s.ICO(); err == nil {
		t.Error("an ICO without 48x48 was written")
	}
}

func TestICNS(t *testing.T) {
	b, err := fullSet(t).ICNS()
	if err != nil {
		t.Fatal(err)
	}
	if string(b[:4]) != "icns" || int(binary.BigEndian.Uint32(b[4:])) != len(b) {
		t.Fatalf("bad header % x", b[:8])
	}
	types := map[string]int{}
	for p := 8; p < len(b); {
		typ, n := string(b[p:p+4]), int(binary.BigEndian.Uint32(b[p+4:]))
		cfg, err := png.DecodeConfig(bytes.NewReader(b[p+8 : p+n]))
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		types[typ] = cfg.Width
		p += n
	}
	for typ, w := range map[string]int{"icp4": 16, "ic11": 32, "ic07": 128, "ic14": 512, "ic09": 512} {
		if types[typ] != w {
			t.Errorf("%s holds %d px, want %d (all: %v)", typ, types[typ], w, types)
		}
	}
}

func TestHicolor(t *testing.T) {
	m, err := fullSet(t).Hicolor("smtpshim")
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 8 || m["48x48/apps/smtpshim.png"] == nil {
		t.Fatalf("got %d entries", len(m))
	}
}
