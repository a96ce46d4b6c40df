// Command gen draws smtpshim's icons: the application icon at every size
// an installer or desktop needs, and the tray icons for each state on
// light and dark panels, with a macOS template variant and Windows ICO
// files. The artwork is geometry in this file, so it can be changed in
// code review and redrawn with `go generate ./tray/icons`.
//
// Each pixel is the average of 8×8 samples of the shapes below, which
// gives clean anti-aliased edges without a vector library.
package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"log"
	"math"
	"os"
	"path/filepath"
)

func main() {
	out := "."
	if len(os.Args) > 1 {
		out = os.Args[1]
	}
	generate(out)
}

// generate writes every icon file into the directory out.
func generate(out string) {
	var appPNGs [][]byte
	for _, size := range appSizes {
		b := encode(render(size, appIcon(size)))
		write(filepath.Join(out, fmt.Sprintf("app-%d.png", size)), b)
		if size <= 256 {
			appPNGs = append(appPNGs, b)
		}
	}
	write(filepath.Join(out, "app.ico"), ico(appPNGs))

	for _, st := range states {
		for _, panel := range []string{"light", "dark"} {
			write(filepath.Join(out, fmt.Sprintf("tray-%s-%s.png", st, panel)),
				encode(render(traySize, trayIcon(st, panel, traySize))))
			var entries [][]byte
			for _, size := range icoTraySizes {
				entries = append(entries, encode(render(size, trayIcon(st, panel, size))))
			}
			write(filepath.Join(out, fmt.Sprintf("tray-%s-%s.ico", st, panel)), ico(entries))
		}
		write(filepath.Join(out, fmt.Sprintf("tray-%s-template.png", st)),
			encode(render(traySize, trayIcon(st, "template", traySize))))
	}
}

var (
	appSizes     = []int{16, 24, 32, 48, 64, 128, 256, 512}
	states       = []string{"relaying", "waiting", "attention", "paused"}
	traySize     = 32
	icoTraySizes = []int{16, 20, 24, 32, 48}
)

func write(path string, b []byte) {
	if err := os.WriteFile(path, b, 0o644); err != nil {
		log.Fatal(err)
	}
}

func encode(img image.Image) []byte {
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&buf, img); err != nil {
		log.Fatal(err)
	}
	return buf.Bytes()
}

// ico packs PNG images into one ICO file. PNG entries are valid in ICO
// files since Windows Vista, and are what a 256 px entry must be.
func ico(pngs [][]byte) []byte {
	var buf bytes.Buffer
	le := binary.LittleEndian
	binary.Write(&buf, le, [3]uint16{0, 1, uint16(len(pngs))})
	offset := 6 + 16*len(pngs)
	for _, p := range pngs {
		cfg, err := png.DecodeConfig(bytes.NewReader(p))
		if err != nil {
			log.Fatal(err)
		}
		dim := func(n int) uint8 {
			if n >= 256 {
				return 0 // 0 means 256 in an ICO directory entry
			}
			return uint8(n)
		}
		buf.Write([]byte{dim(cfg.Width), dim(cfg.Height), 0, 0})
		binary.Write(&buf, le, [2]uint16{1, 32})
		binary.Write(&buf, le, [2]uint32{uint32(len(p)), uint32(offset)})
		offset += len(p)
	}
	for _, p := range pngs {
		buf.Write(p)
	}
	return buf.Bytes()
}

// A layer paints a color where its shape is, or clears the pixels there
// (a cut-out) when clear is set. Coordinates are in units of the icon's
// width: (0,0) top left, (1,1) bottom right.
type layer struct {
	shape shape
	c     color.NRGBA
	clear bool
}

type shape func(x, y float64) bool

