package trace

import (
	"bytes"
	"strings"
	"testing"
)

func TestWriterRedactsCredentials(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		secrets []string
		keep    []string
	}{
		{"PLAIN initial response", "250-AUTH PLAIN LOGIN\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n235 2.7.0 ok\r\n",
			[]string{"AGFsaWNlAHNlY3JldA=="}, []string{"AUTH PLAIN ***", "235 2.7.0 ok"}},
		{"LOGIN dialogue", "AUTH LOGIN\r\n334 VXNlcm5hbWU6\r\nYWxpY2U=\r\n334 UGFzc3dvcmQ6\r\nc2VjcmV0\r\n235 ok\r\n",
			[]string{"YWxpY2U=", "c2VjcmV0"}, []string{"AUTH LOGIN", "334 VXNlcm5hbWU6", "235 ok"}},
		{"lower-case auth", "auth plain AGFsaWNlAHNlY3JldA==\r\n",
			[]string{"AGFsaWNlAHNlY3JldA=="}, []string{"auth plain ***"}},
		{"split across writes", "AUTH PLAIN AGFsaWNl", nil, nil},
		{"normal commands untouched", "MAIL FROM:<a@example.com>\r\n250 ok\r\n",
			nil, []string{"MAIL FROM:<a@example.com>", "250 ok"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			w := New(&out, "> ")
			// Feed byte by byte: lines split across TCP segments must
			// still be redacted whole.
			for i := 0; i < len(tc.in); i++ {
				w.Write([]byte{tc.in[i]})
			}
			for _, s := range tc.secrets {
				if strings.Contains(out.String(), s) {
					t.Errorf("secret %q leaked:\n%s", s, out.String())
				}
			}
			for _, k := range tc.keep {
				if !strings.Contains(out.String(), "> "+k+"\n") {
					t.Errorf("missing line %q in:\n%s", k, out.String())
				}
			}
		})
	}
}
