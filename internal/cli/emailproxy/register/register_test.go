package register_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/senhasegura/orbit/internal/cli/emailproxy/register"
	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/cli/root"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/testenv/golden"
)

const (
	tenant = "0f3e3b5c-1a2b-4c3d-8e9f-0123456789ab"
	client = "6731de76-14a6-49ae-97bc-6eba6914391e"
	secret = "Qx8~R2.vF_kP9sLmN3tZ7wYbC4dE6gH1jK5nA0uV"
)

// seedArgs is the product documentation's command, verbatim (quotes and
// stray spaces included), with its placeholders replaced when real is set.
func seedArgs(real bool) []string {
	t, c, s := "TENANT_ID", "CLIENT_ID", "CLIENT_SECRET"
	if real {
		t, c, s = tenant, client, secret
	}
	return []string{
		"--imap-server-address=outlook.office365.com",
		"--imap-server-port=993",
		"--smtp-server-address=smtp.office365.com",
		"--smtp-server-port=587",
		"--smtp-server-starttls",
		"--oauth2-token-url=https://login.microsoftonline.com/" + t + "/oauth2/v2.0/token ",
		"--oauth2-permission-url=https://login.microsoftonline.com/" + t + "/oauth2/v2.0/authorize ",
		"--oauth2-scope= https://outlook.office365.com/IMAP.AccessAsUser.All https://outlook.office365.com/SMTP.Send offline_access ",
		"--oauth2-flow=client_credentials",
		"--oauth2-client-id=" + c,
		"--oauth2-client-secret=" + s,
		"--force",
	}
}

type result struct {
	code           exitcode.Code
	stdout, stderr string
}

func runCmd(t *testing.T, tty bool, stdin string, args ...string) result {
	t.Helper()
	return runTerm(t, tty, false, 0, stdin, args...)
}

// runTerm runs register on a terminal (tty) width columns wide (0:
// unknown), with NO_COLOR when noColor.
func runTerm(t *testing.T, tty, noColor bool, width int, stdin string, args ...string) result {
	t.Helper()
	io, in, out, errOut := iostreams.Test()
	io.SetTTY(tty, tty, tty)
	io.SetNoColor(noColor)
	in.WriteString(stdin)
	f := factory.New(io)
	f.TerminalWidth = func() int { return width }
	f.Hostname = func() (string, error) { return "vault.example.com", nil }
	f.Getenv = func(string) string { return "" }
	t.Setenv("ORBIT_SETTINGS", os.DevNull)
	cmd := root.New(f)
	// The unit is tested in the systemd sandbox; here only the file matters.
	cmd.SetArgs(append([]string{"email-oauth2-proxy", "register", "--no-service"}, args...))
	err := cmd.ExecuteContext(context.Background())
	if err != nil {
		errOut.WriteString(err.Error())
	}
	return result{exitcode.Of(err), out.String(), errOut.String()}
}

func TestSeedCommandWithPlaceholdersIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "emailproxy.config")
	r := runCmd(t, false, "", append(seedArgs(false), "--config", path)...)
	if r.code != exitcode.Invalid {
		t.Fatalf("exit %d, want %d; stderr:\n%s", r.code, exitcode.Invalid, r.stderr)
	}
	for _, want := range []string{"TENANT_ID", "CLIENT_ID", "CLIENT_SECRET", "--oauth2-token-url", "--oauth2-client-id"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("error does not name %s:\n%s", want, r.stderr)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a refused registration created %s", path)
	}
	// The count matches the lines listed, and the errors come first.
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if !strings.HasPrefix(lines[0], "4 errors, 2 warnings; nothing was written:") {
		t.Errorf("headline %q, want the errors and warnings counted", lines[0])
	}
	var kinds []string
	for _, l := range lines[1:] {
		kinds = append(kinds, strings.Fields(l)[0])
	}
	if got := strings.Join(kinds, " "); got != "error: error: error: error: warning: warning:" {
		t.Errorf("listed %s; want the 4 errors, then the 2 warnings", got)
	}
}

func TestSeedCommandWritesTheDocumentedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "emailproxy.config")
	r := runCmd(t, false, "", append(seedArgs(true), "--config", path)...)
	if r.code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "seed.golden", data)
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	// It says which flow will really run, and why an admin must visit a URL.
	if !strings.Contains(r.stdout, "authorization_code will run because a permission URL is set") {
		t.Errorf("summary does not explain the flow:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "logs --auth-url") {
		t.Errorf("next steps do not point at logs --auth-url:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout+r.stderr, secret) {
		t.Errorf("the client secret appears in the output")
	}
}

func TestBadInputs(t *testing.T) {
	base := []string{"--provider", "office365", "--tenant-id", tenant, "--oauth2-client-id", client, "--oauth2-client-secret", secret}
	tests := []struct {
		name string
		args []string
		code exitcode.Code
		want string
	}{
		{"port out of range", []string{"--imap-server-port", "70000"}, exitcode.Invalid, "--imap-server-port"},
		{"port zero", []string{"--smtp-local-port", "0"}, exitcode.Invalid, "--smtp-local-port"},
		{"same local ports", []string{"--imap-local-port", "2465"}, exitcode.Invalid, "2465"},
		{"unknown flow", []string{"--oauth2-flow", "implicit"}, exitcode.Invalid, "--oauth2-flow"},
		{"http token url", []string{"--oauth2-token-url", "http://login.example.com/token"}, exitcode.Invalid, "--oauth2-token-url"},
		{"unparsable url", []string{"--oauth2-permission-url", "https://[bad"}, exitcode.Invalid, "--oauth2-permission-url"},
		{"vault placeholder", []string{"--redirect-uri", "http://<Your_Vault_Address>/email-oauth2-proxy-authorize/"}, exitcode.Invalid, "Your_Vault_Address"},
		{"bad account", []string{"--account", "alice"}, exitcode.Invalid, "--account"},
		{"unknown provider", []string{"--provider", "yahoo"}, exitcode.Invalid, "yahoo"},
		{"not a number", []string{"--imap-server-port", "nine"}, exitcode.Usage, "--imap-server-port"},
		{"unknown flag", []string{"--imap-server"}, exitcode.Usage, "unknown flag"},
		{"extra argument", []string{"oops"}, exitcode.Usage, "unknown command"},
		{"two secret sources", []string{"--oauth2-client-secret-file", "/dev/null"}, exitcode.Usage, "both given"},
		{"empty secret file", []string{"--oauth2-client-secret", "", "--oauth2-client-secret-file", "/dev/null"}, exitcode.Invalid, "holds no secret"},
		{"missing secret file", []string{"--oauth2-client-secret", "", "--oauth2-client-secret-file", "/nonexistent/secret"}, exitcode.Invalid, "/nonexistent/secret does not exist; write the secret"},
		{"secret file is a directory", []string{"--oauth2-client-secret", "", "--oauth2-client-secret-file", "/"}, exitcode.Invalid, "name a file that holds the secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "emailproxy.config")
			orig := []byte("# hand-written\n[emailproxy]\nallow_catch_all_accounts = True\n")
			if err := os.WriteFile(path, orig, 0o600); err != nil {
				t.Fatal(err)
			}
			args := append(append([]string{"--config", path, "--force"}, base...), tt.args...)
			r := runCmd(t, false, "", args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("exit %d, want %d; stderr should mention %q:\n%s", r.code, tt.code, tt.want, r.stderr)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, orig) {
				t.Errorf("a failed run changed the file:\n%s", got)
			}
			if strings.Contains(r.stdout+r.stderr, secret) {
				t.Errorf("the client secret appears in the output")
			}
		})
	}
}

