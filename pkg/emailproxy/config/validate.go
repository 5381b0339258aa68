package config

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Lint loads the file at path and validates it. Syntax errors become Error
// diagnostics with their line; the returned error is only for a file that
// cannot be read at all.
func Lint(path string) ([]Diagnostic, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return LintBytes(data, path), nil
}

// LintBytes is Lint for data already in memory.
func LintBytes(data []byte, path string) []Diagnostic {
	c, err := Parse(data, path)
	if err != nil {
		return syntaxDiagnostics(err)
	}
	return c.Validate()
}

func syntaxDiagnostics(err error) []Diagnostic {
	var out []Diagnostic
	var multi interface{ Unwrap() []error }
	errs := []error{err}
	if errors.As(err, &multi) {
		errs = multi.Unwrap()
	}
	for _, e := range errs {
		var se *SyntaxError
		if errors.As(e, &se) {
			out = append(out, Diagnostic{Severity: Error, Line: se.Line, Message: se.Msg,
				Hint: "the Python proxy refuses the whole file too; fix the line and run `orbit email-oauth2-proxy config validate` again"})
		} else {
			out = append(out, Diagnostic{Severity: Error, Message: e.Error()})
		}
	}
	return out
}

// Validate lints the configuration: keys and sections that would be
// ignored, missing and malformed values, and settings that will not do
// what their author expects. Diagnostics come in file order.
func (c *Config) Validate() []Diagnostic {
	var ds []Diagnostic
	at := func(sec, key string) loc { return loc{section: sec, key: key, line: c.Line(sec, key)} }

	// Global section.
	if !c.HasSection(GlobalSection) {
		ds = append(ds, Diagnostic{Severity: Warning, Section: GlobalSection,
			Message: "there is no [emailproxy] section, so every global setting has its default (delete_account_token_on_password_error = True, allow_catch_all_accounts = False)",
			Hint:    "add an [emailproxy] section; `orbit email-oauth2-proxy register` writes one"})
	}
	for _, k := range c.Keys(GlobalSection) {
		l := at(GlobalSection, k)
		if isCommentKey(k) {
			ds = append(ds, commentKey(l))
			continue
		}
		if !slices.Contains(globalKeys, k) {
			ds = append(ds, unknownKey(l, globalKeys))
			continue
		}
		if check, ok := globalChecks[k]; ok {
			ds = append(ds, check(l, c.str(GlobalSection, k))...)
			continue
		}
		ds = append(ds, checkBool(l, c.str(GlobalSection, k))...)
	}
	if c.doc.defaults != nil {
		ds = append(ds, Diagnostic{Severity: Warning, Section: DefaultSection, Line: c.doc.defaults.line,
			Message: "keys in [DEFAULT] apply to every section that does not set them (that is how the Python proxy's reader works), including server and global sections",
			Hint:    "move the keys into the sections that need them, or into a catch-all account section such as [@]"})
	}

	ports := map[int][]string{}
	for _, name := range c.Sections() {
		switch {
		case name == GlobalSection:
		case serverSectionRE.MatchString(name):
			ds = append(ds, c.validateServer(name, ports)...)
		case IsAccountSection(name):
			ds = append(ds, c.validateAccount(name)...)
		default:
			ds = append(ds, c.unknownSection(name))
		}
	}
	if len(c.Servers) == 0 {
		ds = append(ds, Diagnostic{Severity: Warning,
			Message: "no [IMAP-port], [POP-port] or [SMTP-port] section: the proxy listens on nothing",
			Hint:    "register a server, e.g. `orbit email-oauth2-proxy register --provider office365 ...`"})
	}
	dupPorts := make([]int, 0, len(ports))
	for p, secs := range ports {
		if len(secs) > 1 {
			dupPorts = append(dupPorts, p)
		}
	}
	sort.Ints(dupPorts)
	for _, p := range dupPorts {
		secs := ports[p]
		for _, s := range secs[1:] {
			ds = append(ds, Diagnostic{Severity: Error, Section: s, Line: c.Line(s, ""),
				Message: fmt.Sprintf("local port %d is used by [%s] too; two listeners cannot share a port", p, strings.Join(secs[:len(secs)-1], "], [")),
				Hint:    "give each server section its own local port (the number after the dash)"})
		}
	}
	return ds
}

