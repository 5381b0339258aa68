package config

import (
	"slices"
	"strings"
	"testing"
)

// TestPythonSampleFile: the sample file the Python proxy ships is read as
// that proxy reads it. Its documentation keys and heading sections are
// notes (listed only on request), its "*** your ... here ***" stand-ins are
// warnings, and its one error, the Fastmail example without redirect_uri,
// disables that account alone.
func TestPythonSampleFile(t *testing.T) {
	ds, err := Lint("testdata/python-sample/emailproxy.config")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []expect{
		{Note, "Server setup", "", "is a heading"},
		{Note, "Email OAuth 2.0 Proxy configuration file", "", "is a heading"},
		{Note, "IMAP-1993", "documentation", "is a comment"},
		{Note, "ccg.flow.configured.address@your-tenant.com", "documentation", "is a comment"},
		{Warning, "your.email@gmail.com", "client_id", `placeholder "*** your client id here ***"`},
		{Warning, "ccg.flow.configured.address@your-tenant.com", "token_url", "placeholder"},
		{Error, "your.email@fastmail.com", "redirect_uri", "redirect_uri is missing"},
	} {
		if !findDiag(ds, e) {
			t.Errorf("no %v [%s] %s %q", e.sev, e.section, e.key, e.msg)
		}
	}
	for _, d := range ds {
		if d.Severity == Warning && (d.Key == "documentation" || strings.Contains(d.Message, "neither [emailproxy]")) {
			t.Errorf("the format's own comments are warned about: %s", d)
		}
		if d.Key == "client_secret" && strings.Contains(d.Message, "your client secret") {
			t.Errorf("a diagnostic quotes a client_secret value: %s", d)
		}
	}
	fatal, disabled := SplitErrors(ds)
	if len(fatal) != 0 {
		t.Errorf("errors outside accounts: %v", fatal)
	}
	if got := disabled.Sections(); !slices.Equal(got, []string{"your.email@fastmail.com"}) {
		t.Errorf("disabled %v, want only the Fastmail example", got)
	}
	if r := disabled.Reason("your.email@fastmail.com"); !strings.Contains(r, "redirect_uri is missing") {
		t.Errorf("reason %q", r)
	}
}

// TestDisabledFor: a login is refused when the section serving it is
// disabled, including a catch-all whose settings a tokens-only section
// takes, but not when its own section has complete settings.
func TestDisabledFor(t *testing.T) {
	c, err := Parse([]byte(`[emailproxy]
allow_catch_all_accounts = True
[IMAP-2993]
server_address = imap.example.com
server_port = 993
local_address = 127.0.0.1
[@broken.example]
token_url = https://login.example.com/token
oauth2_scope = mail
[tokens@broken.example]
token_salt = c2FsdA==
refresh_token = gAAAA
[own@broken.example]
token_url = https://login.example.com/token
oauth2_scope = mail
oauth2_flow = password
client_id = app
[@good.example]
token_url = https://login.example.com/token
oauth2_scope = mail
oauth2_flow = password
client_id = app
`), "x.config")
	if err != nil {
		t.Fatal(err)
	}
	fatal, disabled := SplitErrors(c.Validate())
	if len(fatal) != 0 {
		t.Fatalf("fatal: %v", fatal)
	}
	for _, tt := range []struct {
		user, section string
		disabled      bool
	}{
		{"anyone@broken.example", "@broken.example", true},
		{"tokens@broken.example", "@broken.example", true},
		{"own@broken.example", "", false},
		{"someone@good.example", "", false},
		{"nobody@elsewhere.example", "", false},
	} {
		sec, ok := disabled.For(c, tt.user)
		if ok != tt.disabled || sec != tt.section {
			t.Errorf("%s: disabled by [%s] %v, want [%s] %v", tt.user, sec, ok, tt.section, tt.disabled)
		}
	}
}