func TestExistingFile(t *testing.T) {
	args := func(path string, extra ...string) []string {
		return append([]string{"--config", path, "--provider", "office365", "--tenant-id", tenant, "--oauth2-client-id", client, "--oauth2-client-secret", secret}, extra...)
	}
	path := filepath.Join(t.TempDir(), "emailproxy.config")
	if r := runCmd(t, false, "", args(path)...); r.code != 0 {
		t.Fatalf("first register: exit %d: %s", r.code, r.stderr)
	}
	// The proxy writes tokens and an admin adds a comment and a section.
	first, _ := os.ReadFile(path)
	edited := "# site notes: keep me\n" + string(first) +
		"token_salt = c2FsdHNhbHRzYWx0c2FsdA==\naccess_token = gAAAAAtoken\n\n[alice@example.com]\nclient_id = other\n"
	if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}

	// Non-TTY without --force: refused, naming --force, file untouched.
	r := runCmd(t, false, "", args(path, "--oauth2-flow", "device")...)
	if r.code != exitcode.Exists || !strings.Contains(r.stderr, "--force") {
		t.Fatalf("non-TTY overwrite: exit %d, stderr %q", r.code, r.stderr)
	}
	// TTY, answer no: refused, untouched.
	r = runCmd(t, true, "n\n", args(path, "--oauth2-flow", "device")...)
	if r.code != exitcode.Exists {
		t.Fatalf("TTY answer no: exit %d", r.code)
	}
	if got, _ := os.ReadFile(path); string(got) != edited {
		t.Fatalf("refused runs changed the file")
	}
	// TTY, answer yes: written; comments, tokens and other sections kept.
	r = runCmd(t, true, "y\n", args(path, "--oauth2-flow", "device")...)
	if r.code != 0 {
		t.Fatalf("TTY answer yes: exit %d: %s", r.code, r.stderr)
	}
	got, _ := os.ReadFile(path)
	for _, keep := range []string{"# site notes: keep me", "access_token = gAAAAAtoken", "token_salt = c2Fsd", "[alice@example.com]", "oauth2_flow = device"} {
		if !strings.Contains(string(got), keep) {
			t.Errorf("re-registering lost %q:\n%s", keep, got)
		}
	}
	if bak, err := os.ReadFile(path + ".bak"); err != nil || string(bak) != edited {
		t.Errorf("backup missing or wrong (%v)", err)
	}
	if !strings.Contains(r.stdout, "╭") {
		t.Errorf("TTY output is not a panel:\n%s", r.stdout)
	}
}

func TestSecretSources(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		stdin string
		env   string
		args  []string
	}{
		{"file", "", "", []string{"--oauth2-client-secret-file", secretFile}},
		{"stdin via file flag", secret + "\n", "", []string{"--oauth2-client-secret-file", "-"}},
		{"stdin via secret flag", secret + "\n", "", []string{"--oauth2-client-secret", "-"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".config")
			args := append([]string{"--config", path, "--provider", "office365", "--tenant-id", tenant, "--oauth2-client-id", client}, tt.args...)
			r := runCmd(t, false, tt.stdin, args...)
			if r.code != 0 {
				t.Fatalf("case %d: exit %d: %s", i, r.code, r.stderr)
			}
			got, _ := os.ReadFile(path)
			if !strings.Contains(string(got), "client_secret = "+secret+"\n") {
				t.Errorf("secret not written from %s:\n%s", tt.name, got)
			}
		})
	}
}

func TestDryRunMasksSecretsAndWritesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "emailproxy.config")
	for _, format := range []string{"text", "json"} {
		r := runCmd(t, false, "", append(seedArgs(true), "--config", path, "--dry-run", "--output", format)...)
		if r.code != 0 {
			t.Fatalf("%s: exit %d: %s", format, r.code, r.stderr)
		}
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("%s: dry run shows the secret", format)
		}
		if !strings.Contains(r.stdout, "client_secret = ********") {
			t.Errorf("%s: dry run does not show the masked key:\n%s", format, r.stdout)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("%s: dry run wrote the file", format)
		}
	}
}

func TestPresetFillsAndExplicitFlagsWin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "emailproxy.config")
	r := runCmd(t, false, "", "--config", path, "--provider", "office365", "--tenant-id", tenant,
		"--oauth2-client-id", client, "--oauth2-client-secret", secret, "--smtp-server-port", "465")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	got, _ := os.ReadFile(path)
	for _, want := range []string{
		"server_address = outlook.office365.com",
		"token_url = https://login.microsoftonline.com/" + tenant + "/oauth2/v2.0/token",
		"[SMTP-2465]\nserver_address = smtp.office365.com\nserver_port = 465\n",
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
}

func TestSummaryPanelOnlyWhereItHelps(t *testing.T) {
	tests := []struct {
		name         string
		tty, noColor bool
		width        int
		panel        bool
	}{
		{"pipe", false, false, 0, false},
		{"wide terminal", true, false, 200, true},
		{"terminal with NO_COLOR", true, true, 200, false},
		{"80-column terminal, too narrow for the panel", true, false, 80, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "emailproxy.config")
			r := runTerm(t, tt.tty, tt.noColor, tt.width, "", "--config", path, "--provider", "office365",
				"--tenant-id", tenant, "--oauth2-client-id", client, "--oauth2-client-secret", secret)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if got := strings.Contains(r.stdout, "╭"); got != tt.panel {
				t.Errorf("panel drawn: %v, want %v:\n%s", got, tt.panel, r.stdout)
			}
			if !tt.panel && !strings.Contains(r.stdout, "Next steps:\n  1. ") {
				t.Errorf("plain layout lacks the numbered next steps:\n%s", r.stdout)
			}
			if (tt.noColor || !tt.tty) && strings.Contains(r.stdout, "\x1b[") {
				t.Errorf("escape codes without colour:\n%q", r.stdout)
			}
		})
	}
}

