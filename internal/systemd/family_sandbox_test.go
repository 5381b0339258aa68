package systemd

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/coreos/go-systemd/v22/unit"
	"github.com/senhasegura/orbit/pkg/journal"
)

// tickService is a second family's service, known only to this test: a
// daemon with no network and nothing of e-mail, which proves that the
// renderer, installer and manager take any family's description.
var tickService = Service{
	Name:                     "orbit-tick.service",
	Description:              "orbit tick test daemon",
	Origin:                   "orbit tick install",
	User:                     "orbit-tick",
	UserRole:                 "the tick daemon",
	StateDirectory:           "orbit/tick",
	Args:                     []string{"tick", "--config", ConfigPlaceholder},
	ReloadSignal:             "HUP",
	RestartPreventExitStatus: SetupExitStatus,
	Overrides:                []*unit.UnitOption{unit.NewUnitOption("Service", "RestrictAddressFamilies", "AF_UNIX")},
}

// tickMain is the tick daemon: ready over sd_notify, a journal line per
// reload, gone on SIGTERM.
func tickMain() int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP)
	fmt.Println("tick started as uid " + strconv.Itoa(os.Getuid()))
	daemon.SdNotify(false, daemon.SdNotifyReady)
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

// secondFamily runs in the sandbox (from TestSandboxInner): install,
// start, reload, read the journal, stop and uninstall tickService.
func secondFamily(ctx context.Context, t *testing.T, m *Manager, self, dir string) {
	if _, err := EnsureUser(ctx, "", tickService); err != nil {
		t.Fatalf("EnsureUser for the second family: %v", err)
	}
	snippet, err := os.ReadFile(SysusersPath("", tickService.User))
	if err != nil || !strings.Contains(string(snippet), `# Written by "orbit tick install": the user the tick daemon runs as.`) ||
		!strings.Contains(string(snippet), `u orbit-tick - "orbit tick test daemon" /var/lib/orbit/tick`) {
		t.Errorf("sysusers.d snippet: %q, %v", snippet, err)
	}
	config := filepath.Join(dir, "tick", "tick.conf")
	if err := os.MkdirAll(filepath.Dir(config), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(config, []byte("interval = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := GrantConfigAccess(ctx, config, tickService.User); err != nil {
		t.Fatal(err)
	}
	u, err := Render(UnitOptions{Service: tickService, Binary: self, ConfigFile: config})
	if err != nil {
		t.Fatal(err)
	}
	if b := string(u.Bytes()); !strings.HasPrefix(b, "# Written by \"orbit tick install\"; it is rewritten on every\n# install.") ||
		!strings.Contains(b, "RestrictAddressFamilies=AF_UNIX\n") || strings.Contains(b, "AF_INET") {
		t.Errorf("the tick unit:\n%s", b)
	}
	if _, err := Install(ctx, "", u); err != nil {
		t.Fatal(err)
	}
	if err := m.DaemonReload(ctx); err != nil {
		t.Fatal(err)
	}
	name := tickService.Name
	if err := m.Start(ctx, name); err != nil {
		t.Fatalf("Start %s: %v", name, err)
	}
	p, err := m.Properties(ctx, name)
	if err != nil || p.ActiveState != "active" || p.MainPID == 0 {
		t.Fatalf("after start: %+v, %v", p, err)
	}
	tick, err := LookupServiceUser(tickService.User)
	if err != nil {
		t.Fatal(err)
	}
	if cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(int(p.MainPID)) + "/cmdline"); string(cmdline) != strings.Join([]string{self, "tick", "--config", config}, "\x00")+"\x00" {
		t.Errorf("tick runs as %q", cmdline)
	}
	if err := m.Reload(ctx, name); err != nil {
		t.Fatalf("Reload %s: %v", name, err)
	}
	r := &journal.Reader{}
	started := firstEntry(ctx, t, r, journal.Query{Units: []string{name}, Matches: []string{"MESSAGE=tick started as uid " + strconv.Itoa(tick.UID)}, Follow: true})
	reloaded := firstEntry(ctx, t, r, journal.Query{Units: []string{name}, Matches: []string{"MESSAGE=tick reloaded 1"}, Follow: true})
	t.Logf("second family: %q, %q", started.Message, reloaded.Message)
	if err := m.Stop(ctx, name); err != nil {
		t.Fatal(err)
	}
	if p, err := m.Properties(ctx, name); err != nil || p.ActiveState != "inactive" {
		t.Errorf("after stop: %+v, %v", p, err)
	}
	if removed, err := Uninstall(ctx, "", name); err != nil || !removed {
		t.Errorf("Uninstall: %v, %v", removed, err)
	}
	if removed, err := RemoveSysusers(ctx, "", tickService.User); err != nil || !removed {
		t.Errorf("RemoveSysusers: %v, %v", removed, err)
	}
	if _, err := PurgeStateDir(ctx, StateDirPath("", tickService.StateDirectory)); err != nil {
		t.Errorf("PurgeStateDir: %v", err)
	}
}
