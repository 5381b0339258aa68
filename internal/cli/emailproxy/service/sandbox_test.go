package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/cli/emailproxy/status"
	"github.com/senhasegura/orbit/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The sandbox is a real systemd as PID 1 of a private PID and mount
// namespace (/work/shared/recipes/systemd-sandbox.md; the same boot as
// internal/systemd's sandbox test). The real orbit binary is run inside it
// with nsenter, exactly as an administrator would run it.
const sandboxBoot = `#!/bin/sh
set -e
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /var/tmp
chmod 1777 /tmp /var/tmp
mkdir -p /run/lock /run/orbit-etc/upper /run/orbit-etc/work
# /etc is an overlay so the service user exists inside only.
mount -t overlay overlay -o lowerdir=/etc,upperdir=/run/orbit-etc/upper,workdir=/run/orbit-etc/work /etc
mount -t tmpfs tmpfs /etc/systemd/system
# The host may keep a persistent journal: keep ours out of it and its
# entries out of ours.
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
# The unit's StateDirectory (status file, token cache) stays inside.
mkdir -p /var/lib/orbit
mount -t tmpfs tmpfs /var/lib/orbit
exec env container=other /lib/systemd/systemd --system --unit=basic.target --log-target=journal
`

type sandbox struct {
	pid     int
	unshare *exec.Cmd
}

