package service_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/coreos/go-systemd/v22/unit"
	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/cli/service"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/systemd"
	"github.com/senhasegura/orbit/internal/testenv"
	"github.com/senhasegura/orbit/internal/testenv/sandbox"
	"github.com/senhasegura/orbit/pkg/journal"
	"github.com/spf13/cobra"
)

// The test binary doubles as the tick family's daemon: the unit runs it as
// "<bin> tick --config FILE".
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "tick" {
		os.Exit(tickMain())
	}
	os.Exit(m.Run())
}

// tickMain is the tick daemon: ready over sd_notify, a journal line per
// reload, gone on SIGTERM. It knows nothing of e-mail.
func tickMain() int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP)
	fmt.Println("tick started as uid " + strconv.Itoa(os.Getuid()))
	_, _ = daemon.SdNotify(false, daemon.SdNotifyReady)
	reloads := 0
	for s := range sigs {
		if s == syscall.SIGHUP {
			reloads++
			fmt.Printf("tick reloaded %d\n", reloads)
			continue
		}
		fmt.Println("tick stopping")
		return 0
	}
	return 0
}

// tickFamily is a second daemon family, known only to this test: its own
// unit, user and state directory, a file check of its own, and its own
// words for every verb.
var tickFamily = service.Description{
	Service: systemd.Service{
		Name:                     "orbit-tick.service",
		Description:              "orbit tick test daemon",
		Origin:                   "orbit tick start",
		User:                     "orbit-tick",
		UserRole:                 "the tick daemon",
		StateDirectory:           "orbit/tick",
		Args:                     []string{"tick", "--config", systemd.ConfigPlaceholder},
		ReloadSignal:             "HUP",
		RestartPreventExitStatus: systemd.SetupExitStatus,
		Overrides:                []*unit.UnitOption{unit.NewUnitOption("Service", "RestrictAddressFamilies", "AF_UNIX")},
	},
	Command:       "tick",
	Noun:          "ticker",
	DefaultConfig: "/etc/orbit/tick.conf",
	Help: map[service.Action]service.Help{
		service.Start:     {Short: "Start the ticker"},
		service.Stop:      {Short: "Stop the ticker"},
		service.Restart:   {Short: "Restart the ticker"},
		service.Uninstall: {Short: "Remove the ticker"},
		service.Reload:    {Short: "Make the ticker re-read its file"},
		service.Status:    {Short: "Show the ticker"},
		service.Logs:      {Short: "Show the ticker's journal"},
	},
	// The ticker's file is one "interval = N" line.
	CheckConfig: func(path, keep string) error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(string(b), "interval = ") {
			return exitcode.Withf(exitcode.Invalid, "%s is not a tick file; %s", path, keep)
		}
		return nil
	},
	// The ticker's part of status: its interval.
	StatusExtra: func(_ context.Context, cfgPath string, _ bool) (string, any) {
		b, err := os.ReadFile(cfgPath)
		if err != nil {
			return "Interval: unknown (" + err.Error() + ")", nil
		}
		v := strings.TrimSpace(strings.TrimPrefix(string(b), "interval = "))
		return "Interval: " + v, map[string]string{"interval": v}
	},
	Purge: service.PurgeWords{State: "the tick state", StateHolds: "its counters", Keeps: "the file and state"},
}

const tickDirEnv = "ORBIT_TICK_SANDBOX_DIR"

