//go:build !windows

package tray

func systemUsesLightTheme() bool { return false }
