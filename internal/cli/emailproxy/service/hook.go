package service

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/senhasegura/orbit/internal/cli/emailproxy/register"
	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/systemd"
)

// Hook is what `register` calls after it wrote the file (register.Service):
// the unit is installed or refreshed for this orbit binary and that file,
// the service user gets the file back (an atomic write as root made it
// root's), and a running proxy is restarted so the new file applies.
type Hook struct {
	Deps
	Unit    string
	Timeout time.Duration
	// Provision replaces Family.Provision (background_refresh's
	// credential) in tests; nil keeps it.
	Provision func(ctx context.Context, cfgPath string) ([]string, error)
}

// NewHook returns the hook for the running system.
func NewHook(f *factory.Factory) *Hook {
	return &Hook{Deps: SystemDeps(f), Unit: DefaultUnit, Timeout: DefaultTimeout}
}

// AfterWrite implements register.Service. Without systemd it returns a
// message, not an error: the file is written, and the message says how to
// run the proxy in the foreground.
func (h *Hook) AfterWrite(ctx context.Context, configPath string, restart bool) (register.ServiceResult, error) {
	msg, running, err := h.afterWrite(ctx, configPath, restart)
	return register.ServiceResult{Message: msg, Running: running}, err
}

// afterWrite is AfterWrite; running says whether the unit runs after it.
func (h *Hook) afterWrite(ctx context.Context, configPath string, restart bool) (string, bool, error) {
	unit := h.Unit
	if unit == "" {
		unit = DefaultUnit
	}
	cfg, err := AbsConfig(configPath)
	if err != nil {
		return "", false, err
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	what := "installing " + unit
	m, err := h.Connector.Connect(ctx)
	if err != nil {
		if errors.Is(err, systemd.ErrNoSystemd) && !errors.Is(err, fs.ErrPermission) {
			return fmt.Sprintf("no unit installed (%v); %s", err, ForegroundHint(cfg)), false, nil
		}
		return "", false, ConnectError(what, cfg, err)
	}
	defer m.Close()
	p, err := m.Properties(ctx, unit)
	if err != nil {
		return "", false, JobError(what, err)
	}
	running := p.ActiveState == "active" || p.ActiveState == "activating" || p.ActiveState == "reloading"
	if running && restart {
		// The restart below would stop a working proxy for a file the new
		// engine refuses: check first, and leave the unit alone if so.
		if err := Family.CheckBeforeRestart(ctx, h.Installer, m, unit, cfg); err != nil {
			return "", false, fmt.Errorf("the file is written, but %w", err)
		}
	}
	fam := Family
	if h.Provision != nil {
		fam.Provision = h.Provision
	}
	prep, err := fam.Prepare(ctx, h.Deps, m, unit, cfg, what)
	if err != nil {
		return "", false, err
	}
	msg := fmt.Sprintf("%s installed", prep.UnitFile)
	switch {
	case prep.Foreign:
		msg = fmt.Sprintf("%s runs another engine (--exec) and was left as it is", prep.UnitFile)
	case !prep.Written:
		msg = fmt.Sprintf("%s unchanged", prep.UnitFile)
	}
	// What Provision made (background_refresh's credential) is said
	// first; what it could not make ends the command once the unit is
	// seen to, as start does.
	done := func(msg string) (string, bool, error) {
		if len(prep.Provisioned) > 0 {
			msg = strings.Join(prep.Provisioned, " ") + " " + msg
		}
		if prep.ProvisionErr != nil {
			return "", false, fmt.Errorf("%s; but %w", msg, prep.ProvisionErr)
		}
		return msg, running, nil
	}
	switch {
	case !running:
		return done(msg + fmt.Sprintf("; %s is not running (start it: orbit email-oauth2-proxy start)", unit))
	case !restart:
		return done(msg + fmt.Sprintf("; %s is running and was not restarted (--no-restart): orbit email-oauth2-proxy restart applies the new file", unit))
	}
	issued := h.now().Add(-time.Second)
	if err := m.Restart(ctx, unit); err != nil {
		o := &Options{Deps: h.Deps, Family: Family, Action: Restart, Unit: unit}
		return "", false, o.Failed(ctx, "the file is written, but restarting "+unit+" failed", err, issued, cfg)
	}
	p, err = m.Properties(ctx, unit)
	if err != nil {
		return "", false, JobError(what, err)
	}
	return done(msg + fmt.Sprintf("; %s restarted so the new file applies (main PID %d)", unit, p.MainPID))
}

func (h *Hook) now() time.Time {
	if h.Now == nil {
		return time.Now()
	}
	return h.Now()
}
