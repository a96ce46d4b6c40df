package upstream

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const (
	authTestUser = "alice@example.com"
	authTestPass = "s3cret-Pa55"
)

func TestLoginClient(t *testing.T) {
	tests := []struct {
		name       string
		challenges []string
		want       []string
	}{
		{"standard prompts", []string{"Username:", "Password:"}, []string{authTestUser, authTestPass}},
		{"upper and lower case", []string{"USERNAME:", "password:"}, []string{authTestUser, authTestPass}},
		{"mixed case without colon", []string{"uSeRnAmE", "PASSWORD"}, []string{authTestUser, authTestPass}},
		{"User Name spelling", []string{"User Name", "Password:"}, []string{authTestUser, authTestPass}},
		{"empty challenges", []string{"", ""}, []string{authTestUser, authTestPass}},
		{"unknown text answered by order", []string{"Who are you?", "Prove it"}, []string{authTestUser, authTestPass}},
		{"double base64", []string{"VXNlcm5hbWU6", "UGFzc3dvcmQ6"}, []string{authTestUser, authTestPass}},
		{"password asked first", []string{"Password:", "Username:"}, []string{authTestPass, authTestUser}},
		{"surrounding space", []string{"  Username:  ", "\tPassword: "}, []string{authTestUser, authTestPass}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewLoginClient(authTestUser, authTestPass)
			mech, ir, err := c.Start()
			if err != nil || mech != MechLogin || ir != nil {
				t.Fatalf("Start() = %q, %q, %v; want LOGIN, nil initial response, nil", mech, ir, err)
			}
			for i, ch := range tt.challenges {
				got, err := c.Next([]byte(ch))
				if err != nil {
					t.Fatalf("Next(%q): %v", ch, err)
				}
				if string(got) != tt.want[i] {
					t.Errorf("Next(%q) = %q, want %q", ch, got, tt.want[i])
				}
			}
		})
	}
}

func TestLoginClientThirdChallenge(t *testing.T) {
	tests := []struct {
		name  string
		third string
	}{
		{"empty", ""},
		{"echoes password", authTestPass},
		{"username again", "Username:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewLoginClient(authTestUser, authTestPass)
			if _, _, err := c.Start(); err != nil {
				t.Fatal(err)
			}
			for _, ch := range []string{"Username:", "Password:"} {
				if _, err := c.Next([]byte(ch)); err != nil {
					t.Fatal(err)
				}
			}
			resp, err := c.Next([]byte(tt.third))
			if err == nil {
				t.Fatalf("third challenge answered with %q, want error", resp)
			}
			if strings.Contains(err.Error(), authTestPass) {
				t.Errorf("error reveals the password: %v", err)
			}
		})
	}
}

