// Package service mounts the shared service verbs (internal/cli/service:
// start, stop, restart) for the e-mail proxy with its Family description,
// and holds the hook `register` calls after it wrote the file. The proxy's
// own parts stay here: the file check before a restart (CheckFile), the
// unit's session limits and background-refresh credential. The status,
// logs, reload and uninstall commands reuse its names.
package service

import (
	"context"

	svc "github.com/senhasegura/orbit/internal/cli/service"
	"github.com/senhasegura/orbit/internal/systemd"
)

// FailureLines is how many of the unit's journal lines a failed start shows.
const FailureLines = svc.FailureLines

// FailureSettle bounds how long a failed start waits for the unit's last
// journal lines.
const FailureSettle = svc.FailureSettle

// The system's parts the verbs use live in the shared internal/cli/service;
// these names keep the family's callers and tests unchanged.
type (
	Manager         = svc.Manager
	Connector       = svc.Connector
	SystemConnector = svc.SystemConnector
	JournalReader   = svc.JournalReader
	Installer       = svc.Installer
)

// SystemInstaller installs the proxy's unit below Root ("" is the running
// system).
type SystemInstaller struct{ Root string }

func (s SystemInstaller) generic() svc.SystemInstaller {
	return svc.SystemInstaller{Root: s.Root, Service: Description}
}

// Install implements Installer.
func (s SystemInstaller) Install(ctx context.Context, u systemd.Unit) (bool, error) {
	return s.generic().Install(ctx, u)
}

// Installed implements Installer.
func (s SystemInstaller) Installed(name string) ([]byte, error) { return s.generic().Installed(name) }

// EnsureUser implements Installer.
func (s SystemInstaller) EnsureUser(ctx context.Context, user string) error {
	return s.generic().EnsureUser(ctx, user)
}

// GrantConfigAccess implements Installer.
func (s SystemInstaller) GrantConfigAccess(ctx context.Context, configFile, user string) error {
	return s.generic().GrantConfigAccess(ctx, configFile, user)
}

// RepairStateDir implements Installer.
func (s SystemInstaller) RepairStateDir(ctx context.Context, stateDirectory, user string) ([]string, error) {
	return s.generic().RepairStateDir(ctx, stateDirectory, user)
}

// CheckStateDir implements Installer.
func (s SystemInstaller) CheckStateDir(stateDirectory, user string) ([]systemd.StateProblem, error) {
	return s.generic().CheckStateDir(stateDirectory, user)
}

// Uninstall implements Installer.
func (s SystemInstaller) Uninstall(ctx context.Context, unit, user string) ([]string, error) {
	return s.generic().Uninstall(ctx, unit, user)
}

// Purge implements Installer.
func (s SystemInstaller) Purge(ctx context.Context, stateDirectory string) ([]string, error) {
	return s.generic().Purge(ctx, stateDirectory)
}

// ForegroundHint tells how to run the engine without systemd.
func ForegroundHint(configPath string) string { return Family.ForegroundHint(configPath) }

// NoSystemdError explains that there is no systemd here and how to do
// without; its exit code is NoSystemd (6). what names what could not be
// done ("cannot start email-oauth2-proxy.service").
func NoSystemdError(what, configPath string, err error) error {
	return Family.NoSystemdError(what, configPath, err)
}

// ConnectError turns a failed Connect into the right exit code: NoSystemd,
// Permission (the private socket and the bus refused us), or Timeout.
func ConnectError(what, configPath string, err error) error {
	return Family.ConnectError(what, configPath, err)
}

// Booted reports, like sd_booted(3), whether systemd runs this machine.
func Booted() error { return svc.Booted() }

// journal.go's names, now shared.
var (
	FormatEntry = svc.FormatEntry
	Tail        = svc.Tail
)
