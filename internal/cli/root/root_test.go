package root

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/spf13/cobra"
)

func run(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	// Never read the machine's real settings file from a test.
	if _, ok := env["ORBIT_SETTINGS"]; !ok {
		t.Setenv("ORBIT_SETTINGS", "")
	}
	io, _, out, errOut := iostreams.Test()
	code = Main(context.Background(), args, io)
	return code, out.String(), errOut.String()
}

func TestNormalizeArgs(t *testing.T) {
	tests := []struct {
		in, want []string
	}{
		{[]string{"-help"}, []string{"--help"}},
		{[]string{"email-oauth2-proxy", "-help"}, []string{"email-oauth2-proxy", "--help"}},
		{[]string{"x", "--", "-help"}, []string{"x", "--", "-help"}},
		{[]string{"-h"}, []string{"-h"}},
		{[]string{"--help"}, []string{"--help"}},
		{[]string{"-helpful"}, []string{"-helpful"}},
	}
	for _, tt := range tests {
		got := NormalizeArgs(tt.in)
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("NormalizeArgs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHelpForms(t *testing.T) {
	for _, path := range [][]string{{}, {"version"}, {"email-oauth2-proxy"}, {"email-oauth2-proxy", "register"}} {
		_, want, _ := run(t, nil, append(path, "--help")...)
		if want == "" {
			t.Fatalf("%v --help printed nothing", path)
		}
		for _, form := range []string{"-help", "-h"} {
			code, got, errOut := run(t, nil, append(path, form)...)
			if code != 0 || got != want {
				t.Errorf("%v %s: exit %d, stderr %q; output differs from --help:\n%s", path, form, code, errOut, got)
			}
		}
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"--bogus"}, "unknown flag: --bogus\nRun 'orbit --help' for usage."},
		{[]string{"--bogus", "version"}, "unknown flag: --bogus"},
		{[]string{"version", "extra"}, "unknown command"},
		{[]string{"version", "--output", "yaml"}, `"yaml" is not an output format`},
		{[]string{"email-oauth2-proxy", "regster"}, "Did you mean this?\n\tregister"},
		{[]string{"email-oauth2-proxy", "config", "shw"}, "Did you mean this?\n\tshow"},
		{[]string{"emial-oauth2-proxy"}, "Did you mean this?\n\temail-oauth2-proxy"},
		// Flags typed wrong get the same help as commands typed wrong.
		{[]string{"email-oauth2-proxy", "authorize", "--acount", "alice@example.com"}, "unknown flag: --acount\n\nDid you mean this?\n\t--account\nRun 'orbit email-oauth2-proxy authorize --help' for usage."},
		{[]string{"email-oauth2-proxy", "status", "--ouput", "json"}, "Did you mean this?\n\t--output\n"},
		{[]string{"email-oauth2-proxy", "logs", "--auth_url"}, "Did you mean this?\n\t--auth-url\n"},
		{[]string{"email-oauth2-proxy", "register", "--oauth2-client-secret-flie", "/root/s"}, "Did you mean this?\n\t--oauth2-client-secret-file\n"},
		{[]string{"email-oauth2-proxy", "uninstall", "--purge", "--yess"}, "Did you mean this?\n\t--yes\n"},
	}
	for _, tt := range tests {
		code, _, errOut := run(t, nil, tt.args...)
		if code != int(exitcode.Usage) || !strings.Contains(errOut, tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d containing %q", tt.args, code, errOut, exitcode.Usage, tt.want)
		}
	}
}

// A command's flag written before the command word reaches the command,
// as cobra itself reads it: the plugin step must find the same command word.
func TestCommandFlagBeforeTheCommand(t *testing.T) {
	for _, args := range [][]string{
		{"--output", "json", "version"},
		{"--output=json", "version"},
		{"-o", "json", "version"},
	} {
		code, out, errOut := run(t, nil, args...)
		if code != 0 || !strings.Contains(out, `"go_version"`) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want version's JSON", args, code, out, errOut)
		}
	}
}

