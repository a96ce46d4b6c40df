package tray

import "golang.org/x/sys/windows/registry"

// systemUsesLightTheme reads the taskbar's theme (Settings >
// Personalisation > Colours > "Choose your default Windows mode").
func systemUsesLightTheme() bool {
	k, err := registry.OpenKey(registry.CURRENT_USER, `Software\Microsoft\Windows\CurrentVersion\Themes\Personalize`, registry.QUERY_VALUE)
	if err != nil {
		return false
	}
	defer k.Close()
	v, _, err := k.GetIntegerValue("SystemUsesLightTheme")
	return err == nil && v == 1
}
