package settings

import (
	"strings"
	"testing"
)

func TestGuidesTellToLeaveAuthenticationOffOrUseTheLocalPassword(t *testing.T) {
	for _, c := range clients {
		local := strings.Join(toStrings(c.render(listen{Host: "localhost", Port: "2525"})), "\n")
		lan := strings.Join(toStrings(c.render(listen{Host: "192.168.1.5", Port: "25", LAN: true, Network: true})), "\n")
		if c.ID != "script" {
			if !strings.Contains(local, "smtpshim logs in to your provider for you") && !strings.Contains(local, "smtpshim logs in for you") {
				t.Errorf("%s: the guide does not say to leave authentication off:\n%s", c.Name, local)
			}
			if !strings.Contains(lan, "local password") {
				t.Errorf("%s: the LAN guide does not mention the local password:\n%s", c.Name, lan)
			}
		}
		if strings.Contains(local, "%") || strings.Contains(lan, "%") {
			t.Errorf("%s: an unfilled placeholder:\n%s", c.Name, local)
		}
		if !strings.Contains(local, "2525") || !strings.Contains(lan, "192.168.1.5") {
			t.Errorf("%s: the server or port is missing", c.Name)
		}
	}
}

func toStrings[T ~string](in []T) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = string(s)
	}
	return out
}
