package config

import (
	"fmt"
	"net"
	"slices"
	"strings"
)

// DefaultRedirectListenAddress is where the redirect listener binds when
// the registration names none (the seed's value).
const DefaultRedirectListenAddress = "http://127.0.0.1:8801/"

// DefaultRedirectURI is the redirect URI the senhasegura docs use, for an
// appliance reachable as host.
func DefaultRedirectURI(host string) string {
	return "http://" + host + "/email-oauth2-proxy-authorize/"
}

// Default local ports (the seed's for IMAP and SMTP).
const (
	DefaultIMAPLocalPort = 2993
	DefaultPOPLocalPort  = 2995
	DefaultSMTPLocalPort = 2465
)

// ServerRegistration is one protocol of a registration. A protocol is
// registered when it has a server address (given, or from the preset);
// POP takes the preset's address only when one of its fields is set.
type ServerRegistration struct {
	ServerAddress string
	ServerPort    int
	LocalPort     int  // 0: the default for the protocol
	StartTLS      bool // SMTP only: server_starttls
	// AutoStartTLS (SMTP): the admin did not say, so StartTLS follows the
	// port — STARTTLS on 25 and 587, implicit TLS on 465 — and on any
	// other port keeps what the existing section says (else StartTLS).
	AutoStartTLS bool
}

// SMTPPortStartTLS says what a well-known SMTP port implies: STARTTLS on
// 25 (relay) and 587 (submission), implicit TLS on 465; known is false for
// any other port.
func SMTPPortStartTLS(port int) (starttls, known bool) {
	switch port {
	case 25, 587:
		return true, true
	case 465:
		return false, true
	}
	return false, false
}

func (s ServerRegistration) requested() bool {
	return s.ServerAddress != "" || s.ServerPort != 0 || s.LocalPort != 0
}

// Registration is everything `orbit email-oauth2-proxy register` sets.
// Build one with NewRegistration (the seed's defaults), set fields from
// flags, then Validate and Apply; both work on a normalised copy.
type Registration struct {
	// [emailproxy]
	DeleteAccountTokenOnPasswordError         bool
	EncryptClientSecretOnFirstUse             bool
	UseLoginPasswordAsClientCredentialsSecret bool
	// AllowCatchAllAccounts is forced on for a catch-all Account, and
	// Apply never turns it off in an existing file (other accounts'
	// catch-all sections may rely on it).
	AllowCatchAllAccounts bool

	IMAP, POP, SMTP ServerRegistration
	LocalAddress    string // default 127.0.0.1

	// Account is the account section: "@" (default: every login),
	// "@domain" or "user@domain".
	Account string
	// RedirectURI and RedirectListenAddress are written only for a flow
	// that sends a browser to the redirect (authorization_code). There,
	// an empty RedirectURI becomes DefaultRedirectURI(RedirectHost) when
	// RedirectHost is set, and an empty RedirectListenAddress
	// DefaultRedirectListenAddress once RedirectURI is set.
	RedirectURI           string
	RedirectListenAddress string
	RedirectHost          string
	TokenURL              string
	PermissionURL         string
	Scope                 string
	Flow                  Flow // default authorization_code
	ClientID              string
	// ClientSecret "" keeps an existing client_secret (so re-registering
	// does not require the secret again).
	ClientSecret string

	// Provider ("office365", "google" or "") fills whatever is left empty.
	Provider string
	TenantID string
}

// NewRegistration returns a registration with the seed's defaults.
func NewRegistration() *Registration {
	return &Registration{DeleteAccountTokenOnPasswordError: true, Account: "@"}
}

