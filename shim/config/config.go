// Package config loads, validates and saves smtpshim's TOML configuration.
//
// The zero value of every setting means "use the default", so a config file
// holds only what the user changed, and Save writes back only that.
package config

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/smtpshim/smtpshim/shim/addr"
)

// Defaults for settings left out of the file.
const (
	DefaultMaxMessageSize    = 50 << 20
	DefaultMaxRecipients     = 100
	DefaultMaxConnections    = 100
	DefaultIdleTimeout       = 5 * time.Minute
	DefaultDataTimeout       = 60 * time.Minute
	DefaultSyncWait          = 30 * time.Second
	DefaultMaxAge            = 5 * 24 * time.Hour
	DefaultAccountPoolSize   = 4
	DefaultKeychainTimeout   = 10 * time.Second
	DefaultMaxLineLength     = 64 << 10
	DefaultPort              = 2525
	DefaultMaxConnsPerIP     = 10
	DefaultSenderRateMinute  = 30
	DefaultSenderRateDay     = 1000
	DefaultMinFreeSpace      = 100 << 20
	defaultConfigFileName    = "config.toml"
	defaultApplicationFolder = "smtpshim"
)

// Security modes for the connection to an upstream server.
const (
	SecurityStartTLS = "starttls" // plain connect, then STARTTLS (port 587)
	SecurityTLS      = "tls"      // TLS from the first byte (port 465)
	SecurityInsecure = "insecure" // no TLS at all: only for a server on a trusted network
)

// Local AUTH policies for clients of the listener.
const (
	LocalAuthIgnore  = "ignore"  // accept any AUTH a legacy client sends, check nothing
	LocalAuthRequire = "require" // require AUTH with the local password
)

// OAuth2 provider presets: an account's oauth setting names one of these or
// an [[oauth_provider]].
const (
	OAuthMicrosoft = "microsoft"
	OAuthGoogle    = "google"
)

