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