// TestUnreadableSecretFile: a secret file this user may not read is a
// permission problem (exit 10) that says to run as root, not an invalid
// flag. The read is injected because the tests run as root.
func TestUnreadableSecretFile(t *testing.T) {
	io, _, out, errOut := iostreams.Test()
	path := filepath.Join(t.TempDir(), "emailproxy.config")
	o := &register.Options{
		IO: io, ConfigPath: path, Provider: "google", SecretFile: "/root/client-secret",
		Values: register.Values{ClientID: "1-a.apps.googleusercontent.com", RedirectURI: "https://vault.example.com/email-oauth2-proxy-authorize/"},
		ReadFile: func(name string) ([]byte, error) {
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
		},
	}
	err := register.Run(context.Background(), o)
	if exitcode.Of(err) != exitcode.Permission {
		t.Fatalf("exit %d, want %d: %v", exitcode.Of(err), exitcode.Permission, err)
	}
	if msg := err.Error(); !strings.Contains(msg, "cannot read /root/client-secret: permission denied") || !strings.Contains(msg, "run as root") {
		t.Errorf("error does not say what and how to fix: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the file was written")
	}
	if out.Len()+errOut.Len() != 0 {
		t.Errorf("printed %q %q", out, errOut)
	}
}

// TestNextStepsNameTheFile: after writing a file elsewhere than the
// default, the printed start and status commands name it, so pasting them
// acts on that file and not on the default one.
func TestNextStepsNameTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site b", "emailproxy.config")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	r := runCmd(t, false, "", "--config", path, "--provider", "office365", "--tenant-id", tenant,
		"--oauth2-client-id", client, "--oauth2-client-secret", secret)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	quoted := "'" + path + "'"
	for _, want := range []string{"orbit email-oauth2-proxy start --config " + quoted, "orbit email-oauth2-proxy status --config " + quoted} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("next steps lack %q:\n%s", want, r.stdout)
		}
	}
}

// TestHelpExamplesWork runs every example of register's help as printed
// (the secret file replaced by a real one, the file written to a temporary
// path): an example an admin pastes must not be refused.
func TestHelpExamplesWork(t *testing.T) {
	io, _, _, _ := iostreams.Test()
	cmd := register.New(factory.New(io), nil)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "client-secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	examples := parseExamples(cmd.Example)
	if len(examples) < 2 {
		t.Fatalf("found %d examples in:\n%s", len(examples), cmd.Example)
	}
	for i, words := range examples {
		if len(words) < 3 || words[0] != "orbit" || words[1] != "email-oauth2-proxy" || words[2] != "register" {
			t.Fatalf("example %d is not a register command: %q", i, words)
		}
		args := []string{"--config", filepath.Join(dir, fmt.Sprintf("ex%d.config", i))}
		for _, w := range words[3:] {
			args = append(args, strings.ReplaceAll(w, "/root/client-secret", secretFile))
		}
		r := runCmd(t, false, secret+"\n", args...)
		if r.code != 0 || r.stderr != "" {
			t.Errorf("example %d: exit %d, stderr:\n%s\nargs %q", i, r.code, r.stderr, args)
		}
	}
}

// parseExamples splits cobra's Example text into commands: comments
// skipped, backslash continuations joined, double quotes honoured.
func parseExamples(text string) [][]string {
	var cmds [][]string
	var cur []string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cont := strings.HasSuffix(line, "\\")
		line = strings.TrimSuffix(line, "\\")
		var word strings.Builder
		inWord, quoted := false, false
		for _, r := range line {
			switch {
			case r == '"':
				quoted, inWord = !quoted, true
			case r == ' ' && !quoted:
				if inWord {
					cur = append(cur, word.String())
					word.Reset()
					inWord = false
				}
			default:
				word.WriteRune(r)
				inWord = true
			}
		}
		if inWord {
			cur = append(cur, word.String())
		}
		if !cont {
			cmds = append(cmds, cur)
			cur = nil
		}
	}
	return cmds
}

