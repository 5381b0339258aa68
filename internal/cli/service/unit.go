package service

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/senhasegura/orbit/internal/cli/cmdutil"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/systemd"
)

// DefaultTimeout bounds start, stop and restart: systemd's own start
// time-out (90 s) plus the unit's stop time-out, so that systemd, not orbit,
// normally decides that a start failed.
const DefaultTimeout = 2 * time.Minute

// ReadInstalled returns the installed unit; ok is false when there is none
// (or it cannot be parsed, which start then repairs by rewriting it).
func (d Description) ReadInstalled(inst Installer, name string) (systemd.Installed, bool) {
	data, err := inst.Installed(name)
	if err != nil {
		return systemd.Installed{}, false
	}
	u, err := d.Service.ParseInstalled(data)
	if err != nil {
		return systemd.Installed{}, false
	}
	return u, true
}

// ResolveConfig picks the configuration file: the --config flag when it was
// given, else the file the installed unit runs with, else the default. So
// `start` after `register --config /srv/x.config` keeps using /srv/x.config.
func (d Description) ResolveConfig(inst Installer, unitName, flagValue string, explicit bool) string {
	if !explicit {
		if u, ok := d.ReadInstalled(inst, unitName); ok && u.ConfigPath != "" {
			return u.ConfigPath
		}
	}
	return flagValue
}

// Setup is how the unit is rendered.
type Setup struct {
	Unit       string
	ConfigPath string // absolute
	Binary     string // the orbit executable for ExecStart
}

// Prepared says what prepare did.
type Prepared struct {
	UnitFile string `json:"unit_file"`
	// Written: the unit file was created or changed.
	Written bool `json:"unit_written"`
	// Reloaded: systemd re-read its unit files (daemon-reload).
	Reloaded bool `json:"daemon_reloaded"`
	// Foreign: an existing unit runs another engine and was left as it is.
	Foreign bool `json:"foreign_engine"`
	// StateRepaired lists what was changed so that the service user can
	// use its state directory (files root left there by `serve` in the
	// foreground, a /var/lib/orbit it cannot enter).
	StateRepaired []string `json:"state_repaired,omitempty"`
	// Provisioned lists what the family's Provision created (a
	// credential); ProvisionErr is why it could not, which the command
	// returns once the rest is done.
	Provisioned  []string `json:"provisioned,omitempty"`
	ProvisionErr error    `json:"-"`
}

// prepare installs or refreshes the unit and its user, gives the user the
// configuration file, and reloads systemd when the unit file changed (or
// systemd says it changed behind its back).
func (d Description) prepare(ctx context.Context, inst Installer, m Manager, s Setup) (Prepared, error) {
	res := Prepared{UnitFile: systemd.UnitPath("", s.Unit)}
	user, stateDir := d.Service.User, d.Service.StateDirectory
	if cur, ok := d.ReadInstalled(inst, s.Unit); ok && cur.Foreign {
		res.Foreign = true
		if cur.User != "" {
			user = cur.User
		}
		stateDir = cur.StateDirectory
	}
	if !res.Foreign {
		if _, err := os.Stat(s.ConfigPath); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return res, exitcode.Withf(exitcode.Invalid, "the configuration file %s does not exist: write it first%s (or name it with --config)", s.ConfigPath, d.writeWith())
			}
			if cmdutil.IsPermission(err) {
				return res, cmdutil.FileError("read", s.ConfigPath, err)
			}
			return res, fmt.Errorf("checking the configuration file: %w", err)
		}
		if d.Provision != nil {
			res.Provisioned, res.ProvisionErr = d.Provision(ctx, s.ConfigPath)
		}
		uo := systemd.UnitOptions{Service: d.Service, Name: s.Unit, ConfigFile: s.ConfigPath, Binary: s.Binary}
		if d.RenderExtras != nil {
			d.RenderExtras(&uo)
		}
		u, err := systemd.Render(uo)
		if err != nil {
			return res, exitcode.With(exitcode.Invalid, err)
		}
		if err := inst.EnsureUser(ctx, user); err != nil {
			return res, permissionOr(err)
		}
		if res.Written, err = inst.Install(ctx, u); err != nil {
			return res, permissionOr(err)
		}
	} else if err := inst.EnsureUser(ctx, user); err != nil {
		return res, permissionOr(err)
	}
	if _, err := os.Stat(s.ConfigPath); err == nil {
		if err := inst.GrantConfigAccess(ctx, s.ConfigPath, user); err != nil {
			return res, permissionOr(err)
		}
	}
	if stateDir != "" {
		// systemd gives the state directory to the user only when the
		// directory itself has the wrong owner, and never makes its
		// parents passable: after `serve` ran as root, either can stop
		// the unit (200/CHDIR) or its token store.
		var err error
		if res.StateRepaired, err = inst.RepairStateDir(ctx, stateDir, user); err != nil {
			return res, permissionOr(err)
		}
	}
	reload := res.Written
	if !reload {
		p, err := m.Properties(ctx, s.Unit)
		if err != nil {
			return res, err
		}
		reload = p.NeedDaemonReload || p.LoadState == "not-found"
	}
	if reload {
		if err := m.DaemonReload(ctx); err != nil {
			return res, err
		}
		res.Reloaded = true
	}
	return res, nil
}

