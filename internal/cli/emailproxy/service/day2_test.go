package service_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/senhasegura/orbit/internal/cli/emailproxy/service"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/service/servicetest"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/systemd"
)

// brokenConfig has a listener without its upstream: the engine refuses it.
const brokenConfig = "[IMAP-2993]\nserver_port = 993\n"

// TestRestartRefusesABrokenFile: restart checks the file as the engine
// would and leaves a running proxy alone when it is broken (exit 4, the
// problem listed), instead of stopping it for a start that must fail.
func TestRestartRefusesABrokenFile(t *testing.T) {
	cfg := servicetest.WriteConfig(t, servicetest.MinimalConfig)
	e := newEnv(t, service.Restart, cfg)
	e.install(t, cfg)
	e.mgr.Props.ActiveState, e.mgr.Props.SubState, e.mgr.Props.MainPID = "active", "running", 77
	if err := os.WriteFile(cfg, []byte(brokenConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, _, err := e.run(t)
	if code != exitcode.Invalid {
		t.Fatalf("exit %d, want 4: %v", code, err)
	}
	for _, want := range []string{cfg + " is not valid", "the running proxy (email-oauth2-proxy.service, main PID 77) was left as it is", "server_address", "config validate " + cfg} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	for _, c := range e.mgr.CallList() {
		if strings.HasPrefix(c, "restart") || strings.HasPrefix(c, "stop") || strings.HasPrefix(c, "start") {
			t.Errorf("the unit was touched: %q", e.mgr.CallList())
		}
	}
}

// TestStartClearsAFailedUnitAndRepairsItsState: start resets a unit that
// gave up (start-limit-hit would refuse the start) and hands the state
// directory to the service user before starting.
func TestStartClearsAFailedUnitAndRepairsItsState(t *testing.T) {
	cfg := servicetest.WriteConfig(t, servicetest.MinimalConfig)
	e := newEnv(t, service.Start, cfg)
	e.mgr.Props.ActiveState, e.mgr.Props.SubState = "failed", "failed"
	if code, _, _, err := e.run(t); code != 0 {
		t.Fatal(err)
	}
	calls := strings.Join(e.mgr.CallList(), ",")
	if r, s := strings.Index(calls, "reset-failed "+service.DefaultUnit), strings.Index(calls, "start "+service.DefaultUnit); r < 0 || s < r {
		t.Errorf("calls %s: want reset-failed before start", calls)
	}
	if len(e.inst.Repaired) != 1 || e.inst.Repaired[0] != service.DefaultUser+":"+service.DefaultStateDirectory {
		t.Errorf("RepairStateDir calls %q", e.inst.Repaired)
	}
}

// TestHookDoesNotRestartOnABrokenFile: register's automatic restart is
// refused the same way; the proxy keeps running.
func TestHookDoesNotRestartOnABrokenFile(t *testing.T) {
	cfg := servicetest.WriteConfig(t, brokenConfig)
	io, _, _, _ := iostreams.Test()
	m := servicetest.NewManager()
	m.Props.ActiveState, m.Props.SubState, m.Props.MainPID = "active", "running", 10
	h := &service.Hook{Deps: service.Deps{IO: io, Connector: &servicetest.Connector{Manager: m}, Installer: &servicetest.Installer{},
		Journal: &servicetest.Journal{}, Executable: func() (string, error) { return "/usr/local/bin/orbit", nil }}, Unit: service.DefaultUnit}
	_, err := h.AfterWrite(context.Background(), cfg, true)
	if exitcode.Of(err) != exitcode.Invalid || !strings.Contains(err.Error(), "the file is written, but") || !strings.Contains(err.Error(), "left as it is") {
		t.Fatalf("exit %d: %v", exitcode.Of(err), err)
	}
	for _, c := range m.CallList() {
		if strings.HasPrefix(c, "restart") {
			t.Errorf("restarted on a broken file: %q", m.CallList())
		}
	}
}

// TestFailedStartNamesTheStateDirectory: a start that failed with
// 200/CHDIR says which path in the state directory is wrong and the fix.
func TestFailedStartNamesTheStateDirectory(t *testing.T) {
	cfg := servicetest.WriteConfig(t, servicetest.MinimalConfig)
	e := newEnv(t, service.Start, cfg)
	e.inst.Problems = []systemd.StateProblem{{Path: "/var/lib/orbit", What: "mode 0700, owner uid 0: the service user orbit-emailproxy cannot enter it", Fix: "chmod 0755 /var/lib/orbit"}}
	e.mgr.Fail = map[string]error{"start " + service.DefaultUnit: &systemd.OpError{Op: "start", Unit: service.DefaultUnit, JobResult: "failed",
		Props: systemd.Properties{ActiveState: "failed", SubState: "failed", Result: "exit-code", ExecMainCode: 1, ExecMainStatus: 200}}}
	code, _, _, err := e.run(t)
	if code != exitcode.Failed {
		t.Fatalf("exit %d: %v", code, err)
	}
	for _, want := range []string{"/var/lib/orbit: mode 0700", "fix: chmod 0755 /var/lib/orbit"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the failure lacks %q:\n%v", want, err)
		}
	}
}

// TestStartRefusesWhileServeRunsInTheForeground: a foreground serve of the
// same file holds the ports; start says so instead of a unit that fails
// with "address already in use".
func TestStartRefusesWhileServeRunsInTheForeground(t *testing.T) {
	cfg := servicetest.WriteConfig(t, servicetest.MinimalConfig)
	e := newEnv(t, service.Start, cfg)
	e.opts.Processes = func() ([]service.Process, error) {
		return []service.Process{{PID: 61, Config: cfg, Argv: []string{"orbit", "email-oauth2-proxy", "serve", "--config", cfg}}}, nil
	}
	code, _, _, err := e.run(t)
	if code != exitcode.Failed || !strings.Contains(fmt.Sprint(err), "already runs in the foreground") || !strings.Contains(fmt.Sprint(err), "kill 61") {
		t.Fatalf("exit %d: %v", code, err)
	}
	for _, c := range e.mgr.CallList() {
		if strings.HasPrefix(c, "start") {
			t.Errorf("the unit was started: %q", e.mgr.CallList())
		}
	}
	// The unit's own main process is not a foreground proxy.
	e = newEnv(t, service.Restart, cfg)
	e.mgr.Props.ActiveState, e.mgr.Props.SubState, e.mgr.Props.MainPID = "active", "running", 61
	e.opts.Processes = func() ([]service.Process, error) { return []service.Process{{PID: 61, Config: cfg}}, nil }
	if code, _, _, err := e.run(t); code != 0 {
		t.Fatalf("restart of the unit whose main process serves the file: exit %d: %v", code, err)
	}
}
