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
// tries the commands in $BROWSER, then the platform's own opener (see
// BrowserCommands). A command that is still running after a moment counts
// as success: many browsers stay in the foreground.
func OpenBrowser(url string) error {
	var errs []error
	for _, args := range BrowserCommands(url) {
		err := run(args)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("no browser could be started: %w", errors.Join(errs...))
}

// BrowserCommands lists the commands that open url, in the order to try
// them. Like xdg-open, $BROWSER (a colon-separated list; "%s" in a command
// stands for the address, otherwise the address is appended) comes first
// and, when set, alone; otherwise it is the platform's own opener.
func BrowserCommands(url string) [][]string {
	var out [][]string
	if b := os.Getenv("BROWSER"); b != "" {
		for _, cmd := range strings.Split(b, ":") {
			args := strings.Fields(cmd)
			if len(args) == 0 {
				continue
			}
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
			out = append(out, args)
		}
		return out
	}
	switch runtime.GOOS {
	case "windows":
		return [][]string{{"rundll32", "url.dll,FileProtocolHandler", url}}
	case "darwin":
		return [][]string{{"open", url}}
	}
	return [][]string{{"xdg-open", url}}
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
