package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The committed icons are what the generator draws: nobody edited a PNG
// by hand, and nobody changed the drawing without running go generate.
func TestCommittedIconsMatchTheGenerator(t *testing.T) {
	if testing.Short() {
		t.Skip("draws every icon")
	}
	dir := t.TempDir()
	generate(dir)
	made, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(made) == 0 {
		t.Fatal("the generator wrote nothing")
	}
	for _, f := range made {
		want, _ := os.ReadFile(f)
		got, err := os.ReadFile(filepath.Join("..", filepath.Base(f)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from what ./gen draws: run go generate ./tray/icons", filepath.Base(f))
		}
	}
}
