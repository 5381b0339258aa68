package reload_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/cli/emailproxy/reload"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/service"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/service/servicetest"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/journal"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// engineManager answers a reload the way the engine does: its verdict
// lands in the journal.
type engineManager struct {
	*servicetest.Manager
	j       *servicetest.Journal
	verdict string
}

func (m *engineManager) Reload(ctx context.Context, name string) error {
	if err := m.Manager.Reload(ctx, name); err != nil {
		return err
	}
	if m.verdict != "" {
		m.j.History = append(m.j.History, servicetest.Entry(t0.Add(time.Second), "c2", "configuration "+m.verdict,
			"MESSAGE_ID="+events.Lifecycle, "ORBIT_STATE="+m.verdict))
	}
	return nil
}

type connector struct{ m service.Manager }

func (c connector) Connect(context.Context) (service.Manager, error) { return c.m, nil }

func newOpts(t *testing.T, cfg, verdict string, active bool) (*reload.Options, *engineManager) {
	t.Helper()
	io, _, _, _ := iostreams.Test()
	j := &servicetest.Journal{History: []journal.Entry{servicetest.Entry(t0, "c1", "email OAuth 2.0 proxy started")}}
	m := &engineManager{Manager: servicetest.NewManager(), j: j, verdict: verdict}
	if active {
		m.Props.ActiveState, m.Props.SubState, m.Props.MainPID = "active", "running", 4242
	}
	return &reload.Options{
		Deps: service.Deps{IO: io, Connector: connector{m}, Installer: &servicetest.Installer{}, Journal: j,
			Executable: func() (string, error) { return "/usr/local/bin/orbit", nil }, Now: func() time.Time { return t0 }},
		Unit: service.DefaultUnit, ConfigPath: cfg, ConfigExplicit: true, Timeout: 2 * time.Second, Output: output.Text,
	}, m
}

func TestReload(t *testing.T) {
	good := servicetest.WriteConfig(t, servicetest.MinimalConfig)
	broken := servicetest.WriteConfig(t, "[IMAP-2993]\nserver_port = 993\n")
	tests := []struct {
		name     string
		cfg      string
		verdict  string
		active   bool
		code     exitcode.Code
		want     string
		reloaded bool
	}{
		{"taken", good, reload.StateReloaded, true, exitcode.OK, "Reloaded email-oauth2-proxy.service: the engine (main PID 4242) took " + good, true},
		{"taken with a listener down", good, reload.StateReloadedWithErrors, true, exitcode.Failed, "not every listener is up", true},
		{"refused by the engine", good, reload.StateRefused, true, exitcode.Invalid, "refused the file and keeps its previous configuration", true},
		{"no verdict", good, "", true, exitcode.Timeout, "logged no verdict", true},
		{"broken file: refused before the signal", broken, reload.StateReloaded, true, exitcode.Invalid, "keeps its current configuration", false},
		{"not running", good, reload.StateReloaded, false, exitcode.NotRunning, "not running", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, m := newOpts(t, tt.cfg, tt.verdict, tt.active)
			if tt.verdict == "" {
				o.Timeout = 300 * time.Millisecond
			}
			err := reload.Run(context.Background(), o)
			if got := exitcode.Of(err); got != tt.code {
				t.Fatalf("exit %d, want %d: %v", got, tt.code, err)
			}
			text := o.IO.Out.(interface{ String() string }).String()
			if err != nil {
				text += err.Error()
			}
			if !strings.Contains(text, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, text)
			}
			sent := strings.Contains(strings.Join(m.CallList(), ","), "reload "+service.DefaultUnit)
			if sent != tt.reloaded {
				t.Errorf("reload sent %v, want %v (calls %q)", sent, tt.reloaded, m.CallList())
			}
		})
	}
}

// TestReloadProvisions: reload brings the unit up to date, so it makes a
// missing background_refresh credential too; the running engine gets it
// only at its next start, which reload says. When it cannot be made, the
// reload is still done and reload ends with the credential code.
func TestReloadProvisions(t *testing.T) {
	cfg := servicetest.WriteConfig(t, servicetest.MinimalConfig)
	tests := []struct {
		name   string
		done   []string
		err    error
		code   exitcode.Code
		stderr string
	}{
		{"made", []string{"Created the credential X."}, nil, exitcode.OK, "Created the credential X. The running proxy gets it at its next restart: orbit email-oauth2-proxy restart"},
		{"cannot be made", nil, exitcode.Withf(exitcode.Credential, "no systemd-creds"), exitcode.Credential, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, m := newOpts(t, cfg, reload.StateReloaded, true)
			o.Family = service.Family
			o.Family.Verdict = &reload.Verdict
			o.Family.Provision = func(context.Context, string) ([]string, error) { return tt.done, tt.err }
			err := reload.Run(context.Background(), o)
			if got := exitcode.Of(err); got != tt.code {
				t.Fatalf("exit %d, want %d: %v", got, tt.code, err)
			}
			if !strings.Contains(strings.Join(m.CallList(), ","), "reload "+service.DefaultUnit) {
				t.Errorf("the engine was not signalled: %q", m.CallList())
			}
			if out := o.IO.Out.(interface{ String() string }).String(); !strings.Contains(out, "the engine (main PID 4242) took") {
				t.Errorf("the engine's verdict was not reported:\n%s", out)
			}
			if stderr := o.IO.ErrOut.(interface{ String() string }).String(); !strings.Contains(stderr, tt.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.stderr, stderr)
			}
		})
	}
}
