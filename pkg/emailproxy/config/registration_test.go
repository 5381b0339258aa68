package config

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/senhasegura/orbit/internal/testenv/golden"
)

const (
	testTenant = "0f3e3b5c-1a2b-4c3d-8e9f-0123456789ab"
	testClient = "6731de76-14a6-49ae-97bc-6eba6914391e"
	testSecret = "Qx8~R2.vF_kP9sLmN3tZ7wYbC4dE6gH1jK5nA0uV"
)

// seedRegistration is the seed's register command as the CLI hands it
// over: values exactly as typed (trailing spaces included), placeholders
// replaced by real-looking values, plus the default redirect URI.
func seedRegistration() *Registration {
	r := NewRegistration()
	r.IMAP = ServerRegistration{ServerAddress: "outlook.office365.com", ServerPort: 993}
	r.SMTP = ServerRegistration{ServerAddress: "smtp.office365.com", ServerPort: 587, StartTLS: true}
	r.TokenURL = "https://login.microsoftonline.com/" + testTenant + "/oauth2/v2.0/token "
	r.PermissionURL = "https://login.microsoftonline.com/" + testTenant + "/oauth2/v2.0/authorize "
	r.Scope = " https://outlook.office365.com/IMAP.AccessAsUser.All https://outlook.office365.com/SMTP.Send offline_access "
	r.Flow = "client_credentials"
	r.ClientID = testClient
	r.ClientSecret = testSecret
	r.RedirectURI = DefaultRedirectURI("vault.example.com")
	return r
}

func TestApplyFreshIsTheSeedExample(t *testing.T) {
	out, err := seedRegistration().Apply(nil)
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "fresh-seed.golden", out)

	// The same file, derived from the seed's own example by the documented
	// corrections only: this is what "equal to the seed" means.
	seed, err := os.ReadFile("testdata/seed-example.config")
	if err != nil {
		t.Fatal(err)
	}
	want := string(seed)
	for _, r := range [][2]string{
		{"starttls = True\n", "server_starttls = True\n"},
		{"server_port = 993\n", "server_port = 993\nlocal_address = 127.0.0.1\n"},
		{"server_starttls = True\n", "server_starttls = True\nlocal_address = 127.0.0.1\n"},
		{"redirect_list_address", "redirect_listen_address"},
		{"<Your_Vault_Address>", "vault.example.com"},
		{"[https://login.microsoftonline.com/TENANT_ID/oauth2/v2.0/token](https://login.microsoftonline.com/TENANT_ID/oauth2/v2.0/token%22%5C)", "https://login.microsoftonline.com/TENANT_ID/oauth2/v2.0/token"},
		{"TENANT_ID", testTenant},
		{"CLIENT_ID", testClient},
		{"CLIENT_SECRET", testSecret},
		// The command's scope (the example file's adds POP and has the typo).
		{"https://outlook.office365.com/IMAP.AccessAsUser.All https://outlook.office365.com/POP.AccessAsUser.All https://outlook.office365.com/SMPT.Send offline_access",
			"https://outlook.office365.com/IMAP.AccessAsUser.All https://outlook.office365.com/SMTP.Send offline_access"},
	} {
		if !strings.Contains(want, r[0]) {
			t.Fatalf("correction %q does not apply to the seed example", r[0])
		}
		want = strings.ReplaceAll(want, r[0], r[1])
	}
	if string(out) != want {
		t.Errorf("fresh Apply is not the corrected seed example:\n--- got\n%s\n--- want\n%s", out, want)
	}

	c, err := Parse(out, "fresh")
	if err != nil {
		t.Fatal(err)
	}
	if ds := c.Validate(); HasErrors(ds) {
		t.Errorf("the written file does not validate:\n%s", dump(ds))
	}
	a, ok := c.Account("notifications@example.com")
	if !ok || a.EffectiveFlow() != FlowAuthorizationCode || a.ClientSecret != testSecret {
		t.Errorf("account from the written file: %+v", a)
	}
}

