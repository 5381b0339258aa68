package config

import (
	"strings"
	"testing"
)

// expect is a diagnostic a test requires: severity, location and a piece
// of the message.
type expect struct {
	sev          Severity
	section, key string
	msg          string
}

func findDiag(ds []Diagnostic, e expect) bool {
	for _, d := range ds {
		if d.Severity == e.sev && d.Section == e.section && d.Key == e.key && strings.Contains(d.Message, e.msg) {
			return true
		}
	}
	return false
}

func TestLintSeedExample(t *testing.T) {
	ds, err := Lint("testdata/seed-example.config")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []expect{
		{Error, "@", "redirect_uri", "placeholder <Your_Vault_Address>"},
		{Error, "@", "redirect_list_address", "did you mean redirect_listen_address?"},
		{Error, "@", "redirect_list_address", "senhasegura documentation misspells"},
		{Error, "@", "token_url", "markdown link"},
		{Error, "@", "token_url", "placeholder TENANT_ID"},
		{Error, "@", "permission_url", "placeholder TENANT_ID"},
		{Error, "@", "client_id", "placeholder CLIENT_ID"},
		{Error, "@", "client_secret", "placeholder CLIENT_SECRET"},
		{Warning, "@", "oauth2_scope", "SMPT.Send in oauth2_scope looks like a typo of SMTP.Send"},
		{Warning, "@", "oauth2_flow", "runs the authorization_code flow instead"},
		{Warning, "SMTP-2465", "starttls", "legacy name of server_starttls"},
		{Warning, "IMAP-2993", "", "listens on all interfaces"},
	} {
		if !findDiag(ds, e) {
			t.Errorf("missing %s [%s] %s: %q", e.sev, e.section, e.key, e.msg)
		}
	}
	for _, d := range ds {
		if d.Line == 0 && d.Key != "" {
			t.Errorf("diagnostic for a key in the file lacks its line: %v", d)
		}
		if d.Hint == "" {
			t.Errorf("diagnostic without a fix: %v", d)
		}
	}
	// The markdown hint gives the plain URL to use.
	for _, d := range ds {
		if d.Key == "token_url" && strings.Contains(d.Message, "markdown") &&
			d.Hint != "use the plain URL https://login.microsoftonline.com/TENANT_ID/oauth2/v2.0/token" {
			t.Errorf("markdown hint = %q", d.Hint)
		}
	}
}

