package config

import (
	"fmt"
	"regexp"
	"strings"
)

// Endpoint is an upstream mail server.
type Endpoint struct {
	Address  string
	Port     int
	StartTLS bool // SMTP: STARTTLS on a plain connection instead of implicit TLS
}

// Preset is what a provider needs, so that nobody hand-types its URLs.
type Preset struct {
	Name            string // "office365", "google"
	IMAP, POP, SMTP Endpoint
	TokenURL        string
	PermissionURL   string // authorise endpoint of the authorization_code flow
	DeviceURL       string // device-code endpoint of the device flow ("" when none)
	// DelegatedScopes are the scopes for a signed-in user (authorization_code
	// and device), per protocol; Extra is always added to them.
	DelegatedScopes map[Protocol]string
	Extra           []string
	// AppScope is the scope of the non-interactive grant (client_credentials,
	// service_account); "" when the provider has none for mail.
	AppScope string
}

// PresetNames lists the providers Preset accepts, for flag completion.
var PresetNames = []string{"office365", "google"}

// tenantRE accepts what Microsoft accepts in the authority path: a tenant
// GUID, a verified domain name, or one of the multi-tenant aliases.
var tenantRE = regexp.MustCompile(`^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+|common|organizations|consumers)$`)

// Office365 is Microsoft 365 / Exchange Online for one Entra tenant.
func Office365(tenantID string) Preset {
	base := "https://login.microsoftonline.com/" + tenantID + "/oauth2/v2.0/"
	return Preset{
		Name:          "office365",
		IMAP:          Endpoint{Address: "outlook.office365.com", Port: 993},
		POP:           Endpoint{Address: "outlook.office365.com", Port: 995},
		SMTP:          Endpoint{Address: "smtp.office365.com", Port: 587, StartTLS: true},
		TokenURL:      base + "token",
		PermissionURL: base + "authorize",
		DeviceURL:     base + "devicecode",
		DelegatedScopes: map[Protocol]string{
			IMAP: "https://outlook.office365.com/IMAP.AccessAsUser.All",
			POP:  "https://outlook.office365.com/POP.AccessAsUser.All",
			SMTP: "https://outlook.office365.com/SMTP.Send",
		},
		Extra:    []string{"offline_access"},
		AppScope: MicrosoftAppScope,
	}
}

// Google is Gmail / Google Workspace. Google offers no client_credentials
// grant for Gmail; a Workspace domain uses service_account instead.
func Google() Preset {
	return Preset{
		Name:          "google",
		IMAP:          Endpoint{Address: "imap.gmail.com", Port: 993},
		POP:           Endpoint{Address: "pop.gmail.com", Port: 995},
		SMTP:          Endpoint{Address: "smtp.gmail.com", Port: 465},
		TokenURL:      "https://oauth2.googleapis.com/token",
		PermissionURL: "https://accounts.google.com/o/oauth2/auth",
		DeviceURL:     "https://oauth2.googleapis.com/device/code",
		DelegatedScopes: map[Protocol]string{
			IMAP: "https://mail.google.com/", POP: "https://mail.google.com/", SMTP: "https://mail.google.com/",
		},
		AppScope: "https://mail.google.com/",
	}
}

// LookupPreset returns the named preset ("" for none).
func LookupPreset(name, tenantID string) (Preset, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "office365", "office-365", "o365", "microsoft", "outlook":
		return Office365(tenantID), nil
	case "google", "gmail":
		return Google(), nil
	}
	return Preset{}, fmt.Errorf("unknown provider %q; use one of %s", name, strings.Join(PresetNames, ", "))
}

// Endpoint returns the preset's server for a protocol.
func (p Preset) Endpoint(proto Protocol) Endpoint {
	switch proto {
	case IMAP:
		return p.IMAP
	case POP:
		return p.POP
	}
	return p.SMTP
}

// Scope is the scope to request for the given protocols and flow: the
// application scope for the non-interactive grants, else the delegated
// scopes of each protocol (without repeats) plus Extra.
func (p Preset) Scope(flow Flow, protocols ...Protocol) string {
	if flow == FlowClientCredentials || flow == FlowServiceAccount {
		return p.AppScope
	}
	var out []string
	seen := map[string]bool{}
	for _, proto := range protocols {
		if s := p.DelegatedScopes[proto]; s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	out = append(out, p.Extra...)
	return strings.Join(out, " ")
}

// PermissionURLFor is the permission_url for a flow: the authorise URL for
// authorization_code, the device-code URL for device, none for the
// non-interactive flows (a permission_url would turn them interactive).
func (p Preset) PermissionURLFor(flow Flow) string {
	switch flow {
	case FlowDevice:
		return p.DeviceURL
	case FlowAuthorizationCode, "":
		return p.PermissionURL
	}
	return ""
}
