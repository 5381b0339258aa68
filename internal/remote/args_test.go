package remote

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// commandFlags mimics a parsed orbit command: persistent connection flags
// plus a command's own, some taking values, some switches.
func commandFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("register", pflag.ContinueOnError)
	fs.String("host", "", "")
	fs.String("ssh-user", "", "")
	fs.Int("ssh-port", 0, "")
	fs.StringArray("ssh-identity", nil, "")
	fs.String("ssh-known-hosts", "", "")
	fs.String("remote-orbit", "", "")
	fs.String("settings", "", "")
	fs.StringP("output", "o", "text", "")
	fs.String("description", "", "")
	fs.BoolP("force", "f", false, "")
	fs.Bool("dry-run", false, "")
	return fs
}

func TestArgs(t *testing.T) {
	drop := append(slices.Clone(LocalFlags), "settings")
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"nothing to drop", []string{"version", "--output", "json"}, []string{"version", "--output", "json"}},
		{"--host=x", []string{"--host=vault", "version"}, []string{"version"}},
		{"--host x", []string{"--host", "vault", "version"}, []string{"version"}},
		{"host after the command", []string{"email-oauth2-proxy", "status", "--host", "vault:59022", "--output=json"}, []string{"email-oauth2-proxy", "status", "--output=json"}},
		{"every connection flag", []string{"--host", "h", "--ssh-user=root", "--ssh-port", "22", "--ssh-identity", "/k", "--ssh-identity=/k2", "--ssh-known-hosts", "/kh", "--remote-orbit", "/opt/orbit", "--settings", "s.yaml", "version"}, []string{"version"}},
		{"value that looks like --host stays", []string{"register", "--description", "--host", "--host", "h"}, []string{"register", "--description", "--host"}},
		{"switch does not swallow the next word", []string{"register", "--force", "--host", "h", "--dry-run"}, []string{"register", "--force", "--dry-run"}},
		{"shorthand with value", []string{"status", "-o", "--host", "--host=h"}, []string{"status", "-o", "--host"}},
		{"shorthand cluster, value attached", []string{"status", "-fojson", "--host", "h"}, []string{"status", "-fojson"}},
		{"shorthand cluster, value next", []string{"status", "-fo", "json", "--host", "h"}, []string{"status", "-fo", "json"}},
		{"after -- untouched", []string{"--host", "h", "cmd", "--", "--host", "x", "--ssh-user=y"}, []string{"cmd", "--", "--host", "x", "--ssh-user=y"}},
		{"-- first", []string{"--", "--host=h"}, []string{"--", "--host=h"}},
		{"dangling --host", []string{"version", "--host"}, []string{"version"}},
		{"unknown flag treated as switch", []string{"--newer-flag", "x", "--host", "h"}, []string{"--newer-flag", "x"}},
		{"odd arguments kept", []string{"--host", "h", "register", "--description", "it's $HOME `id` \"x\"", "a b"}, []string{"register", "--description", "it's $HOME `id` \"x\"", "a b"}},
		{"lone dash kept (stdin)", []string{"--oauth2-client-secret-file", "-", "--host=h"}, []string{"--oauth2-client-secret-file", "-"}},
		{"empty", nil, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Args(tt.in, drop, commandFlags())
			if !slices.Equal(got, tt.want) {
				t.Errorf("Args(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestArgsWithoutFlagSet(t *testing.T) {
	got := Args([]string{"--description", "x", "--host", "h", "-o", "json"}, LocalFlags, nil)
	want := []string{"--description", "x", "-o", "json"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"version", "version"},
		{"--output=json", "--output=json"},
		{"/usr/local/bin/orbit", "/usr/local/bin/orbit"},
		{"", "''"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{"$HOME", "'$HOME'"},
		{"`id`", "'`id`'"},
		{`"x"`, `'"x"'`},
		{"~/x", "'~/x'"},
		{"a;rm -rf /", "'a;rm -rf /'"},
		{"*", "'*'"},
		{"line\nbreak", "'line\nbreak'"},
	}
	for _, tt := range tests {
		if got := Quote(tt.in); got != tt.want {
			t.Errorf("Quote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// TestCommandLineThroughShell runs the quoted line through a real POSIX
// shell, as sshd does, and checks every argument arrives as it was.
func TestCommandLineThroughShell(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skipf("no sh on PATH: %v", err)
	}
	args := []string{"plain", "", "a b", "it's", `"dq"`, "$HOME", "$(id)", "`id`", "~", "*", "a;b|c&d", "tab\there", "new\nline", `back\slash`, "'", "''", "--x=y z", "ü→✓"}
	line := CommandLine("printf", append([]string{`%s\0`}, args...))
	out, err := exec.Command(sh, "-c", line).Output()
	if err != nil {
		t.Fatalf("sh -c %q: %v", line, err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if !slices.Equal(got, args) {
		t.Errorf("through sh -c %q\n got %q\nwant %q", line, got, args)
	}
}

func TestCommandLineProgramWithEquals(t *testing.T) {
	if got := CommandLine("A=b", []string{"x"}); got != "'A=b' x" {
		t.Errorf("got %s, want 'A=b' x", got)
	}
}

func TestSecretInArgs(t *testing.T) {
	tests := []struct {
		in   []string
		want bool
	}{
		{[]string{"register", "--oauth2-client-secret", "s"}, true},
		{[]string{"register", "--oauth2-client-secret=s"}, true},
		{[]string{"register", "--oauth2-client-secret-file", "-"}, false},
		{[]string{"register", "--", "--oauth2-client-secret=s"}, false},
	}
	for _, tt := range tests {
		if got := SecretInArgs(tt.in); got != tt.want {
			t.Errorf("SecretInArgs(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestSplitTarget(t *testing.T) {
	tests := []struct {
		in       string
		host     string
		port     int
		wantFail bool
	}{
		{"vault.example.com", "vault.example.com", 59022, false},
		{"vault.example.com:2222", "vault.example.com", 2222, false},
		{"127.0.0.1:22", "127.0.0.1", 22, false},
		{"[::1]:2222", "::1", 2222, false},
		{"::1", "::1", 59022, false},
		{"[::1]", "::1", 59022, false},
		{"", "", 0, true},
		{"mt4adm@vault", "", 0, true},
		{"vault:", "", 0, true},
		{"vault:0", "", 0, true},
		{"vault:70000", "", 0, true},
		{"vault:ssh", "", 0, true},
		{"a b", "", 0, true},
	}
	for _, tt := range tests {
		host, port, err := SplitTarget(tt.in, 59022)
		if tt.wantFail {
			if err == nil {
				t.Errorf("SplitTarget(%q) = %q, %d; want an error", tt.in, host, port)
			}
			continue
		}
		if err != nil || host != tt.host || port != tt.port {
			t.Errorf("SplitTarget(%q) = %q, %d, %v; want %q, %d", tt.in, host, port, err, tt.host, tt.port)
		}
	}
}
