// Package icons holds smtpshim's artwork, drawn in code by ./gen and
// embedded: the application icon (app-<size>.png for 16 to 512 px, and
// app.ico) for installers and desktop entries, and the tray icons.
//
// A tray icon names one of four states by a badge on an envelope: an arrow
// (relaying), a clock (mail waiting), an exclamation mark (needs
// attention) and two bars (paused). Each comes for light panels (a dark
// envelope), dark panels (a light one), as a macOS template (black and
// transparent, tinted by the system), and as a multi-size Windows ICO.
//
// Linux trays get PNG, the only format fyne.io/systray decodes there.
package icons

//go:generate go run ./gen

import (
	"embed"
	"fmt"
)

//go:embed *.png *.ico
var files embed.FS

// State is what a tray icon shows.
type State string

// The tray icon states.
const (
	Relaying  State = "relaying"
	Waiting   State = "waiting"
	Attention State = "attention"
	Paused    State = "paused"
)

// States lists every state, for tests and tools.
var States = []State{Relaying, Waiting, Attention, Paused}

// Panel is the kind of background the icon sits on.
type Panel string

// Panels.
const (
	Light Panel = "light" // a light panel: the envelope is dark
	Dark  Panel = "dark"  // a dark panel: the envelope is light
)

// AppSizes lists the sizes app-<size>.png comes in.
var AppSizes = []int{16, 24, 32, 48, 64, 128, 256, 512}

// App returns the application icon as PNG at one of AppSizes.
func App(size int) ([]byte, error) { return files.ReadFile(fmt.Sprintf("app-%d.png", size)) }

// AppICO returns the application icon as a Windows ICO (16 to 256 px).
func AppICO() []byte { return must(files.ReadFile("app.ico")) }

// PNG returns the 32 px tray icon for a state on a panel.
func PNG(s State, p Panel) []byte {
	return must(files.ReadFile(fmt.Sprintf("tray-%s-%s.png", s, p)))
}

// ICO returns the Windows tray icon (16 to 48 px) for a state on a panel.
func ICO(s State, p Panel) []byte {
	return must(files.ReadFile(fmt.Sprintf("tray-%s-%s.ico", s, p)))
}

// Template returns the macOS template image for a state.
func Template(s State) []byte {
	return must(files.ReadFile(fmt.Sprintf("tray-%s-template.png", s)))
}

// must turns a missing embedded file, which only a broken build can
// cause, into an empty icon rather than a crash: a tray without a picture
// still works.
func must(b []byte, err error) []byte {
	if err != nil {
		return nil
	}
	return b
}
