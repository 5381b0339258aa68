package configcmd

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/output"
)

const good = `[emailproxy]
allow_catch_all_accounts = True
[IMAP-2993]
server_address = outlook.office365.com
server_port = 993
local_address = 127.0.0.1
[@]
redirect_uri = https://vault.example.com/email-oauth2-proxy-authorize/
redirect_listen_address = http://127.0.0.1:8801/
token_url = https://login.microsoftonline.com/0f3e3b5c-1a2b-4c3d-8e9f-0123456789ab/oauth2/v2.0/token
permission_url = https://login.microsoftonline.com/0f3e3b5c-1a2b-4c3d-8e9f-0123456789ab/oauth2/v2.0/authorize
oauth2_scope = https://outlook.office365.com/IMAP.AccessAsUser.All offline_access
client_id = 6731de76-14a6-49ae-97bc-6eba6914391e
client_secret = s3cr3t-value-xyz
oauth2_flow = authorization_code
access_token = gAAAAAaccesstokenvalue
`

func write(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "emailproxy.config")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidate(t *testing.T) {
	seed, err := os.ReadFile("../../../../pkg/emailproxy/config/testdata/seed-example.config")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		content  string
		code     exitcode.Code
		contains []string
	}{
		{"good file", good, exitcode.OK, []string{"valid"}},
		{"the documentation's example", string(seed), exitcode.Invalid, []string{"did you mean redirect_listen_address", "SMTP.Send", "TENANT_ID", "invalid ("}},
		{"warnings only", strings.Replace(good, "local_address = 127.0.0.1\n", "", 1), exitcode.OK, []string{"warning", "local_address"}},
		{"syntax error", "[emailproxy\nx", exitcode.Invalid, []string{"line 1"}},
	}
	for _, tt := range tests {
		for _, format := range []output.Format{output.Text, output.JSON} {
			t.Run(tt.name+"/"+string(format), func(t *testing.T) {
				io, _, out, _ := iostreams.Test()
				err := Validate(context.Background(), &Options{IO: io, ConfigPath: write(t, tt.content), Output: format})
				if got := exitcode.Of(err); got != tt.code {
					t.Fatalf("exit %d, want %d (%v)\n%s", got, tt.code, err, out)
				}
				if format == output.JSON {
					var rep Report
					if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
						t.Fatalf("not JSON: %v\n%s", err, out)
					}
					if rep.Valid != (tt.code == exitcode.OK) {
						t.Errorf("valid = %v", rep.Valid)
					}
					return
				}
				for _, c := range tt.contains {
					if !strings.Contains(out.String(), c) {
						t.Errorf("output lacks %q:\n%s", c, out)
					}
				}
				if strings.Contains(out.String(), "\x1b[") {
					t.Errorf("colour codes in non-TTY output")
				}
			})
		}
	}
	io, _, _, _ := iostreams.Test()
	err = Validate(context.Background(), &Options{IO: io, ConfigPath: filepath.Join(t.TempDir(), "missing")})
	if exitcode.Of(err) != exitcode.Invalid || !strings.Contains(err.Error(), "register") {
		t.Errorf("missing file: %v", err)
	}
}

func TestShowMasksSecrets(t *testing.T) {
	path := write(t, good)
	for _, format := range []output.Format{output.Text, output.JSON} {
		io, _, out, _ := iostreams.Test()
		if err := Show(context.Background(), &Options{IO: io, ConfigPath: path, Output: format}); err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{"s3cr3t-value-xyz", "gAAAAAaccesstokenvalue"} {
			if strings.Contains(out.String(), secret) {
				t.Errorf("%s: show reveals %q", format, secret)
			}
		}
		if !strings.Contains(out.String(), "client_id") || !strings.Contains(out.String(), "********") {
			t.Errorf("%s: show output incomplete:\n%s", format, out)
		}
	}
}

func TestValidateListsProblemsInFileOrder(t *testing.T) {
	seed, err := os.ReadFile("../../../../pkg/emailproxy/config/testdata/seed-example.config")
	if err != nil {
		t.Fatal(err)
	}
	io, _, out, _ := iostreams.Test()
	_ = Validate(context.Background(), &Options{IO: io, ConfigPath: write(t, string(seed)), Output: output.JSON})
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Diagnostics) < 5 {
		t.Fatalf("only %d diagnostics for the documentation's example", len(rep.Diagnostics))
	}
	for i := 1; i < len(rep.Diagnostics); i++ {
		if rep.Diagnostics[i].Line < rep.Diagnostics[i-1].Line {
			t.Errorf("diagnostic %d (line %d) listed after line %d", i, rep.Diagnostics[i].Line, rep.Diagnostics[i-1].Line)
		}
	}
}

// TestValidateFileModes: validate reports a token store others can read
// and a configuration others can change as errors (exit 4) with the chmod
// that fixes them.
func TestValidateFileModes(t *testing.T) {
	cfg := write(t, good)
	tok := filepath.Join(t.TempDir(), "tokens.cache")
	if err := os.WriteFile(tok, []byte("[a@x]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
		want string
	}{
		{tok, 0o644, "the token store " + tok},
		{cfg, 0o666, "the configuration file " + cfg + " is writable"},
	} {
		if err := os.Chmod(c.path, c.mode); err != nil {
			t.Fatal(err)
		}
		io, _, out, _ := iostreams.Test()
		err := Validate(context.Background(), &Options{IO: io, ConfigPath: cfg, TokenPath: tok})
		if exitcode.Of(err) != exitcode.Invalid || !strings.Contains(out.String(), c.want) || !strings.Contains(out.String(), "fix: chmod 600 "+c.path) {
			t.Errorf("%s at %v: exit %d\n%s", c.path, c.mode, exitcode.Of(err), out)
		}
		if err := os.Chmod(c.path, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Readable by all, with a client secret: a warning only.
	if err := os.Chmod(cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	io, _, out, _ := iostreams.Test()
	err := Validate(context.Background(), &Options{IO: io, ConfigPath: cfg, TokenPath: tok})
	if exitcode.Of(err) != exitcode.OK || !strings.Contains(out.String(), "warning: the configuration file") {
		t.Errorf("client secret readable by all: exit %d\n%s", exitcode.Of(err), out)
	}
}
