package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/agnivade/levenshtein"
)

// The checks in this file are shared by Config.Validate (values located by
// section, key and line) and Registration.Validate (values located by
// the register flag), so a file and a command line are judged alike.

type loc struct {
	section, key, flag string
	line               int
}

func (l loc) diag(sev Severity, msg, hint string) Diagnostic {
	return Diagnostic{Severity: sev, Section: l.section, Key: l.key, Flag: l.flag, Line: l.line, Message: msg, Hint: hint}
}

// name is how messages refer to the value: the flag when there is one.
func (l loc) name() string {
	if l.flag != "" {
		return l.flag
	}
	return l.key
}

// placeholders are the stand-ins the senhasegura documentation uses.
var placeholders = []string{"TENANT_ID", "CLIENT_ID", "CLIENT_SECRET"}

var angleRE = regexp.MustCompile(`<[^<>\s]+>`)

// sampleRE matches the stand-ins of the Python proxy's sample file, such as
// "*** your client id here ***".
var sampleRE = regexp.MustCompile(`\*\*\*[^*]*\*\*\*`)

// findPlaceholder returns the first placeholder left in v.
func findPlaceholder(v string) (string, bool) {
	for _, p := range placeholders {
		if strings.Contains(v, p) {
			return p, true
		}
	}
	if m := angleRE.FindString(v); m != "" {
		return m, true
	}
	return "", false
}

var markdownLinkRE = regexp.MustCompile(`^\[([^\]]*)\]\(([^)]*)\)?`)

// checkText runs the checks that apply to any value: placeholders and
// markdown pasted from the documentation. It reports whether the value is
// usable for the value-specific checks that follow.
func checkText(l loc, v string) ([]Diagnostic, bool) {
	var ds []Diagnostic
	ok := true
	if m := markdownLinkRE.FindStringSubmatch(v); m != nil {
		ds = append(ds, l.diag(Error,
			fmt.Sprintf("%s is a markdown link pasted from the documentation, not a URL; the proxy would use the brackets and parentheses literally", l.name()),
			fmt.Sprintf("use the plain URL %s", strings.TrimSpace(m[1]))))
		ok = false
	}
	if m := sampleRE.FindString(v); m != "" {
		// The Python proxy's sample file is meant to be edited, and it
		// runs with the stand-ins left in (the account then fails at the
		// provider), so a file only gets a warning; a flag is refused.
		sev := Warning
		if l.flag != "" {
			sev = Error
		}
		hint := "replace it with the real value"
		if l.key == "client_secret" {
			hint += ", or remove the line if the app needs no secret"
		}
		what := fmt.Sprintf("%q", strings.Join(strings.Fields(m), " "))
		if isSecretKey(l.key) || strings.Contains(l.flag, "secret") {
			// Diagnostics never quote a secret's value, not even one
			// that is only probably a stand-in.
			what = "(*** ... ***)"
		}
		ds = append(ds, l.diag(sev, fmt.Sprintf("%s still holds the sample file's placeholder %s", l.name(), what), hint))
		return ds, false
	}
	if p, found := findPlaceholder(v); found {
		what := "the documentation's placeholder " + p
		hint := fmt.Sprintf("replace %s with the real value", p)
		switch p {
		case "TENANT_ID":
			hint = "replace TENANT_ID with your Microsoft Entra tenant ID (a GUID such as 0f3e3b5c-…; Entra admin center > Overview), or use the office365 preset with the tenant ID"
		case "CLIENT_ID":
			hint = "replace CLIENT_ID with the application (client) ID of the app registration"
		case "CLIENT_SECRET":
			hint = "replace CLIENT_SECRET with the client secret's value (not its ID)"
		default:
			if strings.Contains(strings.ToLower(p), "vault") || strings.Contains(strings.ToLower(p), "address") {
				hint = fmt.Sprintf("replace %s with this appliance's host name as users' browsers reach it", p)
			}
		}
		ds = append(ds, l.diag(Error, fmt.Sprintf("%s still holds %s", l.name(), what), hint))
		ok = false
	}
	if strings.ContainsAny(v, "\r\n") && l.flag != "" {
		ds = append(ds, l.diag(Error, fmt.Sprintf("%s contains a line break", l.name()), "give the value on one line"))
		ok = false
	}
	return ds, ok
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func isWildcardHost(h string) bool {
	if h == "" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsUnspecified()
}

type urlKind int

const (
	endpointURL urlKind = iota // token_url, permission_url: https only
	redirectURL                // redirect_uri: what the provider sends the browser to
	listenURL                  // redirect_listen_address: where the local server binds
)

func checkURL(l loc, v string, kind urlKind) []Diagnostic {
	if v == "" {
		return nil
	}
	ds, ok := checkText(l, v)
	if !ok {
		return ds
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return append(ds, l.diag(Error, fmt.Sprintf("%s is not an absolute URL", l.name()),
			"write it as scheme://host/path, e.g. https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token"))
	}
	host := u.Hostname()
	switch kind {
	case endpointURL:
		if u.Scheme != "https" {
			return append(ds, l.diag(Error, fmt.Sprintf("%s uses %s; OAuth 2.0 endpoints must be https", l.name(), u.Scheme),
				"use the provider's https:// endpoint"))
		}
	case redirectURL:
		switch {
		case u.Scheme == "http" && !isLoopbackHost(host):
			ds = append(ds, l.diag(Warning,
				fmt.Sprintf("%s sends the browser to plain http on %s; Microsoft Entra and Google accept plain http redirect URIs only for localhost, and the authorisation code would cross the network unencrypted", l.name(), host),
				"register and use an https:// redirect URI served by this appliance's web server, which forwards the path to redirect_listen_address"))
		case u.Scheme != "http" && u.Scheme != "https":
			ds = append(ds, l.diag(Error, fmt.Sprintf("%s uses %s; a redirect URI is http or https", l.name(), u.Scheme), "use https://host/path"))
		}
	case listenURL:
		if u.Scheme != "http" {
			ds = append(ds, l.diag(Warning,
				fmt.Sprintf("%s uses %s, but the proxy's redirect listener speaks plain http whatever the scheme says", l.name(), u.Scheme),
				"write it as http://127.0.0.1:PORT/"))
		}
		if !isLoopbackHost(host) {
			ds = append(ds, l.diag(Warning,
				fmt.Sprintf("%s binds the redirect listener to %s, reachable from the network", l.name(), host),
				"bind it to 127.0.0.1 and let the appliance's web server forward the redirect to it"))
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				ds = append(ds, l.diag(Error, fmt.Sprintf("%s has port %s, outside 1-65535", l.name(), p), "use a free local port such as 8801"))
			}
		}
	}
	return ds
}

