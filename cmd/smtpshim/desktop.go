package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/tray"
	"github.com/smtpshim/smtpshim/tray/autostart"
	"github.com/smtpshim/smtpshim/tray/icons"
	"github.com/smtpshim/smtpshim/tray/notify"
	"github.com/smtpshim/smtpshim/tray/settings"
)

// desktop runs the relay with its desktop face: the tray icon, the
// settings page and notifications, in one process. Without a tray host
// it goes on as a plain relay.
func (a *app) desktop(args []string) error {
	fs := flag.NewFlagSet("smtpshim", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	atLogin := fs.Bool(strings.TrimPrefix(autostart.AtLoginFlag, "--"), false, "started at login: open no window")
	if err := fs.Parse(args); err != nil {
		return exit(exUsage, "%v", err)
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	spoolDir, err := cfg.EffectiveSpoolDir()
	if err != nil {
		return exit(exConfig, "%v", err)
	}
	// A second start (a double click, a login item and a menu entry) opens
	// the settings of the one that runs instead of failing on the port.
	if !*atLogin {
		if u, err := settings.RequestURL(spoolDir, "/"); err == nil {
			fmt.Fprintln(a.stderr, "smtpshim is already running; opening its settings")
			return settings.OpenBrowser(u)
		}
	}

	quietGC() // in the tray all day: no collection while there is nothing to do
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Started from a menu or at login, standard error goes nowhere: the
	// desktop face logs to a file ("Open log" opens it), and to standard
	// error too, for a start from a terminal.
	logPath := desktopLogPath(cfg, spoolDir)
	size, keep := cfg.EffectiveLogFileRotation()
	if lf, err := openLogFile(logPath, size, keep); err == nil {
		defer lf.Close()
		a.logOut = io.MultiWriter(a.stderr, lf)
	} else {
		fmt.Fprintf(a.stderr, "smtpshim: cannot write the log file %s: %v\n", logPath, err)
		logPath = ""
		a.logOut = a.stderr
	}
	log := a.loggerTo(a.logOut)

	a.ctx = ctx
	engineDone := make(chan error, 1)
	go func() {
		err := a.serve(nil)
		cancel() // the relay stopped: so does the tray
		engineDone <- err
	}()

	eng, err := tray.NewClient(cfg)
	if err != nil {
		cancel()
		<-engineDone
		return exit(exConfig, "%v", err)
	}
	page, err := settings.New(settings.Options{
		Engine: eng, ConfigPath: cfg.Path(), Store: keychain(cfg), Log: log, Version: version,
	})
	if err != nil {
		cancel()
		<-engineDone
		return exit(exUnavailable, "%v", err)
	}
	pageDone := make(chan error, 1)
	go func() { pageDone <- page.Run(ctx) }()
	if remove, err := page.WriteHandoff(spoolDir); err == nil {
		defer remove()
	} else {
		log.Warn("smtpshim settings will not find this settings page", "err", err)
	}

	var auto tray.Autostart
	if e, err := autostart.New(a.autostartArgs()...); err == nil {
		auto = e
	}
	appIcon, _ := icons.App(128)
	tray.Run(ctx, tray.Options{
		Engine:    eng.ForTray(),
		Pages:     settings.Opener{S: page},
		Autostart: auto,
		Notify:    notify.Desktop(appIcon),
		Log:       log,
		FirstRun:  !*atLogin,
		Quit:      cancel,
		OpenFile:  settings.OpenFile,
		LogPath:   logPath,
	})
	cancel()
	<-pageDone
	err = <-engineDone
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// settingsCmd opens the settings page of the running smtpshim.
func (a *app) settingsCmd(args []string) error {
	fs := flag.NewFlagSet("settings", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	printURL := fs.Bool("print-url", false, "print the one-time link instead of opening a browser")
	if err := fs.Parse(args); err != nil {
		return exit(exUsage, "%v", err)
	}
	path := "/"
	if fs.NArg() > 0 {
		path = "/" + strings.TrimPrefix(fs.Arg(0), "/")
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	spoolDir, err := cfg.EffectiveSpoolDir()
	if err != nil {
		return exit(exConfig, "%v", err)
	}
	u, err := settings.RequestURL(spoolDir, path)
	if err != nil {
		return exit(exUnavailable, "the settings page is served by smtpshim running on the desktop: start it with plain \"smtpshim\" (not \"smtpshim serve\"), then run this again")
	}
	if *printURL {
		fmt.Fprintln(a.stdout, u)
		return nil
	}
	if err := settings.OpenBrowser(u); err != nil {
		return exit(exUnavailable, "could not open a browser (%v); run \"smtpshim settings --print-url\" and open the link yourself", err)
	}
	return nil
}

// autostartCmd turns starting at login on or off.
func (a *app) autostartCmd(args []string) error {
	if len(args) != 1 || (args[0] != "on" && args[0] != "off" && args[0] != "status") {
		return exit(exUsage, "usage: smtpshim autostart on|off|status")
	}
	e, err := autostart.New(a.autostartArgs()...)
	if err != nil {
		return exit(exSoftware, "%v", err)
	}
	where, _ := e.Path()
	switch args[0] {
	case "on", "off":
		if err := e.Set(args[0] == "on"); err != nil {
			return exit(exIOErr, "start at login: %v", err)
		}
	}
	on, err := e.Enabled()
	if err != nil {
		return exit(exIOErr, "start at login: %v", err)
	}
	if on {
		fmt.Fprintf(a.stdout, "smtpshim starts at login (%s)\n", where)
	} else {
		fmt.Fprintln(a.stdout, "smtpshim does not start at login")
	}
	return nil
}

// autostartArgs keeps a --config given now for the start at login.
func (a *app) autostartArgs() []string {
	if a.configPath == "" {
		return nil
	}
	p, err := filepath.Abs(a.configPath)
	if err != nil {
		p = a.configPath
	}
	return []string{"--config", p}
}

// desktopLogPath is log_file from the config, or else smtpshim.log next
// to the spool directory (e.g. ~/.local/share/smtpshim/smtpshim.log).
func desktopLogPath(cfg *config.Config, spoolDir string) string {
	if cfg.LogFile != "" {
		return cfg.LogFile
	}
	return filepath.Join(filepath.Dir(spoolDir), "smtpshim.log")
}
