// Package oauth signs smtpshim in to providers that no longer take
// passwords (Microsoft 365, Outlook.com, Google) and keeps the account
// signed in: the refresh token lives in the OS keychain, the access token in
// memory, and the SMTP AUTH mechanisms XOAUTH2 and OAUTHBEARER (RFC 7628)
// carry it to the server.
//
// Failure model: anything that stops smtpshim from *getting* a token is a
// credential failure, never "the mail server is down". A provider that
// refuses the grant (invalid_grant, revoked consent, a sign-in-frequency
// policy) or the server's 535 to a token that was just issued means the user
// must sign in again (ErrSignInNeeded); the account's mail is held until
// then. A token endpoint that cannot be reached is temporary
// (ErrTokenUnavailable): the mail waits and is retried.
package oauth

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/upstream"
)

// Client IDs compiled in by whoever packages a release with a registered
// app, for example:
//
//	go build -ldflags "-X github.com/smtpshim/smtpshim/shim/oauth.MicrosoftClientID=..."
//
// They are empty in the source on purpose: an app registration belongs to
// the people who ship the binary, and a borrowed one can be revoked by its
// owner at any time. The config's [[oauth_provider]] client_id wins over
// these.
var (
	MicrosoftClientID string
	GoogleClientID    string
	// GoogleClientSecret goes with GoogleClientID. Google issues a secret
	// even to "Desktop app" clients and its token endpoint wants it, but it
	// is not confidential: it ships inside every installed copy.
	GoogleClientSecret string
)

// Provider is everything needed to sign in to one OAuth2 provider and to
// use its tokens for SMTP.
type Provider struct {
	// Name is "microsoft", "google" or the [[oauth_provider]] name.
	Name string
	// Title is the name shown to people ("Microsoft").
	Title     string
	AuthURL   string
	TokenURL  string
	DeviceURL string // "" when the provider offers no device flow for mail
	Scopes    []string
	ClientID  string
	// ClientSecret is sent to the token endpoint when set. Microsoft public
	// clients must send none (a secret there gives AADSTS700025).
	ClientSecret string
	// CAFile adds trusted CA certificates (PEM) for the provider's HTTPS
	// endpoints, for a private provider.
	CAFile string
	// Server is the SMTP submission server accounts use by default.
	Server string
	// Mechanisms is what to offer, best first.
	Mechanisms []string
	// NoDeviceReason says why the device flow is not offered, if it is not.
	NoDeviceReason string
	// clientIDHelp says where a client ID comes from, for the error when
	// there is none.
	clientIDHelp string
}

// Preset names.
const (
	Microsoft = config.OAuthMicrosoft
	Google    = config.OAuthGoogle
)

const googleNoDevice = "Google does not allow the device flow for the mail scope (https://mail.google.com/ is not among the scopes its \"TV and Limited Input device\" clients may ask for): sign in with the browser instead; on a machine without one, run the sign-in with --no-browser and open the printed address on another computer whose browser can reach this one's loopback port through an SSH tunnel"

// microsoftEndpoints returns the Microsoft identity platform's v2.0
// endpoints for a tenant: "common" (work, school and personal accounts),
// "organizations", "consumers" or a tenant ID or domain.
func microsoftEndpoints(tenant string) (auth, token, device string) {
	if tenant == "" {
		tenant = "common"
	}
	base := "https://login.microsoftonline.com/" + url.PathEscape(tenant) + "/oauth2/v2.0/"
	return base + "authorize", base + "token", base + "devicecode"
}