func TestVersionJSONAndSettingsPrecedence(t *testing.T) {
	code, out, errOut := run(t, nil, "version", "--output", "json")
	if code != 0 || !strings.Contains(out, `"go_version"`) {
		t.Fatalf("version --output json: exit %d, %q %q", code, out, errOut)
	}
	// Environment fills an unset flag...
	code, out, _ = run(t, map[string]string{"ORBIT_OUTPUT": "json"}, "version")
	if code != 0 || !strings.HasPrefix(out, "{") {
		t.Errorf("ORBIT_OUTPUT=json: got %q", out)
	}
	// ...but an explicit flag wins over it.
	code, out, _ = run(t, map[string]string{"ORBIT_OUTPUT": "json"}, "version", "--output", "text")
	if code != 0 || !strings.HasPrefix(out, "orbit ") {
		t.Errorf("--output text over ORBIT_OUTPUT=json: got %q", out)
	}
	// The settings file is below the environment.
	dir := t.TempDir()
	path := dir + "/orbit.yaml"
	writeFile(t, path, "output: json\n")
	code, out, _ = run(t, map[string]string{"ORBIT_SETTINGS": path}, "version")
	if code != 0 || !strings.HasPrefix(out, "{") {
		t.Errorf("settings output: json: got %q", out)
	}
	code, out, _ = run(t, map[string]string{"ORBIT_SETTINGS": path, "ORBIT_OUTPUT": "text"}, "version")
	if code != 0 || !strings.HasPrefix(out, "orbit ") {
		t.Errorf("env over settings file: got %q", out)
	}
	code, _, errOut = run(t, map[string]string{"ORBIT_SETTINGS": dir + "/missing.yaml"}, "version")
	if code != int(exitcode.Invalid) || !strings.Contains(errOut, "missing.yaml") {
		t.Errorf("missing explicit settings file: exit %d, %q", code, errOut)
	}
}

func TestFlagValueCompletion(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", "email-oauth2-proxy", "register", "--oauth2-flow", ""}, []string{"authorization_code", "client_credentials", "device", "password", "service_account"}},
		{[]string{"__complete", "email-oauth2-proxy", "register", "--provider", ""}, []string{"office365", "google"}},
		{[]string{"__complete", "version", "--output", ""}, []string{"text", "json"}},
		{[]string{"__complete", "email-oauth2-proxy", "logs", "--since", ""}, []string{"1h", "today", "yesterday"}},
	}
	for _, tt := range tests {
		code, out, errOut := run(t, nil, tt.args...)
		if code != 0 {
			t.Fatalf("%v: exit %d %s", tt.args, code, errOut)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w+"\n") {
				t.Errorf("%v: completion lacks %q:\n%s", tt.args[1:], w, out)
			}
		}
	}
}

// TestNoFileNamesWhereNoArguments: after a command that takes no arguments
// (register, status, ...) the shell must not offer file names: cobra's
// __complete ends with directive 4 (ShellCompDirectiveNoFileComp), not 0.
// Commands that take a FILE keep file completion.
func TestNoFileNamesWhereNoArguments(t *testing.T) {
	var none, files [][]string
	io, _, _, _ := iostreams.Test()
	walk(New(factory.New(io)), func(c *cobra.Command) {
		if !c.HasParent() || c.Hidden || c.Name() == "help" || c.Name() == cobra.ShellCompRequestCmd {
			return
		}
		path := strings.Fields(c.CommandPath())[1:]
		if c.Args != nil && c.Args(c, []string{"x"}) == nil && !c.HasSubCommands() {
			files = append(files, path)
			return
		}
		none = append(none, path)
	})
	for _, must := range [][]string{{"email-oauth2-proxy", "register"}, {"email-oauth2-proxy", "status"}, {"email-oauth2-proxy", "logs"}, {"version"}} {
		if !slices.ContainsFunc(none, func(p []string) bool { return slices.Equal(p, must) }) {
			t.Errorf("%v is not among the commands without arguments: %v", must, none)
		}
	}
	for _, path := range none {
		code, out, errOut := run(t, nil, append(append([]string{"__complete"}, path...), "")...)
		if code != 0 || !strings.HasSuffix(out, "\n:4\n") && out != ":4\n" {
			t.Errorf("orbit %s <TAB>: exit %d, completion %q (want directive :4, no file names) %s", strings.Join(path, " "), code, out, errOut)
		}
	}
	for _, path := range files {
		if _, out, _ := run(t, nil, append(append([]string{"__complete"}, path...), "")...); !strings.HasSuffix(out, ":0\n") {
			t.Errorf("orbit %s <TAB> takes a file, but completion says %q", strings.Join(path, " "), out)
		}
	}
}