func TestApplyPreservesExistingFile(t *testing.T) {
	existing, err := os.ReadFile("testdata/existing-with-tokens.config")
	if err != nil {
		t.Fatal(err)
	}
	r := NewRegistration()
	r.Provider, r.TenantID = "office365", testTenant
	r.ClientID = testClient
	r.RedirectURI = "https://vault.example.com/email-oauth2-proxy-authorize/"
	r.EncryptClientSecretOnFirstUse = true
	out, err := r.Apply(existing)
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "reapply-existing.golden", out)

	// Every line of the old file that the registration does not own is
	// still there, verbatim.
	owned := []string{"redirect_list_address", "token_url", "permission_url", "oauth2_scope", "client_id", "oauth2_flow", "starttls", "local_address", "redirect_uri"}
	ownedSection := map[string]bool{"@": true, "SMTP-2465": true, "IMAP-2993": true}
	section := ""
	for _, line := range strings.Split(string(existing), "\n") {
		if strings.HasPrefix(line, "[") {
			section = strings.Trim(line, "[]")
		}
		key := strings.TrimSpace(strings.SplitN(line, "=", 2)[0])
		if ownedSection[section] && strings.Contains(line, "=") && containsStr(owned, key) {
			continue
		}
		if !strings.Contains(string(out), line) {
			t.Errorf("line lost: %q", line)
		}
	}
	for _, want := range []string{
		"[SMTP-2465]\nserver_address = smtp.office365.com\nserver_port = 587\nserver_starttls = True\nlocal_address = 127.0.0.1\n",
		"redirect_listen_address = http://127.0.0.1:8801/\n",
		"token_url = https://login.microsoftonline.com/" + testTenant + "/oauth2/v2.0/token\n",
		"client_secret_encrypted = gAAAAA", // kept, and no client_secret was added
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, gone := range []string{"redirect_list_address", "starttls = True\n\n", "TENANT_ID", "CLIENT_ID", "client_secret ="} {
		if strings.Contains(string(out), gone) {
			t.Errorf("output still has %q", gone)
		}
	}
	c, err := Parse(out, "out")
	if err != nil {
		t.Fatal(err)
	}
	if ds := c.Validate(); HasErrors(ds) {
		t.Errorf("re-applied file does not validate:\n%s", dump(ds))
	}
	again, err := r.Apply(out)
	if err != nil || !bytes.Equal(again, out) {
		t.Errorf("Apply is not idempotent:\n%s", again)
	}
}

func containsStr(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestApplyOwnershipOfServerSections(t *testing.T) {
	existing := `[emailproxy]
allow_catch_all_accounts = True

# old listener, moved by the registration
[SMTP-2465]
server_address = smtp.office365.com
server_port = 587
starttls = True
x_custom = kept

# a second provider, added by hand
[SMTP-2587]
server_address = smtp.gmail.com
server_port = 465
local_address = 127.0.0.1

[@]
client_secret = old-secret
access_token = tok
`
	r := seedRegistration()
	r.SMTP.LocalPort = 2525
	r.ClientSecret = ""
	out, err := r.Apply([]byte(existing))
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{
		"# old listener, moved by the registration\n[SMTP-2525]\nserver_address = smtp.office365.com\nserver_port = 587\nserver_starttls = True\nx_custom = kept\nlocal_address = 127.0.0.1\n",
		"[SMTP-2587]\nserver_address = smtp.gmail.com\nserver_port = 465\nlocal_address = 127.0.0.1\n",
		"client_secret = old-secret\n", "access_token = tok\n",
		"[IMAP-2993]\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "[SMTP-2465]") {
		t.Errorf("the moved listener's old section is still there:\n%s", s)
	}
	if i, j := strings.Index(s, "[IMAP-2993]"), strings.Index(s, "[@]"); i > j {
		t.Errorf("new server section should come before the account section:\n%s", s)
	}

	// The named section exists already and a duplicate for the same
	// upstream sits on another port: the duplicate goes.
	existing2 := "[SMTP-2465]\nserver_address = smtp.office365.com\nserver_port = 587\n[SMTP-2999]\nserver_address = smtp.office365.com\nserver_port = 587\n"
	out, err = seedRegistration().Apply([]byte(existing2))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "SMTP-2999") || !strings.Contains(string(out), "[SMTP-2465]") {
		t.Errorf("duplicate listener for the same upstream kept:\n%s", out)
	}
}

func TestApplyRefuses(t *testing.T) {
	seedAsTyped := seedRegistration()
	seedAsTyped.TokenURL = "https://login.microsoftonline.com/TENANT_ID/oauth2/v2.0/token "
	seedAsTyped.PermissionURL = "https://login.microsoftonline.com/TENANT_ID/oauth2/v2.0/authorize "
	seedAsTyped.ClientID = "CLIENT_ID"
	seedAsTyped.ClientSecret = "CLIENT_SECRET"
	_, err := seedAsTyped.Apply(nil)
	var de *DiagnosticsError
	if !errors.As(err, &de) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("placeholders accepted: %v", err)
	}
	for _, flag := range []string{"--oauth2-token-url", "--oauth2-permission-url", "--oauth2-client-id", "--oauth2-client-secret"} {
		if !strings.Contains(err.Error(), flag) || !strings.Contains(err.Error(), "placeholder") {
			t.Errorf("error does not name %s:\n%v", flag, err)
		}
	}
	_, err = seedRegistration().Apply([]byte("[s]\nno delimiter\n"))
	if !errors.Is(err, ErrSyntax) {
		t.Errorf("unreadable existing file: err = %v, want a syntax error", err)
	}
}

