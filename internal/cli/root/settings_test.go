package root

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/cli/family"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/spf13/afero"
	"github.com/spf13/cobra"
)

// runEnv runs orbit with env as its whole environment: nothing of the
// process's own environment may reach it.
func runEnv(env map[string]string, args ...string) (code int, stdout, stderr string) {
	io, _, out, errOut := iostreams.Test()
	f := factory.New(io)
	f.Getenv = func(k string) string { return env[k] }
	f.Environ = func() []string {
		var kv []string
		for k, v := range env {
			kv = append(kv, k+"="+v)
		}
		return kv
	}
	code = Run(context.Background(), args, f)
	return code, out.String(), errOut.String()
}

func TestSettingsPerFamily(t *testing.T) {
	dir := t.TempDir()
	settings := filepath.Join(dir, "orbit.yaml")
	writeFile(t, settings, "output: json\nemail-oauth2-proxy:\n  config: /from/section.ini\n")
	flat := filepath.Join(dir, "flat.yaml")
	writeFile(t, flat, "config: /from/top-level.ini\n")
	empty := filepath.Join(dir, "empty.yaml")
	writeFile(t, empty, "")
	validate := []string{"email-oauth2-proxy", "config", "validate"}
	deprecated := "deprecated"

	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantFile string // the --config validate looked at
		warn     bool
	}{
		{"default", map[string]string{"ORBIT_SETTINGS": empty}, nil, "/etc/orbit/email-oauth2-proxy/emailproxy.config", false},
		{"settings file section", map[string]string{"ORBIT_SETTINGS": settings}, nil, "/from/section.ini", false},
		{"family env over the file", map[string]string{"ORBIT_SETTINGS": settings, "ORBIT_EMAIL_OAUTH2_PROXY_CONFIG": "/from/env.ini"}, nil, "/from/env.ini", false},
		{"flag over everything", map[string]string{"ORBIT_SETTINGS": settings, "ORBIT_EMAIL_OAUTH2_PROXY_CONFIG": "/from/env.ini"}, []string{"--config", "/from/flag.ini"}, "/from/flag.ini", false},
		{"flat env below the family's names, warned", map[string]string{"ORBIT_SETTINGS": empty, "ORBIT_CONFIG": "/from/flat-env.ini"}, nil, "/from/flat-env.ini", true},
		{"family env beats flat env", map[string]string{"ORBIT_SETTINGS": empty, "ORBIT_CONFIG": "/from/flat-env.ini", "ORBIT_EMAIL_OAUTH2_PROXY_CONFIG": "/from/env.ini"}, nil, "/from/env.ini", false},
		{"section beats flat env", map[string]string{"ORBIT_SETTINGS": settings, "ORBIT_CONFIG": "/from/flat-env.ini"}, nil, "/from/section.ini", false},
		{"flat settings key, warned", map[string]string{"ORBIT_SETTINGS": flat}, nil, "/from/top-level.ini", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runEnv(tt.env, append(validate, tt.args...)...)
			if code == 0 || !strings.Contains(errOut, tt.wantFile) {
				t.Errorf("exit %d, stderr %q; want it about %s", code, errOut, tt.wantFile)
			}
			if got := strings.Contains(errOut, deprecated); got != tt.warn {
				t.Errorf("deprecation warning %v, want %v: %q", got, tt.warn, errOut)
			}
		})
	}

	// Global flags stay global: ORBIT_OUTPUT and a top-level output: apply
	// to every command, built in or in a family.
	if _, out, _ := runEnv(map[string]string{"ORBIT_SETTINGS": settings}, "version"); !strings.HasPrefix(out, "{") {
		t.Errorf("top-level output: json did not reach version: %q", out)
	}
	if _, out, _ := runEnv(map[string]string{"ORBIT_SETTINGS": empty, "ORBIT_OUTPUT": "json"}, "version"); !strings.HasPrefix(out, "{") {
		t.Errorf("ORBIT_OUTPUT=json did not reach version: %q", out)
	}
	// A family's name is not a global one: the family variable does not
	// set orbit's own commands' flags.
	if _, out, _ := runEnv(map[string]string{"ORBIT_SETTINGS": empty, "ORBIT_EMAIL_OAUTH2_PROXY_OUTPUT": "json"}, "version"); strings.HasPrefix(out, "{") {
		t.Errorf("ORBIT_EMAIL_OAUTH2_PROXY_OUTPUT reached version: %q", out)
	}
}

// TestSettingsOnlyFromFactory: the process environment is not read behind
// the injected one's back (viper's AutomaticEnv would).
func TestSettingsOnlyFromFactory(t *testing.T) {
	t.Setenv("ORBIT_OUTPUT", "json")
	t.Setenv("ORBIT_EMAIL_OAUTH2_PROXY_CONFIG", "/from/process.ini")
	empty := filepath.Join(t.TempDir(), "empty.yaml")
	writeFile(t, empty, "")
	if _, out, _ := runEnv(map[string]string{"ORBIT_SETTINGS": empty}, "version"); strings.HasPrefix(out, "{") {
		t.Errorf("the process's ORBIT_OUTPUT reached orbit: %q", out)
	}
	if _, _, errOut := runEnv(map[string]string{"ORBIT_SETTINGS": empty}, "email-oauth2-proxy", "config", "validate"); strings.Contains(errOut, "process.ini") {
		t.Errorf("the process's ORBIT_EMAIL_OAUTH2_PROXY_CONFIG reached orbit: %q", errOut)
	}
}