// scopeName is the part of a scope token that names the permission:
// "SMTP.Send" in https://outlook.office365.com/SMTP.Send.
func scopeName(tok string) string {
	if u, err := url.Parse(tok); err == nil && u.Scheme != "" && u.Host != "" {
		p := strings.Trim(u.Path, "/")
		if p == "" {
			return u.Host
		}
		return p[strings.LastIndexByte(p, '/')+1:]
	}
	return tok
}

func checkScope(l loc, v string) []Diagnostic {
	if v == "" {
		return nil
	}
	ds, _ := checkText(l, v)
	for _, tok := range strings.Fields(v) {
		name := scopeName(tok)
		if slices.Contains(knownScopeNames, name) || len(name) < 5 {
			continue
		}
		if want, ok := closest(name, knownScopeNames); ok && levenshtein.ComputeDistance(name, want) <= 2 {
			ds = append(ds, l.diag(Warning,
				fmt.Sprintf("scope %s in %s looks like a typo of %s; the provider refuses scopes it does not define", tok, l.name(), want),
				fmt.Sprintf("write %s", strings.Replace(tok, name, want, 1))))
		}
	}
	return ds
}

func checkPort(l loc, v string, what string) (int, []Diagnostic) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 1 || n > 65535 {
		return 0, []Diagnostic{l.diag(Error, fmt.Sprintf("%s %q is not a port number (1-65535)", what, v), "use a whole number from 1 to 65535")}
	}
	return n, nil
}

func checkSessions(l loc, v string) []Diagnostic {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 1 || n > MaxMaxSessions {
		return []Diagnostic{l.diag(Error,
			fmt.Sprintf("max_sessions = %q is not a number of sessions from 1 to %d; the listener would use the default (%d)", v, MaxMaxSessions, DefaultMaxSessions),
			fmt.Sprintf("write a whole number, e.g. max_sessions = %d", DefaultMaxSessions))}
	}
	return nil
}

