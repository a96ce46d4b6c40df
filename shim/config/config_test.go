package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

const minimalAccount = `
[[account]]
address = "alice@example.com"
server = "smtp.example.com:587"
`

func mustParse(t *testing.T, in string) *Config {
	t.Helper()
	c, err := Parse([]byte(in))
	if err != nil {
		t.Fatalf("Parse: unexpected error: %v\ninput:\n%s", err, in)
	}
	return c
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		check func(t *testing.T, c *Config)
	}{
		{
			name: "empty file",
			in:   "",
			check: func(t *testing.T, c *Config) {
				if len(c.Accounts) != 0 {
					t.Errorf("Accounts = %v, want none", c.Accounts)
				}
			},
		},
		{
			name: "minimal account and defaults",
			in:   minimalAccount,
			check: func(t *testing.T, c *Config) {
				if len(c.Accounts) != 1 {
					t.Fatalf("got %d accounts, want 1", len(c.Accounts))
				}
				a := &c.Accounts[0]
				for _, g := range []struct {
					what      string
					got, want any
				}{
					{"Address", a.Address, "alice@example.com"},
					{"Server", a.Server, "smtp.example.com:587"},
					{"Host", a.Host(), "smtp.example.com"},
					{"Key", a.Key(), "alice@example.com"},
					{"Login", a.Login(), "alice@example.com"},
					{"SecurityMode", a.SecurityMode(), SecurityStartTLS},
					{"PoolSize", a.PoolSize(), DefaultAccountPoolSize},
					{"EffectiveMaxMessageSize", c.EffectiveMaxMessageSize(), int64(50 * 1024 * 1024)},
					{"EffectiveMaxRecipients", c.EffectiveMaxRecipients(), 100},
					{"EffectiveMaxConnections", c.EffectiveMaxConnections(), DefaultMaxConnections},
					{"EffectiveMaxLineLength", c.EffectiveMaxLineLength(), 64 * 1024},
					{"EffectiveIdleTimeout", c.EffectiveIdleTimeout(), 5 * time.Minute},
					{"EffectiveDataTimeout", c.EffectiveDataTimeout(), 60 * time.Minute},
					{"EffectiveSyncWait", c.EffectiveSyncWait(), 30 * time.Second},
					{"EffectiveMaxAge", c.EffectiveMaxAge(), 5 * 24 * time.Hour},
					{"EffectiveKeychainTimeout", c.EffectiveKeychainTimeout(), 10 * time.Second},
					{"EffectiveLocalAuth", c.EffectiveLocalAuth(), LocalAuthIgnore},
					{"ListenAddrs", c.ListenAddrs(), []string{"127.0.0.1:2525", "[::1]:2525"}},
				} {
					if !reflect.DeepEqual(g.got, g.want) {
						t.Errorf("%s = %#v, want %#v", g.what, g.got, g.want)
					}
				}
				lo, hi := c.EffectiveRetry()
				if lo != time.Minute || hi != time.Hour {
					t.Errorf("EffectiveRetry = %v, %v; want 1m, 1h", lo, hi)
				}
			},
		},
		{
			name: "port 465 defaults to tls",
			in: `[[account]]
address = "alice@example.com"
server = "smtp.example.com:465"`,
			check: func(t *testing.T, c *Config) {
				if got := c.Accounts[0].SecurityMode(); got != SecurityTLS {
					t.Errorf("SecurityMode = %q, want %q", got, SecurityTLS)
				}
			},
		},
		{
			name: "explicit security overrides port and is case-insensitive",
			in: `[[account]]
address = "alice@example.com"
server = "smtp.example.com:465"
security = "STARTTLS"

[[account]]
address = "bob@example.com"
server = "10.0.0.5:25"
security = "insecure"`,
			check: func(t *testing.T, c *Config) {
				if got := c.Accounts[0].SecurityMode(); got != SecurityStartTLS {
					t.Errorf("account 1 SecurityMode = %q, want %q", got, SecurityStartTLS)
				}
				if got := c.Accounts[1].SecurityMode(); got != SecurityInsecure {
					t.Errorf("account 2 SecurityMode = %q, want %q", got, SecurityInsecure)
				}
			},
		},
		{
			name: "mixed-case address: Key lowercases, Login keeps the address as written",
			in: `[[account]]
address = "Alice@Example.COM"
server = "smtp.example.com:587"`,
			check: func(t *testing.T, c *Config) {
				a := &c.Accounts[0]
				if got := a.Key(); got != "alice@example.com" {
					t.Errorf("Key = %q, want alice@example.com", got)
				}
				if got := a.Login(); got != "Alice@Example.COM" {
					t.Errorf("Login = %q, want Alice@Example.COM", got)
				}
			},
		},
		{
			name: "explicit username is the login",
			in: `[[account]]
address = "alice@example.com"
server = "smtp.example.com:587"
username = "alice"
auth = "CRAM-MD5"
max_connections = 2`,
			check: func(t *testing.T, c *Config) {
				a := &c.Accounts[0]
				if got := a.Login(); got != "alice" {
					t.Errorf("Login = %q, want alice", got)
				}
				if got := a.PoolSize(); got != 2 {
					t.Errorf("PoolSize = %d, want 2", got)
				}
			},
		},
		{
			name: "domain account",
			in: `[[account]]
domain = "Example.ORG"
server = "smtp.example.org:587"
username = "relay@example.org"`,
			check: func(t *testing.T, c *Config) {
				a := &c.Accounts[0]
				if got := a.Key(); got != "@example.org" {
					t.Errorf("Key = %q, want @example.org", got)
				}
				if got := a.Login(); got != "relay@example.org" {
					t.Errorf("Login = %q, want relay@example.org", got)
				}
			},
		},
		{
			name: "size with MB unit",
			in:   `max_message_size = "50MB"`,
			check: func(t *testing.T, c *Config) {
				if got := c.EffectiveMaxMessageSize(); got != 50<<20 {
					t.Errorf("EffectiveMaxMessageSize = %d, want %d", got, 50<<20)
				}
			},
		},
		{
			name: "size with KB unit",
			in:   `max_message_size = "512KB"`,
			check: func(t *testing.T, c *Config) {
				if got := c.EffectiveMaxMessageSize(); got != 512*1024 {
					t.Errorf("EffectiveMaxMessageSize = %d, want %d", got, 512*1024)
				}
			},
		},
		{
			name: "size as a TOML integer",
			in:   `max_message_size = 1048576`,
			check: func(t *testing.T, c *Config) {
				if got := c.EffectiveMaxMessageSize(); got != 1048576 {
					t.Errorf("EffectiveMaxMessageSize = %d, want 1048576", got)
				}
			},
		},
		{
			name: "size lowercase unit with space, MiB line length",
			in: `max_message_size = "10 mb"
max_line_length = "1MiB"`,
			check: func(t *testing.T, c *Config) {
				if got := c.EffectiveMaxMessageSize(); got != 10<<20 {
					t.Errorf("EffectiveMaxMessageSize = %d, want %d", got, 10<<20)
				}
				if got := c.EffectiveMaxLineLength(); got != 1<<20 {
					t.Errorf("EffectiveMaxLineLength = %d, want %d", got, 1<<20)
				}
			},
		},
		{
			name: "durations in seconds and days",
			in: `sync_wait = "30s"
max_age = "5d"
idle_timeout = "90s"
data_timeout = "2h"
keychain_timeout = "1.5d"`,
			check: func(t *testing.T, c *Config) {
				for _, g := range []struct {
					what      string
					got, want time.Duration
				}{
					{"EffectiveSyncWait", c.EffectiveSyncWait(), 30 * time.Second},
					{"EffectiveMaxAge", c.EffectiveMaxAge(), 5 * 24 * time.Hour},
					{"EffectiveIdleTimeout", c.EffectiveIdleTimeout(), 90 * time.Second},
					{"EffectiveDataTimeout", c.EffectiveDataTimeout(), 2 * time.Hour},
					{"EffectiveKeychainTimeout", c.EffectiveKeychainTimeout(), 36 * time.Hour},
				} {
					if g.got != g.want {
						t.Errorf("%s = %v, want %v", g.what, g.got, g.want)
					}
				}
			},
		},
		{
			name: "retry max below min is raised to min",
			in: `retry_min = "2m"
retry_max = "1m"`,
			check: func(t *testing.T, c *Config) {
				lo, hi := c.EffectiveRetry()
				if lo != 2*time.Minute || hi != 2*time.Minute {
					t.Errorf("EffectiveRetry = %v, %v; want 2m, 2m", lo, hi)
				}
			},
		},
		{
			name: "listener, networks, local auth",
			in: `listen = ["127.0.0.1:2526", "[::1]:2526"]
allow_networks = ["192.168.1.0/24", "fd00::/8"]
local_auth = "REQUIRE"
max_recipients = 7
hostname = "relay.local"`,
			check: func(t *testing.T, c *Config) {
				if got, want := c.ListenAddrs(), []string{"127.0.0.1:2526", "[::1]:2526"}; !slices.Equal(got, want) {
					t.Errorf("ListenAddrs = %q, want %q", got, want)
				}
				if got := c.EffectiveLocalAuth(); got != LocalAuthRequire {
					t.Errorf("EffectiveLocalAuth = %q, want %q", got, LocalAuthRequire)
				}
				if got := c.EffectiveMaxRecipients(); got != 7 {
					t.Errorf("EffectiveMaxRecipients = %d, want 7", got)
				}
				if got := c.HostnameOrDefault(); got != "relay.local" {
					t.Errorf("HostnameOrDefault = %q, want relay.local", got)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, mustParse(t, tt.in))
		})
	}
}