// TestSandboxTickFamily boots the systemd sandbox and runs
// TestSandboxTickFamilyInner there with this binary, which also serves as
// the tick daemon.
func TestSandboxTickFamily(t *testing.T) {
	if sandbox.Inside() {
		t.Skip("already inside the sandbox")
	}
	if testing.Short() {
		t.Skip("boots a systemd sandbox (-short)")
	}
	s := sandbox.BootWith(t, sandbox.Options{Tmpfs: []string{"/var/lib/orbit"}})
	dir := testenv.SharedDir(t)
	bin := sandbox.CopyTestBinary(t, filepath.Join(dir, "bin", "orbit-tick-test"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s.RunTest(ctx, t, bin, "TestSandboxTickFamilyInner", tickDirEnv+"="+dir)
}

// TestSandboxTickFamilyInner mounts the shared verbs for the tick family
// under an `orbit tick` of its own and drives the real systemd with them:
// start installs and starts the unit as its user, restart refuses a file
// the family's check refuses and leaves the daemon running, reload
// signals it (its journal and logs show it took the file), status exits 0
// while it runs and 3 once stop stopped it,
// uninstall --purge removes the unit, the user's sysusers.d entry and the
// file.
func TestSandboxTickFamilyInner(t *testing.T) {
	if !sandbox.Inside() {
		t.Skip("runs only inside the systemd sandbox; TestSandboxTickFamily starts it there")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := os.Getenv(tickDirEnv)
	cfg := filepath.Join(dir, "tick conf", "tick.conf")
	if err := os.MkdirAll(filepath.Dir(cfg), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte("interval = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := systemd.Connect(ctx, systemd.ConnectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	name := tickFamily.Service.Name
	props := func() systemd.Properties {
		t.Helper()
		p, err := m.Properties(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(step string, want exitcode.Code, args ...string) string {
		t.Helper()
		io, _, out, errOut := iostreams.Test()
		f := factory.New(io)
		root := &cobra.Command{Use: "tick", SilenceUsage: true, SilenceErrors: true}
		root.AddCommand(service.NewStart(f, tickFamily, nil), service.NewStop(f, tickFamily, nil),
			service.NewRestart(f, tickFamily, nil), service.NewUninstall(f, tickFamily, nil), service.NewReload(f, tickFamily, nil),
			service.NewStatus(f, tickFamily, nil), service.NewLogs(f, tickFamily, nil))
		root.SetArgs(args)
		err := root.ExecuteContext(ctx)
		text := out.String() + errOut.String()
		if err != nil {
			text += err.Error()
		}
		t.Logf("%s: exit %d\n%s", step, exitcode.Of(err), text)
		if got := exitcode.Of(err); got != want {
			t.Fatalf("%s: exit %d, want %d", step, got, want)
		}
		if strings.Contains(strings.ToLower(text), "mail") || strings.Contains(text, "proxy") {
			t.Errorf("%s speaks of another family:\n%s", step, text)
		}
		return text
	}

	out := run("start", exitcode.OK, "start", "--config", cfg)
	if !strings.Contains(out, "Installed "+systemd.UnitPath("", name)) || !strings.Contains(out, "Started orbit-tick.service: active (running)") {
		t.Errorf("start said:\n%s", out)
	}
	p := props()
	if p.ActiveState != "active" || p.MainPID == 0 || p.UnitFileState != "enabled" {
		t.Fatalf("after start: %+v", p)
	}
	tick, err := systemd.LookupServiceUser("orbit-tick")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(fmt.Sprintf("/proc/%d", p.MainPID)); err != nil || st.Sys().(*syscall.Stat_t).Uid != uint32(tick.UID) {
		t.Errorf("the daemon (PID %d) does not run as orbit-tick (uid %d): %v", p.MainPID, tick.UID, err)
	}
	if _, err := os.Stat(systemd.SysusersPath("", "orbit-tick")); err != nil {
		t.Errorf("sysusers.d entry: %v", err)
	}
	out = run("status", exitcode.OK, "status")
	if !strings.Contains(out, "orbit-tick.service: active (running), main PID "+strconv.Itoa(int(p.MainPID))) ||
		!strings.Contains(out, "Configuration: "+cfg) || !strings.Contains(out, "Interval: 1") {
		t.Errorf("status said:\n%s", out)
	}

	// The family's CheckConfig guards reload and restart: the running
	// daemon is not signalled, not restarted.
	if err := os.WriteFile(cfg, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out = run("reload with a broken file", exitcode.Invalid, "reload")
	if !strings.Contains(out, "is not a tick file; the running ticker (main PID "+strconv.Itoa(int(p.MainPID))+") keeps its current configuration") {
		t.Errorf("reload refused with:\n%s", out)
	}
	out = run("restart with a broken file", exitcode.Invalid, "restart")
	if !strings.Contains(out, "is not a tick file; the running ticker (orbit-tick.service, main PID "+strconv.Itoa(int(p.MainPID))+") was left as it is") {
		t.Errorf("restart refused with:\n%s", out)
	}
	if q := props(); q.ActiveState != "active" || q.MainPID != p.MainPID {
		t.Errorf("the refused restart touched the daemon: %+v", q)
	}
	if err := os.WriteFile(cfg, []byte("interval = 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out = run("reload", exitcode.OK, "reload")
	if !strings.Contains(out, "Reloaded orbit-tick.service: systemd signalled the engine (main PID "+strconv.Itoa(int(p.MainPID))+")") {
		t.Errorf("reload said:\n%s", out)
	}
	// The reload took: the daemon's first SIGHUP is the good file's (the
	// refused reload never reached it), and it is in the unit's journal.
	jctx, jcancel := context.WithTimeout(ctx, 15*time.Second)
	var reloaded []journal.Entry
	for e, err := range (&journal.Reader{}).Entries(jctx, journal.Query{Units: []string{name}, Matches: []string{"MESSAGE=tick reloaded 1"}, Follow: true}) {
		if err != nil {
			t.Fatalf("journal: %v", err)
		}
		reloaded = append(reloaded, e)
		break
	}
	jcancel()
	if len(reloaded) != 1 || reloaded[0].PID != int(p.MainPID) {
		t.Errorf("the daemon's reload line: %+v", reloaded)
	}
	out = run("logs", exitcode.OK, "logs", "-n", "20")
	if !strings.Contains(out, fmt.Sprintf("[%d]: tick started as uid %d", p.MainPID, tick.UID)) ||
		!strings.Contains(out, fmt.Sprintf("[%d]: tick reloaded 1", p.MainPID)) {
		t.Errorf("logs said:\n%s", out)
	}
	// Without --config, the installed unit's file is used.
	run("restart", exitcode.OK, "restart")
	if q := props(); q.ActiveState != "active" || q.MainPID == 0 || q.MainPID == p.MainPID {
		t.Errorf("after restart: %+v (before: main PID %d)", q, p.MainPID)
	}

	out = run("stop", exitcode.OK, "stop")
	if !strings.Contains(out, "Stopped orbit-tick.service (inactive).") || props().ActiveState != "inactive" {
		t.Errorf("stop: %q, %+v", out, props())
	}
	out = run("status after stop", exitcode.NotRunning, "status")
	if !strings.Contains(out, "orbit-tick.service: inactive (dead)") || !strings.Contains(out, "Interval: 2") {
		t.Errorf("status after stop said:\n%s", out)
	}

	out = run("uninstall --purge", exitcode.OK, "uninstall", "--purge", "--yes")
	if !strings.Contains(out, "Uninstalled orbit-tick.service.") {
		t.Errorf("uninstall said:\n%s", out)
	}
	for _, gone := range []string{systemd.UnitPath("", name), systemd.SysusersPath("", "orbit-tick"), cfg} {
		if _, err := os.Stat(gone); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is still there after uninstall --purge (%v)", gone, err)
		}
	}
	if q := props(); q.LoadState != "not-found" {
		t.Errorf("systemd still knows the unit: %+v", q)
	}
	out = run("uninstall again", exitcode.OK, "uninstall")
	if !strings.Contains(out, "orbit-tick.service is not installed; nothing to remove.") {
		t.Errorf("a second uninstall said:\n%s", out)
	}
}