// Config is the whole configuration file.
type Config struct {
	// Listen lists the addresses of the SMTP listener.
	Listen []string `toml:"listen,omitempty"`
	// Hostname is the name smtpshim gives in its greeting and in EHLO upstream.
	Hostname string `toml:"hostname,omitempty"`
	// MaxMessageSize caps one message, e.g. "50MB".
	MaxMessageSize Size `toml:"max_message_size,omitempty,omitzero"`
	// MaxRecipients caps the recipients of one message.
	MaxRecipients int `toml:"max_recipients,omitempty,omitzero"`
	// MaxConnections caps concurrent client connections.
	MaxConnections int `toml:"max_connections,omitempty,omitzero"`
	// MaxLineLength caps one command or body line; longer lines end the session.
	MaxLineLength Size `toml:"max_line_length,omitempty,omitzero"`
	// IdleTimeout is how long a client may stay silent between commands.
	IdleTimeout Duration `toml:"idle_timeout,omitempty,omitzero"`
	// DataTimeout bounds the whole DATA phase; silence inside it is still
	// bounded by IdleTimeout.
	DataTimeout Duration `toml:"data_timeout,omitempty,omitzero"`
	// SyncWait is how long a client waits for the first upstream attempt
	// before it is told the message is queued.
	SyncWait Duration `toml:"sync_wait,omitempty,omitzero"`
	// MaxAge is how long a queued message is retried before it bounces.
	MaxAge Duration `toml:"max_age,omitempty,omitzero"`
	// RetryMin is the first wait before a queued message is retried; it
	// doubles up to RetryMax.
	RetryMin Duration `toml:"retry_min,omitempty,omitzero"`
	// RetryMax caps the wait between retries.
	RetryMax Duration `toml:"retry_max,omitempty,omitzero"`
	// SpoolDir holds queued messages.
	SpoolDir string `toml:"spool_dir,omitempty"`
	// MinFreeSpace is the free space below which new mail is refused
	// with 452 4.3.1, so a full disk never loses an accepted message.
	MinFreeSpace Size `toml:"min_free_space,omitempty,omitzero"`
	// LocalAuth is what to do with AUTH from local clients.
	LocalAuth string `toml:"local_auth,omitempty"`
	// AllowNetworks lists the client networks allowed besides loopback.
	AllowNetworks []string `toml:"allow_networks,omitempty"`
	// StartTLS offers STARTTLS to local clients, with a generated
	// certificate (see `smtpshim cert export`).
	StartTLS bool `toml:"starttls,omitempty"`
	// ListenTLS lists implicit-TLS listener addresses for local clients.
	ListenTLS []string `toml:"listen_tls,omitempty"`
	// LocalTLSLegacy also offers TLS 1.0 and 1.1, with RSA key exchange
	// and 3DES, on the local listeners, for devices that have nothing
	// newer.
	LocalTLSLegacy bool `toml:"local_tls_legacy,omitempty"`
	// RequireTLSForAuth refuses AUTH from non-loopback clients until they
	// have started TLS, so the local password never crosses the LAN in
	// the clear.
	RequireTLSForAuth bool `toml:"require_tls_for_auth,omitempty"`
	// MaxConnectionsPerIP caps concurrent connections from one
	// non-loopback client.
	MaxConnectionsPerIP int `toml:"max_connections_per_ip,omitempty,omitzero"`
	// SenderRateMinute and SenderRateDay cap messages per sender; they
	// apply to non-loopback clients, and to loopback ones only with
	// RateLimitLoopback.
	SenderRateMinute int `toml:"sender_rate_minute,omitempty,omitzero"`
	SenderRateDay    int `toml:"sender_rate_day,omitempty,omitzero"`
	// RateLimitLoopback applies the sender rate limits to local clients too.
	RateLimitLoopback bool `toml:"rate_limit_loopback,omitempty"`
	// KeychainTimeout bounds every keychain call.
	KeychainTimeout Duration `toml:"keychain_timeout,omitempty,omitzero"`
	// DefaultDomain completes a bare local name (root, bob) given to
	// `smtpshim send` as a recipient or sender, as msmtp's maildomain
	// does; empty means the domain of the only account, if there is one.
	DefaultDomain string `toml:"default_domain,omitempty"`
	// DefaultFrom is the envelope sender of `smtpshim send` without -f;
	// empty means the address of the only user-level account.
	DefaultFrom string `toml:"default_from,omitempty"`
	// LogFile, when set, makes `smtpshim serve` write its log to this
	// file (rotated by size) instead of standard error.
	LogFile string `toml:"log_file,omitempty"`
	// LogFileMaxSize is the size at which the log file is rotated.
	LogFileMaxSize Size `toml:"log_file_max_size,omitempty,omitzero"`
	// LogFileKeep is how many rotated log files are kept.
	LogFileKeep int `toml:"log_file_keep,omitempty,omitzero"`
	// Accounts are the upstream accounts, picked by envelope sender.
	Accounts []Account `toml:"account,omitempty"`
	// OAuthProviders defines OAuth2 providers beyond the presets, or
	// overrides a preset's settings (such as its client_id).
	OAuthProviders []OAuthProvider `toml:"oauth_provider,omitempty"`

	// path is where the config was loaded from, for messages and Save.
	path string
}

// Account is one upstream mailbox (Address) or a whole domain (Domain).
type Account struct {
	// Address makes a user-level account for exactly this sender.
	Address string `toml:"address,omitempty"`
	// Domain makes a domain-level account for every sender of the domain.
	Domain string `toml:"domain,omitempty"`
	// Server is the upstream submission server as host:port.
	Server string `toml:"server"`
	// Security is starttls, tls or insecure; empty means tls on port 465
	// and starttls elsewhere.
	Security string `toml:"security,omitempty"`
	// Username for SMTP AUTH; empty means the address.
	Username string `toml:"username,omitempty"`
	// Auth forces one AUTH mechanism (plain, login, cram-md5).
	Auth string `toml:"auth,omitempty"`
	// CAFile adds trusted CA certificates (PEM) for a private server.
	CAFile string `toml:"ca_file,omitempty"`
	// PasswordCommand prints the password on stdout, for machines
	// without a keychain.
	PasswordCommand string `toml:"password_command,omitempty"`
	// MaxConnections caps concurrent upstream connections for the account.
	MaxConnections int `toml:"max_connections,omitempty,omitzero"`
	// OAuth names the OAuth2 provider ("microsoft", "google" or an
	// [[oauth_provider]] name) for an account that signs in with a token
	// instead of a password.
	OAuth string `toml:"oauth,omitempty"`
}