func TestParseErrors(t *testing.T) {
	// acct builds a one-account config from extra lines.
	acct := func(lines ...string) string {
		return "[[account]]\n" + strings.Join(lines, "\n") + "\n"
	}
	const addr = `address = "alice@example.com"`
	const srv = `server = "smtp.example.com:587"`
	tests := []struct {
		name string
		in   string
		want []string // substrings the error must contain
	}{
		{
			name: "TOML syntax error gives line and column",
			in:   "hostname = \"relay\"\n\nmax_recipients = = 5\n",
			want: []string{"line 3, column 18:", "expected value"},
		},
		{
			name: "unterminated string gives its line",
			in:   "# comment\nhostname = \"relay\n",
			want: []string{"line 2, column "},
		},
		{
			name: "unknown key inside an account is named",
			in:   acct(addr, `sevrer = "smtp.example.com:587"`),
			want: []string{"unknown setting", "account.sevrer"},
		},
		{
			name: "unknown top-level key is named",
			in:   "max_recipient = 5\n" + acct(addr, srv),
			want: []string{"unknown setting", "max_recipient"},
		},
		{
			name: "wrong TOML type names the key",
			in:   `max_recipients = "ten"`,
			want: []string{"max_recipients"},
		},
		{
			name: "port 0",
			in:   acct(addr, `server = "smtp.example.com:0"`),
			want: []string{"account 1 (alice@example.com)", `server "smtp.example.com:0"`, `port "0" must be a number from 1 to 65535`},
		},
		{
			name: "port 70000",
			in:   acct(addr, `server = "smtp.example.com:70000"`),
			want: []string{`server "smtp.example.com:70000"`, `port "70000" must be a number from 1 to 65535`},
		},
		{
			name: "port not a number",
			in:   acct(addr, `server = "smtp.example.com:abc"`),
			want: []string{`port "abc" must be a number`},
		},
		{
			name: "missing server",
			in:   acct(addr),
			want: []string{"account 1 (alice@example.com)", "server is missing"},
		},
		{
			name: "server without port",
			in:   acct(addr, `server = "smtp.example.com"`),
			want: []string{`server "smtp.example.com"`, "host:port"},
		},
		{
			name: "server without host",
			in:   acct(addr, `server = ":587"`),
			want: []string{`server ":587"`, "the host is missing"},
		},
		{
			name: "both address and domain",
			in:   acct(addr, `domain = "example.com"`, `username = "u"`, srv),
			want: []string{"either address or domain, not both"},
		},
		{
			name: "neither address nor domain",
			in:   acct(srv),
			want: []string{"account 1: ", "set address ="},
		},
		{
			name: "bad address",
			in:   acct(`address = "alice"`, srv),
			want: []string{`address: "alice" is not an email address`},
		},
		{
			name: "bad domain",
			in:   acct(`domain = "example..com"`, `username = "u"`, srv),
			want: []string{`domain: "example..com" is not a domain name`},
		},
		{
			name: "domain account without username",
			in:   acct(`domain = "example.com"`, srv),
			want: []string{"account 1 (@example.com)", "a domain account needs username"},
		},
		{
			name: "bad security",
			in:   acct(addr, srv, `security = "ssl"`),
			want: []string{`security "ssl"`, "starttls", "tls", "insecure"},
		},
		{
			name: "bad auth",
			in:   acct(addr, srv, `auth = "xoauth2"`),
			want: []string{`auth "xoauth2"`, "plain, login or cram-md5"},
		},
		{
			name: "bad local_auth",
			in:   `local_auth = "maybe"`,
			want: []string{`local_auth "maybe"`, `"ignore"`, `"require"`},
		},
		{
			name: "allow_networks prefix too long",
			in:   `allow_networks = ["192.168.1.0/33"]`,
			want: []string{`allow_networks "192.168.1.0/33"`, "CIDR"},
		},
		{
			name: "allow_networks bare address",
			in:   `allow_networks = ["127.0.0.1/8", "10.0.0.1"]`,
			want: []string{`allow_networks "10.0.0.1"`, "CIDR"},
		},
		{
			name: "allow_networks IPv4-mapped IPv6",
			in:   `allow_networks = ["::ffff:10.0.0.0/104"]`,
			want: []string{`allow_networks "::ffff:10.0.0.0/104"`, "never matches", "10.0.0.0/8"},
		},
		{
			name: "allow_networks with a zone",
			in:   `allow_networks = ["fe80::%eth0/64"]`,
			want: []string{`allow_networks "fe80::%eth0/64"`, "zone", "fe80::/10"},
		},
		{
			name: "duplicate address, case-insensitively",
			in:   acct(`address = "Alice@example.com"`, srv) + acct(`address = "alice@EXAMPLE.com"`, srv),
			want: []string{"account 2 (alice@example.com)", "already configured in account 1"},
		},
		{
			name: "duplicate domain",
			in: acct(addr, srv) +
				acct(`domain = "example.org"`, `username = "u"`, srv) +
				acct(`domain = "EXAMPLE.org"`, `username = "v"`, srv),
			want: []string{"account 3 (@example.org)", "already configured in account 2"},
		},
		{
			name: "negative max_recipients",
			in:   `max_recipients = -1`,
			want: []string{"max_recipients must not be negative"},
		},
		{
			name: "negative max_connections",
			in:   `max_connections = -3`,
			want: []string{"max_connections must not be negative"},
		},
		{
			name: "negative account max_connections",
			in:   acct(addr, srv, `max_connections = -1`),
			want: []string{"account 1 (alice@example.com)", "max_connections must not be negative"},
		},
		{
			name: "bad listen address",
			in:   `listen = ["localhost"]`,
			want: []string{`listen "localhost"`, "host:port"},
		},
		{
			name: "hostname with a space",
			in:   `hostname = "my host"`,
			want: []string{`hostname "my host"`},
		},
		{
			name: "bad size unit",
			in:   "hostname = \"relay\"\nmax_message_size = \"50XB\"\n",
			want: []string{"line 2", `"50XB" is not a size`},
		},
		{
			name: "size not a number",
			in:   `max_message_size = "lots"`,
			want: []string{`"lots" is not a size`},
		},
		{
			name: "negative size string",
			in:   `max_line_length = "-5KB"`,
			want: []string{`"-5KB" is not a size`},
		},
		{
			name: "negative size integer",
			in:   `max_message_size = -5`,
			want: []string{"size -5 must not be negative"},
		},
		{
			name: "size too large",
			in:   `max_message_size = "2000000GB"`,
			want: []string{`"2000000GB" is not a size`},
		},
		{
			name: "size of wrong TOML type",
			in:   `max_message_size = true`,
			want: []string{"is not a size"},
		},
		{
			name: "bad duration unit",
			in:   "\n\nsync_wait = \"5x\"\n",
			want: []string{"line 3", `"5x" is not a duration`},
		},
		{
			name: "negative duration",
			in:   `idle_timeout = "-1s"`,
			want: []string{`"-1s" is not a duration`},
		},
		{
			name: "days without a number",
			in:   `max_age = "d"`,
			want: []string{`"d" is not a duration`},
		},
		{
			name: "negative days",
			in:   `max_age = "-2d"`,
			want: []string{`"-2d" is not a duration`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse succeeded (%+v), want an error containing %q", c, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestSyntaxErrorPosition(t *testing.T) {
	// The column must point into the offending line, not be a placeholder.
	const bad = "max_recipients = = 5"
	_, err := Parse([]byte("hostname = \"relay\"\n" + bad + "\n"))
	if err == nil {
		t.Fatal("Parse succeeded, want a syntax error")
	}
	var line, col int
	if _, serr := fmt.Sscanf(err.Error(), "line %d, column %d:", &line, &col); serr != nil {
		t.Fatalf("error %q does not start with \"line L, column C:\": %v", err, serr)
	}
	if line != 2 || col < 1 || col > len(bad)+1 {
		t.Errorf("position line %d column %d, want line 2 and a column within %q (error %q)", line, col, bad, err)
	}
}

func TestUnits(t *testing.T) {
	sizes := []struct {
		in   string
		want Size
		text string // MarshalText of want
	}{
		{"0", 0, "0"},
		{"1000", 1000, "1000"},
		{"1024", 1024, "1KB"},
		{"512KB", 512 << 10, "512KB"},
		{"512kb", 512 << 10, "512KB"},
		{"512KiB", 512 << 10, "512KB"},
		{"50MB", 50 << 20, "50MB"},
		{"50M", 50 << 20, "50MB"},
		{"2GB", 2 << 30, "2GB"},
		{"1536KB", 1536 << 10, "1536KB"},
		{"100B", 100, "100"},
	}
	for _, tt := range sizes {
		t.Run("size "+tt.in, func(t *testing.T) {
			var s Size
			if err := s.UnmarshalText([]byte(tt.in)); err != nil {
				t.Fatalf("UnmarshalText(%q): %v", tt.in, err)
			}
			if s != tt.want {
				t.Errorf("UnmarshalText(%q) = %d, want %d", tt.in, s, tt.want)
			}
			out, err := s.MarshalText()
			if err != nil || string(out) != tt.text {
				t.Errorf("MarshalText(%d) = %q, %v; want %q", s, out, err, tt.text)
			}
			var back Size
			if err := back.UnmarshalText(out); err != nil || back != s {
				t.Errorf("round trip of %q gave %d, %v; want %d", out, back, err, s)
			}
		})
	}
	durations := []struct {
		in   string
		want time.Duration
		text string
	}{
		{"30s", 30 * time.Second, "30s"},
		{"5m", 5 * time.Minute, "5m0s"},
		{"2h", 2 * time.Hour, "2h0m0s"},
		{"24h", 24 * time.Hour, "1d"},
		{"5d", 5 * 24 * time.Hour, "5d"},
		{"0.5d", 12 * time.Hour, "12h0m0s"},
		{" 7d ", 7 * 24 * time.Hour, "7d"},
	}
	for _, tt := range durations {
		t.Run("duration "+tt.in, func(t *testing.T) {
			var d Duration
			if err := d.UnmarshalText([]byte(tt.in)); err != nil {
				t.Fatalf("UnmarshalText(%q): %v", tt.in, err)
			}
			if time.Duration(d) != tt.want {
				t.Errorf("UnmarshalText(%q) = %v, want %v", tt.in, time.Duration(d), tt.want)
			}
			out, err := d.MarshalText()
			if err != nil || string(out) != tt.text {
				t.Errorf("MarshalText(%v) = %q, %v; want %q", time.Duration(d), out, err, tt.text)
			}
			var back Duration
			if err := back.UnmarshalText(out); err != nil || back != d {
				t.Errorf("round trip of %q gave %v, %v; want %v", out, time.Duration(back), err, time.Duration(d))
			}
		})
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	accounts := []Account{
		{Address: "alice@example.com", Server: "smtp.example.com:587"},
		{Domain: "example.org", Server: "smtp.example.org:465", Username: "relay@example.org",
			Security: "tls", Auth: "login", CAFile: "/etc/ssl/private-ca.pem",
			PasswordCommand: "pass show smtp/example.org", MaxConnections: 2},
	}
	tests := []struct {
		name     string
		cfg      Config
		want     []string // lines the file must contain
		wantNot  []string // substrings the file must not contain
		preexist bool     // a world-readable file is already there
	}{
		{
			name: "defaults are not written",
			cfg:  Config{Accounts: accounts},
			want: []string{
				`address = "alice@example.com"`,
				`server = "smtp.example.com:587"`,
				`domain = "example.org"`,
				`password_command = "pass show smtp/example.org"`,
				`max_connections = 2`,
			},
			wantNot: []string{
				"max_message_size", "max_recipients", "max_line_length", "idle_timeout",
				"data_timeout", "sync_wait", "max_age", "retry_min", "retry_max",
				"keychain_timeout", "listen", "hostname", "spool_dir", "local_auth",
				"allow_networks", "= 0", `"0"`, `"0s"`, `security = ""`,
			},
		},
		{
			name: "changed settings are written in their units",
			cfg: Config{
				Listen:         []string{"127.0.0.1:2600"},
				MaxMessageSize: 512 << 10,
				MaxRecipients:  20,
				MaxAge:         Duration(5 * 24 * time.Hour),
				SyncWait:       Duration(45 * time.Second),
				LocalAuth:      "require",
				AllowNetworks:  []string{"192.168.1.0/24"},
				Accounts:       accounts,
			},
			want: []string{
				`listen = ["127.0.0.1:2600"]`,
				`max_message_size = "512KB"`,
				`max_recipients = 20`,
				`max_age = "5d"`,
				`sync_wait = "45s"`,
				`local_auth = "require"`,
				`allow_networks = ["192.168.1.0/24"]`,
			},
			wantNot:  []string{"idle_timeout", "max_line_length", "= 0"},
			preexist: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "sub", "config.toml")
			if tt.preexist {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte("# old\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			c := tt.cfg
			c.Accounts = slices.Clone(tt.cfg.Accounts)
			c.SetPath(path)
			if err := c.Save(); err != nil {
				t.Fatalf("Save: %v", err)
			}

			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
				t.Errorf("file mode = %v, want 0600", fi.Mode().Perm())
			}
			ents, err := os.ReadDir(filepath.Dir(path))
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) != 1 {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				t.Errorf("directory holds %q, want only config.toml (no temp files left)", names)
			}

			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			text := string(data)
			lines := strings.Split(text, "\n")
			for i := range lines {
				lines[i] = strings.TrimSpace(lines[i])
			}
			for _, w := range tt.want {
				if !slices.Contains(lines, w) {
					t.Errorf("saved file lacks line %q:\n%s", w, text)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(text, w) {
					t.Errorf("saved file contains %q, which is a default or empty value:\n%s", w, text)
				}
			}
			for _, l := range lines {
				if k, _, ok := strings.Cut(l, "="); ok && strings.TrimSpace(k) == "password" {
					t.Errorf("saved file has a password line %q", l)
				}
			}

			got, err := Load(path)
			if err != nil {
				t.Fatalf("Load of saved file: %v\n%s", err, text)
			}
			if got.Path() != path {
				t.Errorf("Path() = %q, want %q", got.Path(), path)
			}
			if !reflect.DeepEqual(got.Accounts, c.Accounts) {
				t.Errorf("accounts after round trip:\n got %+v\nwant %+v", got.Accounts, c.Accounts)
			}
			if !reflect.DeepEqual(*got, c) {
				t.Errorf("config after round trip:\n got %+v\nwant %+v", *got, c)
			}
		})
	}
}

func TestSaveErrors(t *testing.T) {
	t.Run("no path", func(t *testing.T) {
		c := Config{}
		if err := c.Save(); err == nil || !strings.Contains(err.Error(), "no file path") {
			t.Errorf("Save without a path = %v, want a \"no file path\" error", err)
		}
	})
	t.Run("invalid config is not written", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "config.toml")
		c := Config{Accounts: []Account{{Address: "alice@example.com"}}}
		c.SetPath(path)
		err := c.Save()
		if err == nil || !strings.Contains(err.Error(), "server is missing") {
			t.Errorf("Save of an invalid config = %v, want the validation error", err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("file exists after a failed Save (stat error %v)", err)
		}
	})
}

func TestNoPasswordField(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[Config](), reflect.TypeFor[Account]()} {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			lname := strings.ToLower(f.Name)
			if name == "password_command" {
				continue
			}
			if strings.Contains(lname, "password") || strings.Contains(lname, "secret") ||
				strings.Contains(name, "pass") || strings.Contains(name, "secret") {
				t.Errorf("%s.%s (toml %q) looks like a stored secret", typ.Name(), f.Name, name)
			}
		}
	}
	// A password key in the file is refused as unknown, not silently kept.
	_, err := Parse([]byte(minimalAccount + "password = \"hunter2\"\n"))
	if err == nil || !strings.Contains(err.Error(), "account.password") {
		t.Errorf("Parse with a password key = %v, want an unknown-setting error naming account.password", err)
	}
	if err != nil && strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %q echoes the password", err)
	}
}