func TestValidate(t *testing.T) {
	const good = `[emailproxy]
allow_catch_all_accounts = True
[IMAP-2993]
server_address = outlook.office365.com
server_port = 993
local_address = 127.0.0.1
[SMTP-2465]
server_address = smtp.office365.com
server_port = 587
server_starttls = True
local_address = 127.0.0.1
[@]
redirect_uri = https://vault.example.com/email-oauth2-proxy-authorize/
redirect_listen_address = http://127.0.0.1:8801/
token_url = https://login.microsoftonline.com/0f3e3b5c-1a2b-4c3d-8e9f-0123456789ab/oauth2/v2.0/token
permission_url = https://login.microsoftonline.com/0f3e3b5c-1a2b-4c3d-8e9f-0123456789ab/oauth2/v2.0/authorize
oauth2_scope = https://outlook.office365.com/IMAP.AccessAsUser.All https://outlook.office365.com/SMTP.Send offline_access
client_id = 6731de76-14a6-49ae-97bc-6eba6914391e
client_secret = abc
oauth2_flow = authorization_code
`
	if ds := mustParse(t, good).Validate(); len(ds) != 0 {
		t.Fatalf("a correct file has diagnostics: %v", ds)
	}
	edit := func(old, new string) string {
		if !strings.Contains(good, old) {
			t.Fatalf("test edit %q does not apply", old)
		}
		return strings.Replace(good, old, new, 1)
	}
	tests := []struct {
		name string
		file string
		want expect
	}{
		{"unknown key with did-you-mean", edit("client_id =", "clientid ="), expect{Warning, "@", "clientid", "did you mean client_id?"}},
		{"missing client_id", edit("client_id = 6731de76-14a6-49ae-97bc-6eba6914391e\n", ""), expect{Error, "@", "client_id", "client_id is missing"}},
		{"missing token_url", edit("token_url = https://login.microsoftonline.com/0f3e3b5c-1a2b-4c3d-8e9f-0123456789ab/oauth2/v2.0/token\n", ""), expect{Error, "@", "token_url", "missing"}},
		{"missing scope", edit("oauth2_scope = https://outlook.office365.com/IMAP.AccessAsUser.All https://outlook.office365.com/SMTP.Send offline_access\n", ""), expect{Error, "@", "oauth2_scope", "missing"}},
		{"auth code without permission_url", edit("permission_url = https://login.microsoftonline.com/0f3e3b5c-1a2b-4c3d-8e9f-0123456789ab/oauth2/v2.0/authorize\n", ""), expect{Error, "@", "permission_url", "missing"}},
		{"unknown flow", edit("oauth2_flow = authorization_code", "oauth2_flow = authorisation_code"), expect{Error, "@", "oauth2_flow", "not a flow the proxy knows"}},
		{"client_credentials explained", edit("oauth2_flow = authorization_code", "oauth2_flow = client_credentials"), expect{Warning, "@", "oauth2_flow", "runs the authorization_code flow instead"}},
		{"http token_url", edit("token_url = https://", "token_url = http://"), expect{Error, "@", "token_url", "must be https"}},
		{"token_url not a URL", edit("token_url = https://login.microsoftonline.com/0f3e3b5c-1a2b-4c3d-8e9f-0123456789ab/oauth2/v2.0/token", "token_url = login.microsoftonline.com/token"), expect{Error, "@", "token_url", "not an absolute URL"}},
		{"redirect_uri plain http off loopback", edit("redirect_uri = https://", "redirect_uri = http://"), expect{Warning, "@", "redirect_uri", "plain http"}},
		{"redirect listener on all interfaces", edit("http://127.0.0.1:8801/", "http://0.0.0.0:8801/"), expect{Warning, "@", "redirect_listen_address", "reachable from the network"}},
		{"duplicate local port across protocols", edit("[SMTP-2465]", "[SMTP-2993]"), expect{Error, "SMTP-2993", "", "local port 2993 is used by [IMAP-2993] too"}},
		{"port out of range", edit("[SMTP-2465]", "[SMTP-70000]"), expect{Error, "SMTP-70000", "", "outside 1-65535"}},
		{"bad server_port", edit("server_port = 993", "server_port = imaps"), expect{Error, "IMAP-2993", "server_port", "not a port number"}},
		{"missing server_address", edit("server_address = outlook.office365.com\n", ""), expect{Error, "IMAP-2993", "server_address", "missing"}},
		{"bad boolean", edit("allow_catch_all_accounts = True", "allow_catch_all_accounts = sure"), expect{Error, "emailproxy", "allow_catch_all_accounts", "not a boolean"}},
		{"bad background_refresh", edit("allow_catch_all_accounts = True", "allow_catch_all_accounts = True\nbackground_refresh = maybe"), expect{Error, "emailproxy", "background_refresh", "would not keep sealed copies"}},
		{"bad keep_alive", edit("allow_catch_all_accounts = True", "allow_catch_all_accounts = True\nkeep_alive = often"), expect{Error, "emailproxy", "keep_alive", "orbit would keep tokens alive"}},
		{"catch-all without allow", edit("allow_catch_all_accounts = True", "allow_catch_all_accounts = False"), expect{Error, "@", "", "allow_catch_all_accounts is off"}},
		{"587 without starttls", edit("server_starttls = True\n", ""), expect{Warning, "SMTP-2465", "server_port", "expects STARTTLS"}},
		{"local_address all interfaces", edit("local_address = 127.0.0.1\n[SMTP", "local_address = 0.0.0.0\n[SMTP"), expect{Warning, "IMAP-2993", "local_address", "exposes the proxy"}},
		{"local_starttls without cert", good + "[SMTP-2525]\nserver_address = s\nserver_port = 465\nlocal_address = 127.0.0.1\nlocal_starttls = True\n", expect{Error, "SMTP-2525", "local_starttls", "needs local_certificate_path"}},
		{"only a certificate", good + "[IMAP-2994]\nserver_address = s\nserver_port = 993\nlocal_address = 127.0.0.1\nlocal_certificate_path = /c.pem\n", expect{Error, "IMAP-2994", "local_key_path", "missing"}},
		{"local_starttls without cert in IMAP", good + "[IMAP-2525]\nserver_address = s\nserver_port = 993\nlocal_address = 127.0.0.1\nlocal_starttls = True\n", expect{Error, "IMAP-2525", "local_starttls", "needs local_certificate_path"}},
		{"starttls in IMAP", edit("server_port = 993\n", "server_port = 993\nserver_starttls = True\n"), expect{Warning, "IMAP-2993", "server_starttls", "no effect"}},
		{"use_pkce False quirk", edit("oauth2_flow", "use_pkce = False\noauth2_flow"), expect{Warning, "@", "use_pkce", "even this one"}},
		{"scope without offline_access", edit(" offline_access", ""), expect{Warning, "@", "oauth2_scope", "lacks offline_access"}},
		{"placeholder client id", edit("client_id = 6731de76-14a6-49ae-97bc-6eba6914391e", "client_id = CLIENT_ID"), expect{Error, "@", "client_id", "placeholder CLIENT_ID"}},
		{"server section in wrong case", good + "[smtp-2525]\nserver_address = s\n", expect{Warning, "smtp-2525", "", "looks like a server section"}},
		{"unknown section", good + "[notes]\na = b\n", expect{Warning, "notes", "", "the proxy ignores it"}},
		{"capitals in account section", good + "[Alice@Example.com]\nclient_id = x\n", expect{Warning, "Alice@Example.com", "", "capital letters"}},
		{"tokens in a catch-all", edit("oauth2_flow = authorization_code", "oauth2_flow = authorization_code\naccess_token = gAAAA"), expect{Warning, "@", "access_token", "never used"}},
		{"bad token number", good + "[a@example.com]\ntoken_iterations = lots\n", expect{Error, "a@example.com", "token_iterations", "not a whole number"}},
		{"max_sessions not a number", edit("allow_catch_all_accounts = True", "allow_catch_all_accounts = True\nmax_sessions = many"), expect{Error, "emailproxy", "max_sessions", "not a number of sessions"}},
		{"local_starttls_required not a word", good + tlsSection("local_starttls = True\nlocal_starttls_required = remotes\n"), expect{Error, "IMAP-2994", "local_starttls_required", "is not remote, always or never"}},
		{"local_starttls_required as True", good + tlsSection("local_starttls = True\nlocal_starttls_required = True\n"), expect{Error, "IMAP-2994", "local_starttls_required", "is not remote, always or never"}},
		{"local_starttls_required without local_starttls", good + tlsSection("local_starttls_required = always\n"), expect{Warning, "IMAP-2994", "local_starttls_required", "no effect without local_starttls"}},
		{"local_starttls_required never off loopback", strings.Replace(good+tlsSection("local_starttls = True\nlocal_starttls_required = never\n"), "local_address = 127.0.0.1\nlocal_cert", "local_address = 192.0.2.10\nlocal_cert", 1), expect{Warning, "IMAP-2994", "local_starttls_required", "sends its password in the clear"}},
		{"max_sessions zero", edit("local_address = 127.0.0.1\n[SMTP", "local_address = 127.0.0.1\nmax_sessions = 0\n[SMTP"), expect{Error, "IMAP-2993", "max_sessions", "from 1 to 100000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := mustParse(t, tt.file).Validate()
			if !findDiag(ds, tt.want) {
				t.Errorf("want %s [%s] %s %q, got:\n%s", tt.want.sev, tt.want.section, tt.want.key, tt.want.msg, dump(ds))
			}
		})
	}
}