// OAuthProvider is an [[oauth_provider]] section: a custom OAuth2 provider,
// or settings that override a preset of the same name.
type OAuthProvider struct {
	Name      string   `toml:"name"`
	AuthURL   string   `toml:"auth_url,omitempty"`
	TokenURL  string   `toml:"token_url,omitempty"`
	DeviceURL string   `toml:"device_url,omitempty"`
	Scopes    []string `toml:"scopes,omitempty"`
	ClientID  string   `toml:"client_id,omitempty"`
	// ClientSecret is for providers that want one even from an installed
	// app (Google); such a secret is not confidential.
	ClientSecret string `toml:"client_secret,omitempty"`
	CAFile       string `toml:"ca_file,omitempty"`
	// Tenant picks the Microsoft tenant: common (default), organizations,
	// consumers, or a tenant ID or domain. Only for name = "microsoft".
	Tenant string `toml:"tenant,omitempty"`
}

// IsPreset reports whether name is a built-in OAuth2 provider.
func IsPreset(name string) bool {
	n := strings.ToLower(name)
	return n == OAuthMicrosoft || n == OAuthGoogle
}

// Validate checks one [[oauth_provider]] section.
func (p *OAuthProvider) Validate() error {
	if p.Name == "" {
		return errors.New(`name is missing: set name = "microsoft", "google" or a name of your own that accounts use in oauth = "..."`)
	}
	if strings.ContainsAny(p.Name, " \t\r\n\x00\"") {
		return fmt.Errorf("name %q: use letters, digits, dots and dashes", p.Name)
	}
	preset := IsPreset(p.Name)
	if !preset && (p.AuthURL == "" || p.TokenURL == "") {
		return errors.New("a custom provider needs auth_url and token_url (and client_id and scopes)")
	}
	if !preset && p.ClientID == "" {
		return errors.New("client_id is missing: register smtpshim as an app with the provider and put its client ID here")
	}
	if !preset && len(p.Scopes) == 0 {
		return errors.New(`scopes is missing: list the scopes that allow sending mail, e.g. scopes = ["smtp.send", "offline_access"]`)
	}
	for _, u := range []struct{ key, v string }{{"auth_url", p.AuthURL}, {"token_url", p.TokenURL}, {"device_url", p.DeviceURL}} {
		if u.v == "" {
			continue
		}
		pu, err := url.Parse(u.v)
		if err != nil || pu.Host == "" || (pu.Scheme != "https" && !(pu.Scheme == "http" && isLoopbackHost(pu.Hostname()))) {
			return fmt.Errorf("%s %q: must be an https:// address (http:// only for a provider on this machine)", u.key, u.v)
		}
	}
	if p.Tenant != "" && !strings.EqualFold(p.Name, OAuthMicrosoft) {
		return errors.New("tenant is only for the microsoft provider")
	}
	if strings.ContainsAny(p.Tenant, "/?#% ") {
		return fmt.Errorf("tenant %q: use common, organizations, consumers, or a tenant ID or domain", p.Tenant)
	}
	return nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Key identifies the account in the keychain and on the command line: the
// address, or "@domain" for a domain-level account.
func (a *Account) Key() string {
	if a.Address != "" {
		return strings.ToLower(a.Address)
	}
	return "@" + strings.ToLower(a.Domain)
}

// Login is the AUTH user name.
func (a *Account) Login() string {
	if a.Username != "" {
		return a.Username
	}
	return a.Address
}

// SecurityMode is the effective security setting.
func (a *Account) SecurityMode() string {
	if a.Security != "" {
		return strings.ToLower(a.Security)
	}
	if _, port, err := net.SplitHostPort(a.Server); err == nil && port == "465" {
		return SecurityTLS
	}
	return SecurityStartTLS
}

// Host is the server's host name, used to verify its certificate.
func (a *Account) Host() string {
	host, _, err := net.SplitHostPort(a.Server)
	if err != nil {
		return a.Server
	}
	return host
}

// PoolSize is the effective cap on upstream connections.
func (a *Account) PoolSize() int {
	if a.MaxConnections > 0 {
		return a.MaxConnections
	}
	return DefaultAccountPoolSize
}

// Path returns the file the config was loaded from or will be saved to.
func (c *Config) Path() string { return c.path }

// SetPath sets the file Save writes to.
func (c *Config) SetPath(p string) { c.path = p }

// ListenAddrs returns the effective listener addresses.
func (c *Config) ListenAddrs() []string {
	if len(c.Listen) > 0 {
		return c.Listen
	}
	p := strconv.Itoa(DefaultPort)
	return []string{net.JoinHostPort("127.0.0.1", p), net.JoinHostPort("::1", p)}
}

// HostnameOrDefault returns the greeting and EHLO name.
func (c *Config) HostnameOrDefault() string {
	if c.Hostname != "" {
		return c.Hostname
	}
	if h, err := os.Hostname(); err == nil && h != "" && !strings.ContainsAny(h, " \t\r\n") {
		return h
	}
	return "localhost"
}

// EffectiveMaxMessageSize returns the message size cap in bytes.
func (c *Config) EffectiveMaxMessageSize() int64 {
	return orDefault(int64(c.MaxMessageSize), DefaultMaxMessageSize)
}

// EffectiveMinFreeSpace returns the free-space floor of the spool's disk.
func (c *Config) EffectiveMinFreeSpace() int64 {
	return orDefault(int64(c.MinFreeSpace), DefaultMinFreeSpace)
}

// EffectiveMaxLineLength returns the line length cap in bytes.
func (c *Config) EffectiveMaxLineLength() int {
	return int(orDefault(int64(c.MaxLineLength), DefaultMaxLineLength))
}

// EffectiveMaxRecipients returns the recipient cap.
func (c *Config) EffectiveMaxRecipients() int {
	return int(orDefault(int64(c.MaxRecipients), DefaultMaxRecipients))
}

// EffectiveMaxConnections returns the client connection cap.
func (c *Config) EffectiveMaxConnections() int {
	return int(orDefault(int64(c.MaxConnections), DefaultMaxConnections))
}

// EffectiveIdleTimeout returns the command idle timeout.
func (c *Config) EffectiveIdleTimeout() time.Duration {
	return time.Duration(orDefault(int64(c.IdleTimeout), int64(DefaultIdleTimeout)))
}

// EffectiveDataTimeout returns the bound on a whole DATA phase.
func (c *Config) EffectiveDataTimeout() time.Duration {
	return time.Duration(orDefault(int64(c.DataTimeout), int64(DefaultDataTimeout)))
}

// EffectiveMaxConnectionsPerIP returns the per-client connection cap.
func (c *Config) EffectiveMaxConnectionsPerIP() int {
	return int(orDefault(int64(c.MaxConnectionsPerIP), DefaultMaxConnsPerIP))
}

// EffectiveSenderRates returns the per-sender caps per minute and per day.
func (c *Config) EffectiveSenderRates() (int, int) {
	return int(orDefault(int64(c.SenderRateMinute), DefaultSenderRateMinute)), int(orDefault(int64(c.SenderRateDay), DefaultSenderRateDay))
}

// EffectiveSyncWait returns how long a client waits for the first attempt.
func (c *Config) EffectiveSyncWait() time.Duration {
	return time.Duration(orDefault(int64(c.SyncWait), int64(DefaultSyncWait)))
}

// EffectiveMaxAge returns how long a message is retried.
func (c *Config) EffectiveMaxAge() time.Duration {
	return time.Duration(orDefault(int64(c.MaxAge), int64(DefaultMaxAge)))
}

// EffectiveRetry returns the backoff bounds for queued messages.
func (c *Config) EffectiveRetry() (time.Duration, time.Duration) {
	lo := time.Duration(orDefault(int64(c.RetryMin), int64(time.Minute)))
	hi := time.Duration(orDefault(int64(c.RetryMax), int64(time.Hour)))
	return lo, max(lo, hi)
}

// EffectiveKeychainTimeout returns the bound on a keychain call.
func (c *Config) EffectiveKeychainTimeout() time.Duration {
	return time.Duration(orDefault(int64(c.KeychainTimeout), int64(DefaultKeychainTimeout)))
}

// EffectiveDefaultDomain returns the domain that completes a bare local
// name in `smtpshim send`: default_domain, else the domain of the only
// account; "" when there is none to choose.
func (c *Config) EffectiveDefaultDomain() string {
	if c.DefaultDomain != "" {
		return c.DefaultDomain
	}
	if len(c.Accounts) != 1 {
		return ""
	}
	a := c.Accounts[0]
	if a.Domain != "" {
		return a.Domain
	}
	return a.Address[strings.LastIndexByte(a.Address, '@')+1:]
}

// EffectiveDefaultFrom returns the envelope sender of `smtpshim send`
// without -f: default_from, else the address of the only user-level
// account; "" when there is none to choose.
func (c *Config) EffectiveDefaultFrom() string {
	if c.DefaultFrom != "" {
		return c.DefaultFrom
	}
	from := ""
	for _, a := range c.Accounts {
		if a.Address != "" {
			if from != "" {
				return ""
			}
			from = a.Address
		}
	}
	return from
}

// Log file defaults.
const (
	DefaultLogFileMaxSize = 10 << 20
	DefaultLogFileKeep    = 3
)

// EffectiveLogFileRotation returns the size at which the log file is
// rotated and how many old files are kept.
func (c *Config) EffectiveLogFileRotation() (int64, int) {
	return orDefault(int64(c.LogFileMaxSize), DefaultLogFileMaxSize), int(orDefault(int64(c.LogFileKeep), DefaultLogFileKeep))
}

// EffectiveLocalAuth returns the local AUTH policy.
func (c *Config) EffectiveLocalAuth() string {
	if c.LocalAuth == "" {
		return LocalAuthIgnore
	}
	return strings.ToLower(c.LocalAuth)
}

// EffectiveSpoolDir returns the spool directory.
func (c *Config) EffectiveSpoolDir() (string, error) {
	if c.SpoolDir != "" {
		return c.SpoolDir, nil
	}
	dir, err := DataDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "spool"), nil
}