func preset(name string) (Provider, bool) {
	switch name {
	case Microsoft:
		a, t, d := microsoftEndpoints("")
		return Provider{
			Name: Microsoft, Title: "Microsoft",
			AuthURL: a, TokenURL: t, DeviceURL: d,
			Scopes:       []string{"https://outlook.office.com/SMTP.Send", "offline_access"},
			ClientID:     MicrosoftClientID,
			Server:       "smtp.office365.com:587",
			Mechanisms:   []string{upstream.MechXOAUTH2}, // Exchange Online takes XOAUTH2 only
			clientIDHelp: "register an app in Microsoft Entra (see the README, \"OAuth2 sign-in\") and add\n\n  [[oauth_provider]]\n  name = \"microsoft\"\n  client_id = \"YOUR-APPLICATION-ID\"\n\nto the config",
		}, true
	case Google:
		return Provider{
			Name: Google, Title: "Google",
			AuthURL:        "https://accounts.google.com/o/oauth2/v2/auth",
			TokenURL:       "https://oauth2.googleapis.com/token",
			Scopes:         []string{"https://mail.google.com/"},
			ClientID:       GoogleClientID,
			ClientSecret:   GoogleClientSecret,
			Server:         "smtp.gmail.com:465",
			Mechanisms:     []string{upstream.MechXOAUTH2, upstream.MechOAuthBearer},
			NoDeviceReason: googleNoDevice,
			clientIDHelp:   "create a \"Desktop app\" OAuth client in Google Cloud (see the README, \"OAuth2 sign-in\") and add\n\n  [[oauth_provider]]\n  name = \"google\"\n  client_id = \"YOUR-CLIENT-ID.apps.googleusercontent.com\"\n  client_secret = \"ITS-CLIENT-SECRET\"\n\nto the config",
		}, true
	}
	return Provider{}, false
}

// ErrNoClientID means no client ID is configured or compiled in.
var ErrNoClientID = errors.New("no OAuth2 client ID")

// Resolve returns the provider called name: a preset, possibly overridden
// by an [[oauth_provider]] of the same name, or a custom provider.
func Resolve(c *config.Config, name string) (*Provider, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	var over *config.OAuthProvider
	if c != nil {
		for i := range c.OAuthProviders {
			if strings.EqualFold(c.OAuthProviders[i].Name, name) {
				over = &c.OAuthProviders[i]
			}
		}
	}
	p, ok := preset(name)
	if !ok {
		if over == nil {
			return nil, fmt.Errorf("unknown OAuth2 provider %q: use microsoft, google, or the name of an [[oauth_provider]] in the config", name)
		}
		p = Provider{Name: name, Title: name, Mechanisms: []string{upstream.MechOAuthBearer, upstream.MechXOAUTH2},
			NoDeviceReason: "the [[oauth_provider]] " + name + " has no device_url",
			clientIDHelp:   "set client_id in its [[oauth_provider]] section"}
	}
	if over != nil {
		if over.Tenant != "" && name == Microsoft {
			p.AuthURL, p.TokenURL, p.DeviceURL = microsoftEndpoints(over.Tenant)
		}
		set := func(dst *string, v string) {
			if v != "" {
				*dst = v
			}
		}
		set(&p.AuthURL, over.AuthURL)
		set(&p.TokenURL, over.TokenURL)
		if over.DeviceURL != "" {
			p.DeviceURL, p.NoDeviceReason = over.DeviceURL, ""
		}
		set(&p.ClientID, over.ClientID)
		set(&p.ClientSecret, over.ClientSecret)
		set(&p.CAFile, over.CAFile)
		if len(over.Scopes) > 0 {
			p.Scopes = slices.Clone(over.Scopes)
		}
	}
	if p.ClientID == "" {
		return nil, fmt.Errorf("%w for %s: this copy of smtpshim was built without one; %s", ErrNoClientID, p.Title, p.clientIDHelp)
	}
	if p.AuthURL == "" || p.TokenURL == "" {
		return nil, fmt.Errorf("oauth_provider %s: auth_url and token_url are both needed", name)
	}
	return &p, nil
}

// CanDevice reports whether the device flow may be used, and if not, why.
func (p *Provider) CanDevice() (bool, string) {
	if p.DeviceURL == "" {
		r := p.NoDeviceReason
		if r == "" {
			r = p.Title + " offers no device flow"
		}
		return false, r
	}
	return true, ""
}