// TestSplitErrors: only errors located in an account section are confined
// to it; syntax, global and server-section errors stay fatal.
func TestSplitErrors(t *testing.T) {
	c, err := Parse([]byte(`[emailproxy]
allow_catch_all_accounts = maybe
[IMAP-2993]
server_port = 993
local_address = 127.0.0.1
[alice@example.com]
oauth2_flow = password
`), "x.config")
	if err != nil {
		t.Fatal(err)
	}
	fatal, disabled := SplitErrors(c.Validate())
	var fatalSections []string
	for _, d := range fatal {
		fatalSections = append(fatalSections, d.Section)
	}
	if !slices.Contains(fatalSections, "emailproxy") || !slices.Contains(fatalSections, "IMAP-2993") {
		t.Errorf("fatal errors in %v, want [emailproxy] and [IMAP-2993]", fatalSections)
	}
	if _, ok := disabled["alice@example.com"]; !ok || len(disabled) != 1 {
		t.Errorf("disabled %v, want [alice@example.com]", disabled.Sections())
	}
}

// TestRedirectCheckedOnlyWhereUsed: redirect settings of a flow that opens
// no browser are notes, never plain-http warnings or misspelling errors.
func TestRedirectCheckedOnlyWhereUsed(t *testing.T) {
	for _, flow := range []string{"password", "client_credentials", "service_account", "device", "authorization_code"} {
		t.Run(flow, func(t *testing.T) {
			extra := ""
			if flow == "device" || flow == "authorization_code" {
				extra = "permission_url = https://login.example.com/authorize\n"
			}
			c, err := Parse([]byte(`[IMAP-2993]
server_address = imap.example.com
server_port = 993
local_address = 127.0.0.1
[alice@example.com]
token_url = https://login.example.com/token
oauth2_scope = mail
client_id = app
client_secret = s
oauth2_flow = `+flow+`
`+extra+`redirect_uri = http://vault.example.com/email-oauth2-proxy-authorize/
redirect_list_address = http://127.0.0.1:8801/
`), "x.config")
			if err != nil {
				t.Fatal(err)
			}
			ds := c.Validate()
			browser := flow == "authorization_code"
			plain := findDiag(ds, expect{Warning, "alice@example.com", "redirect_uri", "plain http"})
			misspelt := findDiag(ds, expect{Error, "alice@example.com", "redirect_list_address", "did you mean"})
			if plain != browser || misspelt != browser {
				t.Errorf("plain-http warning %v, misspelling error %v; want both %v:\n%v", plain, misspelt, browser, ds)
			}
			if !browser && !findDiag(ds, expect{Note, "alice@example.com", "redirect_uri", "is not used"}) {
				t.Errorf("no note that redirect_uri is unused:\n%v", ds)
			}
		})
	}
}

// TestServeErrorsAllAccountsBroken: when every account section would be
// disabled no login can succeed, so the file is refused as a whole.
func TestServeErrorsAllAccountsBroken(t *testing.T) {
	const servers = "[IMAP-2993]\nserver_address = imap.example.com\nserver_port = 993\nlocal_address = 127.0.0.1\n"
	const broken = "[bob@example.com]\ntoken_url = https://login.example.com/token\noauth2_scope = mail\noauth2_flow = client-credentials\nclient_id = app\n"
	const working = "[alice@example.com]\ntoken_url = https://login.example.com/token\noauth2_scope = mail\noauth2_flow = password\nclient_id = app\n"
	for _, tt := range []struct {
		name, file string
		fatal      bool
	}{
		{"one of two broken", servers + working + broken, false},
		{"the only account broken", servers + broken, true},
	} {
		c, err := Parse([]byte(tt.file), "x.config")
		if err != nil {
			t.Fatal(err)
		}
		fatal, disabled := c.ServeErrors(c.Validate())
		if (len(fatal) > 0) != tt.fatal {
			t.Errorf("%s: fatal %v, want fatal: %v", tt.name, fatal, tt.fatal)
		}
		if tt.fatal && (len(disabled) != 0 || !findDiag(fatal, expect{Error, "bob@example.com", "oauth2_flow", "is not a flow"}) ||
			!strings.Contains(fatal[len(fatal)-1].Message, "every account section has errors")) {
			t.Errorf("%s: fatal %v, disabled %v", tt.name, fatal, disabled.Sections())
		}
		if !tt.fatal && len(disabled) != 1 {
			t.Errorf("%s: disabled %v, want bob's section", tt.name, disabled.Sections())
		}
	}
}
