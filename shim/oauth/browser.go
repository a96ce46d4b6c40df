package oauth

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// OpenBrowser opens url in the person's browser. Like xdg-open, it first
// tries the commands in $BROWSER (a colon-separated list; "%s" in a command
// stands for the address, otherwise the address is appended), then the
// platform's own opener. A command that is still running after a moment
// counts as success: many browsers stay in the foreground.
func OpenBrowser(url string) error {
	if b := os.Getenv("BROWSER"); b != "" {
		var errs []error
		for _, cmd := range strings.Split(b, ":") {
			if strings.TrimSpace(cmd) == "" {
				continue
			}
			args := strings.Fields(cmd)
			replaced := false
			for i, a := range args {
				if strings.Contains(a, "%s") {
					args[i] = strings.ReplaceAll(a, "%s", url)
					replaced = true
				}
			}
			if !replaced {
				args = append(args, url)
			}
			err := run(args)
			if err == nil {
				return nil
			}
			errs = append(errs, err)
		}
		return fmt.Errorf("no browser in $BROWSER worked: %w", errors.Join(errs...))
	}
	switch runtime.GOOS {
	case "windows":
		return run([]string{"rundll32", "url.dll,FileProtocolHandler", url})
	case "darwin":
		return run([]string{"open", url})
	}
	return run([]string{"xdg-open", url})
}

func run(args []string) error {
	cmd := exec.Command(args[0], args[1:]...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		return nil
	case <-time.After(3 * time.Second):
		// Still running: a browser in the foreground. The goroutine
		// above reaps it whenever it exits.
		return nil
	}
}
