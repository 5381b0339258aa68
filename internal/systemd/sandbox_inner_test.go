package systemd

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/authurl"
	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/journal"
)

// TestSandboxInner runs inside the sandbox (TestSandbox starts it there):
// it installs, starts, inspects, restarts and stops the unit through the
// real systemd, and reads what the service logged back from the real
// journal.
func TestSandboxInner(t *testing.T) {
	if os.Getenv(sandboxInnerEnv) != "1" {
		t.Skip("runs only inside the systemd sandbox; TestSandbox starts it there")
	}
	dir := os.Getenv(sandboxDirEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	m, err := Connect(ctx, ConnectOptions{})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer m.Close()
	t.Logf("measure: connect over %s in %v", m.Via, time.Since(start).Round(time.Microsecond))

	// The service user, in the sandbox's private /etc.
	if _, err := EnsureUser(ctx, "", testService); err != nil {
		t.Fatalf("EnsureUser: %v", err)
	}
	config := filepath.Join(dir, "conf 100%", "emailproxy.config")
	if err := os.MkdirAll(filepath.Dir(config), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(config, []byte("[Email OAuth 2.0 Proxy configuration file]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := GrantConfigAccess(ctx, config, DefaultUser); err != nil {
		t.Fatalf("GrantConfigAccess: %v", err)
	}

	u, err := Render(UnitOptions{Service: testService, Binary: self, ConfigFile: config})
	if err != nil {
		t.Fatal(err)
	}
	name := u.Name
	changed, err := Install(ctx, "", u)
	if err != nil || !changed {
		t.Fatalf("Install: changed=%v err=%v", changed, err)
	}
	if err := m.DaemonReload(ctx); err != nil {
		t.Fatal(err)
	}
	if changed, err := m.Enable(ctx, name); err != nil || !changed {
		t.Fatalf("Enable: changed=%v err=%v", changed, err)
	}
	if changed, err := m.Enable(ctx, name); err != nil || changed {
		t.Errorf("second Enable: changed=%v err=%v, want unchanged", changed, err)
	}

	start = time.Now()
	if err := m.Start(ctx, name); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("measure: start (job done, unit active) in %v", time.Since(start).Round(time.Microsecond))
	p, err := m.Properties(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if p.LoadState != "loaded" || p.ActiveState != "active" || p.SubState != "running" || p.MainPID == 0 ||
		p.ActiveEnterTimestamp.IsZero() || p.UnitFileState != "enabled" || p.FragmentPath != "/etc/systemd/system/"+name {
		t.Errorf("after start: %+v", p)
	}
	t.Logf("properties: %+v", p)

	// The command line systemd ran is exactly the rendered one, quoting of
	// the space and '%' in both paths included.
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(int(p.MainPID)) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{self, "email-oauth2-proxy", "serve", "--config", config}, "\x00") + "\x00"
	if string(cmdline) != want {
		t.Errorf("service argv = %q, want %q", cmdline, want)
	}

	// The journal: the service's structured entries, found by unit and
	// MESSAGE_ID, while following (journald may still be writing them).
	r := &journal.Reader{}
	lifecycle := firstEntry(ctx, t, r, journal.Query{Units: []string{name}, MessageIDs: []string{events.Lifecycle}, Follow: true})
	for k, v := range map[string]string{
		"SYSLOG_IDENTIFIER":  "orbit",
		"_TRANSPORT":         "journal",
		"ORBIT_STATE":        "started",
		"ORBIT_CONFIG_WRITE": "ok",
		"ORBIT_ETC_WRITE":    "denied",
		"ORBIT_LOG_MODE":     "journal",
	} {
		if got := lifecycle.Field(k); got != v {
			t.Errorf("lifecycle entry %s=%q, want %q", k, got, v)
		}
	}
	if uid := lifecycle.Field("ORBIT_UID"); uid == "0" || uid == "" {
		t.Errorf("the service runs as uid %q, want the unprivileged service user", uid)
	}
	authURL := firstEntry(ctx, t, r, journal.Query{Units: []string{name}, MessageIDs: []string{events.AuthURL}, Follow: true})
	if authURL.Field("ORBIT_ACCOUNT") != testAccount || authURL.Field("ORBIT_AUTH_URL") != testAuthURL ||
		authURL.Field("ORBIT_REDACTED") != "password" || authURL.Priority != 6 {
		t.Errorf("auth URL entry fields: %v", authURL.Fields)
	}

	all := collect(ctx, t, r, journal.Query{Units: []string{name}})
	if got := authurl.PendingURLs(all); len(got) != 1 || got[0].Account != testAccount || got[0].URL != testAuthURL {
		t.Errorf("pending authorisations = %+v, want %s's URL", got, testAccount)
	}
	// The "browser" completes it: the service logs AuthSucceeded.
	if err := syscall.Kill(int(p.MainPID), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	firstEntry(ctx, t, r, journal.Query{Units: []string{name}, MessageIDs: []string{events.AuthSucceeded}, Follow: true})
	if got := authurl.PendingURLs(collect(ctx, t, r, journal.Query{Units: []string{name}})); len(got) != 0 {
		t.Errorf("pending authorisations after success = %+v, want none", got)
	}

	// The exposure score of the unit as installed.
	if out, err := exec.CommandContext(ctx, "systemd-analyze", "security", "--no-pager", name).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze security: %v\n%s", err, out)
	} else {
		score := regexp.MustCompile(`Overall exposure level for \S+: (\S+ \S+)`).FindSubmatch(out)
		if score == nil {
			t.Errorf("no exposure level in:\n%s", out)
		} else {
			t.Logf("measure: systemd-analyze security %s: %s", name, score[1])
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "✗") {
				t.Logf("exposure: %s", strings.Join(strings.Fields(line), " "))
			}
		}
	}

	start = time.Now()
	if err := m.Restart(ctx, name); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	t.Logf("measure: restart in %v", time.Since(start).Round(time.Microsecond))
	p2, err := m.Properties(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if p2.ActiveState != "active" || p2.MainPID == 0 || p2.MainPID == p.MainPID {
		t.Errorf("after restart: active=%s pid %d (was %d)", p2.ActiveState, p2.MainPID, p.MainPID)
	}

	start = time.Now()
	if err := m.Stop(ctx, name); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("measure: stop in %v", time.Since(start).Round(time.Microsecond))
	if p3, _ := m.Properties(ctx, name); p3.ActiveState != "inactive" || p3.MainPID != 0 {
		t.Errorf("after stop: %s/%s pid %d", p3.ActiveState, p3.SubState, p3.MainPID)
	}
	stopping := firstEntry(ctx, t, r, journal.Query{Units: []string{name}, MessageIDs: []string{events.Lifecycle},
		Matches: []string{"ORBIT_STATE=stopping"}, Follow: true})
	if stopping.Message != "stopping" {
		t.Errorf("stopping entry: %q", stopping.Message)
	}

	// A whole start, inspect, stop round trip.
	start = time.Now()
	if err := m.Start(ctx, name); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Properties(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(ctx, name); err != nil {
		t.Fatal(err)
	}
	t.Logf("measure: start+properties+stop round trip in %v", time.Since(start).Round(time.Microsecond))

	// A broken configuration: start fails, says so, and the journal has
	// the engine's explanation.
	if err := os.WriteFile(config, []byte("broken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := GrantConfigAccess(ctx, config, DefaultUser); err != nil {
		t.Fatal(err)
	}
	err = m.Start(ctx, name)
	var opErr *OpError
	if !errors.As(err, &opErr) || opErr.JobResult == "done" || opErr.Props.Result != "exit-code" ||
		opErr.Props.ExecMainStatus != 1 || !strings.Contains(err.Error(), "exited with status 1") {
		t.Fatalf("Start with a broken file: %v (%+v)", err, opErr)
	}
	t.Logf("broken start: %v", err)
	failed := firstEntry(ctx, t, r, journal.Query{Units: []string{name}, Matches: []string{"ORBIT_STATE=failed"}, Follow: true})
	if !strings.Contains(failed.Message, "configuration error in "+config) || failed.Priority != 3 {
		t.Errorf("failure entry: %q priority %d: %v", failed.Message, failed.Priority, failed.Fields)
	}
	if err := m.Stop(ctx, name); err != nil {
		t.Errorf("Stop after a failed start: %v", err)
	}

	// No secret in anything the unit ever logged.
	for _, e := range collect(ctx, t, r, journal.Query{Units: []string{name}}) {
		for k, v := range e.Fields {
			if strings.Contains(v, testPassword) {
				t.Errorf("journal field %s carries the password: %q", k, v)
			}
		}
	}

	// A foreign engine through Exec: Type=exec, no sd_notify.
	if err := os.WriteFile(config, []byte("[ok]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := GrantConfigAccess(ctx, config, DefaultUser); err != nil {
		t.Fatal(err)
	}
	u2, err := Render(UnitOptions{Service: testService, ConfigFile: config, Exec: []string{self, "simple-engine", "--config-file", ConfigPlaceholder}})
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := Install(ctx, "", u2); err != nil || !changed {
		t.Fatalf("Install of the Exec unit: changed=%v err=%v", changed, err)
	}
	if err := m.DaemonReload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Restart(ctx, name); err != nil {
		t.Fatalf("Restart with the Exec engine: %v", err)
	}
	p4, err := m.Properties(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(int(p4.MainPID)) + "/cmdline"); !strings.Contains(string(cmdline), "simple-engine\x00--config-file\x00"+config) {
		t.Errorf("the Exec engine runs as %q", cmdline)
	}
	if err := m.Stop(ctx, name); err != nil {
		t.Fatal(err)
	}

	if changed, err := m.Disable(ctx, name); err != nil || !changed {
		t.Errorf("Disable: changed=%v err=%v", changed, err)
	}
	secondFamily(ctx, t, m, self, dir)

	err = m.Start(ctx, "no-such-unit.service")
	if err == nil || !strings.Contains(err.Error(), "register") {
		t.Errorf("Start of a missing unit: %v, want a hint to register", err)
	}
	if p, err := m.Properties(ctx, "no-such-unit.service"); err != nil || p.LoadState != "not-found" {
		t.Errorf("Properties of a missing unit: %+v, %v", p, err)
	}
}

// firstEntry follows the journal until an entry matches q.
func firstEntry(ctx context.Context, t *testing.T, r *journal.Reader, q journal.Query) journal.Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for e, err := range r.Entries(ctx, q) {
		if err != nil {
			t.Fatalf("reading the journal for %+v: %v", q, err)
		}
		return e
	}
	t.Fatalf("no journal entry for %+v", q)
	return journal.Entry{}
}

func collect(ctx context.Context, t *testing.T, r *journal.Reader, q journal.Query) []journal.Entry {
	t.Helper()
	es, err := r.Collect(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	return es
}
