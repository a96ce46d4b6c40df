//go:build linux

// Command shimbench measures smtpshim against direct submission, as
// ratios, on one machine and in one run.
//
// Everything runs locally: a simulated provider (upstreamsim, demanding
// AUTH over STARTTLS and keeping only each message's hash), the real
// smtpshim binary as a separate process with a real config file, and a
// load client. Each scenario runs twice back to back: the client submits
// directly to the provider as a modern sender does (STARTTLS and AUTH once
// per connection), then as an old client through smtpshim (plain SMTP, no
// AUTH). Every message is unique and must reach the provider intact; a
// missing or altered message makes the exit status non-zero. Missed
// performance targets do not: the table says so.
//
// Usage:
//
//	go run ./cmd/shimbench [-dur 5s] [-conns 8] [-idle 60s] [-shim PATH] [-pprof DIR] [-scenarios 1,2,3,4,5] [-data-only]
//
// With -pprof DIR the shim writes a CPU profile per scenario to
// DIR/shim-sN.pprof (read it with `go tool pprof -top BINARY PROFILE`).
package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

// options are the command-line flags.
type options struct {
	shim      string
	dur       time.Duration
	conns     int
	warmup    int
	bigPer    int
	idle      time.Duration
	drain     time.Duration
	pprof     string
	scenarios []int
	keep      bool
	dataOnly  bool
	rounds    int
	starts    int
}

func main() {
	os.Exit(run())
}

func run() int {
	var o options
	var only string
	flag.StringVar(&o.shim, "shim", "", "smtpshim binary to measure (default: build ./cmd/smtpshim into tmp/smtpshim)")
	flag.DurationVar(&o.dur, "dur", 5*time.Second, "length of each timed run (scenarios 1, 2, 3 and 5 run it twice: direct, then via smtpshim)")
	flag.IntVar(&o.conns, "conns", 8, "concurrent connections in scenarios 2, 4 and 5")
	flag.IntVar(&o.warmup, "warmup", 2, "untimed messages per connection before each timed run")
	flag.IntVar(&o.bigPer, "big", 3, "10 MB messages per connection in the memory scenario (4)")
	flag.DurationVar(&o.idle, "idle", 60*time.Second, "how long to leave the shim idle to measure its idle CPU (0 skips)")
	flag.DurationVar(&o.drain, "drain", 60*time.Second, "how long to wait for every message to reach the provider")
	flag.StringVar(&o.pprof, "pprof", "", "directory for a CPU profile of the shim per scenario (shim-sN.pprof)")
	flag.StringVar(&only, "scenarios", "1,2,3,4,5", "which scenarios to run, comma-separated")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (config, spool, shim log) after the run")
	flag.BoolVar(&o.dataOnly, "data-only", false, "the simulated provider offers no CHUNKING, so smtpshim sends DATA (dot-stuffed) instead of BDAT")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of scenarios 1, 2 and 3 (direct, then via smtpshim, each round); the median round is reported")
	flag.IntVar(&o.starts, "starts", 5, "starts of a fresh smtpshim for the desktop rows (7, 8, 9); 0 skips them")
	flag.Parse()
	for f := range strings.SplitSeq(only, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 5 {
			fmt.Fprintf(os.Stderr, "shimbench: -scenarios: %q is not a scenario number from 1 to 5\n", f)
			return 2
		}
		o.scenarios = append(o.scenarios, n)
	}
	if o.conns < 1 || o.dur <= 0 || o.warmup < 0 || o.bigPer < 1 || o.rounds < 1 || o.starts < 0 {
		fmt.Fprintln(os.Stderr, "shimbench: -conns, -dur, -big and -rounds must be positive, -warmup and -starts not negative")
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b, err := newBench(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "shimbench:", err)
		return 1
	}
	err = b.runAll(ctx)
	b.close(err != nil || len(b.failures) > 0)
	b.print(os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "shimbench:", err)
		return 1
	}
	if len(b.failures) > 0 {
		fmt.Fprintf(os.Stderr, "shimbench: %d integrity failure(s):\n", len(b.failures))
		for _, f := range b.failures {
			fmt.Fprintln(os.Stderr, "  -", f)
		}
		return 1
	}
	return 0
}