// TestRegistersTheProtocolsAsked: a flag's default is not the user giving
// it, so IMAP flags alone register IMAP alone (they used to fail with "SMTP
// server details were given but no --smtp-server-address", the default SMTP
// port counting as given), and likewise for SMTP and POP.
func TestRegistersTheProtocolsAsked(t *testing.T) {
	acct := []string{"--account", "alice@example.com", "--oauth2-flow", "password",
		"--oauth2-token-url", "https://login.microsoftonline.com/" + tenant + "/oauth2/v2.0/token",
		"--oauth2-scope", "https://outlook.office365.com/IMAP.AccessAsUser.All offline_access",
		"--oauth2-client-id", client, "--oauth2-client-secret", secret}
	tests := []struct {
		name      string
		args      []string
		want, not []string
	}{
		{"IMAP only", []string{"--imap-server-address", "outlook.office365.com"},
			[]string{"[IMAP-2993]\nserver_address = outlook.office365.com\nserver_port = 993\n"}, []string{"[SMTP-", "[POP-"}},
		{"IMAP only, ports given", []string{"--imap-server-address", "outlook.office365.com", "--imap-server-port", "1993", "--imap-local-port", "3993"},
			[]string{"[IMAP-3993]\nserver_address = outlook.office365.com\nserver_port = 1993\n"}, []string{"[SMTP-", "[POP-"}},
		{"SMTP only", []string{"--smtp-server-address", "smtp.office365.com", "--smtp-server-starttls"},
			[]string{"[SMTP-2465]\nserver_address = smtp.office365.com\nserver_port = 587\n"}, []string{"[IMAP-", "[POP-"}},
		{"POP only", []string{"--pop-server-address", "outlook.office365.com"},
			[]string{"[POP-2995]\nserver_address = outlook.office365.com\nserver_port = 995\n"}, []string{"[IMAP-", "[SMTP-"}},
		{"IMAP and SMTP", []string{"--imap-server-address", "outlook.office365.com", "--smtp-server-address", "smtp.office365.com", "--smtp-server-starttls"},
			[]string{"[IMAP-2993]", "[SMTP-2465]"}, []string{"[POP-"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "emailproxy.config")
			r := runCmd(t, false, "", append(append([]string{"--config", path}, tt.args...), acct...)...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			got, _ := os.ReadFile(path)
			for _, w := range tt.want {
				if !strings.Contains(string(got), w) {
					t.Errorf("missing %q in:\n%s", w, got)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(string(got), n) {
					t.Errorf("%s written although not asked for:\n%s", n, got)
				}
			}
		})
	}
	// Details of a protocol without its server are still a mistake.
	r := runCmd(t, false, "", append([]string{"--config", filepath.Join(t.TempDir(), "x.config"),
		"--imap-server-address", "outlook.office365.com", "--smtp-local-port", "2525"}, acct...)...)
	if r.code != exitcode.Invalid || !strings.Contains(r.stderr, "SMTP server details were given but no --smtp-server-address") {
		t.Errorf("--smtp-local-port without a server: exit %d\n%s", r.code, r.stderr)
	}
}

// TestRedirectOnlyForBrowserFlows: flows that open no browser get no
// redirect_uri or redirect_listen_address, and no warning about them; the
// authorization_code flow still gets both defaults.
func TestRedirectOnlyForBrowserFlows(t *testing.T) {
	base := []string{"--imap-server-address", "outlook.office365.com", "--account", "alice@example.com",
		"--oauth2-token-url", "https://login.microsoftonline.com/" + tenant + "/oauth2/v2.0/token",
		"--oauth2-client-id", client, "--oauth2-client-secret", secret}
	for _, tt := range []struct {
		flow, scope string
		redirect    bool
	}{
		{"password", "https://outlook.office365.com/IMAP.AccessAsUser.All offline_access", false},
		{"client_credentials", "https://outlook.office365.com/.default", false},
		{"service_account", "https://mail.google.com/", false},
		{"device", "https://outlook.office365.com/IMAP.AccessAsUser.All offline_access", false},
		{"authorization_code", "https://outlook.office365.com/IMAP.AccessAsUser.All offline_access", true},
	} {
		t.Run(tt.flow, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "emailproxy.config")
			args := append([]string{"--config", path, "--oauth2-flow", tt.flow, "--oauth2-scope", tt.scope}, base...)
			if tt.flow == "authorization_code" || tt.flow == "device" {
				args = append(args, "--oauth2-permission-url", "https://login.microsoftonline.com/"+tenant+"/oauth2/v2.0/authorize")
			}
			r := runCmd(t, false, "", args...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			got, _ := os.ReadFile(path)
			has := strings.Contains(string(got), "redirect_uri = http://vault.example.com/email-oauth2-proxy-authorize/") &&
				strings.Contains(string(got), "redirect_listen_address = http://127.0.0.1:8801/")
			if has != tt.redirect || (!tt.redirect && strings.Contains(string(got), "redirect")) {
				t.Errorf("redirect settings written: %v, want %v:\n%s", has, tt.redirect, got)
			}
			if strings.Contains(r.stdout+r.stderr, "plain http") != tt.redirect {
				t.Errorf("plain-http warning shown: %v, want %v:\n%s%s", !tt.redirect, tt.redirect, r.stdout, r.stderr)
			}
		})
	}
	// Re-registering an account with a flow without a browser removes the
	// redirect settings the earlier flow needed.
	path := filepath.Join(t.TempDir(), "emailproxy.config")
	scope := []string{"--oauth2-scope", "https://outlook.office365.com/IMAP.AccessAsUser.All offline_access"}
	if r := runCmd(t, false, "", append(append([]string{"--config", path, "--oauth2-permission-url", "https://login.microsoftonline.com/" + tenant + "/oauth2/v2.0/authorize"}, scope...), base...)...); r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if r := runCmd(t, false, "", append(append([]string{"--config", path, "--force", "--oauth2-flow", "password"}, scope...), base...)...); r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if got, _ := os.ReadFile(path); strings.Contains(string(got), "redirect") {
		t.Errorf("redirect settings kept for the password flow:\n%s", got)
	}
}

