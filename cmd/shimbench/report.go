//go:build linux

package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// row is one line of the results table.
type row struct {
	scenario, direct, shim, ratio, target, met string
}

// cost is one scenario's CPU and memory, for the second table.
type cost struct {
	scenario string
	d, s     measured
}

func (b *bench) addRow(r row) {
	for _, f := range []*string{&r.direct, &r.shim, &r.ratio, &r.target, &r.met} {
		if *f == "" {
			*f = "—"
		}
	}
	b.rows = append(b.rows, r)
}

func (b *bench) addCost(scenario string, d, s measured) {
	b.costs = append(b.costs, cost{scenario, d, s})
}

func (b *bench) throughputRow(name string, d, s measured, minRatio float64, rounds []float64) {
	b.addRow(row{
		scenario: name,
		direct:   fmt.Sprintf("%.0f", d.rate()),
		shim:     fmt.Sprintf("%.0f", s.rate()),
		ratio:    ratio(s.rate(), d.rate()) + spread(rounds),
		target:   fmt.Sprintf("≥ %.1f×", minRatio),
		met:      yesNo(d.rate() > 0 && s.rate()/d.rate() >= minRatio),
	})
}

// p50Budget is how much a message may wait longer via the shim than
// directly, at the median, on one connection.
const p50Budget = 300 * time.Microsecond

// spread names the rounds' lowest and highest ratio, when there were
// several (the row shows the median round).
func spread(ratios []float64) string {
	if len(ratios) < 2 {
		return ""
	}
	return fmt.Sprintf(" (median of %d: %.2f–%.2f)", len(ratios), ratios[0], ratios[len(ratios)-1])
}

// latencyRows adds p50 and p99 of the per-message latency: from MAIL to
// the final 250, the span a client waits for each message.
func (b *bench) latencyRows(prefix string, d, s measured, budget time.Duration) {
	for _, q := range []struct {
		name string
		p    float64
	}{{"p50", 0.50}, {"p99", 0.99}} {
		dl, sl := percentile(d.lat, q.p), percentile(s.lat, q.p)
		r := row{
			scenario: fmt.Sprintf("%s latency %s (MAIL..250)", prefix, q.name),
			direct:   ms(dl),
			shim:     ms(sl),
			ratio:    fmt.Sprintf("%s (%+.2f ms)", ratio(sl.Seconds(), dl.Seconds()), (sl-dl).Seconds()*1000),
		}
		if budget > 0 && q.name == "p50" {
			r.target = fmt.Sprintf("≤ %+.2f ms", budget.Seconds()*1000)
			r.met = yesNo(sl-dl <= budget)
		}
		b.addRow(r)
	}
}

// percentile returns the nearest-rank percentile p (0..1) of lat.
func percentile(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1)+0.5)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", d.Seconds()*1000) }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// ratio is via-smtpshim over direct: below 1 the shim is slower (for a
// rate) or faster (for a latency).
func ratio(shim, direct float64) string {
	if direct == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", shim/direct)
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// perMsg is CPU time per message, in microseconds.
func perMsg(cpu time.Duration, n int) string {
	if n == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f µs", float64(cpu.Microseconds())/float64(n))
}

// print writes the results as markdown.
func (b *bench) print(w io.Writer) {
	fmt.Fprintf(w, "\n## smtpshim vs direct submission\n\n%s\n\n", b.machine)
	fmt.Fprintf(w, "Each run: %s (scenario 4: %d × 10 MB per connection), %d warm-up message(s) per connection first; scenarios 1–3: the median of %d rounds (each round direct, then via smtpshim). The provider offers %s. Rates count only messages the provider received; ratio = via smtpshim / direct.\n\n", b.o.dur, b.o.bigPer, b.o.warmup, b.o.rounds, b.providerKind())
	fmt.Fprintln(w, "| scenario | direct | via smtpshim | ratio | target | met? |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, r := range b.rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", r.scenario, r.direct, r.shim, r.ratio, r.target, r.met)
	}
	if len(b.costs) > 0 {
		fmt.Fprintln(w, "\nCPU per message (all processes share the machine's cores) and the shim's peak RSS (a fresh shim process per scenario; VmHWM at its end):")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| scenario | messages direct / via shim | direct: client + provider | via shim: client + provider | via shim: smtpshim | upstream connections direct / shim | smtpshim peak RSS |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
		for _, c := range b.costs {
			nd, ns := len(c.d.sent), len(c.s.sent)
			fmt.Fprintf(w, "| %s | %d / %d | %s | %s | %s | %d / %d | %s |\n", c.scenario, nd, ns,
				perMsg(c.d.benchCPU, nd), perMsg(c.s.benchCPU, ns), perMsg(c.s.shimCPU, ns), c.d.upConns, c.s.upConns, mib(c.s.peakRSS))
		}
	}
	if len(b.failures) > 0 {
		fmt.Fprintf(w, "\n**Integrity failures (%d):**\n\n", len(b.failures))
		for _, f := range b.failures {
			fmt.Fprintf(w, "- %s\n", f)
		}
	}
	if b.o.pprof != "" {
		fmt.Fprintf(w, "\nCPU profiles of the shim: %s/shim-sN.pprof (`go tool pprof -top %s PROFILE`); profiling adds a little CPU to the shim's numbers.\n", b.o.pprof, b.bin)
	}
}

// describeMachine names what the numbers were measured on.
func describeMachine(spoolDir string) string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := "?"
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(data))
	}
	fs := "?"
	var st syscall.Statfs_t
	if syscall.Statfs(spoolDir, &st) == nil {
		fs = fsName(st.Type)
	}
	return fmt.Sprintf("Machine: %d CPU(s) (nproc), %s; Linux %s; %s %s/%s; spool on %s.",
		runtime.NumCPU(), model, kernel, runtime.Version(), runtime.GOOS, runtime.GOARCH, fs)
}

// fsName names the file systems a spool is likely on: fsync costs differ
// by orders of magnitude between them.
func fsName(magic int64) string {
	switch magic {
	case 0xEF53:
		return "ext4"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x01021994:
		return "tmpfs (fsync is free)"
	case 0x794c7630:
		return "overlayfs"
	}
	return fmt.Sprintf("fs type %#x", magic)
}

// providerKind says how smtpshim sends bodies to the simulated provider.
func (b *bench) providerKind() string {
	if b.o.dataOnly {
		return "PIPELINING but no CHUNKING, so smtpshim sends DATA, dot-stuffed"
	}
	return "PIPELINING and CHUNKING, as Gmail and Microsoft 365 do, so smtpshim sends BDAT"
}