// checkTLSRequirement judges local_starttls_required: one of its three
// words, on a listener where it means something.
func checkTLSRequirement(l loc, v string, srv Server) []Diagnostic {
	r, ok := ParseTLSRequirement(v)
	if !ok {
		hint := "write remote (the default: clients on other hosts must use STARTTLS first), always (loopback clients too) or never (passwords accepted before STARTTLS, as the Python proxy does)"
		if b, isBool := ParseBool(v); isBool {
			hint = map[bool]string{true: "write always (every client, loopback too) or remove the line for remote (clients on other hosts only)",
				false: "write never to accept passwords before STARTTLS"}[b]
		}
		return []Diagnostic{l.diag(Error,
			fmt.Sprintf("local_starttls_required = %q is not remote, always or never; the listener would use remote", v), hint)}
	}
	if !srv.LocalStartTLS {
		return []Diagnostic{l.diag(Warning,
			"local_starttls_required has no effect without local_starttls = True: a plain listener has no TLS to offer, and a listener with a certificate alone is TLS from the first byte",
			"add local_starttls = True (with local_certificate_path and local_key_path), or remove the line")}
	}
	if r == RequireTLSNever && !isLoopbackHost(srv.LocalAddress) {
		return []Diagnostic{l.diag(Warning,
			fmt.Sprintf("local_starttls_required = never on a listener at %s: a client on another host that does not use STARTTLS sends its password in the clear", srv.LocalAddress),
			"remove the line (clients on other hosts must then use STARTTLS; loopback clients need not), or configure every client to use STARTTLS")}
	}
	return nil
}

func checkCount(l loc, v string) []Diagnostic {
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 1 && n <= maxCount {
		return nil
	}
	return []Diagnostic{l.diag(Error, fmt.Sprintf("%s = %q is not a whole number from 1 to %d", l.key, v, maxCount),
		"write a whole number, or remove the line for the default")}
}

func checkBool(l loc, v string) []Diagnostic {
	if _, ok := ParseBool(v); ok {
		return nil
	}
	return []Diagnostic{l.diag(Error,
		fmt.Sprintf("%s = %q is not a boolean; the Python proxy stops with an error on it", l.key, v),
		"write True or False")}
}

// accountInput is the effective settings of one account section (or one
// registration) that the flow checks judge. has tells which keys exist.
type accountInput struct {
	flow, permissionURL, tokenURL, scope, resource, clientID, clientSecret string
	clientSecretEncrypted, redirectURI, redirectListen, jwtCert, jwtKey    string
	usePKCE                                                                string
	has                                                                    map[string]bool
	useLoginPasswordAsSecret                                               bool
}

var microsoftTokenHosts = []string{"login.microsoftonline.com", "login.microsoftonline.us", "login.partner.microsoftonline.cn", "login.chinacloudapi.cn"}

func isMicrosoft(tokenURL string) bool {
	u, err := url.Parse(tokenURL)
	return err == nil && slices.Contains(microsoftTokenHosts, strings.ToLower(u.Hostname()))
}

// MicrosoftAppScope is the only scope Microsoft's client_credentials grant
// accepts for mail (the application permissions granted to the app).
const MicrosoftAppScope = "https://outlook.office365.com/.default"