func TestNormalize(t *testing.T) {
	r := seedRegistration()
	r.Scope = "  a \t b\n c  "
	r.Account = " "
	r.Normalize()
	if r.TokenURL != "https://login.microsoftonline.com/"+testTenant+"/oauth2/v2.0/token" || r.Scope != "a b c" {
		t.Errorf("not trimmed: %q %q", r.TokenURL, r.Scope)
	}
	if r.Account != "@" || r.LocalAddress != "127.0.0.1" || r.IMAP.LocalPort != 2993 || r.SMTP.LocalPort != 2465 ||
		r.RedirectListenAddress != DefaultRedirectListenAddress || !r.AllowCatchAllAccounts {
		t.Errorf("defaults not filled: %+v", r)
	}
	if r.POP.ServerAddress != "" || r.POP.LocalPort != 0 {
		t.Errorf("POP appeared without being asked for: %+v", r.POP)
	}
}

func TestPresets(t *testing.T) {
	tests := []struct {
		name  string
		r     func() *Registration
		check func(r *Registration) string
	}{
		{"office365 interactive", func() *Registration {
			r := NewRegistration()
			r.Provider, r.TenantID = "office365", testTenant
			return r
		}, func(r *Registration) string {
			if r.IMAP.ServerAddress != "outlook.office365.com" || r.IMAP.ServerPort != 993 || r.SMTP.ServerAddress != "smtp.office365.com" ||
				r.SMTP.ServerPort != 587 || !r.SMTP.StartTLS || r.POP.ServerAddress != "" ||
				r.TokenURL != "https://login.microsoftonline.com/"+testTenant+"/oauth2/v2.0/token" ||
				r.PermissionURL != "https://login.microsoftonline.com/"+testTenant+"/oauth2/v2.0/authorize" ||
				r.Scope != "https://outlook.office365.com/IMAP.AccessAsUser.All https://outlook.office365.com/SMTP.Send offline_access" {
				return "wrong fill"
			}
			return ""
		}},
		{"office365 client_credentials", func() *Registration {
			r := NewRegistration()
			r.Provider, r.TenantID, r.Flow = "office365", testTenant, FlowClientCredentials
			return r
		}, func(r *Registration) string {
			if r.PermissionURL != "" || r.Scope != MicrosoftAppScope {
				return "client_credentials must get .default and no permission_url"
			}
			return ""
		}},
		{"office365 with POP and device flow", func() *Registration {
			r := NewRegistration()
			r.Provider, r.TenantID, r.Flow = "office365", testTenant, FlowDevice
			r.POP.LocalPort = 2110
			return r
		}, func(r *Registration) string {
			if r.POP.ServerAddress != "outlook.office365.com" || r.POP.ServerPort != 995 || r.POP.LocalPort != 2110 ||
				!strings.Contains(r.Scope, "POP.AccessAsUser.All") || !strings.HasSuffix(r.PermissionURL, "/devicecode") {
				return "POP or device not filled"
			}
			return ""
		}},
		{"explicit values win", func() *Registration {
			r := NewRegistration()
			r.Provider = "google"
			r.SMTP = ServerRegistration{ServerAddress: "smtp-relay.gmail.com", ServerPort: 587, StartTLS: true}
			r.Scope = "https://mail.google.com/ openid"
			return r
		}, func(r *Registration) string {
			if r.SMTP.ServerAddress != "smtp-relay.gmail.com" || r.SMTP.ServerPort != 587 || r.Scope != "https://mail.google.com/ openid" ||
				r.IMAP.ServerAddress != "imap.gmail.com" || r.TokenURL != "https://oauth2.googleapis.com/token" {
				return "explicit values lost"
			}
			return ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.r()
			r.Normalize()
			if msg := tt.check(r); msg != "" {
				t.Errorf("%s: %+v", msg, r)
			}
		})
	}
}

func TestRegistrationValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *Registration)
		sev    Severity
		flag   string
		msg    string
	}{
		{"placeholder tenant in URL", func(r *Registration) { r.TokenURL = "https://login.microsoftonline.com/TENANT_ID/oauth2/v2.0/token" }, Error, "--oauth2-token-url", "placeholder TENANT_ID"},
		{"markdown URL", func(r *Registration) {
			r.TokenURL = "[https://login.microsoftonline.com/x/oauth2/v2.0/token](https://login.microsoftonline.com/x/oauth2/v2.0/token%22%5C)"
		}, Error, "--oauth2-token-url", "markdown link"},
		{"http token URL", func(r *Registration) { r.TokenURL = "http://login.example/token" }, Error, "--oauth2-token-url", "must be https"},
		{"vault placeholder", func(r *Registration) { r.RedirectURI = "http://<Your_Vault_Address>/email-oauth2-proxy-authorize/" }, Error, "--redirect-uri", "placeholder <Your_Vault_Address>"},
		{"loopback http redirect is fine", func(r *Registration) { r.RedirectURI = "http://localhost:8801/" }, 0, "", ""},
		{"server port range", func(r *Registration) { r.IMAP.ServerPort = 99999 }, Error, "--imap-server-port", "outside 1-65535"},
		{"local port range", func(r *Registration) { r.SMTP.LocalPort = -1 }, Error, "--smtp-local-port", "outside 1-65535"},
		{"local ports distinct", func(r *Registration) { r.SMTP.LocalPort = 2993 }, Error, "--smtp-local-port", "also the IMAP local port"},
		{"POP without address", func(r *Registration) { r.POP.LocalPort = 2995 }, Error, "--pop-server-address", "no --pop-server-address"},
		{"missing server port", func(r *Registration) { r.IMAP.ServerPort = 0 }, Error, "--imap-server-port", "missing"},
		{"URL as server address", func(r *Registration) { r.IMAP.ServerAddress = "https://outlook.office365.com" }, Error, "--imap-server-address", "host name, not a URL"},
		{"unknown flow", func(r *Registration) { r.Flow = "client_credential" }, Error, "--oauth2-flow", "not a flow"},
		{"flow explained", func(r *Registration) {}, Warning, "--oauth2-flow", "runs the authorization_code flow instead"},
		{"scope typo", func(r *Registration) { r.Scope = "https://outlook.office365.com/SMPT.Send offline_access" }, Warning, "--oauth2-scope", "typo of SMTP.Send"},
		{"auth code without permission URL", func(r *Registration) { r.Flow = FlowAuthorizationCode; r.PermissionURL = "" }, Error, "--oauth2-permission-url", "missing"},
		{"microsoft .default", func(r *Registration) { r.PermissionURL = "" }, Warning, "--oauth2-scope", "accepts only the scope"},
		{"bad account", func(r *Registration) { r.Account = "notifications" }, Error, "--account", "must contain @"},
		{"wildcard local address", func(r *Registration) { r.LocalAddress = "0.0.0.0" }, Warning, "--local-address", "every interface"},
		{"unknown provider", func(r *Registration) { r.Provider = "yahoo" }, Error, "--provider", "unknown provider"},
		{"office365 needs tenant", func(r *Registration) { r.Provider = "office365" }, Error, "--tenant-id", "needs the Entra tenant ID"},
		{"tenant placeholder", func(r *Registration) { r.Provider, r.TenantID = "office365", "TENANT_ID" }, Error, "--tenant-id", "placeholder"},
		{"nothing to register", func(r *Registration) { r.IMAP, r.SMTP = ServerRegistration{}, ServerRegistration{} }, Error, "--imap-server-address", "no server to register"},
		{"587 without starttls", func(r *Registration) { r.SMTP.StartTLS = false }, Warning, "--smtp-server-starttls", "expects STARTTLS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := seedRegistration()
			tt.change(r)
			ds := r.Validate()
			if tt.sev == 0 {
				for _, d := range ds {
					if d.Flag == "--redirect-uri" {
						t.Errorf("unexpected %v", d)
					}
				}
				return
			}
			for _, d := range ds {
				if d.Severity == tt.sev && d.Flag == tt.flag && strings.Contains(d.Message, tt.msg) {
					return
				}
			}
			t.Errorf("want %s %s %q, got:\n%s", tt.sev, tt.flag, tt.msg, dump(ds))
		})
	}
	for _, d := range seedRegistration().Validate() {
		if d.Severity == Error {
			t.Errorf("the seed registration with real values has an error: %v", d)
		}
		if strings.Contains(d.String(), testSecret) {
			t.Errorf("a diagnostic shows the secret: %v", d)
		}
	}
}
