//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// desktop measures what matters to someone who keeps smtpshim running all
// day: how fast a fresh process answers 220, how much memory it holds
// once started, and that it costs no CPU and makes no periodic wake-ups
// while nothing is queued. It measures plain `smtpshim` (engine, tray and
// settings page) on a private X server and session bus with xfce4-panel
// as the tray host; where those are missing, `smtpshim serve` (the engine
// alone), and the rows say which.
//
// A wake-up of the tray can be its own doing (a timer, a signal it sends)
// or the tray host's (a call that reads the item or its menu, which the
// process must answer). So in tray mode the idle window also counts the
// D-Bus messages to and from smtpshim, as dbus-monitor shows them, and
// then measures a fresh `smtpshim serve` for as long.
//
// Measured with dbus-monitor: xfce4-panel does not poll a
// StatusNotifierItem. It reads the item (Properties.GetAll) and the menu
// (GetLayout, GetGroupProperties) only after a signal from it, so an idle
// tray that sends nothing is called by nobody. The 3 wake-ups/s once
// measured here were the tray's own: a minute ticker that set every menu
// item again (each setter emits ItemsPropertiesUpdated, LayoutUpdated and
// PropertiesChanged, 46 signals, and the panel answered with GetAll ×2,
// GetLayout and GetGroupProperties), and the icon set again 4.3 s after
// start.
//
// What is left is the Go runtime's, and the rows count it. sysmon sleeps
// at most 60 s when every P is idle (strace: futex with a 60 s timeout,
// then a read of the cgroup's CPU limit). And once a process has run one
// GC, the runtime forces another every 2 minutes (gctrace: "GC forced"),
// during which sysmon polls every 20 µs: 20–40 context switches each. The
// tray mode's start-up allocates past the first 4 MB heap goal, so it has
// forced GCs from the start; a fresh `smtpshim serve` has not, until its
// first mail. gctrace (GODEBUG=gctrace=1) is on for these processes so
// that the forced GCs in the window can be counted.
func (b *bench) desktop(ctx context.Context) error {
	if b.shim != nil {
		if err := b.shim.stop(); err != nil {
			return err
		}
		b.shim = nil
	}
	mode := "engine alone"
	args := []string{"serve"}
	// gctrace writes a line per GC to the log, so the forced GCs in the
	// idle window can be counted.
	env := []string{gcTrace}
	if e, stop, err := b.desktopSession(); err == nil {
		defer stop()
		mode, args, env = "tray mode", []string{"--at-login"}, append(e, gcTrace)
	} else {
		fmt.Fprintf(os.Stderr, "shimbench: no private desktop session (%v); measuring the engine alone\n", err)
	}
	var starts []time.Duration
	var rss []int64
	var last *shimProc
	for i := range b.o.starts {
		if err := ctx.Err(); err != nil {
			return err
		}
		d, p, err := startTo220(b.bin, b.config, b.shimAddr, filepath.Join(b.dir, "smtpshim.log"), args, env)
		if err != nil {
			return fmt.Errorf("start %d: %w", i+1, err)
		}
		starts = append(starts, d)
		time.Sleep(2 * time.Second) // settled: start-up work done
		r, err := statusKB(p.cmd.Process.Pid, "VmRSS:")
		if err != nil {
			p.kill()
			return err
		}
		rss = append(rss, r)
		if i < b.o.starts-1 {
			if err := p.stop(); err != nil {
				return err
			}
			continue
		}
		last = p
	}
	b.shim = last
	slices.Sort(starts)
	slices.Sort(rss)
	medStart, medRSS := starts[len(starts)/2], rss[len(rss)/2]
	b.addRow(row{
		scenario: fmt.Sprintf("7. start until the listener answers 220 (%s, median of %d)", mode, len(starts)),
		direct:   "—",
		shim:     fmt.Sprintf("%.0f ms (%.0f–%.0f)", ms64(medStart), ms64(starts[0]), ms64(starts[len(starts)-1])),
		target:   "< 150 ms",
		met:      yesNo(medStart < 150*time.Millisecond),
	})
	b.addRow(row{
		scenario: fmt.Sprintf("8. idle RSS 2 s after start (%s, median of %d)", mode, len(rss)),
		direct:   "—",
		shim:     mib(medRSS),
		target:   "< 25 MiB",
		met:      yesNo(medRSS < 25<<20),
	})

	idle := max(b.o.idle, 10*time.Second)
	pid := b.shim.cmd.Process.Pid
	var bus *busMonitor
	if addr := envValue(env, "DBUS_SESSION_BUS_ADDRESS"); addr != "" {
		var err error
		if bus, err = monitorBus(addr, pid); err != nil {
			fmt.Fprintf(os.Stderr, "shimbench: cannot watch smtpshim's D-Bus traffic: %v\n", err)
		}
	}
	logPath := filepath.Join(b.dir, "smtpshim.log")
	gc0 := forcedGCs(logPath)
	pct, cpu, wakeups, switches, err := idleCost(ctx, pid, idle)
	gcs := forcedGCs(logPath) - gc0
	var callsIn, sent map[string]int
	if bus != nil {
		callsIn, sent = bus.stop()
	}
	if err != nil {
		return err
	}
	b.addRow(row{
		scenario: fmt.Sprintf("9. fresh, nothing queued, idle for %s: CPU (%s)", idle.Round(time.Second), mode),
		direct:   "—",
		shim:     fmt.Sprintf("%.3f %% (%.1f ms CPU)", pct, float64(cpu.Microseconds())/1000),
		target:   "< 0.05 %",
		met:      yesNo(pct < 0.05),
	})
	b.addRow(row{
		scenario: "9. same: wake-ups (context switches of all threads)",
		direct:   "—",
		shim:     fmt.Sprintf("%.2f /s (%d)", wakeups, switches),
		target:   "no periodic wake-ups (< 0.2 /s)",
		met:      yesNo(wakeups < 0.2),
	})
	b.addRow(row{
		scenario: "9. same: forced GCs (the Go runtime's, every 2 min once a first GC ran)",
		direct:   "—",
		shim:     fmt.Sprint(gcs),
	})
	if bus != nil {
		b.addRow(row{
			scenario: "9. same: D-Bus signals and calls smtpshim sent",
			direct:   "—",
			shim:     tally(sent),
			target:   "0",
			met:      yesNo(len(sent) == 0),
		})
		b.addRow(row{
			scenario: "9. same: D-Bus calls into smtpshim (the tray host reading it; not its doing)",
			direct:   "—",
			shim:     tally(callsIn),
		})
	}
	if mode == "engine alone" {
		return nil
	}

	// The floor: the engine alone, fresh, idle for as long.
	if err := b.shim.stop(); err != nil {
		return err
	}
	b.shim = nil
	_, p, err := startTo220(b.bin, b.config, b.shimAddr, logPath, []string{"serve"}, []string{gcTrace})
	if err != nil {
		return err
	}
	b.shim = p
	time.Sleep(2 * time.Second)
	gc0 = forcedGCs(logPath)
	_, _, floor, n, err := idleCost(ctx, p.cmd.Process.Pid, idle)
	if err != nil {
		return err
	}
	b.addRow(row{
		scenario: "9. same, the engine alone (`smtpshim serve`): wake-ups (forced GCs)",
		direct:   "—",
		shim:     fmt.Sprintf("%.2f /s (%d; %d forced GCs)", floor, n, forcedGCs(logPath)-gc0),
	})
	return nil
}

