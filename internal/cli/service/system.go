package service

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"os"
	"strings"

	"github.com/senhasegura/orbit/internal/cli/cmdutil"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/systemd"
	"github.com/senhasegura/orbit/pkg/journal"
)

// Manager is what the verbs use of *systemd.Manager.
type Manager interface {
	DaemonReload(ctx context.Context) error
	Start(ctx context.Context, name string) error
	Stop(ctx context.Context, name string) error
	Restart(ctx context.Context, name string) error
	Reload(ctx context.Context, name string) error
	ResetFailed(ctx context.Context, name string) error
	Enable(ctx context.Context, name string) (bool, error)
	Disable(ctx context.Context, name string) (bool, error)
	Properties(ctx context.Context, name string) (systemd.Properties, error)
	Close()
}

// Connector reaches the service manager. Errors wrap systemd.ErrNoSystemd
// when there is none to reach.
type Connector interface {
	Connect(ctx context.Context) (Manager, error)
}

// SystemConnector connects to the running system's systemd.
type SystemConnector struct{ Options systemd.ConnectOptions }

// Connect implements Connector.
func (c SystemConnector) Connect(ctx context.Context) (Manager, error) {
	m, err := systemd.Connect(ctx, c.Options)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// JournalReader reads journal entries; *journal.Reader is one.
type JournalReader interface {
	Entries(ctx context.Context, q journal.Query) iter.Seq2[journal.Entry, error]
}

// Installer puts the unit and its user in place. SystemInstaller does it on
// the running system; tests record the calls instead.
type Installer interface {
	// Install writes the unit file and reports whether it changed.
	Install(ctx context.Context, u systemd.Unit) (changed bool, err error)
	// Installed returns the unit file on disk (fs.ErrNotExist if none).
	Installed(name string) ([]byte, error)
	// EnsureUser creates the service user if it is missing.
	EnsureUser(ctx context.Context, user string) error
	// GrantConfigAccess gives the service user the configuration file.
	GrantConfigAccess(ctx context.Context, configFile, user string) error
	// RepairStateDir makes the unit's state directory (relative to
	// /var/lib) usable by the service user and says what it changed.
	RepairStateDir(ctx context.Context, stateDirectory, user string) ([]string, error)
	// CheckStateDir lists what in the state directory the user cannot use.
	CheckStateDir(stateDirectory, user string) ([]systemd.StateProblem, error)
	// Uninstall removes the unit file and the user's sysusers.d entry and
	// says which files it removed.
	Uninstall(ctx context.Context, unit, user string) ([]string, error)
	// Purge removes the state directory and says what it removed.
	Purge(ctx context.Context, stateDirectory string) ([]string, error)
}

// SystemInstaller installs Service below Root ("" is the running system).
type SystemInstaller struct {
	Root    string
	Service systemd.Service
}

// Install implements Installer.
func (s SystemInstaller) Install(ctx context.Context, u systemd.Unit) (bool, error) {
	return systemd.Install(ctx, s.Root, u)
}

// Installed implements Installer.
func (s SystemInstaller) Installed(name string) ([]byte, error) {
	return os.ReadFile(systemd.UnitPath(s.Root, name))
}

// EnsureUser implements Installer: the user is Service's, renamed to user.
func (s SystemInstaller) EnsureUser(ctx context.Context, user string) error {
	svc := s.Service
	if user != "" {
		svc.User = user
	}
	_, err := systemd.EnsureUser(ctx, s.Root, svc)
	return err
}

// GrantConfigAccess implements Installer.
func (s SystemInstaller) GrantConfigAccess(ctx context.Context, configFile, user string) error {
	return systemd.GrantConfigAccess(ctx, configFile, user)
}

// RepairStateDir implements Installer.
func (s SystemInstaller) RepairStateDir(ctx context.Context, stateDirectory, user string) ([]string, error) {
	u, err := systemd.LookupServiceUser(user)
	if err != nil {
		return nil, fmt.Errorf("preparing the state directory: %w", err)
	}
	return systemd.FixStateDir(ctx, systemd.StateDirPath(s.Root, stateDirectory), u)
}

// CheckStateDir implements Installer.
func (s SystemInstaller) CheckStateDir(stateDirectory, user string) ([]systemd.StateProblem, error) {
	u, err := systemd.LookupServiceUser(user)
	if err != nil {
		return nil, err
	}
	return systemd.CheckStateDir(systemd.StateDirPath(s.Root, stateDirectory), u, s.Service.StartCommand)
}

// Uninstall implements Installer.
func (s SystemInstaller) Uninstall(ctx context.Context, unit, user string) ([]string, error) {
	var removed []string
	if ok, err := systemd.Uninstall(ctx, s.Root, unit); err != nil {
		return removed, err
	} else if ok {
		removed = append(removed, systemd.UnitPath(s.Root, unit))
	}
	if ok, err := systemd.RemoveSysusers(ctx, s.Root, user); err != nil {
		return removed, err
	} else if ok {
		removed = append(removed, systemd.SysusersPath(s.Root, user))
	}
	return removed, nil
}

// Purge implements Installer.
func (s SystemInstaller) Purge(ctx context.Context, stateDirectory string) ([]string, error) {
	return systemd.PurgeStateDir(ctx, systemd.StateDirPath(s.Root, stateDirectory))
}

// NoSystemdError explains that there is no systemd here and how to do
// without; its exit code is NoSystemd (6). what names what could not be
// done ("cannot start email-oauth2-proxy.service").
func (d Description) NoSystemdError(what, configPath string, err error) error {
	return exitcode.Withf(exitcode.NoSystemd, "%s: %v\nThere is no service manager to run the %s here; %s", what, err, d.Noun, d.ForegroundHint(configPath))
}

// ConnectError turns a failed Connect into the right exit code: NoSystemd,
// Permission (the private socket and the bus refused us), or Timeout.
func (d Description) ConnectError(what, configPath string, err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return cmdutil.Denied(what, err)
	case errors.Is(err, systemd.ErrNoSystemd):
		return d.NoSystemdError(what, configPath, err)
	case errors.Is(err, context.DeadlineExceeded):
		return exitcode.Withf(exitcode.Timeout, "%s: %v", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Booted reports, like sd_booted(3), whether systemd runs this machine; an
// error wrapping systemd.ErrNoSystemd says why not.
func Booted() error {
	const marker = systemd.DefaultRunDir + "/system"
	if _, err := os.Stat(marker); err != nil {
		pid1 := "unknown"
		if b, err := os.ReadFile("/proc/1/comm"); err == nil {
			pid1 = fmt.Sprintf("%q", strings.TrimSpace(string(b)))
		}
		return fmt.Errorf("%w: %s does not exist, so PID 1 is %s, not systemd", systemd.ErrNoSystemd, marker, pid1)
	}
	return nil
}