// tlsSection is an IMAP listener with a certificate and the given extra
// lines.
func tlsSection(extra string) string {
	return "[IMAP-2994]\nserver_address = s\nserver_port = 993\nlocal_address = 127.0.0.1\nlocal_certificate_path = /c.pem\nlocal_key_path = /k.pem\n" + extra
}

// TestLocalStartTLSRequired: which clients of which listener must upgrade
// before they may log in, as the file says it.
func TestLocalStartTLSRequired(t *testing.T) {
	tests := []struct {
		name             string
		lines            string
		loopback, remote bool // PasswordNeedsTLS for a loopback / another client
		clean            bool // no diagnostic for the section
	}{
		{"local_starttls, default", "local_starttls = True\n", false, true, true},
		{"remote", "local_starttls = True\nlocal_starttls_required = remote\n", false, true, true},
		{"always, any case", "local_starttls = True\nlocal_starttls_required = Always \n", true, true, true},
		{"never on loopback", "local_starttls = True\nlocal_starttls_required = never\n", false, false, true},
		{"unreadable is the default", "local_starttls = True\nlocal_starttls_required = sometimes\n", false, true, false},
		{"implicit TLS needs no upgrade", "local_starttls_required = always\n", false, false, false},
		{"no local_starttls", "", false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tlsSection(tt.lines))
			srv, ok := c.Server("IMAP-2994")
			if !ok {
				t.Fatal("no server section")
			}
			if got := srv.PasswordNeedsTLS(true); got != tt.loopback {
				t.Errorf("loopback client must upgrade = %v, want %v", got, tt.loopback)
			}
			if got := srv.PasswordNeedsTLS(false); got != tt.remote {
				t.Errorf("remote client must upgrade = %v, want %v", got, tt.remote)
			}
			var mine []Diagnostic
			for _, d := range c.Validate() {
				if d.Section == "IMAP-2994" {
					mine = append(mine, d)
				}
			}
			if (len(mine) == 0) != tt.clean {
				t.Errorf("diagnostics for the section: %s", dump(mine))
			}
		})
	}
	// A plain listener has nothing to offer, whatever the setting says.
	if (Server{LocalStartTLS: true, LocalStartTLSRequired: RequireTLSAlways}).PasswordNeedsTLS(false) {
		t.Error("a listener without a certificate requires TLS")
	}
}

