package settings

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// OpenBrowser opens url in the user's browser. Like xdg-open it honours
// BROWSER, a colon-separated list of commands tried in turn, where %s
// stands for the URL (and is appended when absent).
//
// The URL may hold a one-time token on the browser's command line; it is
// spent within moments, when the browser loads it.
func OpenBrowser(url string) error {
	if b := os.Getenv("BROWSER"); b != "" {
		var err error
		for _, c := range strings.Split(b, ":") {
			if c = strings.TrimSpace(c); c == "" {
				continue
			}
			args := strings.Fields(c)
			found := false
			for i, a := range args {
				if strings.Contains(a, "%s") {
					args[i] = strings.ReplaceAll(a, "%s", url)
					found = true
				}
			}
			if !found {
				args = append(args, url)
			}
			if err = start(args[0], args[1:]...); err == nil {
				return nil
			}
		}
		return err
	}
	switch runtime.GOOS {
	case "windows":
		return start("rundll32", "url.dll,FileProtocolHandler", url)
	case "darwin":
		return start("open", url)
	default:
		return start("xdg-open", url)
	}
}

// OpenFile opens a file with the desktop's default application.
func OpenFile(path string) error { return OpenBrowser(path) }

func start(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		return err
	}
	// Reap it when it ends; browsers hand off and exit, or stay.
	go cmd.Wait()
	return nil
}

// Opener opens pages of a Server in the browser; the tray uses it.
type Opener struct{ S *Server }

// Open opens path with a fresh one-time link.
func (o Opener) Open(path string) error {
	if o.S == nil {
		return errors.New("no settings page")
	}
	return OpenBrowser(o.S.OneTimeURL(path))
}