// checkFlow judges the combination of an account's settings: required
// keys for the flow that will really run, and flows that will not do what
// the administrator expects. at locates each key.
func checkFlow(in accountInput, at func(key string) loc) []Diagnostic {
	var ds []Diagnostic
	flow := Flow(in.flow)
	if in.flow != "" && !slices.Contains(Flows, flow) {
		names := make([]string, len(Flows))
		for i, f := range Flows {
			names[i] = string(f)
		}
		hint := "use one of " + strings.Join(names, ", ")
		if want, ok := closest(in.flow, names); ok {
			hint = "did you mean " + want + "? (" + hint + ")"
		}
		ds = append(ds, at("oauth2_flow").diag(Error, fmt.Sprintf("%s = %q is not a flow the proxy knows", at("oauth2_flow").name(), in.flow), hint))
		if in.permissionURL == "" {
			return ds
		}
	}
	eff := Account{Flow: flow, PermissionURL: in.permissionURL}.EffectiveFlow()
	if in.permissionURL != "" && (flow == FlowClientCredentials || flow == FlowPassword || flow == FlowServiceAccount) {
		hint := "set oauth2_flow = authorization_code to say what really happens"
		if flow == FlowClientCredentials {
			hint = "to run client_credentials with nobody signing in, remove the permission URL (and use the scope " + MicrosoftAppScope + " for Microsoft); to keep the interactive sign-in, set the flow to authorization_code"
		}
		ds = append(ds, at("oauth2_flow").diag(Warning,
			fmt.Sprintf("%s is %s, but a permission URL is set, so the proxy runs the authorization_code flow instead: an administrator must open the URL that `orbit email-oauth2-proxy logs` shows (\"Please visit the following URL to authenticate account\") and sign in before mail flows", at("oauth2_flow").name(), flow),
			hint))
	}
	missing := func(key, why, hint string) {
		l := at(key)
		ds = append(ds, l.diag(Error, fmt.Sprintf("%s is missing: %s", l.name(), why), hint))
	}
	if in.tokenURL == "" {
		missing("token_url", "every flow needs the provider's token endpoint", "set it to the provider's token URL, e.g. https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token or https://oauth2.googleapis.com/token")
	}
	if in.clientID == "" {
		missing("client_id", "every flow identifies the app registration by it", "set it to the application (client) ID")
	}
	if in.scope == "" && (eff != FlowPassword || in.resource == "") {
		missing("oauth2_scope", fmt.Sprintf("the %s flow needs the scopes to request", eff), "set the scopes, e.g. https://outlook.office365.com/IMAP.AccessAsUser.All https://outlook.office365.com/SMTP.Send offline_access")
	}
	switch eff {
	case FlowAuthorizationCode:
		if in.permissionURL == "" {
			why := "the authorization_code flow sends the administrator's browser to it"
			if in.flow == "" {
				why = "no oauth2_flow is set, so the authorization_code flow runs, and it sends the administrator's browser to the permission URL"
			}
			missing("permission_url", why, "set it to the provider's authorise URL, or choose a non-interactive flow")
		}
		if in.redirectURI == "" {
			missing("redirect_uri", "the authorization_code flow sends it to the provider and waits for the browser there", "set it to a redirect URI registered with the app, e.g. https://<this host>/email-oauth2-proxy-authorize/")
		}
	case FlowDevice:
		if in.permissionURL == "" {
			missing("permission_url", "the device flow requests its code there", "set it to the provider's device-code endpoint, e.g. https://login.microsoftonline.com/<tenant>/oauth2/v2.0/devicecode")
		}
	case FlowClientCredentials:
		if in.clientSecret == "" && in.clientSecretEncrypted == "" && !in.useLoginPasswordAsSecret && in.jwtKey == "" {
			missing("client_secret", "the client_credentials flow authenticates the app with it", "set the client secret, or jwt_certificate_path and jwt_key_path, or use_login_password_as_client_credentials_secret = True")
		}
	case FlowServiceAccount:
		if in.clientSecret == "" {
			missing("client_secret", "the service_account flow reads the service account key from it", "set it to the key file path (client_id = file) or the key JSON (client_id = key)")
		}
	}
	if isMicrosoft(in.tokenURL) && in.scope != "" {
		toks := strings.Fields(in.scope)
		switch {
		case eff == FlowClientCredentials && !(len(toks) == 1 && strings.EqualFold(toks[0], MicrosoftAppScope)):
			ds = append(ds, at("oauth2_scope").diag(Warning,
				"Microsoft's client_credentials grant accepts only the scope "+MicrosoftAppScope+"; delegated scopes such as IMAP.AccessAsUser.All, SMTP.Send and offline_access belong to the interactive flows and the token request will be refused",
				"set the scope to "+MicrosoftAppScope+" and grant the app the IMAP.AccessAsApp / SMTP.SendAsApp application permissions"))
		case (eff == FlowAuthorizationCode || eff == FlowDevice) && !slices.Contains(toks, "offline_access") && !containsFold(toks, MicrosoftAppScope):
			ds = append(ds, at("oauth2_scope").diag(Warning,
				"the scope lacks offline_access, so Microsoft issues no refresh token and someone must sign in again every hour",
				"add offline_access to the scope"))
		}
	}
	if (in.jwtCert == "") != (in.jwtKey == "") {
		k := "jwt_key_path"
		if in.jwtCert == "" {
			k = "jwt_certificate_path"
		}
		missing(k, "a certificate client assertion needs both jwt_certificate_path and jwt_key_path", "set both, or remove the other one")
	}
	if in.has["use_pkce"] {
		if b, ok := ParseBool(in.usePKCE); ok && !b {
			ds = append(ds, at("use_pkce").diag(Warning,
				fmt.Sprintf("use_pkce = %s: the Python proxy turns PKCE on for any non-empty value, even this one; orbit turns it off, so the two engines disagree", in.usePKCE),
				"set use_pkce = True to use PKCE in both engines (orbit uses it when the line is absent too); keep False only if the provider refuses PKCE"))
		}
		if eff != FlowAuthorizationCode {
			ds = append(ds, at("use_pkce").diag(Warning,
				fmt.Sprintf("use_pkce has no effect: PKCE applies to the authorization_code flow, and this account runs %s", eff),
				"remove use_pkce"))
		}
	}
	if in.clientSecret != "" && in.clientSecretEncrypted != "" {
		ds = append(ds, at("client_secret").diag(Warning,
			"both client_secret and client_secret_encrypted are set; the plain client_secret wins and the encrypted one is ignored",
			"remove client_secret once the encrypted copy is in use (or remove client_secret_encrypted after changing the secret)"))
	}
	return ds
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}
