package service

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/senhasegura/orbit/internal/cli/cmdutil"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/systemd"
	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
)

// InstalledUnit is what matters of a unit file already on disk.
type InstalledUnit = systemd.Installed

// ParseInstalled reads a unit file.
func ParseInstalled(data []byte) (InstalledUnit, error) { return systemd.ParseInstalled(data) }

// ReadInstalled returns the installed unit; ok is false when there is none
// (or it cannot be parsed, which start then repairs by rewriting it).
func ReadInstalled(inst Installer, name string) (InstalledUnit, bool) {
	data, err := inst.Installed(name)
	if err != nil {
		return InstalledUnit{}, false
	}
	u, err := ParseInstalled(data)
	if err != nil {
		return InstalledUnit{}, false
	}
	return u, true
}

// ResolveConfig picks the configuration file: the --config flag when it was
// given, else the file the installed unit runs with, else the default. So
// `start` after `register --config /srv/x.config` keeps using /srv/x.config.
func ResolveConfig(inst Installer, unitName, flagValue string, explicit bool) string {
	if !explicit {
		if u, ok := ReadInstalled(inst, unitName); ok && u.ConfigPath != "" {
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
}

// prepare installs or refreshes the unit and its user, gives the user the
// configuration file, and reloads systemd when the unit file changed (or
// systemd says it changed behind its back).
func prepare(ctx context.Context, inst Installer, m Manager, s Setup) (Prepared, error) {
	res := Prepared{UnitFile: systemd.UnitPath("", s.Unit)}
	user, stateDir := DefaultUser, DefaultStateDirectory
	if cur, ok := ReadInstalled(inst, s.Unit); ok && cur.Foreign {
		res.Foreign = true
		if cur.User != "" {
			user = cur.User
		}
		stateDir = cur.StateDirectory
	}
	if !res.Foreign {
		if _, err := os.Stat(s.ConfigPath); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return res, exitcode.Withf(exitcode.Invalid, "the configuration file %s does not exist: write it first with orbit email-oauth2-proxy register (or name it with --config)", s.ConfigPath)
			}
			if cmdutil.IsPermission(err) {
				return res, cmdutil.FileError("read", s.ConfigPath, err)
			}
			return res, fmt.Errorf("checking the configuration file: %w", err)
		}
		u, err := systemd.Render(systemd.UnitOptions{Service: Description, Name: s.Unit, ConfigFile: s.ConfigPath, Binary: s.Binary, Sessions: ConfiguredSessions(s.ConfigPath),
			EncryptedCredentials: BackgroundCredentials(s.ConfigPath, CredentialStore)})
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
func install(ctx context.Context, inst Installer, m Manager, executable func() (string, error), unit, cfgPath, what string) (Prepared, error) {
	bin, err := binaryPath(executable)
	if err != nil {
		return Prepared{}, err
	}
	prep, err := prepare(ctx, inst, m, Setup{Unit: unit, ConfigPath: cfgPath, Binary: bin})
	if err != nil && exitcode.Of(err) == exitcode.Error {
		err = jobError(what, err)
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
func Prepare(ctx context.Context, d Deps, m Manager, unit, cfgPath, what string) (Prepared, error) {
	return install(ctx, d.Installer, m, d.Executable, unit, cfgPath, what)
}

// JobError classifies an error of the service manager under what: no
// privilege (10), out of time (8), or anything else systemd said (7).
func JobError(what string, err error) error { return jobError(what, err) }

// UnitFlag is " --unit NAME" for commands printed as advice, "" for the
// default unit.
func UnitFlag(unit string) string { return unitFlag(unit) }

// CredentialStore is where systemd-creds encrypted credentials live.
const CredentialStore = "/etc/credstore.encrypted"

// BackgroundCredentials is the credential the unit loads for
// background_refresh (docs/background-refresh.md): when the file sets
// background_refresh = True and the admin has made
// credstore/orbit-background-refresh with systemd-creds encrypt. Without
// the file the unit does not ask for it (a missing credential would stop
// the unit from starting); the engine then warns that background_refresh
// lasts only while it runs.
func BackgroundCredentials(configPath, credstore string) []systemd.Credential {
	c, err := config.Load(configPath)
	if err != nil || !c.Global.BackgroundRefresh {
		return nil
	}
	path := filepath.Join(credstore, oauth.BackgroundCredential)
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	return []systemd.Credential{{Name: oauth.BackgroundCredential, Path: path}}
}

// ConfiguredSessions is how many sessions the file's listeners allow
// together (their max_sessions), for the unit's resource limits; 0 (the
// unit's default) when the file cannot be read, which start reports anyway.
func ConfiguredSessions(path string) int {
	c, err := config.Load(path)
	if err != nil {
		return 0
	}
	n := 0
	for _, srv := range c.Servers {
		n += srv.MaxSessions
	}
	return n
}