// bench is the whole setup: the provider, the shim's files and process,
// and what has been measured so far.
type bench struct {
	o        options
	dir      string // config, CA, password, spool and the shim's log
	sim      *upstreamsim.Server
	bin      string
	config   string
	shimAddr string
	shim     *shimProc
	direct   target
	viaShim  target
	machine  string

	rows     []row
	costs    []cost
	failures []string
}

// newBench starts the provider, builds smtpshim if needed and writes its
// config; the shim itself starts per scenario.
func newBench(o options) (_ *bench, err error) {
	b := &bench{o: o}
	if b.bin = o.shim; b.bin == "" {
		root, err := moduleRoot()
		if err != nil {
			return nil, err
		}
		if b.bin, err = buildShim(root); err != nil {
			return nil, err
		}
	}
	if b.bin, err = filepath.Abs(b.bin); err != nil {
		return nil, err
	}
	if o.pprof != "" {
		if err := os.MkdirAll(o.pprof, 0o755); err != nil {
			return nil, err
		}
		if b.o.pprof, err = filepath.Abs(o.pprof); err != nil {
			return nil, err
		}
	}
	if b.dir, err = os.MkdirTemp("", "shimbench-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if b.sim != nil {
				b.sim.Close()
			}
			os.RemoveAll(b.dir)
		}
	}()
	pw := make([]byte, 16)
	rand.Read(pw)
	password := hex.EncodeToString(pw)
	b.sim, err = upstreamsim.Start(upstreamsim.Options{
		Users:    map[string]string{benchSender: password},
		HashOnly: true,        // the provider must not be the one using memory
		Chunking: !o.dataOnly, // CHUNKING, as Gmail and Microsoft 365 offer
	})
	if err != nil {
		return nil, fmt.Errorf("starting the simulated provider: %w", err)
	}
	b.direct = target{
		addr: b.sim.Addr,
		// The defaults, like the shim's: TLS 1.3 is what both negotiate,
		// and verify checks that every message came over it.
		tls:  &tls.Config{RootCAs: b.sim.Cert.Pool},
		user: benchSender,
		pass: password,
	}
	if b.shimAddr, err = freePort(); err != nil {
		return nil, err
	}
	b.viaShim = target{addr: b.shimAddr}
	if b.config, err = b.writeConfig(password); err != nil {
		return nil, err
	}
	b.machine = describeMachine(b.dir)
	return b, nil
}

// writeConfig writes a real smtpshim config file, as `account add` would
// with a password_command, and the files it refers to.
func (b *bench) writeConfig(password string) (string, error) {
	ca := filepath.Join(b.dir, "provider-ca.pem")
	if err := os.WriteFile(ca, b.sim.Cert.CAPEM, 0o600); err != nil {
		return "", err
	}
	pwFile := filepath.Join(b.dir, "password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		return "", err
	}
	c := &config.Config{
		Listen:         []string{b.shimAddr},
		SpoolDir:       filepath.Join(b.dir, "spool"),
		MaxMessageSize: config.Size(64 << 20), // room for the 10 MB messages
		// Scenario 5 heals the provider and then runs `queue retry`; a
		// short backoff keeps the messages queued meanwhile moving too.
		RetryMin: config.Duration(time.Second),
		Accounts: []config.Account{{
			Address:         benchSender,
			Server:          b.sim.Addr,
			Security:        config.SecurityStartTLS,
			CAFile:          ca,
			PasswordCommand: "cat '" + pwFile + "'",
			// As many upstream connections as the load has client
			// connections, so the comparison with direct submission
			// measures the relay, not the account's default cap of 4.
			MaxConnections: 8,
		}},
	}
	c.SetPath(filepath.Join(b.dir, "config.toml"))
	if err := c.Save(); err != nil {
		return "", fmt.Errorf("writing the shim's config: %w", err)
	}
	return c.Path(), nil
}

// freePort returns a 127.0.0.1 address no one listens on right now.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// close stops the shim and the provider and removes the work directory,
// unless asked to keep it or something failed (its log tells why).
func (b *bench) close(failed bool) {
	if b.shim != nil {
		if err := b.shim.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "shimbench: stopping smtpshim:", err)
		}
		b.shim = nil
	}
	b.sim.Close()
	if b.o.keep || failed {
		fmt.Fprintf(os.Stderr, "shimbench: work directory kept: %s (shim log: %s)\n", b.dir, filepath.Join(b.dir, "smtpshim.log"))
		return
	}
	os.RemoveAll(b.dir)
}