func unknownKey(l loc, known []string) Diagnostic {
	if m, ok := misspellings[l.key]; ok {
		return l.diag(Error, fmt.Sprintf("unknown key %s (did you mean %s?): %s", l.key, m.want, m.why), fmt.Sprintf("rename %s to %s", l.key, m.want))
	}
	msg := fmt.Sprintf("unknown key %s: the proxy ignores it", l.key)
	hint := "remove it, or check the key names in docs/email-oauth2-proxy.md"
	if want, ok := closest(l.key, known); ok {
		msg = fmt.Sprintf("unknown key %s (did you mean %s?): the proxy ignores it", l.key, want)
		hint = fmt.Sprintf("rename %s to %s", l.key, want)
	}
	return l.diag(Warning, msg, hint)
}

// commentKeys are keys the Python proxy's sample file uses as comments, in
// any section: both engines ignore them, and they are no mistake.
var commentKeys = []string{"documentation"}

func isCommentKey(k string) bool { return slices.Contains(commentKeys, k) }

func commentKey(l loc) Diagnostic {
	return l.diag(Note, fmt.Sprintf("%s is a comment (the Python proxy's sample file documents sections this way); the proxy ignores it", l.key), "")
}

func (c *Config) unknownSection(name string) Diagnostic {
	line := c.Line(name, "")
	d := Diagnostic{Severity: Warning, Section: name, Line: line,
		Message: fmt.Sprintf("section [%s] is neither [emailproxy], a server section ([IMAP-port], [POP-port], [SMTP-port]) nor an account section (a name containing @): the proxy ignores it", name),
		Hint:    "remove it if it is not needed; orbit keeps it as it is"}
	up := strings.ToUpper(strings.NewReplacer("_", "-", " ", "-").Replace(name))
	switch {
	case serverSectionRE.MatchString(up):
		d.Message = fmt.Sprintf("section [%s] looks like a server section, but server section names are case-sensitive and written PROTOCOL-PORT; the proxy ignores it", name)
		d.Hint = fmt.Sprintf("rename it to [%s]", up)
	case strings.EqualFold(name, GlobalSection):
		d.Message = fmt.Sprintf("section [%s] looks like the global section, but section names are case-sensitive; the proxy ignores it", name)
		d.Hint = "rename it to [emailproxy]"
	case c.isHeading(name):
		d.Severity = Note
		d.Message = fmt.Sprintf("section [%s] is a heading (the Python proxy's sample file has [Server setup], [Account setup] and the like); the proxy ignores it", name)
		d.Hint = ""
	}
	return d
}

// isHeading reports whether an unknown section is a heading of the kind the
// Python proxy's sample file uses to document the format: a name with a
// space (no login name or server section has one), or a section that holds
// nothing but comment keys.
func (c *Config) isHeading(name string) bool {
	if strings.ContainsAny(name, " \t") {
		return true
	}
	for _, k := range c.Keys(name) {
		if !isCommentKey(k) {
			return false
		}
	}
	return true
}

