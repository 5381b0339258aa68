package accountstate_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/accountstate"
	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

const cfgText = `[IMAP-1993]
server_address = imap.example.com
server_port = 993

[alice@example.com]
permission_url = https://login.example.com/authorize
token_url = https://login.example.com/token
oauth2_scope = https://mail.example.com/.default
oauth2_flow = client_credentials
client_id = id
client_secret = secret
`

func TestMergeReportsSourcesItCannotRead(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "emailproxy.config")
	cache := filepath.Join(dir, "tokens.cache")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		cache      string // "" leaves no cache file
		cfg        *config.Config
		wantErrors int
		wantAcct   string
	}{
		{name: "no cache yet", cfg: cfg, wantAcct: "alice@example.com not-used config"},
		{name: "damaged cache", cache: "no section\n[unclosed\n", cfg: cfg, wantErrors: 1, wantAcct: "alice@example.com not-used config"},
		// The caller reports the configuration's own failure; Merge does
		// not say it twice.
		{name: "configuration not loaded", cfg: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(cache)
			if tt.cache != "" {
				if err := os.WriteFile(cache, []byte(tt.cache), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			r := accountstate.Merge(accountstate.Sources{
				StatusFile: filepath.Join(dir, "none.json"), TokenCache: cache,
				ConfigPath: cfgPath, Config: tt.cfg, Known: true, Now: time.Now(),
			})
			if len(r.Errors) != tt.wantErrors {
				t.Errorf("errors = %v, want %d", r.Errors, tt.wantErrors)
			}
			for _, e := range r.Errors {
				if !strings.Contains(e.Error(), cache) {
					t.Errorf("error %q does not name the file", e)
				}
			}
			var got []string
			for _, a := range r.Accounts {
				got = append(got, a.Name+" "+a.State+" "+a.Source)
			}
			if strings.Join(got, ";") != tt.wantAcct {
				t.Errorf("accounts = %q, want %q", got, tt.wantAcct)
			}
			if r.StatusFile.Error != "the engine has not written it yet" {
				t.Errorf("status file error = %q", r.StatusFile.Error)
			}
		})
	}
}

// An account whose own section has errors is disabled by the engine; status
// must say so (and why) whatever the status file says of it, while the
// other accounts keep their states.
func TestMergeMarksDisabledAccounts(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "emailproxy.config")
	// client_credentials accounts without a permission URL: only bob's
	// token_url is wrong.
	good := strings.Replace(cfgText, "permission_url = https://login.example.com/authorize\n", "", 1)
	text := good + `
[bob@example.com]
token_url = not a url
oauth2_scope = https://mail.example.com/.default
oauth2_flow = client_credentials
client_id = id
client_secret = secret
`
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	statusPath := filepath.Join(dir, "status.json")
	if err := os.WriteFile(statusPath, []byte(`{"version":1,"pid":77,"updated":"2026-01-02T08:59:00Z","accounts":{
		"bob@example.com":{"state":"authorised","flow":"client_credentials","token_expiry":"2026-01-02T10:00:00Z"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := accountstate.Merge(accountstate.Sources{StatusFile: statusPath, ConfigPath: cfgPath, Config: cfg,
		EnginePID: 77, Known: true, Now: time.Date(2026, 1, 2, 9, 0, 0, 0, time.UTC)})
	got := map[string]accountstate.Account{}
	for _, a := range r.Accounts {
		got[a.Name] = a
	}
	if a := got["alice@example.com"]; a.State != accountstate.StateNotUsed {
		t.Errorf("alice: state %q, want %q", a.State, accountstate.StateNotUsed)
	}
	b := got["bob@example.com"]
	if b.State != accountstate.StateDisabled || !strings.Contains(b.Reason, "[bob@example.com]") || !strings.Contains(b.Reason, "token_url") {
		t.Errorf("bob: state %q reason %q, want disabled naming the section and token_url", b.State, b.Reason)
	}

	// A file whose only account is broken is refused as a whole: nothing
	// is "disabled", the caller reports the file.
	only := strings.Replace(good, "token_url = https://login.example.com/token", "token_url = not a url", 1)
	if err := os.WriteFile(cfgPath, []byte(only), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err = config.Load(cfgPath); err != nil {
		t.Fatal(err)
	}
	r = accountstate.Merge(accountstate.Sources{ConfigPath: cfgPath, Config: cfg, Now: time.Now()})
	for _, a := range r.Accounts {
		if a.State == accountstate.StateDisabled {
			t.Errorf("%s disabled in a file refused as a whole", a.Name)
		}
	}
}