// restartShim starts a fresh shim process for a scenario, so that its peak
// RSS, CPU time and profile belong to that scenario alone.
func (b *bench) restartShim(scenario string) error {
	if b.shim != nil {
		err := b.shim.stop()
		b.shim = nil
		if err != nil {
			return err
		}
	}
	var profile string
	if b.o.pprof != "" {
		profile = filepath.Join(b.o.pprof, "shim-"+scenario+".pprof")
	}
	p, err := startShim(b.bin, b.config, b.shimAddr, filepath.Join(b.dir, "smtpshim.log"), profile)
	if err != nil {
		return err
	}
	b.shim = p
	return nil
}

// measured is one run and what it cost.
type measured struct {
	runResult
	// delivered counts the timed messages the provider held when the run
	// ended: what reached the upstream, not merely what was accepted.
	delivered int
	benchCPU  time.Duration // the load client and the provider
	shimCPU   time.Duration // smtpshim, for runs through it
	upConns   int           // connections the provider accepted
	peakRSS   int64         // smtpshim's VmHWM at the end of the scenario
}

func (m measured) rate() float64 { return perSecond(m.delivered, m.elapsed) }

func (m measured) mibPerSec() float64 {
	if m.elapsed <= 0 || m.msgs == 0 {
		return 0
	}
	return float64(m.bytes) * float64(m.delivered) / float64(m.msgs) / (1 << 20) / m.elapsed.Seconds()
}

// measure runs the load client against t and counts what reached the
// provider; with the shim as target it also reads the shim's CPU time.
func (b *bench) measure(ctx context.Context, t target, spec loadSpec) (measured, error) {
	viaShim := t.addr == b.shimAddr
	b.sim.Reset()
	conns0 := b.sim.Connections()
	var shim0 time.Duration
	if viaShim {
		var err error
		if shim0, err = b.shim.cpuTime(); err != nil {
			return measured{}, err
		}
	}
	cpu0 := selfCPU()
	res := runLoad(ctx, t, spec)
	m := measured{runResult: res, benchCPU: selfCPU() - cpu0}
	if err := ctx.Err(); err != nil {
		return m, err
	}
	have := map[[32]byte]bool{}
	for _, msg := range b.sim.Messages() {
		have[msg.SHA256] = true
	}
	for _, h := range res.timed {
		if have[h] {
			m.delivered++
		}
	}
	m.upConns = b.sim.Connections() - conns0
	if viaShim {
		shim1, err := b.shim.cpuTime()
		if err != nil {
			return m, err
		}
		m.shimCPU = shim1 - shim0
	}
	return m, nil
}

// settle waits until every message of m has reached the provider and
// checks them (see verify), then adds the shim's cost of getting them
// there. A problem is recorded as an integrity failure under label.
func (b *bench) settle(label string, m *measured) time.Duration {
	shim0, _ := b.cpuOfShim()
	took, problems := b.verify(m.sent, b.o.drain)
	for _, p := range problems {
		b.failures = append(b.failures, label+": "+p)
	}
	if shim1, ok := b.cpuOfShim(); ok {
		m.shimCPU += shim1 - shim0
	}
	return took
}

func (b *bench) cpuOfShim() (time.Duration, bool) {
	if b.shim == nil {
		return 0, false
	}
	d, err := b.shim.cpuTime()
	return d, err == nil
}