func permissionOr(err error) error {
	if cmdutil.IsPermission(err) {
		return cmdutil.Denied("", err)
	}
	return err
}

// install prepares the unit for the running orbit binary and cfgPath.
// Errors already classified (a missing file, no permission) keep their
// exit status; the others came from the service manager and are
// classified by jobError under what.
func (d Description) install(ctx context.Context, inst Installer, m Manager, executable func() (string, error), unit, cfgPath, what string) (Prepared, error) {
	bin, err := binaryPath(executable)
	if err != nil {
		return Prepared{}, err
	}
	prep, err := d.prepare(ctx, inst, m, Setup{Unit: unit, ConfigPath: cfgPath, Binary: bin})
	if err != nil && exitcode.Of(err) == exitcode.Error {
		err = d.jobError(what, err)
	}
	return prep, err
}

// binaryPath resolves the running orbit for ExecStart: symlinks are
// followed so that the unit keeps working when a "current" link moves.
func binaryPath(executable func() (string, error)) (string, error) {
	exe, err := executable()
	if err != nil {
		return "", fmt.Errorf("finding the orbit binary for the unit's ExecStart: %w", err)
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	return exe, nil
}

// Prepare is what start does before it starts the unit, for the other
// commands that need the unit current (reload): the unit installed or
// refreshed for the running orbit and cfgPath, its user, the file and the
// state directory handed to that user, systemd reloaded when needed.
func (d Description) Prepare(ctx context.Context, deps Deps, m Manager, unit, cfgPath, what string) (Prepared, error) {
	return d.install(ctx, deps.Installer, m, deps.Executable, unit, cfgPath, what)
}

func (d Description) writeWith() string {
	if d.WriteConfig == "" {
		return ""
	}
	return " with " + d.WriteConfig
}

// AbsConfig makes the configuration path absolute: the unit starts the
// engine in its own working directory.
func (d Description) AbsConfig(p string) (string, error) {
	if p == "" {
		return "", exitcode.Withf(exitcode.Usage, "--config is empty; name the %s's configuration file", d.Noun)
	}
	a, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("--config %s: %w", p, err)
	}
	return a, nil
}

// CheckUnit checks --unit before anything reaches systemd, so that a typo is
// a usage error (exit 2) on every machine rather than a D-Bus refusal, and a
// unit file is never written under a name systemd would not read. A name
// without a type gets ".service", as systemctl does.
func (d Description) CheckUnit(unit string) (string, error) {
	if unit == "" {
		return d.Service.Name, nil
	}
	name := unit
	if !strings.Contains(name, ".") {
		name += ".service"
	}
	prefix, ok := strings.CutSuffix(name, ".service")
	if !ok {
		return "", exitcode.Withf(exitcode.Usage, "--unit %q: the %s runs as a service; use a name ending in .service, such as %s", unit, d.Noun, d.Service.Name)
	}
	if prefix == "" || len(name) > 255 || strings.IndexFunc(prefix, badUnitRune) >= 0 {
		return "", exitcode.Withf(exitcode.Usage, "--unit %q is not a systemd unit name: use letters, digits and : - _ . @ only, such as %s", unit, d.Service.Name)
	}
	return name, nil
}

func badUnitRune(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return false
	}
	return !strings.ContainsRune(":-_.@\\", r)
}
