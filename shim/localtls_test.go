package shim

import (
	"slices"
	"testing"

	"github.com/smtpshim/smtpshim/shim/config"
)

func TestLocalTLSNames(t *testing.T) {
	cases := []struct {
		cfg  config.Config
		want []string
	}{
		{config.Config{}, nil},
		{config.Config{Listen: []string{"127.0.0.1:2525", "localhost:2526"}}, nil},
		{config.Config{Hostname: "office-pc", Listen: []string{"127.0.0.1:2525", "192.168.1.10:2525"}, ListenTLS: []string{"[fd00::5]:4650"}},
			[]string{"192.168.1.10", "fd00::5", "office-pc"}},
		{config.Config{Hostname: "office-pc", Listen: []string{"0.0.0.0:2525"}}, []string{"office-pc"}},
	}
	for _, c := range cases {
		if got := localTLSNames(&c.cfg); !slices.Equal(got, c.want) {
			t.Errorf("listen %v %v: names %v, want %v", c.cfg.Listen, c.cfg.ListenTLS, got, c.want)
		}
	}
}