// TestRegisterIntoThePythonSampleFile: an error in another account section
// (the sample's Fastmail example has no redirect_uri) disables that account
// in serve and is reported here, but does not refuse the registration.
func TestRegisterIntoThePythonSampleFile(t *testing.T) {
	sample, err := os.ReadFile("../../../../pkg/emailproxy/config/testdata/python-sample/emailproxy.config")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "emailproxy.config")
	if err := os.WriteFile(path, sample, 0o600); err != nil {
		t.Fatal(err)
	}
	r := runCmd(t, false, "", "--config", path, "--force", "--account", "alice@example.com", "--oauth2-flow", "password",
		"--imap-server-address", "outlook.office365.com", "--imap-local-port", "3993",
		"--oauth2-token-url", "https://login.microsoftonline.com/"+tenant+"/oauth2/v2.0/token",
		"--oauth2-scope", "https://outlook.office365.com/IMAP.AccessAsUser.All offline_access",
		"--oauth2-client-id", client, "--oauth2-client-secret", secret)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout+r.stderr, "this account is disabled until fixed: redirect_uri is missing") {
		t.Errorf("the Fastmail example's problem is not reported:\n%s%s", r.stdout, r.stderr)
	}
	if got, _ := os.ReadFile(path); !strings.Contains(string(got), "[alice@example.com]") || !strings.Contains(string(got), "[Server setup]") {
		t.Errorf("the account was not added to the sample file as it is:\n%s", got)
	}
}

// TestRegisterIntoABrokenFile: a file edited by hand into a syntax error is
// left alone (exit 4), and each problem is named by the file's path and
// line, as config validate and serve name them; before, register wrote
// "<config>:9:" after the path.
func TestRegisterIntoABrokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "emailproxy.config")
	broken := "[IMAP-2993]\nserver_address = a\nserver_port = 993\n[SMTP-2465\nserver_address = b\n"
	if err := os.WriteFile(path, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runCmd(t, false, "", "--config", path, "--provider", "google", "--oauth2-client-id", client, "--oauth2-client-secret", secret,
		"--redirect-uri", "https://vault.example.com/email-oauth2-proxy-authorize/", "--force")
	if r.code != exitcode.Invalid {
		t.Fatalf("exit %d, want 4: %s", r.code, r.stderr)
	}
	for _, want := range []string{path + ":4: this line is neither", path + ":5: key \"server_address\" appears a second time", "config validate " + path} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "<config>") {
		t.Errorf("stderr names the file <config>:\n%s", r.stderr)
	}
	if got, _ := os.ReadFile(path); string(got) != broken {
		t.Errorf("the broken file was changed:\n%s", got)
	}
}