func TestLoad(t *testing.T) {
	t.Run("missing file gives an empty valid config", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope", "config.toml")
		c, err := Load(path)
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if c.Path() != path {
			t.Errorf("Path() = %q, want %q", c.Path(), path)
		}
		if len(c.Accounts) != 0 {
			t.Errorf("Accounts = %v, want none", c.Accounts)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("Validate: %v", err)
		}
		if got := c.ListenAddrs(); len(got) != 2 {
			t.Errorf("ListenAddrs = %q, want the two defaults", got)
		}
	})
	t.Run("invalid file names the path", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "config.toml")
		if err := os.WriteFile(path, []byte(`local_auth = "maybe"`), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path)
		if err == nil {
			t.Fatalf("Load succeeded (%+v), want an error", c)
		}
		for _, w := range []string{path, `local_auth "maybe"`} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not contain %q", err, w)
			}
		}
	})
	t.Run("valid file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "config.toml")
		if err := os.WriteFile(path, []byte(minimalAccount), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path)
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if c.Path() != path || len(c.Accounts) != 1 || c.Accounts[0].Address != "alice@example.com" {
			t.Errorf("Load = %+v (path %q), want the one account from %s", c, c.Path(), path)
		}
	})
}

func TestFind(t *testing.T) {
	c := mustParse(t, `
[[account]]
address = "alice@example.com"
server = "smtp.example.com:587"

[[account]]
domain = "Example.ORG"
server = "smtp.example.org:587"
username = "relay@example.org"

[[account]]
address = "Bob@example.org"
server = "smtp.example.org:587"
`)
	tests := []struct {
		key  string
		want int
	}{
		{"alice@example.com", 0},
		{"ALICE@Example.COM", 0},
		{"  alice@example.com\t", 0},
		{"@example.org", 1},
		{"@EXAMPLE.org", 1},
		{"example.org", 1},
		{"Example.Org", 1},
		{"bob@example.org", 2},
		{"BOB@EXAMPLE.ORG", 2},
		{"example.com", -1}, // only an address account, no domain account
		{"@example.com", -1},
		{"carol@example.com", -1},
		{"carol@example.org", -1}, // Find is by key, not by routing
		{"", -1},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			i, a := c.Find(tt.key)
			if i != tt.want {
				t.Fatalf("Find(%q) index = %d, want %d", tt.key, i, tt.want)
			}
			switch {
			case i < 0 && a != nil:
				t.Errorf("Find(%q) = -1, %+v; want a nil account", tt.key, a)
			case i >= 0 && a != &c.Accounts[i]:
				t.Errorf("Find(%q) account is not a pointer to Accounts[%d]", tt.key, i)
			}
		})
	}
}

