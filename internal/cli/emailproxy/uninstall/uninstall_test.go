package uninstall_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/cli/emailproxy/service"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/service/servicetest"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/uninstall"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/internal/systemd"
)

type fixture struct {
	opts *uninstall.Options
	mgr  *servicetest.Manager
	inst *servicetest.Installer
	in   *bytes.Buffer
	out  *bytes.Buffer
	cfg  string
}

func newFixture(t *testing.T, installed bool) *fixture {
	t.Helper()
	cfg := servicetest.WriteConfig(t, servicetest.MinimalConfig)
	io, in, out, _ := iostreams.Test()
	mgr := servicetest.NewManager()
	inst := &servicetest.Installer{Sysusers: map[string]bool{}}
	if installed {
		u, err := systemd.Render(systemd.UnitOptions{Service: service.Description, ConfigFile: cfg, Binary: "/usr/local/bin/orbit"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := inst.Install(context.Background(), u); err != nil {
			t.Fatal(err)
		}
		inst.Sysusers[service.DefaultUser] = true
		mgr.Props.ActiveState, mgr.Props.SubState, mgr.Props.MainPID, mgr.Props.UnitFileState = "active", "running", 4242, "enabled"
	} else {
		mgr.Props.LoadState = "not-found"
	}
	f := &fixture{mgr: mgr, inst: inst, in: in, out: out, cfg: cfg}
	f.opts = &uninstall.Options{
		Deps: service.Deps{IO: io, Connector: &servicetest.Connector{Manager: mgr}, Installer: inst, Journal: &servicetest.Journal{},
			Now: func() time.Time { return time.Unix(0, 0) }},
		Unit: service.DefaultUnit, ConfigPath: "/etc/orbit/not-this-one.config", Timeout: 5 * time.Second, Output: output.Text,
	}
	return f
}

func TestUninstallKeepsFileAndTokens(t *testing.T) {
	f := newFixture(t, true)
	if err := uninstall.Run(context.Background(), f.opts); err != nil {
		t.Fatal(err)
	}
	calls := strings.Join(f.mgr.CallList(), ",")
	for _, want := range []string{"stop " + service.DefaultUnit, "disable " + service.DefaultUnit, "daemon-reload", "reset-failed " + service.DefaultUnit} {
		if !strings.Contains(calls, want) {
			t.Errorf("calls %s lack %s", calls, want)
		}
	}
	out := f.out.String()
	for _, want := range []string{"Stopped", "Disabled", "Removed /etc/systemd/system/" + service.DefaultUnit, "Removed /etc/sysusers.d/orbit-emailproxy.conf", "Kept " + f.cfg} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(f.cfg); err != nil {
		t.Errorf("the file (the unit's, not the default) is gone: %v", err)
	}
	if len(f.inst.Purged) != 0 {
		t.Errorf("purged %q without --purge", f.inst.Purged)
	}
}

func TestUninstallTwiceIsNothing(t *testing.T) {
	f := newFixture(t, false)
	if err := uninstall.Run(context.Background(), f.opts); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(f.out.String(), "is not installed; nothing to remove") {
		t.Errorf("output:\n%s", f.out)
	}
	for _, c := range f.mgr.CallList() {
		if strings.HasPrefix(c, "stop") || strings.HasPrefix(c, "disable") || c == "daemon-reload" {
			t.Errorf("acted on a unit that is not there: %q", f.mgr.CallList())
		}
	}
}

func TestPurgeAsksFirst(t *testing.T) {
	t.Run("no terminal, no --yes", func(t *testing.T) {
		f := newFixture(t, true)
		f.opts.Purge = true
		err := uninstall.Run(context.Background(), f.opts)
		if exitcode.Of(err) != exitcode.Usage || !strings.Contains(err.Error(), "pass --yes") {
			t.Fatalf("exit %d: %v", exitcode.Of(err), err)
		}
		if len(f.mgr.CallList()) != 0 {
			t.Errorf("acted before the confirmation: %q", f.mgr.CallList())
		}
	})
	t.Run("terminal, answered no", func(t *testing.T) {
		f := newFixture(t, true)
		f.opts.Purge = true
		f.opts.IO.SetTTY(true, true, true)
		f.in.WriteString("n\n")
		if err := uninstall.Run(context.Background(), f.opts); err == nil || !strings.Contains(err.Error(), "nothing was removed") {
			t.Fatalf("err %v", err)
		}
		if _, err := os.Stat(f.cfg); err != nil {
			t.Error("the file is gone after a no")
		}
	})
	t.Run("terminal, answered yes", func(t *testing.T) {
		f := newFixture(t, true)
		f.opts.Purge = true
		f.opts.IO.SetTTY(true, true, true)
		f.in.WriteString("y\n")
		if err := os.WriteFile(f.cfg+".bak", []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := uninstall.Run(context.Background(), f.opts); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{f.cfg, f.cfg + ".bak", filepath.Dir(f.cfg)} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("%s survived --purge: %v", p, err)
			}
		}
		if len(f.inst.Purged) != 1 || f.inst.Purged[0] != service.DefaultStateDirectory {
			t.Errorf("purged %q", f.inst.Purged)
		}
	})
}

// TestUninstallCredential: background_refresh's credential (outside the
// configuration and state directories) is kept and named by a plain
// uninstall, named in --purge's question and removed by it; a missing one
// is not mentioned.
func TestUninstallCredential(t *testing.T) {
	withCredential := func(t *testing.T, f *fixture, exists bool) string {
		t.Helper()
		cred := filepath.Join(t.TempDir(), "credstore.encrypted", "orbit-background-refresh")
		if exists {
			if err := os.MkdirAll(filepath.Dir(cred), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(cred, []byte("sealed"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		f.opts.Family = service.Family
		f.opts.Family.Purge.Extra = []string{cred}
		return cred
	}
	t.Run("kept without --purge", func(t *testing.T) {
		f := newFixture(t, true)
		cred := withCredential(t, f, true)
		if err := uninstall.Run(context.Background(), f.opts); err != nil {
			t.Fatal(err)
		}
		if want := "Kept " + cred + " (uninstall --purge removes it)."; !strings.Contains(f.out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, f.out)
		}
		if _, err := os.Stat(cred); err != nil {
			t.Errorf("the credential is gone without --purge: %v", err)
		}
	})
	t.Run("asked about and removed with --purge", func(t *testing.T) {
		f := newFixture(t, true)
		cred := withCredential(t, f, true)
		f.opts.Purge = true
		f.opts.IO.SetTTY(true, true, true)
		f.in.WriteString("y\n")
		if err := uninstall.Run(context.Background(), f.opts); err != nil {
			t.Fatal(err)
		}
		out := f.out.String()
		for _, want := range []string{"/var/lib/orbit/email-oauth2-proxy (the token store, background_refresh's sealed copies and the status file) and " + cred + ".",
			"Removed " + cred + "."} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if _, err := os.Stat(cred); !os.IsNotExist(err) {
			t.Errorf("the credential survived --purge: %v", err)
		}
	})
	t.Run("none made", func(t *testing.T) {
		f := newFixture(t, true)
		cred := withCredential(t, f, false)
		f.opts.Purge, f.opts.Yes = true, true
		if err := uninstall.Run(context.Background(), f.opts); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(f.out.String(), cred) {
			t.Errorf("a credential that does not exist is mentioned:\n%s", f.out)
		}
	})
}