// idleCost leaves process pid alone for d and returns its CPU use (in
// percent of one core, and in total) and its wake-ups (per second, and
// in total) meanwhile.
func idleCost(ctx context.Context, pid int, d time.Duration) (pct float64, cpu time.Duration, perSec float64, switches int64, err error) {
	cpu0, sw0, err := taskTotals(pid)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return 0, 0, 0, 0, ctx.Err()
	case <-time.After(d):
	}
	cpu1, sw1, err := taskTotals(pid)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	el := time.Since(t0).Seconds()
	return 100 * (cpu1 - cpu0).Seconds() / el, cpu1 - cpu0, float64(sw1-sw0) / el, sw1 - sw0, nil
}

const gcTrace = "GODEBUG=gctrace=1"

// forcedGCs counts the runtime's "GC forced" lines (gctrace) in the log.
func forcedGCs(logPath string) int {
	data, err := os.ReadFile(logPath)
	if err != nil {
		return 0
	}
	return strings.Count(string(data), "GC forced\n")
}

// envValue returns the value of key in a list of KEY=value.
func envValue(env []string, key string) string {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, key+"="); ok {
			return v
		}
	}
	return ""
}

func ms64(d time.Duration) float64 { return d.Seconds() * 1000 }

// startTo220 starts `smtpshim serve` and returns how long it took until a
// client connecting to addr read the 220 greeting, polling every
// millisecond.
func startTo220(bin, config, addr, logPath string, args, env []string) (time.Duration, *shimProc, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 0, nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, append([]string{"--config", config}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	p := &shimProc{bin: bin, config: config, addr: addr, logPath: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() { p.waitErr = cmd.Wait(); close(p.exited) }()
	for time.Since(t0) < 15*time.Second {
		select {
		case <-p.exited:
			return 0, nil, fmt.Errorf("smtpshim exited at start (%v); its log:\n%s", p.waitErr, tail(logPath, 20))
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			time.Sleep(time.Millisecond)
			continue
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		d := time.Since(t0)
		c.Close()
		if err != nil || !strings.HasPrefix(line, "220") {
			p.kill()
			return 0, nil, fmt.Errorf("greeting %q, %v", line, err)
		}
		return d, p, nil
	}
	p.kill()
	return 0, nil, fmt.Errorf("smtpshim did not answer on %s within 15 s", addr)
}

// statusKB reads a "kB" field of /proc/PID/status, in bytes.
func statusKB(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, field); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc status", field)
}

// taskTotals sums, over the process's threads, the time on CPU
// (schedstat, in ns) and the context switches (each one a wake-up or a
// preemption).
func taskTotals(pid int) (cpu time.Duration, switches int64, err error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name(), "schedstat"))
		if err != nil {
			continue // the thread ended
		}
		f := strings.Fields(string(data))
		if len(f) < 1 {
			return 0, 0, errors.New("unexpected schedstat format")
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, err
		}
		cpu += time.Duration(ns)
		status, err := os.ReadFile(filepath.Join(dir, e.Name(), "status"))
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(status)) {
			for _, k := range []string{"voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"} {
				if v, ok := strings.CutPrefix(line, k); ok {
					n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					switches += n
				}
			}
		}
	}
	return cpu, switches, nil
}