func (c *Config) validateServer(name string, ports map[int][]string) []Diagnostic {
	var ds []Diagnostic
	at := func(key string) loc { return loc{section: name, key: key, line: c.Line(name, key)} }
	srv, _ := c.Server(name)
	if srv.LocalPort < 1 || srv.LocalPort > 65535 {
		ds = append(ds, at("").diag(Error,
			fmt.Sprintf("section [%s] names local port %s, outside 1-65535", name, strings.SplitN(name, "-", 2)[1]),
			"rename the section with a port from 1 to 65535, e.g. ["+string(srv.Protocol)+"-"+map[Protocol]string{IMAP: "2993", POP: "2995", SMTP: "2465"}[srv.Protocol]+"]"))
	} else {
		ports[srv.LocalPort] = append(ports[srv.LocalPort], name)
	}
	for _, k := range c.Keys(name) {
		l := at(k)
		v := c.str(name, k)
		switch {
		case isCommentKey(k):
			ds = append(ds, commentKey(l))
		case !slices.Contains(serverKeys, k):
			ds = append(ds, unknownKey(l, serverKeys))
		case k == "server_starttls" || k == "starttls":
			ds = append(ds, checkBool(l, v)...)
			if srv.Protocol != SMTP {
				ds = append(ds, l.diag(Warning, fmt.Sprintf("%s has no effect in a %s section: only SMTP uses STARTTLS upstream (IMAP and POP upstream are always implicit TLS)", k, srv.Protocol), "remove it"))
			}
		case k == "local_starttls":
			ds = append(ds, checkBool(l, v)...)
		case k == "max_sessions":
			ds = append(ds, checkSessions(l, v)...)
		case k == "local_starttls_required":
			ds = append(ds, checkTLSRequirement(l, v, srv)...)
		case k == "server_port":
			if _, pd := checkPort(l, v, "server_port"); pd != nil {
				ds = append(ds, pd...)
			}
		case k == "server_address":
			if td, _ := checkText(l, v); td != nil {
				ds = append(ds, td...)
			}
		}
	}
	if _, ok := c.Get(name, "server_address"); !ok || srv.ServerAddress == "" {
		ds = append(ds, at("server_address").diag(Error, "server_address is missing: the proxy does not know where to connect", "set it to the provider's server, e.g. outlook.office365.com"))
	}
	if _, ok := c.Get(name, "server_port"); !ok {
		ds = append(ds, at("server_port").diag(Error, "server_port is missing: the proxy does not know where to connect", "set it to the provider's port, e.g. 993 for IMAP, 587 for SMTP with STARTTLS"))
	}
	if _, hasNew := c.Get(name, "server_starttls"); !hasNew && srv.Protocol == SMTP {
		if _, hasOld := c.Get(name, "starttls"); hasOld {
			ds = append(ds, at("starttls").diag(Warning, "starttls is the legacy name of server_starttls (the senhasegura documentation writes it)", "rename it to server_starttls; `orbit email-oauth2-proxy register` does that when it rewrites the file"))
		}
	} else if hasNew {
		if old, hasOld := c.Get(name, "starttls"); hasOld {
			if b, _ := ParseBool(old); b != srv.ServerStartTLS {
				ds = append(ds, at("starttls").diag(Warning, "starttls and server_starttls disagree; server_starttls wins", "remove the legacy starttls line"))
			}
		}
	}
	if srv.Protocol == SMTP && srv.ServerPort == 587 && !srv.ServerStartTLS {
		ds = append(ds, at("server_port").diag(Warning, "SMTP port 587 expects STARTTLS, but server_starttls is off, so the proxy will try implicit TLS and the connection will fail", "add server_starttls = True"))
	}
	if srv.Protocol == SMTP && srv.ServerPort == 465 && srv.ServerStartTLS {
		ds = append(ds, at("server_starttls").diag(Warning, "SMTP port 465 is implicit TLS, but server_starttls is on", "remove server_starttls, or use port 587"))
	}
	if a, ok := c.Get(name, "local_address"); !ok {
		ds = append(ds, at("").diag(Warning, "local_address is not set, so the proxy listens on all interfaces (::) and anyone who can reach this port can use the mailbox with any password once tokens exist", "add local_address = 127.0.0.1"))
	} else if isWildcardHost(a) {
		ds = append(ds, at("local_address").diag(Warning, fmt.Sprintf("local_address = %s exposes the proxy on every interface", a), "use 127.0.0.1 unless other hosts must reach the proxy"))
	}
	if srv.LocalStartTLS && (srv.LocalCertificatePath == "" || srv.LocalKeyPath == "") {
		ds = append(ds, at("local_starttls").diag(Error, "local_starttls needs local_certificate_path and local_key_path to offer STARTTLS to mail clients", "set both paths, or remove local_starttls"))
	} else if (srv.LocalCertificatePath == "") != (srv.LocalKeyPath == "") {
		k := "local_key_path"
		if srv.LocalCertificatePath == "" {
			k = "local_certificate_path"
		}
		ds = append(ds, at(k).diag(Error, fmt.Sprintf("%s is missing: a TLS listener needs both local_certificate_path and local_key_path", k), "set both, or remove the other one to listen in plain text"))
	}
	return ds
}