func TestCRAMMD5Client(t *testing.T) {
	tests := []struct {
		name, user, pass, challenge, want string
	}{
		{
			name: "RFC 2195 example", user: "tim", pass: "tanstaaftanstaaf",
			challenge: "<1896.697170952@postoffice.reston.mci.net>",
			want:      "tim b913a602c7eda7a495b4e6e7334d3890",
		},
		{
			name: "username with space", user: "Tim Jones", pass: "tanstaaftanstaaf",
			challenge: "<1896.697170952@postoffice.reston.mci.net>",
			want:      "Tim Jones b913a602c7eda7a495b4e6e7334d3890",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCRAMMD5Client(tt.user, tt.pass)
			mech, ir, err := c.Start()
			if err != nil || mech != MechCRAMMD5 || ir != nil {
				t.Fatalf("Start() = %q, %q, %v; want CRAM-MD5, nil, nil", mech, ir, err)
			}
			got, err := c.Next([]byte(tt.challenge))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("response = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCRAMMD5ClientErrors(t *testing.T) {
	tests := []struct {
		name       string
		challenges []string
	}{
		{"empty challenge", []string{""}},
		{"second challenge", []string{"<1.2@host>", "<3.4@host>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCRAMMD5Client("tim", "tanstaaftanstaaf")
			if _, _, err := c.Start(); err != nil {
				t.Fatal(err)
			}
			var err error
			for _, ch := range tt.challenges {
				_, err = c.Next([]byte(ch))
			}
			if err == nil {
				t.Fatal("want error")
			}
			if strings.Contains(err.Error(), "tanstaaftanstaaf") {
				t.Errorf("error reveals the password: %v", err)
			}
		})
	}
}

func TestChooseMechanism(t *testing.T) {
	tests := []struct {
		name       string
		advertised string
		tls        bool
		override   string
		want       string
		wantErr    []string // substrings the error must contain
	}{
		{name: "tls prefers plain", advertised: "LOGIN PLAIN CRAM-MD5", tls: true, want: MechPlain},
		{name: "tls login when no plain", advertised: "CRAM-MD5 LOGIN", tls: true, want: MechLogin},
		{name: "tls cram-md5 last", advertised: "CRAM-MD5 XOAUTH2", tls: true, want: MechCRAMMD5},
		{name: "insecure prefers cram-md5", advertised: "PLAIN LOGIN CRAM-MD5", tls: false, want: MechCRAMMD5},
		{name: "insecure then plain", advertised: "LOGIN PLAIN", tls: false, want: MechPlain},
		{name: "insecure then login", advertised: "LOGIN", tls: false, want: MechLogin},
		{name: "lower case advertisement", advertised: "login plain", tls: true, want: MechPlain},
		{name: "old AUTH= syntax", advertised: "AUTH=LOGIN", tls: true, want: MechLogin},
		{name: "extra whitespace", advertised: "  XOAUTH2\tLOGIN  ", tls: true, want: MechLogin},
		{name: "override honoured", advertised: "PLAIN LOGIN", tls: true, override: "login", want: MechLogin},
		{name: "override any case", advertised: "PLAIN CRAM-MD5", tls: true, override: "Cram-Md5", want: MechCRAMMD5},
		{name: "override plain without tls", advertised: "PLAIN CRAM-MD5", tls: false, override: "PLAIN", want: MechPlain},
		{
			name: "override not advertised", advertised: "PLAIN XOAUTH2", tls: true, override: "cram-md5",
			wantErr: []string{"cram-md5", "PLAIN XOAUTH2"},
		},
		{
			name: "override unknown", advertised: "PLAIN", tls: true, override: "xoauth2",
			wantErr: []string{"xoauth2", "plain, login or cram-md5"},
		},
		{
			name: "override with nothing advertised", advertised: "", tls: true, override: "plain",
			wantErr: []string{"the server does not offer SMTP AUTH"},
		},
		{
			name: "nothing supported", advertised: "XOAUTH2 OAUTHBEARER", tls: true,
			wantErr: []string{"XOAUTH2 OAUTHBEARER", "smtpshim supports PLAIN, LOGIN and CRAM-MD5"},
		},
		{name: "empty", advertised: "", tls: true, wantErr: []string{"the server does not offer SMTP AUTH"}},
		{name: "blank", advertised: "   ", tls: false, wantErr: []string{"the server does not offer SMTP AUTH"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ChooseMechanism(tt.advertised, tt.tls, tt.override)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("ChooseMechanism() = %q, want error", got)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ChooseMechanism: %v", err)
			}
			if got != tt.want {
				t.Errorf("ChooseMechanism() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestChooseMechanismNoAuthIs(t *testing.T) {
	tests := []struct{ name, override string }{{"automatic", ""}, {"override", "login"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ChooseMechanism("", true, tt.override); !errors.Is(err, ErrNoAuth) {
				t.Errorf("err = %v, want ErrNoAuth", err)
			}
		})
	}
}

func TestNewSASLClient(t *testing.T) {
	tests := []struct {
		mech     string
		wantMech string
		wantIR   string // "" means no initial response expected
		wantErr  bool
	}{
		{mech: "PLAIN", wantMech: "PLAIN", wantIR: "\x00" + authTestUser + "\x00" + authTestPass},
		{mech: "plain", wantMech: "PLAIN", wantIR: "\x00" + authTestUser + "\x00" + authTestPass},
		{mech: "LOGIN", wantMech: "LOGIN"},
		{mech: "cram-md5", wantMech: "CRAM-MD5"},
		{mech: "XOAUTH2", wantErr: true},
		{mech: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.mech, func(t *testing.T) {
			c, err := NewSASLClient(tt.mech, authTestUser, authTestPass)
			if tt.wantErr {
				if err == nil {
					t.Fatal("want error")
				}
				if strings.Contains(err.Error(), authTestPass) {
					t.Errorf("error reveals the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			mech, ir, err := c.Start()
			if err != nil {
				t.Fatal(err)
			}
			if mech != tt.wantMech || string(ir) != tt.wantIR || (tt.wantIR == "" && ir != nil) {
				t.Errorf("Start() = %q, %q; want %q, %q", mech, ir, tt.wantMech, tt.wantIR)
			}
		})
	}
}

// authTestLoginServer is a hand-written LOGIN server because go-sasl has
// none, and the point is to mimic servers that prompt "Username:" first.
type authTestLoginServer struct {
	user, pass string
	prompts    [2]string
	step       int
	gotUser    string
}

func (s *authTestLoginServer) Next(resp []byte) ([]byte, bool, error) {
	s.step++
	switch s.step {
	case 1:
		if resp != nil {
			return nil, false, &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "no initial response expected"}
		}
		return []byte(s.prompts[0]), false, nil
	case 2:
		s.gotUser = string(resp)
		return []byte(s.prompts[1]), false, nil
	case 3:
		if s.gotUser == s.user && string(resp) == s.pass {
			return nil, true, nil
		}
	}
	return nil, false, authTestInvalid
}

type authTestCRAMServer struct {
	user, pass, challenge string
	sent                  bool
}

func (s *authTestCRAMServer) Next(resp []byte) ([]byte, bool, error) {
	if !s.sent {
		s.sent = true
		return []byte(s.challenge), false, nil
	}
	mac := hmac.New(md5.New, []byte(s.pass))
	mac.Write([]byte(s.challenge))
	if string(resp) == s.user+" "+hex.EncodeToString(mac.Sum(nil)) {
		return nil, true, nil
	}
	return nil, false, authTestInvalid
}

var authTestInvalid = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}

// authTestSession must satisfy AuthSession or go-smtp silently offers no AUTH.
var _ smtp.AuthSession = (*authTestSession)(nil)

type authTestSession struct {
	loginPrompts [2]string
}

func (s *authTestSession) AuthMechanisms() []string { return []string{MechLogin, MechCRAMMD5} }

func (s *authTestSession) Auth(mech string) (sasl.Server, error) {
	switch mech {
	case MechLogin:
		return &authTestLoginServer{user: authTestUser, pass: authTestPass, prompts: s.loginPrompts}, nil
	case MechCRAMMD5:
		return &authTestCRAMServer{user: authTestUser, pass: authTestPass, challenge: "<1896.697170952@postoffice.reston.mci.net>"}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (s *authTestSession) Reset()                               {}
func (s *authTestSession) Logout() error                        { return nil }
func (s *authTestSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *authTestSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *authTestSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }

// startAuthTestServer runs go-smtp's own server so the clients are checked
// against a real AUTH state machine and base64 framing, not just a mock.
func startAuthTestServer(t *testing.T, prompts [2]string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &authTestSession{loginPrompts: prompts}, nil
	}))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return l.Addr().String()
}

func TestSASLIntegrationWithGoSMTP(t *testing.T) {
	tests := []struct {
		name     string
		prompts  [2]string
		mech     string // "" = pick with ChooseMechanism from the EHLO reply
		password string
		wantCode int // 0 = success
	}{
		{"LOGIN username prompt first", [2]string{"Username:", "Password:"}, MechLogin, authTestPass, 0},
		{"LOGIN other case", [2]string{"USERNAME:", "password:"}, MechLogin, authTestPass, 0},
		{"LOGIN empty prompts", [2]string{"", ""}, MechLogin, authTestPass, 0},
		{"LOGIN wrong password", [2]string{"Username:", "Password:"}, MechLogin, "wrong", 535},
		{"CRAM-MD5", [2]string{}, MechCRAMMD5, authTestPass, 0},
		{"CRAM-MD5 wrong password", [2]string{}, MechCRAMMD5, "wrong", 535},
		{"automatic choice without TLS", [2]string{"Username:", "Password:"}, "", authTestPass, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startAuthTestServer(t, tt.prompts)
			c, err := smtp.Dial(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Hello("client.example"); err != nil {
				t.Fatal(err)
			}
			mech := tt.mech
			if mech == "" {
				ok, param := c.Extension("AUTH")
				if !ok {
					t.Fatal("server does not advertise AUTH")
				}
				if mech, err = ChooseMechanism(param, false, ""); err != nil {
					t.Fatal(err)
				}
				if mech != MechCRAMMD5 {
					t.Errorf("chose %s over plaintext, want CRAM-MD5", mech)
				}
			}
			client, err := NewSASLClient(mech, authTestUser, tt.password)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Auth(client)
			if tt.wantCode == 0 {
				if err != nil {
					t.Fatalf("Auth: %v", err)
				}
				if err := c.Quit(); err != nil {
					t.Errorf("Quit: %v", err)
				}
				return
			}
			var se *smtp.SMTPError
			if !errors.As(err, &se) || se.Code != tt.wantCode {
				t.Fatalf("Auth error = %#v, want *smtp.SMTPError %d", err, tt.wantCode)
			}
			if strings.Contains(err.Error(), tt.password) {
				t.Errorf("error reveals the password: %v", err)
			}
		})
	}
}
