package remote

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/senhasegura/orbit/internal/secretflag"
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
	drop := []string{"host", "ssh-user", "ssh-port", "ssh-identity", "ssh-known-hosts", "remote-orbit", "settings"}
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
	got := Args([]string{"--description", "x", "--host", "h", "-o", "json"}, []string{"host"}, nil)
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

func TestLiftSecrets(t *testing.T) {
	fs := commandFlags()
	fs.String("oauth2-client-secret", "", "")
	fs.String("oauth2-client-secret-file", "", "")
	secretflag.Mark(fs, "oauth2-client-secret", "oauth2-client-secret-file")
	tests := []struct {
		name    string
		in      []string
		want    []string
		secrets []string
	}{
		{"value after", []string{"register", "--oauth2-client-secret", "s3cr3t", "--force"}, []string{"register", "--oauth2-client-secret-file", "-", "--force"}, []string{"s3cr3t"}},
		{"value inline", []string{"register", "--oauth2-client-secret=a b'c", "--dry-run"}, []string{"register", "--oauth2-client-secret-file", "-", "--dry-run"}, []string{"a b'c"}},
		{"dash reads stdin already", []string{"register", "--oauth2-client-secret", "-"}, []string{"register", "--oauth2-client-secret", "-"}, nil},
		{"file flag untouched", []string{"register", "--oauth2-client-secret-file", "/root/s"}, []string{"register", "--oauth2-client-secret-file", "/root/s"}, nil},
		{"value of another flag", []string{"register", "--description", "--oauth2-client-secret", "x"}, []string{"register", "--description", "--oauth2-client-secret", "x"}, nil},
		{"value of a shorthand", []string{"status", "-o", "--oauth2-client-secret"}, []string{"status", "-o", "--oauth2-client-secret"}, nil},
		{"after --", []string{"x", "--", "--oauth2-client-secret", "s"}, []string{"x", "--", "--oauth2-client-secret", "s"}, nil},
		{"dangling", []string{"register", "--oauth2-client-secret"}, []string{"register", "--oauth2-client-secret"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, secrets := LiftSecrets(tt.in, fs)
			if !slices.Equal(got, tt.want) {
				t.Errorf("args\n got %q\nwant %q", got, tt.want)
			}
			var vals []string
			for _, s := range secrets {
				vals = append(vals, s.Value)
				if s.Flag != "oauth2-client-secret" || s.FileFlag != "oauth2-client-secret-file" {
					t.Errorf("secret %+v names the wrong flags", s)
				}
			}
			if !slices.Equal(vals, tt.secrets) {
				t.Errorf("secrets %q, want %q", vals, tt.secrets)
			}
		})
	}
}

func TestParseAddress(t *testing.T) {
	tests := []struct {
		in   string
		want Address
		bad  bool
	}{
		{in: "vault.example.com", want: Address{Host: "vault.example.com"}},
		{in: "vault.example.com:2222", want: Address{Host: "vault.example.com", Port: 2222}},
		{in: "mt4adm@vault", want: Address{User: "mt4adm", Host: "vault"}},
		{in: "mt4adm@vault:59022", want: Address{User: "mt4adm", Host: "vault", Port: 59022}},
		{in: "ssh://mt4adm@vault:59022", want: Address{User: "mt4adm", Host: "vault", Port: 59022}},
		{in: "ssh://vault/", want: Address{Host: "vault"}},
		{in: "ssh://root@[2001:db8::5]:22", want: Address{User: "root", Host: "2001:db8::5", Port: 22}},
		{in: "[::1]:2222", want: Address{Host: "::1", Port: 2222}},
		{in: "root@[::1]", want: Address{User: "root", Host: "::1"}},
		{in: "::1", want: Address{Host: "::1"}},
		{in: "fe80::1", want: Address{Host: "fe80::1"}},
		{in: "127.0.0.1:22", want: Address{Host: "127.0.0.1", Port: 22}},
		{in: "", bad: true},
		{in: "vault:", bad: true},
		{in: "vault:0", bad: true},
		{in: "vault:70000", bad: true},
		{in: "vault:ssh", bad: true},
		{in: "a b", bad: true},
		{in: "@vault", bad: true},
		{in: "[::1", bad: true},
		{in: "[::1]x", bad: true},
		{in: "ssh://::1", bad: true},
		{in: "ssh://vault/path", bad: true},
		{in: "https://vault", bad: true},
		{in: "vault:1:2", bad: true},
	}
	for _, tt := range tests {
		got, err := ParseAddress(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("ParseAddress(%q) = %+v; want an error", tt.in, got)
			} else if !strings.Contains(err.Error(), "[USER@]HOST[:PORT]") {
				t.Errorf("ParseAddress(%q): error %q does not show the accepted forms", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseAddress(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

// TestSSHConfigUnsupportedMatch: a Match block the parser cannot evaluate
// is skipped, not a reason to refuse the whole file.
func TestSSHConfigUnsupportedMatch(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/config"
	conf := "Match exec \"test -f /x\"\n    User wrong\nMatch user bob\n    Port 1\nHost vault\n    HostName 10.0.0.5\n    User admin\nMatch host vault\n    Port 2222\n"
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	o := &Options{SSHConfig: file}
	cfg, err := o.loadSSHConfig()
	if err != nil {
		t.Fatal(err)
	}
	e, err := o.resolve(Address{Host: "vault"}, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	if e.Host != "10.0.0.5" || e.User != "admin" || e.Port != 2222 {
		t.Errorf("resolved %s@%s:%d, want admin@10.0.0.5:2222", e.User, e.Host, e.Port)
	}
}