// Flags is the register flag of each setting, for diagnostics.
var registrationFlags = map[string]string{
	"account": "--account", "local_address": "--local-address",
	"redirect_uri": "--redirect-uri", "redirect_listen_address": "--redirect-listen-address",
	"token_url": "--oauth2-token-url", "permission_url": "--oauth2-permission-url",
	"oauth2_scope": "--oauth2-scope", "oauth2_flow": "--oauth2-flow",
	"client_id": "--oauth2-client-id", "client_secret": "--oauth2-client-secret",
	"provider": "--provider", "tenant_id": "--tenant-id",
	"jwt_certificate_path": "", "jwt_key_path": "", "use_pkce": "",
}

func serverFlag(p Protocol, what string) string {
	return "--" + strings.ToLower(string(p)) + "-" + what
}

func (r *Registration) servers() []struct {
	proto Protocol
	s     *ServerRegistration
} {
	return []struct {
		proto Protocol
		s     *ServerRegistration
	}{{IMAP, &r.IMAP}, {POP, &r.POP}, {SMTP, &r.SMTP}}
}

// Normalize trims every value (the seed's quoted URLs end in spaces, its
// scope starts and ends with them), collapses the scope's inner white
// space, fills defaults and the provider preset. Explicit values win.
func (r *Registration) Normalize() {
	trim := strings.TrimSpace
	r.LocalAddress, r.Account = trim(r.LocalAddress), trim(r.Account)
	r.RedirectURI, r.RedirectListenAddress = trim(r.RedirectURI), trim(r.RedirectListenAddress)
	r.TokenURL, r.PermissionURL = trim(r.TokenURL), trim(r.PermissionURL)
	r.Scope = strings.Join(strings.Fields(r.Scope), " ")
	r.Flow = Flow(trim(string(r.Flow)))
	r.ClientID, r.ClientSecret = trim(r.ClientID), trim(r.ClientSecret)
	r.Provider, r.TenantID = strings.ToLower(trim(r.Provider)), trim(r.TenantID)
	for _, sv := range r.servers() {
		sv.s.ServerAddress = trim(sv.s.ServerAddress)
	}
	if r.Account == "" {
		r.Account = "@"
	}
	if r.LocalAddress == "" {
		r.LocalAddress = "127.0.0.1"
	}
	if r.Flow == "" {
		r.Flow = FlowAuthorizationCode
	}
	if r.Provider != "" {
		if p, err := LookupPreset(r.Provider, r.TenantID); err == nil {
			r.Provider = p.Name
			r.applyPreset(p)
		}
	}
	if r.SMTP.AutoStartTLS {
		if tls, known := SMTPPortStartTLS(r.SMTP.ServerPort); known {
			r.SMTP.StartTLS = tls
		}
	}
	defaults := map[Protocol]int{IMAP: DefaultIMAPLocalPort, POP: DefaultPOPLocalPort, SMTP: DefaultSMTPLocalPort}
	for _, sv := range r.servers() {
		if sv.s.ServerAddress != "" && sv.s.LocalPort == 0 {
			sv.s.LocalPort = defaults[sv.proto]
		}
	}
	if r.usesRedirect() {
		r.RedirectHost = trim(r.RedirectHost)
		if r.RedirectURI == "" && r.RedirectHost != "" {
			r.RedirectURI = DefaultRedirectURI(r.RedirectHost)
		}
		if r.RedirectURI != "" && r.RedirectListenAddress == "" {
			r.RedirectListenAddress = DefaultRedirectListenAddress
		}
	}
	if IsCatchAllSection(r.Account) {
		r.AllowCatchAllAccounts = true
	}
}

// usesRedirect reports whether the flow that will run sends a browser to
// redirect_uri: only authorization_code does (device, client_credentials,
// password and service_account open no browser, or show a code instead).
func (r *Registration) usesRedirect() bool {
	return Account{Flow: r.Flow, PermissionURL: r.PermissionURL}.EffectiveFlow() == FlowAuthorizationCode
}