func TestValidateFlows(t *testing.T) {
	const head = "[emailproxy]\n[IMAP-2993]\nserver_address = s\nserver_port = 993\nlocal_address = 127.0.0.1\n[a@example.com]\nclient_id = id\n"
	tests := []struct {
		name, account string
		want          []expect
		none          []string // message pieces that must not appear
	}{
		{"microsoft client_credentials with delegated scopes",
			"oauth2_flow = client_credentials\ntoken_url = https://login.microsoftonline.com/t.onmicrosoft.com/oauth2/v2.0/token\noauth2_scope = https://outlook.office365.com/IMAP.AccessAsUser.All offline_access\nclient_secret = s\n",
			[]expect{{Warning, "a@example.com", "oauth2_scope", "accepts only the scope https://outlook.office365.com/.default"}}, nil},
		{"microsoft client_credentials done right",
			"oauth2_flow = client_credentials\ntoken_url = https://login.microsoftonline.com/t.onmicrosoft.com/oauth2/v2.0/token\noauth2_scope = https://outlook.office365.com/.default\nclient_secret = s\n",
			nil, []string{"accepts only", "missing"}},
		{"client_credentials without secret",
			"oauth2_flow = client_credentials\ntoken_url = https://t.example/token\noauth2_scope = x\n",
			[]expect{{Error, "a@example.com", "client_secret", "missing"}}, nil},
		{"password flow with resource needs no scope",
			"oauth2_flow = password\ntoken_url = https://t.example/token\noauth2_resource = https://outlook.office365.com\n",
			nil, []string{"oauth2_scope is missing"}},
		{"device flow needs the device URL",
			"oauth2_flow = device\ntoken_url = https://t.example/token\noauth2_scope = x\n",
			[]expect{{Error, "a@example.com", "permission_url", "device flow requests its code there"}}, nil},
		{"no flow and no permission_url",
			"token_url = https://t.example/token\noauth2_scope = x\nredirect_uri = http://localhost:1/\n",
			[]expect{{Error, "a@example.com", "permission_url", "no oauth2_flow is set"}}, nil},
		{"jwt half",
			"oauth2_flow = client_credentials\ntoken_url = https://t.example/token\noauth2_scope = x\njwt_certificate_path = /c\n",
			[]expect{{Error, "a@example.com", "jwt_key_path", "missing"}}, nil},
		{"pkce on a non-interactive flow",
			"oauth2_flow = client_credentials\ntoken_url = https://t.example/token\noauth2_scope = x\nclient_secret = s\nuse_pkce = True\n",
			[]expect{{Warning, "a@example.com", "use_pkce", "has no effect"}}, nil},
		{"both secrets",
			"oauth2_flow = client_credentials\ntoken_url = https://t.example/token\noauth2_scope = x\nclient_secret = s\nclient_secret_encrypted = gAAAA\n",
			[]expect{{Warning, "a@example.com", "client_secret", "plain client_secret wins"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := mustParse(t, head+tt.account).Validate()
			for _, w := range tt.want {
				if !findDiag(ds, w) {
					t.Errorf("want %s %s %q, got:\n%s", w.sev, w.key, w.msg, dump(ds))
				}
			}
			for _, n := range tt.none {
				for _, d := range ds {
					if strings.Contains(d.Message, n) {
						t.Errorf("unexpected %v", d)
					}
				}
			}
		})
	}
}

func TestCatchAllFindingsReportedOnce(t *testing.T) {
	c := mustParse(t, `[emailproxy]
allow_catch_all_accounts = True
[IMAP-2993]
server_address = s
server_port = 993
local_address = 127.0.0.1
[@]
token_url = https://login.microsoftonline.com/t.onmicrosoft.com/oauth2/v2.0/token
permission_url = https://login.microsoftonline.com/t.onmicrosoft.com/oauth2/v2.0/authorize
oauth2_scope = https://outlook.office365.com/IMAP.AccessAsUser.All offline_access
client_id = id
redirect_uri = http://localhost:8801/
oauth2_flow = client_credentials
[alice@example.com]
token_salt = c2FsdA==
access_token = gAAAA
[bob@example.com]
client_id = other
`)
	n := 0
	for _, d := range c.Validate() {
		if strings.Contains(d.Message, "runs the authorization_code flow instead") {
			n++
			if d.Section != "@" {
				t.Errorf("flow explanation reported at [%s], want [@]", d.Section)
			}
		}
	}
	if n != 1 {
		t.Errorf("flow explanation reported %d times, want once", n)
	}
}

func TestLintUnreadable(t *testing.T) {
	if _, err := Lint(t.TempDir() + "/missing.config"); err == nil {
		t.Error("Lint of a missing file returned no error")
	}
	ds := LintBytes([]byte("[s]\njunk\n"), "x")
	if len(ds) != 1 || ds[0].Severity != Error || ds[0].Line != 2 {
		t.Errorf("syntax error diagnostics = %v", ds)
	}
}

func dump(ds []Diagnostic) string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString("  " + d.String() + "\n")
	}
	return b.String()
}