// Re-registering with another SMTP port keeps STARTTLS where the port
// means STARTTLS (25, 587), drops it where it means implicit TLS (465) and
// says so, keeps the file's choice for a port that says neither, and an
// explicit --smtp-server-starttls[=false] always wins.
func TestReRegisterSMTPPortKeepsSTARTTLS(t *testing.T) {
	base := []string{"--provider", "office365", "--tenant-id", tenant, "--oauth2-client-id", client, "--oauth2-client-secret", secret,
		"--redirect-uri", "https://vault.example.com/email-oauth2-proxy-authorize/"}
	tests := []struct {
		name      string
		first     []string // after base; the preset writes 587 with STARTTLS
		again     []string
		wantTLS   bool
		wantNote  string // in the output of the second register ("" none)
		wantClean bool   // no note or warning at all
	}{
		{"587 to 25", nil, []string{"--smtp-server-port", "25"}, true, "", true},
		{"587 to 465", nil, []string{"--smtp-server-port", "465"}, false, "server_starttls", false},
		{"465 to 587", []string{"--smtp-server-port", "465"}, []string{"--smtp-server-port", "587"}, true, "server_starttls", false},
		{"587 to 2525 keeps the file's", nil, []string{"--smtp-server-port", "2525"}, true, "", true},
		{"25 without the preset", nil, []string{"--smtp-server-address", "smtp.office365.com", "--smtp-server-port", "25"}, true, "", true},
		{"explicit false on 2525", nil, []string{"--smtp-server-port", "2525", "--smtp-server-starttls=false"}, false, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "emailproxy.config")
			if r := runCmd(t, false, "", append(append([]string{"--config", path}, base...), tt.first...)...); r.code != 0 {
				t.Fatalf("first register: exit %d: %s", r.code, r.stderr)
			}
			r := runCmd(t, false, "", append(append([]string{"--config", path, "--force"}, base...), tt.again...)...)
			if r.code != 0 {
				t.Fatalf("second register: exit %d: %s", r.code, r.stderr)
			}
			got, _ := os.ReadFile(path)
			if has := strings.Contains(string(got), "server_starttls = True"); has != tt.wantTLS {
				t.Errorf("server_starttls = True in the file: %v, want %v:\n%s", has, tt.wantTLS, got)
			}
			if tt.wantNote != "" && !strings.Contains(r.stderr, tt.wantNote) {
				t.Errorf("the change to %s is not reported; stderr:\n%s", tt.wantNote, r.stderr)
			}
			if tt.wantClean && r.stderr != "" {
				t.Errorf("unexpected notes or warnings:\n%s", r.stderr)
			}
		})
	}
}

type fakeService struct{ res register.ServiceResult }

func (f fakeService) AfterWrite(context.Context, string, bool) (register.ServiceResult, error) {
	return f.res, nil
}

// TestNextStepsFollowTheUnit: the first next step is start only when the
// service hook left the unit stopped; a unit it restarted needs nothing,
// and one it left running with --no-restart needs a restart.
func TestNextStepsFollowTheUnit(t *testing.T) {
	tests := []struct {
		name      string
		running   bool
		noRestart bool
		want      string // the first numbered step
	}{
		{"stopped", false, false, "1. orbit email-oauth2-proxy start"},
		{"restarted", true, false, "1. point the mailer's IMAP"},
		{"running, --no-restart", true, true, "1. orbit email-oauth2-proxy restart"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			io, _, out, errOut := iostreams.Test()
			o := &register.Options{
				IO: io, Service: fakeService{register.ServiceResult{Message: "unit installed", Running: tt.running}},
				ConfigPath: filepath.Join(t.TempDir(), "emailproxy.config"), NoRestart: tt.noRestart,
				Provider: "office365", TenantID: tenant,
				Values: register.Values{ClientID: client, ClientSecret: secret, RedirectURI: "https://vault.example.com/x/"},
			}
			if err := register.Run(context.Background(), o); err != nil {
				t.Fatalf("%v\n%s", err, errOut)
			}
			if !strings.Contains(out.String(), tt.want) {
				t.Errorf("next steps do not start with %q:\n%s", tt.want, out)
			}
			if tt.running && strings.Contains(out.String(), "email-oauth2-proxy start") {
				t.Errorf("start suggested for a running unit:\n%s", out)
			}
		})
	}
}