func TestEnvName(t *testing.T) {
	for _, tt := range []struct{ family, flag, want string }{
		{"", "output", "ORBIT_OUTPUT"},
		{"", "ssh-known-hosts", "ORBIT_SSH_KNOWN_HOSTS"},
		{"email-oauth2-proxy", "config", "ORBIT_EMAIL_OAUTH2_PROXY_CONFIG"},
		{"email-oauth2-proxy", "oauth2-client-secret", "ORBIT_EMAIL_OAUTH2_PROXY_OAUTH2_CLIENT_SECRET"},
	} {
		if got := EnvName(tt.family, tt.flag); got != tt.want {
			t.Errorf("EnvName(%q, %q) = %s, want %s", tt.family, tt.flag, got, tt.want)
		}
	}
}

// testFamily is a family defined only in this test binary: it prints its
// --target, so the test sees where the value came from.
func init() {
	family.Register("testfam", func(f *factory.Factory) *cobra.Command {
		cmd := &cobra.Command{Use: "testfam <command>", Hidden: true}
		var target string
		show := &cobra.Command{Use: "show", Args: cobra.NoArgs, RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(f.IO.Out, "target=%s\n", target)
			return err
		}}
		show.Flags().StringVar(&target, "target", "default", "")
		cmd.AddCommand(show)
		return cmd
	})
}

// TestSettingsNewFamily: a family added later gets its own namespace with
// no wiring, and the flat names kept for email-oauth2-proxy never reach it.
func TestSettingsNewFamily(t *testing.T) {
	dir := t.TempDir()
	section := filepath.Join(dir, "section.yaml")
	writeFile(t, section, "target: flat\ntestfam:\n  target: from-section\n")
	flat := filepath.Join(dir, "flat.yaml")
	writeFile(t, flat, "target: flat\n")
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"ORBIT_SETTINGS": flat, "ORBIT_TARGET": "flat-env"}, "target=default\n"},
		{map[string]string{"ORBIT_SETTINGS": section}, "target=from-section\n"},
		{map[string]string{"ORBIT_SETTINGS": section, "ORBIT_TESTFAM_TARGET": "from-env"}, "target=from-env\n"},
	} {
		code, out, errOut := runEnv(tt.env, "testfam", "show")
		if code != 0 || out != tt.want || errOut != "" {
			t.Errorf("%v: exit %d, %q, stderr %q; want %q", tt.env, code, out, errOut, tt.want)
		}
	}
}

// deniedFs answers every open with "permission denied", as the settings
// file looks to a user other than root when /etc/orbit is 0700 (the
// package's mode) or orbit.yaml is 0600.
type deniedFs struct{ afero.Fs }

func (deniedFs) Open(name string) (afero.File, error) {
	return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EACCES}
}

func (d deniedFs) OpenFile(name string, _ int, _ os.FileMode) (afero.File, error) {
	return d.Open(name)
}

func (deniedFs) Stat(name string) (os.FileInfo, error) {
	return nil, &fs.PathError{Op: "stat", Path: name, Err: syscall.EACCES}
}

// TestUnreadableDefaultSettings: the default settings file, when the user
// may not read it, is skipped with a warning; only a file the user named
// must be readable. Before, every command run by a user other than root
// (the unit's service user included, whose `serve` then failed at every
// start) stopped with exit 4 at "reading settings file".
func TestUnreadableDefaultSettings(t *testing.T) {
	run := func(env map[string]string, args ...string) (int, string, string) {
		io, _, out, errOut := iostreams.Test()
		f := factory.New(io)
		f.Settings.SetFs(deniedFs{afero.NewMemMapFs()})
		f.Getenv = func(k string) string { return env[k] }
		f.Environ = func() []string { return nil }
		return Run(context.Background(), args, f), out.String(), errOut.String()
	}
	code, out, errOut := run(nil, "version")
	if code != 0 || out == "" {
		t.Errorf("version with an unreadable default settings file: exit %d, stdout %q, stderr %q; want exit 0", code, out, errOut)
	}
	for _, want := range []string{"warning", DefaultSettingsPath, "permission denied", "--settings"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the warning does not say %q:\n%s", want, errOut)
		}
	}
	if strings.Count(errOut, "\n") != 1 {
		t.Errorf("want one warning line, got:\n%s", errOut)
	}
	// A file the user names must be read: its settings were asked for.
	if code, _, errOut := run(map[string]string{"ORBIT_SETTINGS": "/etc/orbit/other.yaml"}, "version"); code != 10 || !strings.Contains(errOut, "permission denied") {
		t.Errorf("ORBIT_SETTINGS naming an unreadable file: exit %d, stderr %q; want 10 (permission)", code, errOut)
	}
	if code, _, _ := run(nil, "--settings", "/etc/orbit/other.yaml", "version"); code != 10 {
		t.Errorf("--settings naming an unreadable file: exit %d; want 10 (permission)", code)
	}
}