// desktopSession starts a private X server (Xvfb), session bus and tray
// host (xfce4-panel) and returns the environment that points at them, and
// what stops them.
func (b *bench) desktopSession() (env []string, stop func(), err error) {
	var procs []*exec.Cmd
	stop = func() {
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].Process.Kill()
			procs[i].Wait()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	start := func(c *exec.Cmd) error {
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			return err
		}
		procs = append(procs, c)
		return nil
	}
	n := 90 + os.Getpid()%100
	display := fmt.Sprintf(":%d", n)
	if err := start(exec.Command("Xvfb", display, "-screen", "0", "800x480x24", "-nolisten", "tcp")); err != nil {
		return nil, nil, fmt.Errorf("Xvfb: %w", err)
	}
	sock := fmt.Sprintf("/tmp/.X11-unix/X%d", n)
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i > 500 {
			return nil, nil, errors.New("Xvfb did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	bus := exec.Command("dbus-daemon", "--session", "--nofork", "--print-address=1")
	out, err := bus.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := start(bus); err != nil {
		return nil, nil, fmt.Errorf("dbus-daemon: %w", err)
	}
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return nil, nil, fmt.Errorf("dbus-daemon: %w", err)
	}
	home := filepath.Join(b.dir, "desktop-home")
	xdg := filepath.Join(home, ".config")
	env = []string{"DISPLAY=" + display, "DBUS_SESSION_BUS_ADDRESS=" + strings.TrimSpace(addr)}
	if root, err := moduleRoot(); err == nil {
		panelCfg := filepath.Join(xdg, "xfce4", "xfconf", "xfce-perchannel-xml")
		if data, err := os.ReadFile(filepath.Join(root, ".ci", "screenshots-panel", "xfce4-panel.xml")); err == nil && os.MkdirAll(panelCfg, 0o700) == nil {
			os.WriteFile(filepath.Join(panelCfg, "xfce4-panel.xml"), data, 0o600)
		}
	}
	panel := exec.Command("xfce4-panel", "--disable-wm-check")
	panel.Env = append(os.Environ(), append(env, "HOME="+home, "XDG_CONFIG_HOME="+xdg)...)
	if err := start(panel); err != nil {
		return nil, nil, fmt.Errorf("xfce4-panel: %w", err)
	}
	wait := exec.Command("gdbus", "wait", "--session", "--timeout", "20", "org.kde.StatusNotifierWatcher")
	wait.Env = append(os.Environ(), env...)
	if out, err := wait.CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("no tray host on the session bus: %v %s", err, out)
	}
	return env, stop, nil
}