func bootSandbox(t *testing.T, dir string) *sandbox {
	t.Helper()
	testenv.RequireRoot(t, "the systemd sandbox")
	testenv.RequireCommand(t, "unshare")
	testenv.RequireCommand(t, "nsenter")
	testenv.RequireCommand(t, "journalctl")
	if _, err := os.Stat("/lib/systemd/systemd"); err != nil {
		t.Skip("/lib/systemd/systemd is missing (apt-get install systemd, or run .ci/install-deps.sh)")
	}
	script := filepath.Join(dir, "boot.sh")
	if err := os.WriteFile(script, []byte(sandboxBoot), 0o755); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command("unshare", "--pid", "--fork", "--mount", "--mount-proc", "--propagation", "private", script)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the sandbox: %v", err)
	}
	s := &sandbox{unshare: cmd}
	t.Cleanup(s.stop)
	deadline := time.Now().Add(10 * time.Second)
	for s.pid == 0 {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
		if f := strings.Fields(string(b)); len(f) > 0 {
			s.pid, _ = strconv.Atoi(f[0])
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox's systemd did not appear within 10 s:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	private := fmt.Sprintf("/proc/%d/root/run/systemd/private", s.pid)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(private); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox's systemd made no private socket within 30 s:\n%s", out.String())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := s.run(ctx, nil, "systemctl", "is-system-running", "--wait")
	if st := strings.TrimSpace(r.stdout); st != "running" && st != "degraded" {
		t.Fatalf("sandbox systemd is %q: %s\n%s", st, r.stderr, out.String())
	}
	return s
}

type ran struct {
	code           int
	stdout, stderr string
}

// run runs argv inside the sandbox with env added to a clean environment.
func (s *sandbox) run(ctx context.Context, env []string, argv ...string) ran {
	args := append([]string{"-t", strconv.Itoa(s.pid), "-m", "-p", "env", "-i",
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NO_COLOR=1"}, env...)
	cmd := exec.CommandContext(ctx, "nsenter", append(args, argv...)...)
	cmd.WaitDelay = 5 * time.Second
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
		e.WriteString(err.Error())
	}
	return ran{code, o.String(), e.String()}
}

func (s *sandbox) stop() {
	if s.pid != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s.run(ctx, nil, "systemctl", "poweroff", "--no-block")
		cancel()
	}
	done := make(chan struct{})
	go func() { s.unshare.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		if s.pid != 0 {
			syscall.Kill(s.pid, syscall.SIGKILL)
		}
		s.unshare.Process.Kill()
		<-done
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestSandboxLifecycle runs the real orbit binary on a real systemd:
// register installs the unit, start/status/restart/stop drive it, and a
// start with a broken file fails with exit 7 and the engine's complaint.
func TestSandboxLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a systemd sandbox (-short)")
	}
	dir := testenv.SharedDir(t)
	s := bootSandbox(t, dir)
	orbit := testenv.BuildOrbit(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cfg := filepath.Join(dir, "proxy conf", "emailproxy.config")
	if err := os.MkdirAll(filepath.Dir(cfg), 0o755); err != nil {
		t.Fatal(err)
	}
	step := func(name string, want int, env []string, args ...string) ran {
		t.Helper()
		start := time.Now()
		r := s.run(ctx, env, append([]string{orbit, "email-oauth2-proxy"}, args...)...)
		t.Logf("%s: exit %d in %v", name, r.code, time.Since(start).Round(time.Millisecond))
		if r.code != want {
			t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", name, r.code, want, r.stdout, r.stderr)
		}
		return r
	}
	imap, smtp, redirect, closed := freePort(t), freePort(t), freePort(t), freePort(t)
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
	if !strings.Contains(r.stdout, "/etc/systemd/system/email-oauth2-proxy.service installed") ||
		!strings.Contains(r.stdout, "is not running (start it") {
		t.Errorf("register did not report the unit:\n%s", r.stdout)
	}
	unitFile := s.run(ctx, nil, "cat", "/etc/systemd/system/email-oauth2-proxy.service")
	if !strings.Contains(unitFile.stdout, `"`+cfg+`"`) || !strings.Contains(unitFile.stdout, orbit+" email-oauth2-proxy serve --config") {
		t.Errorf("installed unit does not run this orbit with the file:\n%s", unitFile.stdout)
	}
	owner := s.run(ctx, nil, "stat", "-c", "%U %a", cfg, filepath.Dir(cfg))
	if owner.stdout != "orbit-emailproxy 600\norbit-emailproxy 700\n" {
		t.Errorf("file and directory owner/mode:\n%s", owner.stdout)
	}

	if r := s.run(ctx, nil, orbit, "email-oauth2-proxy", "serve", "--help"); r.code != 0 {
		t.Logf("`orbit email-oauth2-proxy serve` does not exist yet (exit %d): skipping start/status/stop", r.code)
	} else {
		r = step("start", 0, nil, "start")
		if !strings.Contains(r.stdout, "Started email-oauth2-proxy.service: active (running)") || !strings.Contains(r.stdout, "Enabled at boot.") {
			t.Errorf("start:\n%s", r.stdout)
		}
		r = step("status --output json", 0, nil, "status", "--output", "json")
		var rep status.Report
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("status JSON: %v\n%s", err, r.stdout)
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
		if !strings.Contains(r.stdout, "State:") || !strings.Contains(r.stdout, "active (running)") {
			t.Errorf("status text:\n%s", r.stdout)
		}
		r = step("register while running", 0, secretEnv, registerArgs...)
		if !strings.Contains(r.stdout, "restarted so the new file applies") {
			t.Errorf("register did not restart the running unit:\n%s", r.stdout)
		}
		r = step("register --no-restart while running", 0, secretEnv, append(registerArgs, "--no-restart")...)
		if !strings.Contains(r.stdout, "was not restarted (--no-restart)") {
			t.Errorf("register --no-restart:\n%s", r.stdout)
		}
		if owner := s.run(ctx, nil, "stat", "-c", "%U", cfg); owner.stdout != "orbit-emailproxy\n" {
			t.Errorf("after register rewrote the file it belongs to %q", owner.stdout)
		}
		r = step("status after register", 0, nil, "status", "--output", "json")
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.Unit.MainPID == pid {
			t.Errorf("register's restart kept PID %d: %v", pid, err)
		}
		pid = rep.Unit.MainPID
		r = step("restart", 0, nil, "restart", "--output", "json")
		var res struct {
			MainPID uint32 `json:"main_pid"`
			Active  string `json:"active_state"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Active != "active" || res.MainPID == pid || res.MainPID == 0 {
			t.Errorf("restart: %v %+v (old PID %d)", err, res, pid)
		}
		r = step("logs", 0, nil, "logs", "-n", "50")
		if !strings.Contains(r.stdout, "Started") {
			t.Errorf("logs lack systemd's Started line:\n%s", r.stdout)
		}
		if strings.Contains(r.stdout, "upstream") {
			t.Errorf("status opened sessions with the proxy:\n%s", r.stdout)
		}
		r = step("logs --output json", 0, nil, "logs", "-n", "5", "--output", "json")
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			var e map[string]any
			if err := json.Unmarshal([]byte(line), &e); err != nil || e["unit"] != "email-oauth2-proxy.service" {
				t.Errorf("NDJSON line %q: %v", line, err)
			}
		}
		r = step("logs --auth-url", 0, nil, "logs", "--auth-url")
		if r.stdout != "" {
			t.Errorf("an authorisation is pending before any login: %q", r.stdout)
		}
		step("logs --auth-url --follow --timeout", 8, nil, "logs", "--auth-url", "--follow", "--timeout", "1s")
		r = step("stop", 0, nil, "stop")
		if !strings.Contains(r.stdout, "Stopped email-oauth2-proxy.service (inactive).") {
			t.Errorf("stop:\n%s", r.stdout)
		}
		r = step("status after stop", 3, nil, "status")
		if !strings.Contains(r.stdout, "inactive (dead)") || !strings.Contains(r.stdout, "Start it: orbit email-oauth2-proxy start") {
			t.Errorf("status after stop:\n%s", r.stdout)
		}
		r = step("status --output json after stop", 3, nil, "status", "--output", "json")
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.Running || rep.Unit.ActiveState != "inactive" {
			t.Errorf("status JSON after stop: %v %+v", err, rep.Unit)
		}
		all := s.run(ctx, nil, "journalctl", "--no-pager", "-o", "verbose", "-u", "email-oauth2-proxy.service")
		if strings.Contains(all.stdout, secret) {
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
		if !strings.Contains(r.stderr, want) {
			t.Errorf("failed start's stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	// With the engine: its own complaint names the file. Without it: the
	// journal still shows why the process died.
	if !strings.Contains(r.stderr, broken) && !strings.Contains(r.stderr, `unknown command "serve"`) {
		t.Errorf("the journal excerpt does not show the configuration error:\n%s", r.stderr)
	}
	t.Logf("failed start as the admin sees it:\n%s", r.stderr)
}
