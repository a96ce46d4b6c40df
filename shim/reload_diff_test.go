package shim

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim/config"
)

// Every setting of the config file is either applied by a reload and named
// in its reply, or named as needing a restart: a reload never stays silent
// about a setting whose old value is still in force (local_tls_legacy is
// the one that matters most: turning the legacy TLS versions off must not
// read as done while they are still offered).
func TestReloadNamesEverySetting(t *testing.T) {
	t.Parallel()
	const applied, restart = "applied", "restart"
	edits := map[string]struct {
		edit func(*config.Config)
		want string
	}{
		"listen":                 {func(c *config.Config) { c.Listen = []string{"127.0.0.1:2626"} }, restart},
		"hostname":               {func(c *config.Config) { c.Hostname = "relay.example.org" }, restart},
		"max_message_size":       {func(c *config.Config) { c.MaxMessageSize = 7 << 20 }, restart},
		"max_recipients":         {func(c *config.Config) { c.MaxRecipients = 7 }, applied},
		"max_connections":        {func(c *config.Config) { c.MaxConnections = 7 }, applied},
		"max_line_length":        {func(c *config.Config) { c.MaxLineLength = 7000 }, restart},
		"idle_timeout":           {func(c *config.Config) { c.IdleTimeout = config.Duration(7 * time.Minute) }, restart},
		"data_timeout":           {func(c *config.Config) { c.DataTimeout = config.Duration(7 * time.Minute) }, applied},
		"sync_wait":              {func(c *config.Config) { c.SyncWait = config.Duration(7 * time.Second) }, applied},
		"max_age":                {func(c *config.Config) { c.MaxAge = config.Duration(7 * time.Hour) }, applied},
		"retry_min":              {func(c *config.Config) { c.RetryMin = config.Duration(7 * time.Second) }, applied},
		"retry_max":              {func(c *config.Config) { c.RetryMax = config.Duration(7 * time.Hour) }, applied},
		"spool_dir":              {func(c *config.Config) { c.SpoolDir = "/var/tmp/elsewhere" }, restart},
		"min_free_space":         {func(c *config.Config) { c.MinFreeSpace = 7 << 30 }, applied},
		"local_auth":             {func(c *config.Config) { c.LocalAuth = config.LocalAuthRequire }, applied},
		"allow_networks":         {func(c *config.Config) { c.AllowNetworks = []string{"192.168.7.0/24"} }, applied},
		"starttls":               {func(c *config.Config) { c.StartTLS = true }, restart},
		"listen_tls":             {func(c *config.Config) { c.ListenTLS = []string{"127.0.0.1:4655"} }, restart},
		"local_tls_legacy":       {func(c *config.Config) { c.LocalTLSLegacy = true }, restart},
		"require_tls_for_auth":   {func(c *config.Config) { c.RequireTLSForAuth = true }, applied},
		"max_connections_per_ip": {func(c *config.Config) { c.MaxConnectionsPerIP = 7 }, applied},
		"sender_rate_minute":     {func(c *config.Config) { c.SenderRateMinute = 7 }, applied},
		"sender_rate_day":        {func(c *config.Config) { c.SenderRateDay = 7 }, applied},
		"rate_limit_loopback":    {func(c *config.Config) { c.RateLimitLoopback = true }, applied},
		"keychain_timeout":       {func(c *config.Config) { c.KeychainTimeout = config.Duration(7 * time.Second) }, restart},
		"default_domain":         {func(c *config.Config) { c.DefaultDomain = "example.org" }, applied},
		"default_from":           {func(c *config.Config) { c.DefaultFrom = "bob@example.org" }, applied},
		"log_file":               {func(c *config.Config) { c.LogFile = "/var/tmp/smtpshim.log" }, restart},
		"log_file_max_size":      {func(c *config.Config) { c.LogFileMaxSize = 7 << 20 }, restart},
		"log_file_keep":          {func(c *config.Config) { c.LogFileKeep = 7 }, restart},
		"oauth_provider": {func(c *config.Config) {
			c.OAuthProviders = append(c.OAuthProviders, config.OAuthProvider{Name: "corp", ClientID: "smtpshim"})
		}, restart},
		"account": {func(c *config.Config) {
			c.Accounts = append(c.Accounts, config.Account{Address: "dave@example.net", Server: "127.0.0.1:1"})
		}, applied},
	}
	// The table covers the whole file format, so a new setting must be
	// sorted into one kind or the other.
	ct := reflect.TypeFor[config.Config]()
	for i := range ct.NumField() {
		f := ct.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if _, ok := edits[name]; !ok {
			t.Errorf("setting %q is not in this test: decide whether a reload applies it or names it as needing a restart", name)
		}
	}
	base := func() *config.Config {
		return &config.Config{Accounts: []config.Account{{Address: "alice@example.com", Server: "127.0.0.1:1"}}}
	}
	for name, e := range edits {
		started, old, cfg := base(), base(), base()
		e.edit(cfg)
		res := reloadDiff(started, old, cfg, old.EffectiveLocalAuth() != cfg.EffectiveLocalAuth())
		inApplied := slices.ContainsFunc(res.Applied, func(s string) bool { return s == name || strings.HasPrefix(s, name) })
		inRestart := slices.Contains(res.NeedsRestart, name+" changed: restart smtpshim to apply it")
		switch {
		case e.want == applied && !inApplied:
			t.Errorf("%s changed: reload result %+v does not name it as applied", name, res)
		case e.want == restart && !inRestart:
			t.Errorf("%s changed: reload result %+v does not name it as needing a restart", name, res)
		case inApplied && inRestart:
			t.Errorf("%s changed: reload result %+v names it as both applied and needing a restart", name, res)
		}
	}
}
