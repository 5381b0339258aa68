package systemd

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/unit"
	"github.com/senhasegura/orbit/internal/testenv/golden"
	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

const testConfig = "/etc/orbit/email-oauth2-proxy/emailproxy.config"

func TestRenderGolden(t *testing.T) {
	tests := []struct {
		golden string
		opts   UnitOptions
	}{
		{"email-oauth2-proxy.service", UnitOptions{Service: testService, Binary: "/usr/local/bin/orbit", ConfigFile: testConfig}},
		{"python-engine.service", UnitOptions{Service: testService,
			ConfigFile: testConfig,
			Exec:       []string{"/usr/local/bin/emailproxy", "--no-gui", "--local-server-auth", "--config-file", ConfigPlaceholder},
		}},
		{"home-and-quoting.service", UnitOptions{Service: testService,
			Name:         "mail-proxy.service",
			Binary:       "/opt/orbit tools/or%bit",
			ConfigFile:   "/home/ops/mail $dir/emailproxy.config",
			User:         "mailproxy",
			RestartDelay: 1500 * time.Millisecond,
			Watchdog:     -1,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			u, err := Render(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			b := u.Bytes()
			golden.Check(t, tt.golden, b)

			// What go-systemd reads back is what was rendered.
			back, err := unit.DeserializeOptions(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("deserializing the rendered unit: %v", err)
			}
			if !unit.AllMatch(back, u.Options) {
				t.Errorf("deserialized options differ from the rendered ones")
			}
			verify(t, u)
		})
	}
}

// verify runs systemd-analyze verify on the unit, which parses it the way
// systemd does and complains about unknown or malformed settings.
func verify(t *testing.T, u Unit) {
	t.Helper()
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Logf("systemd-analyze missing, unit not verified (install systemd, or run .ci/install-deps.sh)")
		return
	}
	path := filepath.Join(t.TempDir(), u.Name)
	if err := os.WriteFile(path, u.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "verify", "--man=no", path).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		// The engine binaries and the user need not exist on this machine.
		if line == "" || strings.Contains(line, "is not executable") || strings.Contains(line, "No such file") ||
			strings.Contains(line, "Failed to look up") || strings.Contains(line, "Command ") {
			continue
		}
		t.Errorf("systemd-analyze verify: %s", line)
	}
	if err != nil && !bytes.Contains(out, []byte("executable")) {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestRenderChoices(t *testing.T) {
	def, err := Render(UnitOptions{Service: testService, Binary: "/usr/bin/orbit", ConfigFile: testConfig})
	if err != nil {
		t.Fatal(err)
	}
	py, err := Render(UnitOptions{Service: testService, ConfigFile: testConfig, Exec: []string{"/usr/bin/emailproxy", "--config-file", ConfigPlaceholder}})
	if err != nil {
		t.Fatal(err)
	}
	nowd, err := Render(UnitOptions{Service: testService, Binary: "/usr/bin/orbit", ConfigFile: testConfig, Watchdog: -1})
	if err != nil {
		t.Fatal(err)
	}
	home, err := Render(UnitOptions{Service: testService, Binary: "/usr/bin/orbit", ConfigFile: "/root/proxy/emailproxy.config"})
	if err != nil {
		t.Fatal(err)
	}
	creds, err := Render(UnitOptions{Service: testService, Binary: "/usr/bin/orbit", ConfigFile: testConfig,
		EncryptedCredentials: []Credential{{Name: "orbit-background-refresh", Path: "/etc/credstore.encrypted/orbit-background-refresh"}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name              string
		u                 Unit
		section, key, val string
	}{
		{"notify", def, "Service", "Type", "notify"},
		{"no credential by default", def, "Service", "LoadCredentialEncrypted", ""},
		{"background_refresh's credential", creds, "Service", "LoadCredentialEncrypted", "orbit-background-refresh:/etc/credstore.encrypted/orbit-background-refresh"},
		{"notify access", def, "Service", "NotifyAccess", "main"},
		{"watchdog", def, "Service", "WatchdogSec", "30"},
		{"exec", def, "Service", "ExecStart", "/usr/bin/orbit email-oauth2-proxy serve --config " + testConfig},
		{"config dir writable", def, "Service", "ReadWritePaths", "/etc/orbit/email-oauth2-proxy"},
		{"home hidden", def, "Service", "ProtectHome", "yes"},
		{"no capabilities", def, "Service", "CapabilityBoundingSet", ""},
		{"user", def, "Service", "User", DefaultUser},
		{"foreign engine is exec", py, "Service", "Type", "exec"},
		{"foreign engine has no watchdog", py, "Service", "WatchdogSec", ""},
		{"foreign engine gets the file", py, "Service", "ExecStart", "/usr/bin/emailproxy --config-file " + testConfig},
		{"watchdog off", nowd, "Service", "WatchdogSec", ""},
		{"config under /root: home is a tmpfs", home, "Service", "ProtectHome", "tmpfs"},
		{"config under /root: its directory is bound in", home, "Service", "BindPaths", "/root/proxy"},
	}
	for _, tt := range tests {
		if got := tt.u.Value(tt.section, tt.key); got != tt.val {
			t.Errorf("%s: %s=%q, want %q", tt.name, tt.key, got, tt.val)
		}
	}
}

func TestRenderUsesOwnExecutable(t *testing.T) {
	u, err := Render(UnitOptions{Service: testService, ConfigFile: testConfig})
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	if got := u.Value("Service", "ExecStart"); !strings.HasPrefix(got, quoteWord(exe)+" email-oauth2-proxy serve") {
		t.Errorf("ExecStart=%q does not start with this binary %q", got, exe)
	}
}

func TestRenderErrors(t *testing.T) {
	tests := []struct {
		name string
		opts UnitOptions
		want string
	}{
		{"no config", UnitOptions{Service: testService, Binary: "/b"}, "required"},
		{"relative config", UnitOptions{Service: testService, Binary: "/b", ConfigFile: "emailproxy.config"}, "absolute"},
		{"config directly in /etc", UnitOptions{Service: testService, Binary: "/b", ConfigFile: "/etc/emailproxy.config"}, "directory of its own"},
		{"config in /", UnitOptions{Service: testService, Binary: "/b", ConfigFile: "/emailproxy.config"}, "directory of its own"},
		{"config under /tmp", UnitOptions{Service: testService, Binary: "/b", ConfigFile: "/tmp/x/emailproxy.config"}, "private temporary"},
		{"config in /var/tmp", UnitOptions{Service: testService, Binary: "/b", ConfigFile: "/var/tmp/emailproxy.config"}, "hides it"},
		{"name without .service", UnitOptions{Service: testService, Binary: "/b", ConfigFile: testConfig, Name: "proxy"}, ".service"},
		{"name with a space", UnitOptions{Service: testService, Binary: "/b", ConfigFile: testConfig, Name: "a b.service"}, ".service"},
		{"bad user", UnitOptions{Service: testService, Binary: "/b", ConfigFile: testConfig, User: "Root Admin"}, "user"},
		{"relative binary", UnitOptions{Service: testService, Binary: "orbit", ConfigFile: testConfig}, "absolute"},
		{"relative engine", UnitOptions{Service: testService, Exec: []string{"emailproxy"}, ConfigFile: testConfig}, "absolute"},
		{"NUL in a word", UnitOptions{Service: testService, Exec: []string{"/bin/x", "a\x00b"}, ConfigFile: testConfig}, "cannot be written"},
		{"colon under home", UnitOptions{Service: testService, Binary: "/b", ConfigFile: "/home/a:b/emailproxy.config"}, "':'"},
		{"state directory absolute", UnitOptions{Service: testService, Binary: "/b", ConfigFile: testConfig, StateDirectory: "/var/lib/x"}, "relative"},
		{"two-line description", UnitOptions{Service: testService, Binary: "/b", ConfigFile: testConfig, Description: "a\nb"}, "one line"},
		{"relative credential", UnitOptions{Service: testService, Binary: "/b", ConfigFile: testConfig, EncryptedCredentials: []Credential{{Name: "k", Path: "k.cred"}}}, "credential"},
		{"credential name with a colon", UnitOptions{Service: testService, Binary: "/b", ConfigFile: testConfig, EncryptedCredentials: []Credential{{Name: "a:b", Path: "/k"}}}, "credential"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Render(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestQuoteWord(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/usr/bin/orbit", "/usr/bin/orbit"},
		{"--config", "--config"},
		{"a b", `"a b"`},
		{"100%", "100%%"},
		{`say "hi"`, `"say \"hi\""`},
		{`back\slash`, `"back\\slash"`},
		{"it's", `"it's"`},
		{"tab\there", `"tab\there"`},
		{"line\nbreak", `"line\nbreak"`},
		{"bell\a", `"bell\x07"`},
		{";", `";"`},
		{"", `""`},
	}
	for _, tt := range tests {
		if got := quoteWord(tt.in); got != tt.want {
			t.Errorf("quoteWord(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
	line, err := execLine([]string{"/bin/echo", "$HOME", "cost: $5"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `/bin/echo $$HOME "cost: $$5"`; line != want {
		t.Errorf("execLine = %s, want %s", line, want)
	}
}

func TestInstall(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	u, err := Render(UnitOptions{Service: testService, Binary: "/usr/bin/orbit", ConfigFile: testConfig})
	if err != nil {
		t.Fatal(err)
	}
	changed, err := Install(ctx, root, u)
	if err != nil || !changed {
		t.Fatalf("first install: changed=%v err=%v", changed, err)
	}
	path := UnitPath(root, DefaultUnitName)
	if path != filepath.Join(root, "etc/systemd/system", DefaultUnitName) {
		t.Errorf("UnitPath = %s", path)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, u.Bytes()) {
		t.Fatalf("installed file differs from the unit (err %v)", err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Errorf("unit file mode %v, want 0644", st.Mode().Perm())
	}
	before, _ := os.Stat(path)

	changed, err = Install(ctx, root, u)
	if err != nil || changed {
		t.Fatalf("same unit again: changed=%v err=%v, want unchanged", changed, err)
	}
	if after, _ := os.Stat(path); !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("an unchanged unit was rewritten")
	}

	u2, _ := Render(UnitOptions{Service: testService, Binary: "/usr/bin/orbit", ConfigFile: testConfig, RestartDelay: 9 * time.Second})
	changed, err = Install(ctx, root, u2)
	if err != nil || !changed {
		t.Fatalf("changed unit: changed=%v err=%v", changed, err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("install left %d files behind in the unit directory, want 1", len(entries))
	}

	removed, err := Uninstall(ctx, root, DefaultUnitName)
	if err != nil || !removed {
		t.Fatalf("uninstall: removed=%v err=%v", removed, err)
	}
	removed, err = Uninstall(ctx, root, DefaultUnitName)
	if err != nil || removed {
		t.Fatalf("second uninstall: removed=%v err=%v", removed, err)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Install(cctx, root, u); err == nil {
		t.Error("install with a cancelled context succeeded")
	}
}

func TestEnsureUserInRoot(t *testing.T) {
	if _, err := exec.LookPath("systemd-sysusers"); err != nil {
		t.Skip("systemd-sysusers is missing (install systemd, or run .ci/install-deps.sh)")
	}
	if os.Geteuid() != 0 {
		t.Skip("systemd-sysusers --root needs root to write the files it creates")
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	changed, err := EnsureUser(context.Background(), root, testService)
	if err != nil || !changed {
		t.Fatalf("EnsureUser: changed=%v err=%v", changed, err)
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(passwd, []byte(DefaultUser+":x:")) || !bytes.Contains(passwd, []byte("/var/lib/"+DefaultStateDirectory)) {
		t.Errorf("%s has no %s entry:\n%s", filepath.Join(root, "etc/passwd"), DefaultUser, passwd)
	}
	changed, err = EnsureUser(context.Background(), root, testService)
	if err != nil || changed {
		t.Fatalf("second EnsureUser: changed=%v err=%v, want unchanged", changed, err)
	}
	bad := testService
	bad.User = "Bad Name"
	if _, err := EnsureUser(context.Background(), root, bad); err == nil {
		t.Error("EnsureUser accepted an invalid user name")
	}
}

// TestRenderLimits: LimitNOFILE= and MemoryMax= follow the sessions the
// configuration allows, and the default leaves room for 10,000 idle
// sessions on each of three listeners at the proxy's default max_sessions.
func TestRenderLimits(t *testing.T) {
	if DefaultSessions != 3*config.DefaultMaxSessions {
		t.Errorf("DefaultSessions = %d, want three listeners at max_sessions %d", DefaultSessions, config.DefaultMaxSessions)
	}
	for _, tt := range []struct {
		sessions    int
		nofile, mem string
	}{
		{0, "64096", "2131M"},
		{100, "4296", "262M"},
		{10000, "24096", "881M"},
	} {
		u, err := Render(UnitOptions{Service: testService, Binary: "/usr/local/bin/orbit", ConfigFile: testConfig, Sessions: tt.sessions})
		if err != nil {
			t.Fatal(err)
		}
		if got := u.Value("Service", "LimitNOFILE"); got != tt.nofile {
			t.Errorf("%d sessions: LimitNOFILE=%s, want %s", tt.sessions, got, tt.nofile)
		}
		if got := u.Value("Service", "MemoryMax"); got != tt.mem {
			t.Errorf("%d sessions: MemoryMax=%s, want %s", tt.sessions, got, tt.mem)
		}
		if got := u.Value("Service", "TasksMax"); got != "512" {
			t.Errorf("TasksMax=%s", got)
		}
	}
	if _, err := Render(UnitOptions{Service: testService, Binary: "/usr/local/bin/orbit", ConfigFile: testConfig, Sessions: -1}); err == nil {
		t.Error("negative sessions accepted")
	}
}

// TestServiceOverrides: a family relaxes or tightens the hardening by
// naming options; the one it names replaces every value of it in place,
// and a new one lands with the other [Service] options.
func TestServiceOverrides(t *testing.T) {
	svc := testService
	svc.Overrides = []*unit.UnitOption{
		unit.NewUnitOption("Service", "RestrictAddressFamilies", "AF_UNIX"),
		unit.NewUnitOption("Service", "SystemCallFilter", "@system-service"),
		unit.NewUnitOption("Service", "Environment", "MODE=test"),
	}
	u, err := Render(UnitOptions{Service: svc, Binary: "/usr/bin/orbit", ConfigFile: testConfig})
	if err != nil {
		t.Fatal(err)
	}
	var filters, envAt, installAt int
	for i, o := range u.Options {
		switch {
		case o.Name == "SystemCallFilter":
			filters++
		case o.Name == "Environment":
			envAt = i
		case o.Section == "Install":
			installAt = i
		}
	}
	if v := u.Value("Service", "RestrictAddressFamilies"); v != "AF_UNIX" {
		t.Errorf("RestrictAddressFamilies = %q, want the override", v)
	}
	if filters != 1 || u.Value("Service", "SystemCallFilter") != "@system-service" {
		t.Errorf("SystemCallFilter: %d values, last %q; want the override alone", filters, u.Value("Service", "SystemCallFilter"))
	}
	if envAt == 0 || envAt != installAt-1 {
		t.Errorf("Environment at %d, want just before [Install] (%d)", envAt, installAt)
	}
	svc.Overrides = []*unit.UnitOption{unit.NewUnitOption("Unit", "After", "x.target")}
	if _, err := Render(UnitOptions{Service: svc, Binary: "/usr/bin/orbit", ConfigFile: testConfig}); err == nil {
		t.Error("an override outside [Service] was accepted")
	}
	if _, err := Render(UnitOptions{Binary: "/usr/bin/orbit", ConfigFile: testConfig}); err == nil {
		t.Error("a unit without a service description was rendered")
	}
}
