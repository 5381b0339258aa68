package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/cli/emailproxy/status"
	"github.com/senhasegura/orbit/internal/testenv"
	"github.com/senhasegura/orbit/internal/testenv/sandbox"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The sandbox (internal/testenv/sandbox) is a real systemd as PID 1 of a
// private PID and mount namespace; the real orbit binary is run inside it
// with nsenter, exactly as an administrator would run it. /etc is an
// overlay there, so the service user exists inside only, and
// /var/lib/orbit (the unit's StateDirectory: status file, token cache) is a
// tmpfs, so nothing the service writes reaches the host.

// TestSandboxLifecycle runs the real orbit binary on a real systemd:
// register installs the unit, start/status/restart/stop drive it, and a
// start with a broken file fails with exit 7 and the engine's complaint.
func TestSandboxLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a systemd sandbox (-short)")
	}
	testenv.RequireCommand(t, "journalctl")
	dir := testenv.SharedDir(t)
	s := sandbox.BootWith(t, sandbox.Options{Tmpfs: []string{"/var/lib/orbit"}})
	orbit := testenv.BuildOrbit(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cfg := filepath.Join(dir, "proxy conf", "emailproxy.config")
	if err := os.MkdirAll(filepath.Dir(cfg), 0o755); err != nil {
		t.Fatal(err)
	}
	step := func(name string, want int, env []string, args ...string) sandbox.Result {
		t.Helper()
		start := time.Now()
		r := s.Exec(ctx, env, append([]string{orbit, "email-oauth2-proxy"}, args...)...)
		t.Logf("%s: exit %d in %v", name, r.Code, time.Since(start).Round(time.Millisecond))
		if r.Code != want {
			t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", name, r.Code, want, r.Stdout, r.Stderr)
		}
		return r
	}
	ports := testenv.FreePorts(t, 4)
	imap, smtp, redirect, closed := ports[0], ports[1], ports[2], ports[3]
	const secret = "Qx8~R2.vF_kP9sLmN3tZ7wYbC4dE6gH1jK5nA0uV"
	registerArgs := []string{"register", "--provider", "office365", "--tenant-id", "0f3e3b5c-1a2b-4c3d-8e9f-0123456789ab",
		"--oauth2-client-id", "6731de76-14a6-49ae-97bc-6eba6914391e", "--config", cfg, "--force",
		"--imap-local-port", strconv.Itoa(imap), "--smtp-local-port", strconv.Itoa(smtp),
		// Upstream on loopback: nothing in this test may reach the network.
		"--imap-server-address", "127.0.0.1", "--imap-server-port", strconv.Itoa(closed),
		"--smtp-server-address", "127.0.0.1", "--smtp-server-port", strconv.Itoa(closed),
		"--redirect-uri", "https://vault.example.com/email-oauth2-proxy-authorize/",
		"--redirect-listen-address", fmt.Sprintf("http://127.0.0.1:%d/", redirect)}
	secretEnv := []string{"ORBIT_OAUTH2_CLIENT_SECRET=" + secret}
	r := step("register", 0, secretEnv, registerArgs...)
	if !strings.Contains(r.Stdout, "/etc/systemd/system/email-oauth2-proxy.service installed") ||
		!strings.Contains(r.Stdout, "is not running (start it") {
		t.Errorf("register did not report the unit:\n%s", r.Stdout)
	}
	unitFile := s.Exec(ctx, nil, "cat", "/etc/systemd/system/email-oauth2-proxy.service")
	if !strings.Contains(unitFile.Stdout, `"`+cfg+`"`) || !strings.Contains(unitFile.Stdout, orbit+" email-oauth2-proxy serve --config") {
		t.Errorf("installed unit does not run this orbit with the file:\n%s", unitFile.Stdout)
	}
	owner := s.Exec(ctx, nil, "stat", "-c", "%U %a", cfg, filepath.Dir(cfg))
	if owner.Stdout != "orbit-emailproxy 600\norbit-emailproxy 700\n" {
		t.Errorf("file and directory owner/mode:\n%s", owner.Stdout)
	}

	if r := s.Exec(ctx, nil, orbit, "email-oauth2-proxy", "serve", "--help"); r.Code != 0 {
		t.Logf("`orbit email-oauth2-proxy serve` does not exist yet (exit %d): skipping start/status/stop", r.Code)
	} else {
		r = step("start", 0, nil, "start")
		if !strings.Contains(r.Stdout, "Started email-oauth2-proxy.service: active (running)") || !strings.Contains(r.Stdout, "Enabled at boot.") {
			t.Errorf("start:\n%s", r.Stdout)
		}
		r = step("status --output json", 0, nil, "status", "--output", "json")
		var rep status.Report
		if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
			t.Fatalf("status JSON: %v\n%s", err, r.Stdout)
		}
		if !rep.Running || rep.Unit.ActiveState != "active" || rep.Unit.SubState != "running" || rep.Unit.MainPID == 0 ||
			rep.Unit.UnitFileState != "enabled" || rep.Unit.Since == nil || rep.Config.Path != cfg {
			t.Errorf("status unit: %+v, config %+v", rep.Unit, rep.Config)
		}
		if len(rep.Listeners) != 2 {
			t.Fatalf("listeners: %+v", rep.Listeners)
		}
		for _, l := range rep.Listeners {
			if !l.Listening {
				t.Errorf("listener %s is not listening after start: %s", l.Address, l.Error)
			}
		}
		pid := rep.Unit.MainPID
		r = step("status", 0, nil, "status")
		if !strings.Contains(r.Stdout, "State:") || !strings.Contains(r.Stdout, "active (running)") {
			t.Errorf("status text:\n%s", r.Stdout)
		}
		// systemd leaves a running unit alone, and enabling an enabled
		// unit changes nothing: start says both as they are.
		r = step("start while running", 0, nil, "start", "--config", cfg)
		if !strings.Contains(r.Stdout, "was already running: active (running), main PID "+strconv.Itoa(int(pid))) || strings.Contains(r.Stdout, "Enabled at boot.") {
			t.Errorf("start while running:\n%s", r.Stdout)
		}
		r = step("register while running", 0, secretEnv, registerArgs...)
		if !strings.Contains(r.Stdout, "restarted so the new file applies") {
			t.Errorf("register did not restart the running unit:\n%s", r.Stdout)
		}
		if strings.Contains(r.Stdout, "email-oauth2-proxy start") {
			t.Errorf("register suggests start for the unit it restarted:\n%s", r.Stdout)
		}
		r = step("register --no-restart while running", 0, secretEnv, append(registerArgs, "--no-restart")...)
		if !strings.Contains(r.Stdout, "was not restarted (--no-restart)") {
			t.Errorf("register --no-restart:\n%s", r.Stdout)
		}
		if owner := s.Exec(ctx, nil, "stat", "-c", "%U", cfg); owner.Stdout != "orbit-emailproxy\n" {
			t.Errorf("after register rewrote the file it belongs to %q", owner.Stdout)
		}
		r = step("status after register", 0, nil, "status", "--output", "json")
		if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil || rep.Unit.MainPID == pid {
			t.Errorf("register's restart kept PID %d: %v", pid, err)
		}
		pid = rep.Unit.MainPID
		r = step("restart", 0, nil, "restart", "--output", "json")
		var res struct {
			MainPID uint32 `json:"main_pid"`
			Active  string `json:"active_state"`
		}
		if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil || res.Active != "active" || res.MainPID == pid || res.MainPID == 0 {
			t.Errorf("restart: %v %+v (old PID %d)", err, res, pid)
		}
		r = step("logs", 0, nil, "logs", "-n", "50")
		if !strings.Contains(r.Stdout, "Started") {
			t.Errorf("logs lack systemd's Started line:\n%s", r.Stdout)
		}
		if strings.Contains(r.Stdout, "upstream") {
			t.Errorf("status opened sessions with the proxy:\n%s", r.Stdout)
		}
		r = step("logs --output json", 0, nil, "logs", "-n", "5", "--output", "json")
		for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
			var e map[string]any
			if err := json.Unmarshal([]byte(line), &e); err != nil || e["unit"] != "email-oauth2-proxy.service" {
				t.Errorf("NDJSON line %q: %v", line, err)
			}
		}
		r = step("logs --auth-url", 0, nil, "logs", "--auth-url")
		if r.Stdout != "" {
			t.Errorf("an authorisation is pending before any login: %q", r.Stdout)
		}
		step("logs --auth-url --follow --timeout", 8, nil, "logs", "--auth-url", "--follow", "--timeout", "1s")
		r = step("stop", 0, nil, "stop")
		if !strings.Contains(r.Stdout, "Stopped email-oauth2-proxy.service (inactive).") {
			t.Errorf("stop:\n%s", r.Stdout)
		}
		r = step("status after stop", 3, nil, "status")
		if !strings.Contains(r.Stdout, "inactive (dead)") || !strings.Contains(r.Stdout, "Start it: orbit email-oauth2-proxy start") {
			t.Errorf("status after stop:\n%s", r.Stdout)
		}
		r = step("status --output json after stop", 3, nil, "status", "--output", "json")
		if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil || rep.Running || rep.Unit.ActiveState != "inactive" {
			t.Errorf("status JSON after stop: %v %+v", err, rep.Unit)
		}
		all := s.Exec(ctx, nil, "journalctl", "--no-pager", "-o", "verbose", "-u", "email-oauth2-proxy.service")
		if strings.Contains(all.Stdout, secret) {
			t.Error("the client secret reached the unit's journal")
		}
	}

	// A broken file: start must fail (exit 7) and show why from the journal.
	broken := filepath.Join(dir, "broken", "emailproxy.config")
	if err := os.MkdirAll(filepath.Dir(broken), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(broken, []byte("this line is not INI\n[IMAP-2993]\nserver_address = a.example\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = step("start with a broken file", 7, nil, "start", "--config", broken, "--no-enable")
	for _, want := range []string{"Last ", "journal lines of email-oauth2-proxy.service", "What to do:",
		"orbit email-oauth2-proxy config validate " + broken} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("failed start's stderr lacks %q:\n%s", want, r.Stderr)
		}
	}
	// With the engine: its own complaint names the file. Without it: the
	// journal still shows why the process died.
	if !strings.Contains(r.Stderr, broken) && !strings.Contains(r.Stderr, `unknown command "serve"`) {
		t.Errorf("the journal excerpt does not show the configuration error:\n%s", r.Stderr)
	}
	t.Logf("failed start as the admin sees it:\n%s", r.Stderr)
}