func orDefault(v, def int64) int64 {
	if v > 0 {
		return v
	}
	return def
}

// DefaultPath returns the config file in the OS's user config directory.
func DefaultPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("finding the user config directory: %w (use --config FILE)", err)
	}
	return filepath.Join(dir, defaultApplicationFolder, defaultConfigFileName), nil
}

// DataDir returns smtpshim's folder in the OS's user data directory.
func DataDir() (string, error) {
	switch runtime.GOOS {
	case "windows":
		if d := os.Getenv("LocalAppData"); d != "" {
			return filepath.Join(d, defaultApplicationFolder), nil
		}
	case "darwin":
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, "Library", "Application Support", defaultApplicationFolder), nil
		}
	default:
		if d := os.Getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
			return filepath.Join(d, defaultApplicationFolder), nil
		}
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, ".local", "share", defaultApplicationFolder), nil
		}
	}
	return "", errors.New("cannot find the user data directory: set spool_dir in the config")
}

// Load reads and validates the config at path. A missing file gives an
// empty, valid config (no accounts yet), so a first start needs no editing.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Config{path: path}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if err := CheckFile(path); err != nil {
		return nil, err
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c.path = path
	return c, nil
}

// Parse decodes and validates a config file's contents.
func Parse(data []byte) (*Config, error) {
	var c Config
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			line, col := pe.Position.Line, pe.Position.Col
			if l, c, ok := lineCol(data, pe.Position.Start); ok && pe.Position.Len > 0 {
				line, col = l, c
			}
			return nil, fmt.Errorf("line %d, column %d: %s", line, col, pe.Message)
		}
		return nil, typeError(err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		if err := misplaced(und); err != nil {
			return nil, err
		}
		names := make([]string, len(und))
		for i, k := range und {
			names[i] = k.String()
		}
		return nil, fmt.Errorf("unknown setting %s (check the spelling; see the README for the settings)", strings.Join(names, ", "))
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// lineCol turns a byte offset into a line and column. An error found at a
// line break (an unclosed [[account] or string) belongs to the line the
// break ends, not to the next one, where the TOML parser counts it.
func lineCol(data []byte, off int) (int, int, bool) {
	if off < 0 || off > len(data) {
		return 0, 0, false
	}
	before := data[:off]
	line := 1 + bytes.Count(before, []byte("\n"))
	col := off - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col, true
}

// badType matches the TOML decoder's type mismatch, which it reports in
// Go's terms ("destination has type slice").
var badType = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): incompatible types: TOML value has type (\S+); destination has type (\S+)`)

// typeError says what a setting of the wrong type should look like.
func typeError(err error) error {
	m := badType.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	line, key, got, want := m[1], m[2], m[3], m[4]
	name := key[strings.LastIndexByte(key, '.')+1:]
	where := ""
	if line != "" {
		where = "line " + line + ": "
	}
	found := map[string]string{"string": "a string", "map[string]any": "a single table", "[]any": "a list", "[]map[string]any": "a list of tables", "bool": "true or false", "int64": "a number", "float64": "a number"}[got]
	if found == "" {
		found = "a " + got
	}
	var expect string
	switch {
	case key == "account" && want == "slice":
		return fmt.Errorf("%saccounts are written [[account]], with two brackets (there can be several), not [account]", where)
	case want == "slice":
		expect = fmt.Sprintf("a list in brackets, e.g. %s = [\"127.0.0.1:2525\"]", name)
		if name == "allow_networks" {
			expect = fmt.Sprintf("a list in brackets, e.g. %s = [\"192.168.1.0/24\"]", name)
		}
	case strings.HasPrefix(want, "int") || strings.HasPrefix(want, "uint"):
		expect = fmt.Sprintf("a whole number without quotes, e.g. %s = 10", name)
	case want == "bool" || want == "boolean":
		expect = fmt.Sprintf("true or false, without quotes, e.g. %s = true", name)
	case want == "string":
		expect = fmt.Sprintf("text in double quotes, e.g. %s = \"...\"", name)
	default:
		expect = "a " + want
	}
	return fmt.Errorf("%s%s must be %s; found %s", where, key, expect, found)
}

// Validate checks every setting and returns the first problem, naming it
// precisely.
func (c *Config) Validate() error {
	for _, l := range c.Listen {
		if err := validateHostPort(l); err != nil {
			return fmt.Errorf("listen %q: %w", l, err)
		}
	}
	for _, l := range c.ListenTLS {
		if err := validateHostPort(l); err != nil {
			return fmt.Errorf("listen_tls %q: %w", l, err)
		}
	}
	// Binding one address twice would fail as if another program held
	// the port: say what it really is.
	where := map[string]string{}
	for i, l := range append(append([]string(nil), c.Listen...), c.ListenTLS...) {
		setting := "listen"
		if i >= len(c.Listen) {
			setting = "listen_tls"
		}
		k := l
		if host, port, err := net.SplitHostPort(l); err == nil {
			if ip, err := netip.ParseAddr(host); err == nil {
				host = ip.Unmap().String()
			}
			k = net.JoinHostPort(strings.ToLower(host), port)
		}
		if prev, dup := where[k]; dup {
			if prev == setting {
				return fmt.Errorf("%s: %s is listed twice; remove one", setting, l)
			}
			return fmt.Errorf("%s is in both listen and listen_tls; an address serves one or the other", l)
		}
		where[k] = setting
	}
	switch c.EffectiveLocalAuth() {
	case LocalAuthIgnore, LocalAuthRequire:
	default:
		return fmt.Errorf("local_auth %q: must be %q or %q", c.LocalAuth, LocalAuthIgnore, LocalAuthRequire)
	}
	if c.RequireTLSForAuth && !c.StartTLS && len(c.ListenTLS) == 0 {
		return errors.New("require_tls_for_auth needs local TLS: set starttls = true (or listen_tls), or clients on other computers cannot log in at all")
	}
	for _, n := range c.AllowNetworks {
		if err := validateNetwork(n); err != nil {
			return fmt.Errorf("allow_networks %q: %w", n, err)
		}
	}
	for _, v := range []struct {
		name string
		n    int
	}{{"max_recipients", c.MaxRecipients}, {"max_connections", c.MaxConnections},
		{"max_connections_per_ip", c.MaxConnectionsPerIP}, {"sender_rate_minute", c.SenderRateMinute}, {"sender_rate_day", c.SenderRateDay}} {
		if v.n < 0 {
			return fmt.Errorf("%s must not be negative", v.name)
		}
	}
	if c.DefaultDomain != "" {
		if err := ValidateDomain(c.DefaultDomain); err != nil {
			return fmt.Errorf("default_domain: %w", err)
		}
	}
	if c.DefaultFrom != "" {
		if err := ValidateAddress(c.DefaultFrom); err != nil {
			return fmt.Errorf("default_from: %w", err)
		}
	}
	if c.LogFileKeep < 0 {
		return errors.New("log_file_keep must not be negative")
	}
	if c.Hostname != "" && strings.ContainsAny(c.Hostname, " \t\r\n<>") {
		return fmt.Errorf("hostname %q: must be a plain host name", c.Hostname)
	}
	providers := map[string]bool{OAuthMicrosoft: true, OAuthGoogle: true}
	for i := range c.OAuthProviders {
		p := &c.OAuthProviders[i]
		if err := p.Validate(); err != nil {
			return fmt.Errorf("oauth_provider %d%s: %w", i+1, describeName(p.Name), err)
		}
		n := strings.ToLower(p.Name)
		if providers[n] && !IsPreset(n) {
			return fmt.Errorf("oauth_provider %d (%s): a provider of that name is already defined", i+1, p.Name)
		}
		providers[n] = true
	}
	seen := map[string]int{}
	for i := range c.Accounts {
		a := &c.Accounts[i]
		if err := a.Validate(); err != nil {
			return fmt.Errorf("account %d%s: %w", i+1, a.describe(), err)
		}
		if a.OAuth != "" && !providers[strings.ToLower(a.OAuth)] {
			return fmt.Errorf("account %d%s: oauth %q: no such provider; use microsoft, google, or add an [[oauth_provider]] with name = %q", i+1, a.describe(), a.OAuth, a.OAuth)
		}
		if j, dup := seen[a.Key()]; dup {
			return fmt.Errorf("account %d (%s): the same sender is already configured in account %d", i+1, a.Key(), j+1)
		}
		seen[a.Key()] = i
	}
	return nil
}

// CheckFiles checks the files the config names, which Validate leaves
// alone so that a config can be loaded and fixed even when a file is
// missing: every account's ca_file must exist and hold PEM certificates.
// serve, account add and doctor call it.
func (c *Config) CheckFiles() error {
	for i := range c.Accounts {
		a := &c.Accounts[i]
		if err := CheckCAFile(a.CAFile); err != nil {
			return fmt.Errorf("account %d%s: %w", i+1, a.describe(), err)
		}
	}
	return nil
}

// CheckCAFile checks that path ("" is fine: none) is a readable file of
// PEM certificates.
func CheckCAFile(path string) error {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("ca_file %s does not exist: give the PEM file of the CA that signed the server's certificate, or remove ca_file to trust only the system's CAs", path)
	case err != nil:
		return fmt.Errorf("ca_file %s cannot be read: %w", path, err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		return fmt.Errorf("ca_file %s holds no PEM certificate (a file starting with -----BEGIN CERTIFICATE-----); export the CA certificate in PEM form", path)
	}
	return nil
}

func describeName(n string) string {
	if n == "" {
		return ""
	}
	return " (" + n + ")"
}

func (a *Account) describe() string {
	if a.Address == "" && a.Domain == "" {
		return ""
	}
	return " (" + a.Key() + ")"
}

// Validate checks one account.
func (a *Account) Validate() error {
	switch {
	case a.Address == "" && a.Domain == "":
		return errors.New(`set address = "you@example.com" (one sender) or domain = "example.com" (every sender of a domain)`)
	case a.Address != "" && a.Domain != "":
		return errors.New("set either address or domain, not both")
	case a.Address != "":
		if err := ValidateAddress(a.Address); err != nil {
			return fmt.Errorf("address: %w", err)
		}
	default:
		if err := ValidateDomain(a.Domain); err != nil {
			return fmt.Errorf("domain: %w", err)
		}
		if a.Username == "" {
			return errors.New("a domain account needs username (the login for the upstream server)")
		}
	}
	if a.Server == "" {
		return errors.New(`server is missing: set server = "smtp.example.com:587"`)
	}
	if err := validateHostPort(a.Server); err != nil {
		return fmt.Errorf("server %q: %w", a.Server, err)
	}
	switch a.SecurityMode() {
	case SecurityStartTLS, SecurityTLS, SecurityInsecure:
	default:
		return fmt.Errorf("security %q: must be starttls (port 587), tls (port 465) or insecure", a.Security)
	}
	switch strings.ToLower(a.Auth) {
	case "", "plain", "login", "cram-md5":
	default:
		return fmt.Errorf("auth %q: must be plain, login or cram-md5 (or leave it out to choose automatically)", a.Auth)
	}
	if a.MaxConnections < 0 {
		return errors.New("max_connections must not be negative")
	}
	if a.OAuth != "" {
		switch {
		case a.PasswordCommand != "":
			return errors.New("set either oauth (sign in with a token) or password_command, not both")
		case a.Auth != "":
			return errors.New("auth chooses a password mechanism; an oauth account uses XOAUTH2 or OAUTHBEARER by itself: remove auth")
		case a.SecurityMode() == SecurityInsecure:
			return errors.New("an oauth account needs TLS: an access token must never cross the network unencrypted")
		}
	}
	if strings.ContainsAny(a.Username, "\r\n\x00") {
		return errors.New("username contains a line break")
	}
	return nil
}

// ValidateAddress checks that s is an address smtpshim can route and
// send as: local@domain, with nothing that would need quoting.
func ValidateAddress(s string) error {
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return fmt.Errorf("%q is not an email address like you@example.com", s)
	}
	if strings.ContainsAny(s, " \t\r\n<>,;\x00") {
		return fmt.Errorf("%q contains a space or a character not allowed in an address", s)
	}
	if err := ValidateDomain(s[at+1:]); err != nil {
		return err
	}
	if _, err := addr.Parse(s); err != nil {
		return err
	}
	return nil
}

// ValidateDomain checks that s is a plausible domain name.
func ValidateDomain(s string) error {
	if s == "" || len(s) > 253 || strings.HasPrefix(s, "@") || strings.ContainsAny(s, " \t\r\n<>@,;\x00") ||
		strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return fmt.Errorf("%q is not a domain name like example.com", s)
	}
	if _, err := addr.Domain(s); err != nil {
		return fmt.Errorf("%q is not a domain name like example.com", s)
	}
	return nil
}

// validateNetwork refuses what would never match a client: client
// addresses are compared in plain IPv4 or IPv6 form, without a zone.
func validateNetwork(n string) error {
	if strings.Contains(n, "%") {
		return errors.New("a zone (the %... part) is not allowed: write the network alone, e.g. fe80::/10")
	}
	p, err := netip.ParsePrefix(n)
	if err != nil {
		return errors.New("not a network in CIDR form such as 192.168.1.0/24")
	}
	if p.Addr().Is4In6() {
		bits := p.Bits() - 96
		if bits < 0 {
			return errors.New("an IPv4-mapped IPv6 network never matches: write the IPv4 network, e.g. 10.0.0.0/8")
		}
		return fmt.Errorf("an IPv4-mapped IPv6 network never matches: write it as %s", netip.PrefixFrom(p.Addr().Unmap(), bits).Masked())
	}
	return nil
}

func validateHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("write host:port, e.g. smtp.example.com:587 or 127.0.0.1:2525 ([::1]:2525 for IPv6)")
	}
	if host == "" {
		return errors.New("the host is missing")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q must be a number from 1 to 65535", port)
	}
	return nil
}

// Find returns the account whose key (address, or @domain, or bare domain) is key.
func (c *Config) Find(key string) (int, *Account) {
	k := strings.ToLower(strings.TrimSpace(key))
	for i := range c.Accounts {
		a := &c.Accounts[i]
		if a.Key() == k || (a.Domain != "" && strings.ToLower(a.Domain) == k) {
			return i, a
		}
	}
	return -1, nil
}

// Save writes the config atomically with mode 0600: the file may name
// password commands, and only its owner should read or change it.
func (c *Config) Save() error {
	if c.path == "" {
		return errors.New("config has no file path")
	}
	if err := c.Validate(); err != nil {
		return err
	}
	var buf bytes.Buffer
	buf.WriteString("# smtpshim configuration. Passwords are not stored here: they live in the OS keychain.\n")
	if err := toml.NewEncoder(&buf).Encode(c); err != nil {
		return err
	}
	return WriteFileAtomic(c.path, buf.Bytes(), 0o600)
}

// WriteFileAtomic writes data to a temp file, syncs it and renames it over
// path, so a crash leaves either the old file or the new one.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil && runtime.GOOS != "windows" {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