func (c *Config) validateAccount(name string) []Diagnostic {
	var ds []Diagnostic
	at := func(key string) loc { return loc{section: name, key: key, line: c.Line(name, key)} }
	catchAll := IsCatchAllSection(name)
	if catchAll && !c.Global.AllowCatchAllAccounts {
		what := "every account"
		if name != "@" {
			what = "every account of " + name[1:]
		}
		ds = append(ds, at("").diag(Error,
			fmt.Sprintf("[%s] is a catch-all section (for %s), but allow_catch_all_accounts is off, so the proxy never uses it and every login fails", name, what),
			"set allow_catch_all_accounts = True in [emailproxy], or rename the section to the full login name"))
	}
	if !catchAll && name != strings.ToLower(name) {
		ds = append(ds, at("").diag(Warning,
			fmt.Sprintf("[%s] contains capital letters; login names are compared with section names exactly, so the mail client must send the login spelt exactly like this", name),
			"write the section name the way the mail client sends the login (usually lower case)"))
	}
	if strings.Count(name, "@") > 1 || strings.ContainsAny(name, " \t") {
		ds = append(ds, at("").diag(Warning, fmt.Sprintf("[%s] does not look like a login name or a catch-all (@ or @domain)", name), "name account sections user@domain, @domain or @"))
	}
	var chain []string
	chain = append(chain, name)
	if c.Global.AllowCatchAllAccounts {
		if at := strings.LastIndexByte(name, '@'); at > 0 && c.HasSection(name[at:]) {
			chain = append(chain, name[at:])
		}
		if name != "@" && c.HasSection("@") {
			chain = append(chain, "@")
		}
	}
	get := func(key string) string {
		for _, s := range chain {
			if v, ok := c.Get(s, key); ok {
				return v
			}
		}
		return ""
	}
	// Only the authorization_code flow sends a browser to redirect_uri and
	// listens at redirect_listen_address; in every other flow those keys
	// are never read, so judging them would only be noise.
	eff := Account{Flow: Flow(get("oauth2_flow")), PermissionURL: get("permission_url")}.EffectiveFlow()
	usesRedirect := eff == FlowAuthorizationCode
	unusedRedirect := func(l loc) Diagnostic {
		return l.diag(Note, fmt.Sprintf("%s is not used: the %s flow opens no browser and needs no redirect", l.key, eff), "remove it")
	}

	own := map[string]bool{}
	onlyTokens := true
	for _, k := range c.Keys(name) {
		own[k] = true
		l := at(k)
		v := c.str(name, k)
		if isCommentKey(k) {
			ds = append(ds, commentKey(l))
			continue
		}
		if !slices.Contains(accountKeys, k) {
			if k == "redirect_list_address" && !usesRedirect {
				ds = append(ds, unusedRedirect(l))
				continue
			}
			ds = append(ds, unknownKey(l, accountKeys))
			continue
		}
		if !slices.Contains(TokenKeys, k) {
			onlyTokens = false
		}
		switch k {
		case "token_url", "permission_url":
			ds = append(ds, checkURL(l, v, endpointURL)...)
		case "redirect_uri", "redirect_listen_address":
			switch {
			case !usesRedirect:
				ds = append(ds, unusedRedirect(l))
			case k == "redirect_uri":
				ds = append(ds, checkURL(l, v, redirectURL)...)
			default:
				ds = append(ds, checkURL(l, v, listenURL)...)
			}
		case "oauth2_scope":
			ds = append(ds, checkScope(l, v)...)
		case "client_id", "client_secret", "oauth2_resource":
			if td, _ := checkText(l, v); td != nil {
				ds = append(ds, td...)
			}
		case "token_iterations", "access_token_expiry", "last_activity":
			if _, err := strconv.ParseInt(v, 10, 64); err != nil {
				ds = append(ds, l.diag(Error, fmt.Sprintf("%s is not a whole number, so the stored tokens cannot be used", k), "remove the account's token keys; the proxy asks for authorisation again"))
			}
		}
		if catchAll && slices.Contains(TokenKeys, k) && k != "token_salt" && k != "token_iterations" {
			ds = append(ds, l.diag(Warning, fmt.Sprintf("%s in a catch-all section is never used: tokens are read only from an account's own section", k), "remove it"))
		}
	}
	// A section holding only written-back tokens is the per-account section
	// the proxy adds under a catch-all: its settings are judged there.
	if onlyTokens && !catchAll && c.Global.AllowCatchAllAccounts {
		return ds
	}
	in := accountInput{
		flow: get("oauth2_flow"), permissionURL: get("permission_url"), tokenURL: get("token_url"),
		scope: get("oauth2_scope"), resource: get("oauth2_resource"), clientID: get("client_id"),
		clientSecret: get("client_secret"), clientSecretEncrypted: c.str(name, "client_secret_encrypted"),
		redirectURI: get("redirect_uri"), redirectListen: get("redirect_listen_address"),
		jwtCert: get("jwt_certificate_path"), jwtKey: get("jwt_key_path"), usePKCE: get("use_pkce"),
		has:                      map[string]bool{"use_pkce": own["use_pkce"]},
		useLoginPasswordAsSecret: c.Global.UseLoginPasswordAsClientCredentialsSecret,
	}
	if !own["redirect_listen_address"] && own["redirect_list_address"] {
		// Already reported as the misspelling; the missing-key message
		// would only repeat it.
		in.redirectListen = "set"
	}
	for _, d := range checkFlow(in, at) {
		// Flow findings about a key inherited from a catch-all are
		// reported once, at the section that defines the key.
		if d.Key != "" && !own[d.Key] && d.Line == 0 && len(chain) > 1 && d.Severity == Warning {
			continue
		}
		ds = append(ds, d)
	}
	return ds
}