func render(size int, layers []layer) image.Image {
	const ss = 8
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	for py := 0; py < size; py++ {
		for px := 0; px < size; px++ {
			var r, g, b, a float64 // premultiplied sums
			for sy := 0; sy < ss; sy++ {
				for sx := 0; sx < ss; sx++ {
					x := (float64(px) + (float64(sx)+0.5)/ss) / float64(size)
					y := (float64(py) + (float64(sy)+0.5)/ss) / float64(size)
					var cr, cg, cb, ca float64
					for _, l := range layers {
						if !l.shape(x, y) {
							continue
						}
						if l.clear {
							cr, cg, cb, ca = 0, 0, 0, 0
							continue
						}
						la := float64(l.c.A) / 255
						cr = float64(l.c.R)/255*la + cr*(1-la)
						cg = float64(l.c.G)/255*la + cg*(1-la)
						cb = float64(l.c.B)/255*la + cb*(1-la)
						ca = la + ca*(1-la)
					}
					r, g, b, a = r+cr, g+cg, b+cb, a+ca
				}
			}
			n := float64(ss * ss)
			r, g, b, a = r/n, g/n, b/n, a/n
			if a == 0 {
				continue
			}
			img.SetNRGBA(px, py, color.NRGBA{
				R: clamp(r / a), G: clamp(g / a), B: clamp(b / a), A: clamp(a),
			})
		}
	}
	return img
}

func clamp(v float64) uint8 { return uint8(math.Round(math.Max(0, math.Min(1, v)) * 255)) }

// Shapes.

func roundRect(x0, y0, x1, y1, r float64) shape {
	return func(x, y float64) bool {
		if x < x0 || x > x1 || y < y0 || y > y1 {
			return false
		}
		cx := math.Max(x0+r, math.Min(x, x1-r))
		cy := math.Max(y0+r, math.Min(y, y1-r))
		return (x-cx)*(x-cx)+(y-cy)*(y-cy) <= r*r
	}
}

func circle(cx, cy, r float64) shape {
	return func(x, y float64) bool { return (x-cx)*(x-cx)+(y-cy)*(y-cy) <= r*r }
}

// segment is a line from a to b with round caps, w wide.
func segment(ax, ay, bx, by, w float64) shape {
	return func(x, y float64) bool {
		dx, dy := bx-ax, by-ay
		t := ((x-ax)*dx + (y-ay)*dy) / (dx*dx + dy*dy)
		t = math.Max(0, math.Min(1, t))
		qx, qy := ax+t*dx-x, ay+t*dy-y
		return qx*qx+qy*qy <= w*w/4
	}
}

// polyline joins the points with segments.
func polyline(w float64, pts ...float64) shape {
	var parts []shape
	for i := 0; i+3 < len(pts); i += 2 {
		parts = append(parts, segment(pts[i], pts[i+1], pts[i+2], pts[i+3], w))
	}
	return union(parts...)
}

func triangle(ax, ay, bx, by, cx, cy float64) shape {
	side := func(px, py, qx, qy, x, y float64) float64 { return (qx-px)*(y-py) - (qy-py)*(x-px) }
	return func(x, y float64) bool {
		d1 := side(ax, ay, bx, by, x, y)
		d2 := side(bx, by, cx, cy, x, y)
		d3 := side(cx, cy, ax, ay, x, y)
		neg := d1 < 0 || d2 < 0 || d3 < 0
		pos := d1 > 0 || d2 > 0 || d3 > 0
		return !(neg && pos)
	}
}

func union(s ...shape) shape {
	return func(x, y float64) bool {
		for _, f := range s {
			if f(x, y) {
				return true
			}
		}
		return false
	}
}

func minus(a, b shape) shape { return func(x, y float64) bool { return a(x, y) && !b(x, y) } }

func rgb(hex uint32) color.NRGBA {
	return color.NRGBA{R: uint8(hex >> 16), G: uint8(hex >> 8), B: uint8(hex), A: 255}
}

// stroke keeps lines at least about one pixel wide at small sizes.
func stroke(w float64, size int) float64 { return math.Max(w, 1.3/float64(size)) }

