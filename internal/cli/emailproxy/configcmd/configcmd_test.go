package configcmd

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/senhasegura/orbit/internal/cli/emailproxy/service/servicetest"
	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/spf13/cobra"
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

// TestWhichFile: without a file named, show and validate use the file the
// installed unit runs with (as start, stop, status and logs do), else the
// default; a file named by argument or --config wins; show takes FILE like
// validate.
func TestWhichFile(t *testing.T) {
	unitFile := write(t, good)
	named := write(t, strings.Replace(good, "client_id = 6731de76-14a6-49ae-97bc-6eba6914391e", "client_id = named-file-id", 1))
	withUnit := &servicetest.Installer{Files: map[string][]byte{
		"email-oauth2-proxy.service": []byte("[Service]\nExecStart=/usr/local/bin/orbit email-oauth2-proxy serve --config " + unitFile + "\n"),
	}}
	for _, tt := range []struct {
		name      string
		installer *servicetest.Installer
		args      []string
		want      string // "" is the default path
	}{
		{"show, the unit's file", withUnit, []string{"show"}, unitFile},
		{"validate, the unit's file", withUnit, []string{"validate"}, unitFile},
		{"show FILE", withUnit, []string{"show", named}, named},
		{"validate FILE", withUnit, []string{"validate", named}, named},
		{"show --config", withUnit, []string{"show", "--config", named}, named},
		{"no unit: the default", &servicetest.Installer{}, []string{"validate"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			f := testFactory()
			// Swap the verbs' run functions for one that records the
			// resolved file.
			record := func(_ context.Context, o *Options) error {
				o.Installer = tt.installer
				if err := o.resolve(); err != nil {
					return err
				}
				got = o.ConfigPath
				return nil
			}
			cmd := newTestConfig(f, record)
			cmd.SetArgs(tt.args)
			cmd.SetOut(&strings.Builder{})
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			want := tt.want
			if want == "" {
				want = config.DefaultPath
			}
			if got != want {
				t.Errorf("file %q, want %q", got, want)
			}
		})
	}
	// Two different files named is a usage error, not a silent choice.
	cmd := New(testFactory())
	cmd.SetArgs([]string{"show", named, "--config", unitFile})
	cmd.SetOut(&strings.Builder{})
	cmd.SetErr(&strings.Builder{})
	if err := cmd.Execute(); exitcode.Of(err) != exitcode.Usage {
		t.Errorf("FILE and a different --config: %v, want a usage error", err)
	}
}

func newTestConfig(f *factory.Factory, run func(context.Context, *Options) error) *cobra.Command {
	cmd := &cobra.Command{Use: "config"}
	cmd.AddCommand(NewShow(f, run), NewValidate(f, run))
	return cmd
}

// TestValidateNotesAndDisabledAccounts: the Python proxy's sample file is
// "invalid" only through one account, which the summary names as disabled
// while saying serve runs the file; notes appear only with --strict.
func TestValidateNotesAndDisabledAccounts(t *testing.T) {
	path := "../../../../pkg/emailproxy/config/testdata/python-sample/emailproxy.config"
	io, _, out, _ := iostreams.Test()
	err := Validate(context.Background(), &Options{IO: io, ConfigPath: path})
	if exitcode.Of(err) != exitcode.Invalid {
		t.Errorf("exit %d, want %d", exitcode.Of(err), exitcode.Invalid)
	}
	text := out.String()
	for _, want := range []string{"serve runs it with 1 account(s) disabled: [your.email@fastmail.com]", "note(s) (--strict lists them)", "sample file's placeholder"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "note:") || strings.Contains(text, "documentation") || strings.Contains(text, "[Server setup]") {
		t.Errorf("notes listed without --strict:\n%s", text)
	}

	io, _, out, _ = iostreams.Test()
	_ = Validate(context.Background(), &Options{IO: io, ConfigPath: path, Strict: true, Output: output.JSON})
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.Serves || len(rep.DisabledAccounts) != 1 || rep.Notes == 0 {
		t.Errorf("report: serves %v, disabled %v, %d notes", rep.Serves, rep.DisabledAccounts, rep.Notes)
	}
	notes := 0
	for _, d := range rep.Diagnostics {
		if d.Severity == config.Note {
			notes++
		}
	}
	if notes != rep.Notes {
		t.Errorf("--strict listed %d of %d notes", notes, rep.Notes)
	}

	// --strict fails on warnings too.
	io, _, _, _ = iostreams.Test()
	warned := write(t, strings.Replace(good, "local_address = 127.0.0.1\n", "", 1))
	if err := Validate(context.Background(), &Options{IO: io, ConfigPath: warned}); err != nil {
		t.Errorf("warnings only: %v", err)
	}
	if err := Validate(context.Background(), &Options{IO: io, ConfigPath: warned, Strict: true}); exitcode.Of(err) != exitcode.Invalid {
		t.Errorf("warnings with --strict: %v, want exit 4", err)
	}
}

func testFactory() *factory.Factory {
	io, _, _, _ := iostreams.Test()
	return factory.New(io)
}
