package service_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/cli/emailproxy/service"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/service/servicetest"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/systemd"
	"github.com/senhasegura/orbit/pkg/journal"
)

func TestHookAfterWrite(t *testing.T) {
	cfg := servicetest.WriteConfig(t, servicetest.MinimalConfig)
	opErr := &systemd.OpError{Op: "restart", Unit: service.DefaultUnit, JobResult: "failed"}
	tests := []struct {
		name     string
		restart  bool
		setup    func(m *servicetest.Manager, c *servicetest.Connector)
		code     exitcode.Code
		msg      []string
		calls    []string
		noCalls  []string
		installs bool
		running  bool // the unit runs afterwards (register's next steps need no start)
		// provision stands in for making background_refresh's credential.
		provision func(context.Context, string) ([]string, error)
	}{
		{
			name: "no systemd: a message, not an error", restart: true,
			setup: func(m *servicetest.Manager, c *servicetest.Connector) { c.Err = servicetest.ErrNoSystemd },
			msg:   []string{"no unit installed", "systemd is not running here", "orbit email-oauth2-proxy serve --config " + cfg},
		},
		{
			name: "stopped unit: installed, not started", restart: true,
			setup:    func(m *servicetest.Manager, c *servicetest.Connector) { m.Props.LoadState = "not-found" },
			msg:      []string{"/etc/systemd/system/email-oauth2-proxy.service installed", "is not running (start it: orbit email-oauth2-proxy start)"},
			calls:    []string{"daemon-reload"},
			noCalls:  []string{"restart", "start", "enable"},
			installs: true,
		},
		{
			name: "running unit is restarted", restart: true,
			setup: func(m *servicetest.Manager, c *servicetest.Connector) {
				m.Props.ActiveState, m.Props.SubState, m.Props.MainPID = "active", "running", 10
			},
			msg:      []string{"restarted so the new file applies (main PID 4242)"},
			calls:    []string{"daemon-reload", "restart " + service.DefaultUnit},
			installs: true, running: true,
		},
		{
			name: "running unit with --no-restart", restart: false,
			setup: func(m *servicetest.Manager, c *servicetest.Connector) {
				m.Props.ActiveState, m.Props.SubState = "active", "running"
			},
			msg:      []string{"was not restarted (--no-restart)", "orbit email-oauth2-proxy restart"},
			noCalls:  []string{"restart"},
			installs: true, running: true,
		},
		{
			name: "a failed restart is exit 7 and says the file is written", restart: true,
			setup: func(m *servicetest.Manager, c *servicetest.Connector) {
				m.Props.ActiveState = "active"
				m.Fail = map[string]error{"restart " + service.DefaultUnit: opErr}
			},
			code:     exitcode.Failed,
			msg:      []string{"the file is written, but restarting email-oauth2-proxy.service failed", "config validate"},
			installs: true,
		},
		{
			name: "the credential is made and said first", restart: true,
			setup: func(m *servicetest.Manager, c *servicetest.Connector) {
				m.Props.ActiveState, m.Props.SubState, m.Props.MainPID = "active", "running", 10
			},
			provision: func(context.Context, string) ([]string, error) { return []string{"Created the credential X."}, nil },
			msg:       []string{"Created the credential X. /etc/systemd/system/email-oauth2-proxy.service installed", "restarted so the new file applies"},
			calls:     []string{"restart " + service.DefaultUnit},
			installs:  true, running: true,
		},
		{
			name: "a credential that cannot be made: the unit is seen to, then exit 12", restart: true,
			setup: func(m *servicetest.Manager, c *servicetest.Connector) {
				m.Props.ActiveState, m.Props.SubState, m.Props.MainPID = "active", "running", 10
			},
			provision: func(context.Context, string) ([]string, error) {
				return nil, exitcode.Withf(exitcode.Credential, "no systemd-creds")
			},
			code:     exitcode.Credential,
			msg:      []string{"restarted so the new file applies (main PID 4242); but no systemd-creds"},
			calls:    []string{"restart " + service.DefaultUnit},
			installs: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			io, _, _, _ := iostreams.Test()
			m := servicetest.NewManager()
			c := &servicetest.Connector{Manager: m}
			inst := &servicetest.Installer{}
			tt.setup(m, c)
			h := &service.Hook{Deps: service.Deps{IO: io, Connector: c, Installer: inst, Journal: &servicetest.Journal{History: []journal.Entry{unitFailed(t0, "c1")}},
				Executable: func() (string, error) { return "/usr/local/bin/orbit", nil },
				Now:        func() time.Time { return t0 }}, Timeout: 5 * time.Second, Provision: tt.provision}
			res, err := h.AfterWrite(context.Background(), cfg, tt.restart)
			if got := exitcode.Of(err); got != tt.code {
				t.Fatalf("exit %d, want %d: %v", got, tt.code, err)
			}
			msg := res.Message
			if res.Running != tt.running {
				t.Errorf("running = %v, want %v (%s)", res.Running, tt.running, msg)
			}
			if err != nil {
				msg = err.Error()
			}
			for _, s := range tt.msg {
				if !strings.Contains(msg, s) {
					t.Errorf("message lacks %q:\n%s", s, msg)
				}
			}
			calls := strings.Join(m.CallList(), ", ")
			for _, s := range tt.calls {
				if !strings.Contains(calls, s) {
					t.Errorf("calls %q lack %q", calls, s)
				}
			}
			for _, s := range tt.noCalls {
				if strings.Contains(calls, s) {
					t.Errorf("calls %q include %q", calls, s)
				}
			}
			if _, err := inst.Installed(service.DefaultUnit); (err == nil) != tt.installs {
				t.Errorf("unit installed = %v, want %v", err == nil, tt.installs)
			}
			if tt.installs && len(inst.Granted) != 1 {
				t.Errorf("the service user was not given the rewritten file: %q", inst.Granted)
			}
		})
	}
}