// appIcon: a white envelope on a blue rounded square, with a green
// "sends on" arrow badge.
func appIcon(size int) []layer {
	blue := rgb(0x1a5fb4)
	blueDark := rgb(0x0d3f84)
	white := rgb(0xffffff)
	green := rgb(0x26a269)
	m := 0.04
	if size <= 24 {
		m = 0 // every pixel counts at 16 and 24 px
	}
	bg := roundRect(m, m, 1-m, 1-m, 0.2)
	// A subtle darker lower half gives the tile depth.
	lower := func(x, y float64) bool { return y > 0.62 && bg(x, y) }
	env := roundRect(0.15, 0.25, 0.81, 0.70, 0.05)
	flap := polyline(stroke(0.055, size), 0.17, 0.28, 0.48, 0.50, 0.79, 0.28)
	bx, by, br := 0.72, 0.70, 0.19
	arrow := union(
		segment(bx-0.10, by, bx+0.07, by, stroke(0.065, size)),
		triangle(bx+0.02, by-0.10, bx+0.13, by, bx+0.02, by+0.10),
	)
	return []layer{
		{shape: bg, c: blue},
		{shape: lower, c: color.NRGBA{R: blueDark.R, G: blueDark.G, B: blueDark.B, A: 70}},
		{shape: env, c: white},
		{shape: flap, c: blue},
		{shape: circle(bx, by, br+0.045), c: blue},
		{shape: circle(bx, by, br), c: green},
		{shape: arrow, c: white},
	}
}

// trayIcon: an envelope outline in the panel's text color with a badge
// whose color and symbol name the state. The shapes differ as well as the
// colors, so the state reads without color vision too.
//
// panel is "light" (dark glyph), "dark" (light glyph) or "template"
// (macOS: black and transparent only; the system tints it).
func trayIcon(state, panel string, size int) []layer {
	glyph := rgb(0x241f31)
	if panel == "dark" {
		glyph = rgb(0xf6f5f4)
	}
	badge := map[string]color.NRGBA{
		"relaying":  rgb(0x26a269),
		"waiting":   rgb(0xc64600),
		"attention": rgb(0xe01b24),
		"paused":    rgb(0x5e5c64),
	}[state]
	symbol := rgb(0xffffff)
	if panel == "dark" && state == "paused" {
		badge = rgb(0x9a9996)
		symbol = rgb(0x241f31)
	}
	template := panel == "template"
	if template {
		glyph, badge = rgb(0x000000), rgb(0x000000)
	}

	w := stroke(0.085, size)
	outer := roundRect(0.04, 0.14, 0.86, 0.72, 0.07)
	inner := roundRect(0.04+w, 0.14+w, 0.86-w, 0.72-w, math.Max(0.01, 0.07-w))
	env := union(minus(outer, inner), polyline(w, 0.08, 0.19, 0.45, 0.46, 0.82, 0.19))

	bx, by, br := 0.73, 0.72, 0.25
	var sym shape
	sw := stroke(0.085, size)
	switch state {
	case "relaying": // an arrow: mail goes on
		sym = union(
			segment(bx-0.13, by, bx+0.05, by, sw),
			triangle(bx+0.00, by-0.12, bx+0.15, by, bx+0.00, by+0.12),
		)
	case "waiting": // a clock: mail waits
		sym = union(
			minus(circle(bx, by, 0.165), circle(bx, by, 0.165-stroke(0.06, size))),
			segment(bx, by, bx, by-0.10, stroke(0.06, size)),
			segment(bx, by, bx+0.08, by, stroke(0.06, size)),
		)
	case "attention": // an exclamation mark
		sym = union(
			segment(bx, by-0.14, bx, by+0.03, sw),
			circle(bx, by+0.12, sw*0.62),
		)
	case "paused": // two bars
		sym = union(
			roundRect(bx-0.11, by-0.12, bx-0.03, by+0.12, 0.015),
			roundRect(bx+0.03, by-0.12, bx+0.11, by+0.12, 0.015),
		)
	}
	return []layer{
		{shape: env, c: glyph},
		{shape: circle(bx, by, br+0.07), clear: true}, // separates badge from outline
		{shape: circle(bx, by, br), c: badge},
		{shape: sym, c: symbol, clear: template},
	}
}