func TestOAuthSettings(t *testing.T) {
	const custom = `[[oauth_provider]]
name = "example"
auth_url = "https://login.example.com/authorize"
token_url = "https://login.example.com/token"
scopes = ["smtp.send", "offline_access"]
client_id = "abc"
`
	const account = `[[account]]
address = "alice@example.com"
server = "smtp.example.com:587"
`
	valid := []string{
		account + `oauth = "microsoft"` + "\n",
		account + `oauth = "Google"` + "\n",
		custom + account + `oauth = "example"` + "\n",
		"[[oauth_provider]]\nname = \"microsoft\"\nclient_id = \"id\"\ntenant = \"organizations\"\n" + account + `oauth = "microsoft"` + "\n",
		"[[oauth_provider]]\nname = \"local\"\nauth_url = \"http://127.0.0.1:9/a\"\ntoken_url = \"http://localhost:9/t\"\nscopes = [\"s\"]\nclient_id = \"x\"\n",
	}
	for _, in := range valid {
		if _, err := Parse([]byte(in)); err != nil {
			t.Errorf("Parse(%q): %v", in, err)
		}
	}
	bad := []struct{ in, want string }{
		{account + `oauth = "yahoo"` + "\n", `oauth "yahoo": no such provider`},
		{account + "oauth = \"microsoft\"\npassword_command = \"cat pw\"\n", "either oauth"},
		{account + "oauth = \"microsoft\"\nauth = \"plain\"\n", "remove auth"},
		{account + "oauth = \"microsoft\"\nsecurity = \"insecure\"\n", "needs TLS"},
		{"[[oauth_provider]]\nname = \"x\"\nclient_id = \"a\"\n", "needs auth_url and token_url"},
		{"[[oauth_provider]]\nname = \"x\"\nauth_url = \"https://a/\"\ntoken_url = \"https://a/t\"\nscopes = [\"s\"]\n", "client_id is missing"},
		{"[[oauth_provider]]\nname = \"x\"\nauth_url = \"http://login.example.com/\"\ntoken_url = \"https://a/t\"\nscopes = [\"s\"]\nclient_id = \"a\"\n", "auth_url"},
		{"[[oauth_provider]]\nclient_id = \"a\"\n", "name is missing"},
		{"[[oauth_provider]]\nname = \"google\"\ntenant = \"common\"\n", "tenant is only for the microsoft provider"},
		{custom + custom, "already defined"},
		{"[[oauth_provider]]\nname = \"google\"\nclient_sekret = \"a\"\n", "oauth_provider.client_sekret"},
	}
	for _, tc := range bad {
		_, err := Parse([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}
