package icons

import (
	"bytes"
	"encoding/binary"
	"image/png"
	"testing"
)

func TestAppIconsAreSquarePNGsOfTheirSize(t *testing.T) {
	for _, size := range AppSizes {
		b, err := App(size)
		if err != nil {
			t.Fatalf("app-%d.png: %v", size, err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("app-%d.png: %v", size, err)
		}
		if r := img.Bounds(); r.Dx() != size || r.Dy() != size {
			t.Errorf("app-%d.png is %v", size, r)
		}
		// The corners are transparent (a rounded tile), the centre opaque.
		if _, _, _, a := img.At(0, 0).RGBA(); a != 0 && size > 24 {
			t.Errorf("app-%d.png: corner alpha %d, want 0", size, a)
		}
		if _, _, _, a := img.At(size/2, size/2).RGBA(); a != 0xffff {
			t.Errorf("app-%d.png: centre alpha %d, want opaque", size, a)
		}
	}
}

func TestEveryStateHasDistinctIconsForEachPanel(t *testing.T) {
	seen := map[string]string{}
	for _, s := range States {
		for name, b := range map[string][]byte{
			"light": PNG(s, Light), "dark": PNG(s, Dark), "template": Template(s),
		} {
			img, err := png.Decode(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("%s/%s: %v", s, name, err)
			}
			if img.Bounds().Dx() != 32 {
				t.Errorf("%s/%s: %v, want 32 px", s, name, img.Bounds())
			}
			if prev, dup := seen[string(b)]; dup {
				t.Errorf("%s/%s is the same picture as %s", s, name, prev)
			}
			seen[string(b)] = string(s) + "/" + name
		}
	}
}

func TestTemplateIconsAreBlackAndAlphaOnly(t *testing.T) {
	for _, s := range States {
		img, _ := png.Decode(bytes.NewReader(Template(s)))
		b := img.Bounds()
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				r, g, bl, a := img.At(x, y).RGBA()
				if a != 0 && (r|g|bl) != 0 {
					t.Fatalf("%s template: pixel %d,%d has color", s, x, y)
				}
			}
		}
	}
}

func TestICOFilesHoldPNGsOfTheirDirectorySizes(t *testing.T) {
	check := func(name string, ico []byte, want []int) {
		t.Helper()
		if len(ico) < 6 || binary.LittleEndian.Uint16(ico[2:]) != 1 {
			t.Fatalf("%s: not an ICO", name)
		}
		n := int(binary.LittleEndian.Uint16(ico[4:]))
		if n != len(want) {
			t.Fatalf("%s: %d images, want %d", name, n, len(want))
		}
		for i := 0; i < n; i++ {
			e := ico[6+16*i:]
			w := int(e[0])
			if w == 0 {
				w = 256
			}
			size := binary.LittleEndian.Uint32(e[8:])
			off := binary.LittleEndian.Uint32(e[12:])
			img, err := png.Decode(bytes.NewReader(ico[off : off+size]))
			if err != nil {
				t.Fatalf("%s entry %d: %v", name, i, err)
			}
			if img.Bounds().Dx() != w || w != want[i] {
				t.Errorf("%s entry %d: directory %d, image %d, want %d", name, i, w, img.Bounds().Dx(), want[i])
			}
		}
	}
	check("app.ico", AppICO(), []int{16, 24, 32, 48, 64, 128, 256})
	for _, s := range States {
		check(string(s)+" light", ICO(s, Light), []int{16, 20, 24, 32, 48})
		check(string(s)+" dark", ICO(s, Dark), []int{16, 20, 24, 32, 48})
	}
}