func (r *Registration) applyPreset(p Preset) {
	var protos []Protocol
	for _, sv := range r.servers() {
		if sv.proto == POP && !sv.s.requested() {
			continue
		}
		ep := p.Endpoint(sv.proto)
		if sv.s.ServerAddress == "" {
			sv.s.ServerAddress = ep.Address
			if sv.s.ServerPort == 0 {
				sv.s.ServerPort = ep.Port
				sv.s.StartTLS = sv.s.StartTLS || ep.StartTLS
			}
		}
		protos = append(protos, sv.proto)
	}
	if r.TokenURL == "" {
		r.TokenURL = p.TokenURL
	}
	if r.PermissionURL == "" {
		r.PermissionURL = p.PermissionURLFor(r.Flow)
	}
	if r.Scope == "" {
		r.Scope = p.Scope(r.Flow, protos...)
	}
}

// Validate judges a registration before anything is written: the same
// checks as Config.Validate, located by the register flag, plus the
// command-line rules (ports 1-65535, distinct local ports, placeholders
// refused). It works on a normalised copy.
func (r *Registration) Validate() []Diagnostic {
	n := *r
	n.Normalize()
	return n.validate()
}

func (r *Registration) validate() []Diagnostic {
	var ds []Diagnostic
	flag := func(key string) loc {
		return loc{section: r.Account, key: key, flag: registrationFlags[key]}
	}
	if r.Provider != "" {
		if _, err := LookupPreset(r.Provider, r.TenantID); err != nil {
			ds = append(ds, flag("provider").diag(Error, err.Error(), "use --provider office365 --tenant-id <tenant> or --provider google"))
		} else if r.Provider == "office365" {
			switch {
			case r.TenantID == "":
				ds = append(ds, flag("tenant_id").diag(Error, "--provider office365 needs the Entra tenant ID", "add --tenant-id <GUID or domain> (Entra admin center > Overview > Tenant ID)"))
			case strings.Contains(r.TenantID, "TENANT_ID"):
				ds = append(ds, flag("tenant_id").diag(Error, "--tenant-id still holds the documentation's placeholder TENANT_ID", "use your tenant's ID, a GUID such as 0f3e3b5c-…"))
			case !tenantRE.MatchString(r.TenantID):
				ds = append(ds, flag("tenant_id").diag(Error, fmt.Sprintf("--tenant-id %q is neither a tenant GUID nor a domain name", r.TenantID), "copy the Tenant ID from the Entra admin center"))
			case r.Flow == FlowClientCredentials && (r.TenantID == "common" || r.TenantID == "organizations" || r.TenantID == "consumers"):
				ds = append(ds, flag("tenant_id").diag(Error, "the client_credentials flow needs a specific tenant, not "+r.TenantID, "use the tenant's GUID or domain"))
			}
		} else if r.Provider == "google" && r.Flow == FlowClientCredentials {
			ds = append(ds, flag("oauth2_flow").diag(Warning, "Google offers no client_credentials grant for Gmail", "use authorization_code, or service_account for a Workspace domain"))
		}
	}

	// Servers.
	registered := false
	localPorts := map[int]string{}
	for _, sv := range r.servers() {
		s := sv.s
		l := func(what string) loc {
			return loc{section: fmt.Sprintf("%s-%d", sv.proto, s.LocalPort), flag: serverFlag(sv.proto, what)}
		}
		if s.ServerAddress == "" {
			if s.ServerPort != 0 || s.LocalPort != 0 {
				ds = append(ds, l("server-address").diag(Error, fmt.Sprintf("%s server details were given but no %s", sv.proto, serverFlag(sv.proto, "server-address")), "add "+serverFlag(sv.proto, "server-address")+" (or --provider)"))
			}
			continue
		}
		registered = true
		if d, ok := checkText(l("server-address"), s.ServerAddress); !ok {
			ds = append(ds, d...)
		} else if strings.Contains(s.ServerAddress, "://") || strings.ContainsAny(s.ServerAddress, "/ ") {
			ds = append(ds, l("server-address").diag(Error, fmt.Sprintf("%s must be a host name, not a URL", serverFlag(sv.proto, "server-address")), "give only the host, e.g. outlook.office365.com"))
		}
		if s.ServerPort == 0 {
			ds = append(ds, l("server-port").diag(Error, serverFlag(sv.proto, "server-port")+" is missing", "add it, e.g. 993 for IMAP, 995 for POP, 587 (with STARTTLS) or 465 for SMTP"))
		} else if s.ServerPort < 1 || s.ServerPort > 65535 {
			ds = append(ds, l("server-port").diag(Error, fmt.Sprintf("%s %d is outside 1-65535", serverFlag(sv.proto, "server-port"), s.ServerPort), "use the provider's port"))
		}
		if s.LocalPort < 1 || s.LocalPort > 65535 {
			ds = append(ds, l("local-port").diag(Error, fmt.Sprintf("%s %d is outside 1-65535", serverFlag(sv.proto, "local-port"), s.LocalPort), "use a free local port such as 2993 (IMAP), 2995 (POP) or 2465 (SMTP)"))
		} else if prev, dup := localPorts[s.LocalPort]; dup {
			ds = append(ds, l("local-port").diag(Error, fmt.Sprintf("%s %d is also the %s local port; two listeners cannot share a port", serverFlag(sv.proto, "local-port"), s.LocalPort, prev), "give each protocol its own local port"))
		} else {
			localPorts[s.LocalPort] = string(sv.proto)
		}
		if sv.proto == SMTP {
			if (s.ServerPort == 587 || s.ServerPort == 25) && !s.StartTLS {
				ds = append(ds, l("server-starttls").diag(Warning, fmt.Sprintf("SMTP port %d expects STARTTLS, but --smtp-server-starttls=false is set, so the proxy will try implicit TLS and fail", s.ServerPort), "drop --smtp-server-starttls=false"))
			}
			if s.ServerPort == 465 && s.StartTLS {
				ds = append(ds, l("server-starttls").diag(Warning, "SMTP port 465 is implicit TLS, but --smtp-server-starttls is set", "drop --smtp-server-starttls, or use port 587"))
			}
		} else if s.StartTLS {
			ds = append(ds, l("server-starttls").diag(Warning, fmt.Sprintf("STARTTLS has no effect for %s: its upstream is always implicit TLS", sv.proto), "drop it"))
		}
	}
	if !registered {
		ds = append(ds, Diagnostic{Severity: Error, Flag: "--imap-server-address",
			Message: "no server to register: neither an IMAP, POP nor SMTP server address was given",
			Hint:    "add --smtp-server-address/--smtp-server-port (and IMAP likewise), or --provider office365|google"})
	}
	if ip := net.ParseIP(r.LocalAddress); ip == nil && strings.ContainsAny(r.LocalAddress, " /:[]") {
		ds = append(ds, flag("local_address").diag(Error, fmt.Sprintf("--local-address %q is not an IP address or host name", r.LocalAddress), "use 127.0.0.1"))
	} else if isWildcardHost(r.LocalAddress) {
		ds = append(ds, flag("local_address").diag(Warning, fmt.Sprintf("--local-address %s exposes the proxy on every interface: anyone who reaches the port can send mail as the account once it is authorised", r.LocalAddress), "use 127.0.0.1 unless other hosts must reach the proxy"))
	}

	// Account.
	acct := flag("account")
	switch {
	case !IsAccountSection(r.Account):
		ds = append(ds, acct.diag(Error, fmt.Sprintf("--account %q is not an account: it must contain @", r.Account), "use @ (every login), @domain (every login of a domain) or user@domain"))
	case strings.ContainsAny(r.Account, " \t\r\n[]") || strings.Count(r.Account, "@") > 1:
		ds = append(ds, acct.diag(Error, fmt.Sprintf("--account %q is not a login name", r.Account), "use @, @domain or user@domain"))
	case !IsCatchAllSection(r.Account) && r.Account != strings.ToLower(r.Account):
		ds = append(ds, acct.diag(Warning, "--account contains capital letters; the mail client's login must match it exactly", "write it as the mail client sends the login (usually lower case)"))
	}
	ds = append(ds, checkURL(flag("token_url"), r.TokenURL, endpointURL)...)
	ds = append(ds, checkURL(flag("permission_url"), r.PermissionURL, endpointURL)...)
	if r.usesRedirect() {
		ds = append(ds, checkURL(flag("redirect_uri"), r.RedirectURI, redirectURL)...)
		ds = append(ds, checkURL(flag("redirect_listen_address"), r.RedirectListenAddress, listenURL)...)
	} else {
		eff := Account{Flow: r.Flow, PermissionURL: r.PermissionURL}.EffectiveFlow()
		for _, k := range []string{"redirect_uri", "redirect_listen_address"} {
			v := r.RedirectURI
			if k == "redirect_listen_address" {
				v = r.RedirectListenAddress
			}
			if v != "" {
				l := flag(k)
				ds = append(ds, l.diag(Warning, fmt.Sprintf("%s has no effect: the %s flow opens no browser and needs no redirect", l.name(), eff), "drop "+l.name()))
			}
		}
	}
	ds = append(ds, checkScope(flag("oauth2_scope"), r.Scope)...)
	for _, k := range []string{"client_id", "client_secret"} {
		v := r.ClientID
		if k == "client_secret" {
			v = r.ClientSecret
		}
		if d, _ := checkText(flag(k), v); d != nil {
			ds = append(ds, d...)
		}
	}
	in := accountInput{
		flow: string(r.Flow), permissionURL: r.PermissionURL, tokenURL: r.TokenURL, scope: r.Scope,
		clientID: r.ClientID, clientSecret: r.ClientSecret, redirectURI: r.RedirectURI,
		redirectListen: r.RedirectListenAddress, useLoginPasswordAsSecret: r.UseLoginPasswordAsClientCredentialsSecret,
	}
	if in.clientSecret == "" {
		// An existing file may hold the secret; Apply keeps it. Only the
		// file's validation can tell, so do not claim it is missing here.
		in.clientSecretEncrypted = "kept"
	}
	ds = append(ds, checkFlow(in, flag)...)
	return ds
}

