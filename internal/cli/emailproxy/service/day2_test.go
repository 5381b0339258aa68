package service_test

import (
	"context"
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
	if len(e.inst.Repaired) != 1 || e.inst.Repaired[0] != systemd.DefaultUser+":"+systemd.DefaultStateDirectory {
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