// verify waits up to timeout for the provider to hold every message in
// want, then checks that each arrived exactly once, with its size and
// hash, authenticated as the bench account over TLS 1.3, and that nothing
// else arrived. It returns how long the wait took and what is wrong.
func (b *bench) verify(want map[[32]byte]int64, timeout time.Duration) (time.Duration, []string) {
	start := time.Now()
	var msgs []upstreamsim.Message
	for {
		msgs = b.sim.Messages()
		if allPresent(msgs, want) || time.Since(start) > timeout {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(start)
	var problems []string
	seen := map[[32]byte]int{}
	var unknown, wrongSize, dup, wrongAuth, wrongTLS int
	for _, msg := range msgs {
		size, ok := want[msg.SHA256]
		switch {
		case !ok:
			unknown++
		case msg.Size != size:
			wrongSize++
		}
		if seen[msg.SHA256]++; seen[msg.SHA256] == 2 {
			dup++
		}
		if msg.User != benchSender {
			wrongAuth++
		}
		if msg.TLSVersion != "TLS 1.3" {
			wrongTLS++
		}
	}
	missing := 0
	for h := range want {
		if seen[h] == 0 {
			missing++
		}
	}
	add := func(n int, what string) {
		if n > 0 {
			problems = append(problems, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(missing, fmt.Sprintf("of %d accepted messages never reached the provider within %s", len(want), timeout))
	add(unknown, "messages reached the provider with a hash no client sent (altered in transit)")
	add(wrongSize, "messages reached the provider with the wrong size")
	add(dup, "messages reached the provider more than once")
	add(wrongAuth, "messages reached the provider without AUTH as "+benchSender)
	add(wrongTLS, "messages reached the provider over something other than TLS 1.3")
	return took, problems
}

func allPresent(msgs []upstreamsim.Message, want map[[32]byte]int64) bool {
	if len(msgs) < len(want) {
		return false
	}
	n := 0
	for _, m := range msgs {
		if _, ok := want[m.SHA256]; ok {
			n++
		}
	}
	return n >= len(want)
}

// pair runs spec directly, then through a freshly started shim, and waits
// for both runs' messages to reach the provider.
func (b *bench) pair(ctx context.Context, scenario string, conns, size int, spec loadSpec) (d, s measured, err error) {
	spec.conns = conns
	spec.msgs = newFactory(scenario+"-direct", size)
	if d, err = b.measure(ctx, b.direct, spec); err != nil {
		return d, s, err
	}
	if err := d.firstErr(); err != nil {
		return d, s, fmt.Errorf("scenario %s, direct: %w", scenario, err)
	}
	b.settle("scenario "+scenario+", direct", &d)

	if err := b.restartShim(scenario); err != nil {
		return d, s, err
	}
	spec.msgs = newFactory(scenario+"-shim", size)
	if s, err = b.measure(ctx, b.viaShim, spec); err != nil {
		return d, s, err
	}
	if err := s.firstErr(); err != nil {
		return d, s, fmt.Errorf("scenario %s, via smtpshim: %w (shim log: %s)", scenario, err, b.shim.logPath)
	}
	b.settle("scenario "+scenario+", via smtpshim", &s)
	if s.peakRSS, err = b.shim.peakRSS(); err != nil {
		return d, s, err
	}
	return d, s, nil
}

// runAll runs the chosen scenarios, then the idle measurement.
func (b *bench) runAll(ctx context.Context) error {
	steps := []func(context.Context) error{b.latency, b.concurrent, b.large, b.memory, b.upstreamDown}
	for i, step := range steps {
		if !slices.Contains(b.o.scenarios, i+1) {
			continue
		}
		fmt.Fprintf(os.Stderr, "shimbench: scenario %d...\n", i+1)
		if err := step(ctx); err != nil {
			return fmt.Errorf("scenario %d: %w", i+1, err)
		}
	}
	if b.o.idle > 0 {
		fmt.Fprintf(os.Stderr, "shimbench: idle for %s...\n", b.o.idle)
		if err := b.idleCPU(ctx); err != nil {
			return err
		}
	}
	if b.o.starts > 0 {
		fmt.Fprintf(os.Stderr, "shimbench: desktop rows (%d starts)...\n", b.o.starts)
		return b.desktop(ctx)
	}
	return nil
}

// pairRounds runs pair o.rounds times and returns the median round by
// the ratio of metric (via smtpshim / direct), with every round's ratio.
func (b *bench) pairRounds(ctx context.Context, scenario string, conns, size int, spec loadSpec, metric func(measured) float64) (d, s measured, ratios []float64, err error) {
	type round struct {
		d, s measured
		r    float64
	}
	var rs []round
	for i := range b.o.rounds {
		d, s, err := b.pair(ctx, fmt.Sprintf("%s-r%d", scenario, i+1), conns, size, spec)
		if err != nil {
			return d, s, nil, err
		}
		r := 0.0
		if metric(d) > 0 {
			r = metric(s) / metric(d)
		}
		rs = append(rs, round{d, s, r})
		ratios = append(ratios, r)
	}
	slices.SortFunc(rs, func(a, b round) int { return cmp.Compare(a.r, b.r) })
	slices.Sort(ratios)
	m := rs[len(rs)/2]
	return m.d, m.s, ratios, nil
}

const (
	smallSize = 10 << 10
	largeSize = 10 << 20
)

// latency is scenario 1: one connection, 10 KB messages, one at a time.
func (b *bench) latency(ctx context.Context) error {
	d, s, rs, err := b.pairRounds(ctx, "s1", 1, smallSize, loadSpec{warmup: b.o.warmup, dur: b.o.dur}, measured.rate)
	if err != nil {
		return err
	}
	b.throughputRow("1. 1 conn, 10 KB: msgs/s", d, s, 0.6, rs)
	b.latencyRows("1.", d, s, p50Budget)
	b.addCost("1. 1 conn, 10 KB", d, s)
	return nil
}

// concurrent is scenario 2: many connections, 10 KB messages, counting
// only what reached the provider.
func (b *bench) concurrent(ctx context.Context) error {
	d, s, rs, err := b.pairRounds(ctx, "s2", b.o.conns, smallSize, loadSpec{warmup: b.o.warmup, dur: b.o.dur}, measured.rate)
	if err != nil {
		return err
	}
	b.throughputRow(fmt.Sprintf("2. %d conns, 10 KB: msgs/s reaching the provider", b.o.conns), d, s, 0.7, rs)
	b.latencyRows("2.", d, s, 0)
	b.addRow(row{
		scenario: "2. accepted and at the provider when the run ended",
		direct:   fmt.Sprintf("%d of %d", d.delivered, d.msgs),
		shim:     fmt.Sprintf("%d of %d (%d queued)", s.delivered, s.msgs, s.queued),
		target:   "all",
		met:      yesNo(s.delivered == s.msgs),
	})
	const cpuTarget = 150 * time.Microsecond
	perMsgCPU := time.Duration(0)
	if n := len(s.sent); n > 0 {
		perMsgCPU = s.shimCPU / time.Duration(n)
	}
	b.addRow(row{
		scenario: "2. smtpshim CPU per 10 KB message",
		direct:   "—",
		shim:     perMsg(s.shimCPU, len(s.sent)),
		target:   "≤ 150 µs",
		met:      yesNo(len(s.sent) > 0 && perMsgCPU <= cpuTarget),
	})
	b.addCost(fmt.Sprintf("2. %d conns, 10 KB", b.o.conns), d, s)
	return nil
}

// large is scenario 3: one connection, 10 MB messages.
func (b *bench) large(ctx context.Context) error {
	d, s, rs, err := b.pairRounds(ctx, "s3", 1, largeSize, loadSpec{warmup: min(b.o.warmup, 1), dur: b.o.dur}, measured.mibPerSec)
	if err != nil {
		return err
	}
	b.addRow(row{
		scenario: "3. 1 conn, 10 MB: MiB/s",
		direct:   fmt.Sprintf("%.1f", d.mibPerSec()),
		shim:     fmt.Sprintf("%.1f", s.mibPerSec()),
		ratio:    ratio(s.mibPerSec(), d.mibPerSec()) + spread(rs),
		target:   "≥ 0.8×",
		met:      yesNo(d.mibPerSec() > 0 && s.mibPerSec()/d.mibPerSec() >= 0.8),
	})
	b.addCost("3. 1 conn, 10 MB", d, s)
	return nil
}

// memory is scenario 4: many connections each sending 10 MB messages at
// once; the shim's peak RSS must stay small because it streams.
func (b *bench) memory(ctx context.Context) error {
	d, s, err := b.pair(ctx, "s4", b.o.conns, largeSize, loadSpec{perConn: b.o.bigPer})
	if err != nil {
		return err
	}
	name := fmt.Sprintf("4. %d conns × %d × 10 MB", b.o.conns, b.o.bigPer)
	b.addRow(row{
		scenario: name + ": MiB/s",
		direct:   fmt.Sprintf("%.1f", d.mibPerSec()),
		shim:     fmt.Sprintf("%.1f", s.mibPerSec()),
		ratio:    ratio(s.mibPerSec(), d.mibPerSec()),
	})
	const rssTarget = 40 << 20
	b.addRow(row{
		scenario: name + ": smtpshim peak RSS",
		direct:   "—",
		shim:     mib(s.peakRSS),
		target:   "< 40 MiB",
		met:      yesNo(s.peakRSS < rssTarget),
	})
	b.addCost(name, d, s)
	return nil
}

// upstreamDown is scenario 5: the provider refuses every connection; the
// shim must still answer every message with 250 "queued", and deliver
// them all once the provider is back and `smtpshim queue retry` runs.
func (b *bench) upstreamDown(ctx context.Context) error {
	b.sim.SetFault(upstreamsim.Refuse)
	defer b.sim.SetFault(upstreamsim.None)
	spec := loadSpec{conns: b.o.conns, dur: b.o.dur}

	// A direct sender has nowhere to put its mail: every connection fails.
	spec.msgs = newFactory("s5-direct", smallSize)
	d, err := b.measure(ctx, b.direct, spec)
	if err != nil {
		return err
	}

	if err := b.restartShim("s5"); err != nil {
		return err
	}
	spec.msgs = newFactory("s5-shim", smallSize)
	s, err := b.measure(ctx, b.viaShim, spec)
	if err != nil {
		return err
	}
	if err := s.firstErr(); err != nil {
		return fmt.Errorf("via smtpshim: %w (shim log: %s)", err, b.shim.logPath)
	}
	allQueued := s.queued == s.msgs && s.delivered == 0
	if !allQueued {
		b.failures = append(b.failures, fmt.Sprintf("scenario 5: with the provider down, %d of %d replies said queued and %d messages reached it", s.queued, s.msgs, s.delivered))
	}
	b.addRow(row{
		scenario: fmt.Sprintf("5. provider down, %d conns, 10 KB: msgs/s accepted", b.o.conns),
		direct:   fmt.Sprintf("0 (%d of %d connections refused)", len(d.errs), b.o.conns),
		shim:     fmt.Sprintf("%.0f (%d of %d replies 250 queued)", perSecond(s.msgs, s.elapsed), s.queued, s.msgs),
		ratio:    "—",
		target:   "all 250 queued, ≥ 1500 msgs/s",
		met:      yesNo(allQueued && perSecond(s.msgs, s.elapsed) >= 1500),
	})

	// Heal, and ask for the retry a user would: the queue is in its
	// backoff, and queue retry makes everything due at once.
	b.sim.SetFault(upstreamsim.None)
	shim0, _ := b.cpuOfShim()
	conns0 := b.sim.Connections()
	healed := time.Now()
	if err := b.shim.queueRetry(); err != nil {
		return err
	}
	_, problems := b.verify(s.sent, b.o.drain)
	drain := time.Since(healed)
	for _, p := range problems {
		b.failures = append(b.failures, "scenario 5, after healing: "+p)
	}
	if shim1, ok := b.cpuOfShim(); ok {
		s.shimCPU += shim1 - shim0
	}
	s.upConns += b.sim.Connections() - conns0
	if s.peakRSS, err = b.shim.peakRSS(); err != nil {
		return err
	}
	b.addRow(row{
		scenario: "5. after healing + queue retry: time until all delivered",
		direct:   "—",
		shim:     fmt.Sprintf("%d msgs in %.2f s (%.0f msgs/s)", len(s.sent), drain.Seconds(), perSecond(len(s.sent), drain)),
		target:   "all delivered",
		met:      yesNo(len(problems) == 0),
	})
	b.addCost("5. provider down, then drain", d, s)
	return nil
}

// idleCPU is scenario 6: the shim, left alone after the scenarios (its
// pooled upstream connections still open at first), must cost next to no
// CPU.
func (b *bench) idleCPU(ctx context.Context) error {
	if b.shim == nil {
		if err := b.restartShim("idle"); err != nil {
			return err
		}
	}
	cpu0, err := b.shim.cpuTime()
	if err != nil {
		return err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(b.o.idle):
	}
	cpu1, err := b.shim.cpuTime()
	if err != nil {
		return err
	}
	pct := 100 * (cpu1 - cpu0).Seconds() / time.Since(t0).Seconds()
	b.addRow(row{
		scenario: fmt.Sprintf("6. idle for %s: smtpshim CPU", b.o.idle),
		direct:   "—",
		shim:     fmt.Sprintf("%.2f %% (%d ms CPU)", pct, (cpu1 - cpu0).Milliseconds()),
		target:   "< 1 %",
		met:      yesNo(pct < 1),
	})
	return nil
}

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