// ownedAccountKeys are the account keys a registration sets, in the
// seed's order.
var ownedAccountKeys = []string{"redirect_uri", "redirect_listen_address", "token_url", "permission_url", "oauth2_scope", "client_id", "client_secret", "oauth2_flow"}

// Apply writes the registration into existing (nil or empty for a new
// file) and returns the new file. It refuses a registration with Error
// diagnostics (*DiagnosticsError) and an existing file the proxy could
// not read (*SyntaxError). See the package documentation for what a
// registration owns.
func (r *Registration) Apply(existing []byte) ([]byte, error) { return r.ApplyFile(existing, "") }

// ApplyFile is Apply for existing read from path, which names the file in
// its syntax errors as config validate does.
func (r *Registration) ApplyFile(existing []byte, path string) ([]byte, error) {
	n := *r
	n.Normalize()
	if err := Err(n.validate()); err != nil {
		return nil, err
	}
	return Edit(existing, path, func(e *Editor) error {
		return n.apply(e)
	})
}

func (r *Registration) apply(e *Editor) error {
	firstAccount := func() string {
		for _, s := range e.Sections() {
			if IsAccountSection(s) {
				return s
			}
		}
		return ""
	}
	// [emailproxy]
	if !e.HasSection(GlobalSection) {
		first := ""
		if s := e.Sections(); len(s) > 0 {
			first = s[0]
		}
		if err := e.AddSection(GlobalSection, first); err != nil {
			return err
		}
	}
	allow := r.AllowCatchAllAccounts
	if v, ok := e.Get(GlobalSection, "allow_catch_all_accounts"); ok {
		if b, _ := ParseBool(v); b {
			allow = true
		}
	}
	sets := [][2]string{
		{"delete_account_token_on_password_error", FormatBool(r.DeleteAccountTokenOnPasswordError)},
		{"encrypt_client_secret_on_first_use", FormatBool(r.EncryptClientSecretOnFirstUse)},
		{"allow_catch_all_accounts", FormatBool(allow)},
	}
	if _, ok := e.Get(GlobalSection, "use_login_password_as_client_credentials_secret"); ok || r.UseLoginPasswordAsClientCredentialsSecret {
		sets = append(sets, [2]string{"use_login_password_as_client_credentials_secret", FormatBool(r.UseLoginPasswordAsClientCredentialsSecret)})
	}
	for _, kv := range sets {
		if err := e.Set(GlobalSection, kv[0], kv[1]); err != nil {
			return err
		}
	}

	// Server sections.
	for _, sv := range r.servers() {
		s := sv.s
		if s.ServerAddress == "" {
			continue
		}
		name := fmt.Sprintf("%s-%d", sv.proto, s.LocalPort)
		// Sections of the same protocol for the same upstream are the
		// listener this registration moves: replace, do not duplicate.
		var same []string
		for _, sec := range e.Sections() {
			m := serverSectionRE.FindStringSubmatch(sec)
			if m == nil || m[1] != string(sv.proto) || sec == name {
				continue
			}
			addr, _ := e.Get(sec, "server_address")
			port, _ := e.Get(sec, "server_port")
			if strings.EqualFold(strings.TrimSpace(addr), s.ServerAddress) && strings.TrimSpace(port) == fmt.Sprint(s.ServerPort) {
				same = append(same, sec)
			}
		}
		if !e.HasSection(name) && len(same) > 0 {
			if err := e.RenameSection(same[0], name); err != nil {
				return err
			}
			same = same[1:]
		}
		for _, old := range same {
			e.DeleteSection(old)
		}
		if err := e.AddSection(name, firstAccount()); err != nil {
			return err
		}
		if err := e.Set(name, "server_address", s.ServerAddress); err != nil {
			return err
		}
		if err := e.Set(name, "server_port", fmt.Sprint(s.ServerPort)); err != nil {
			return err
		}
		if sv.proto == SMTP {
			// The legacy key becomes the current one in place.
			if err := e.RenameKey(name, "starttls", "server_starttls"); err != nil {
				return err
			}
			starttls := s.StartTLS
			if _, known := SMTPPortStartTLS(s.ServerPort); s.AutoStartTLS && !known {
				// A port that says neither: the file's choice stands.
				if v, ok := e.Get(name, "server_starttls"); ok {
					b, _ := ParseBool(v)
					starttls = starttls || b
				}
			}
			if starttls {
				if err := e.Set(name, "server_starttls", "True"); err != nil {
					return err
				}
			} else {
				e.Delete(name, "server_starttls")
			}
		}
		if err := e.Set(name, "local_address", r.LocalAddress); err != nil {
			return err
		}
	}

	// The account section.
	acct := r.Account
	if err := e.AddSection(acct, ""); err != nil {
		return err
	}
	if err := e.RenameKey(acct, "redirect_list_address", "redirect_listen_address"); err != nil {
		return err
	}
	values := map[string]string{
		"redirect_uri": r.RedirectURI, "redirect_listen_address": r.RedirectListenAddress,
		"token_url": r.TokenURL, "permission_url": r.PermissionURL, "oauth2_scope": r.Scope,
		"client_id": r.ClientID, "client_secret": r.ClientSecret, "oauth2_flow": string(r.Flow),
	}
	for _, k := range ownedAccountKeys {
		v := values[k]
		switch {
		case v != "":
			if err := e.Set(acct, k, v); err != nil {
				return err
			}
		case k == "client_secret":
			// Keep the secret already in the file.
		case slices.Contains(TokenKeys, k):
		default:
			e.Delete(acct, k)
		}
	}
	return nil
}
