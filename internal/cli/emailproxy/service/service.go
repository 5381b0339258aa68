// Package service is `orbit email-oauth2-proxy start`, `stop` and `restart`,
// and the hook `register` calls after it wrote the file: the proxy's unit is
// rendered, installed or refreshed, and driven over systemd's D-Bus API
// (internal/systemd). The status and logs commands reuse its dependencies
// (Connector, JournalReader) and its no-systemd explanation.
package service

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	svc "github.com/senhasegura/orbit/internal/cli/service"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/systemd"
)

// DefaultTimeout bounds start, stop and restart: systemd's own start
// time-out (90 s) plus the unit's stop time-out, so that systemd, not orbit,
// normally decides that a start failed.
const DefaultTimeout = 2 * time.Minute

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
	printTail   = svc.PrintTail
)

// AbsConfig makes the configuration path absolute: the unit starts the
// engine in its own working directory.
func AbsConfig(p string) (string, error) {
	if p == "" {
		return "", exitcode.Withf(exitcode.Usage, "--config is empty; name the proxy's configuration file")
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
func CheckUnit(unit string) (string, error) {
	if unit == "" {
		return DefaultUnit, nil
	}
	name := unit
	if !strings.Contains(name, ".") {
		name += ".service"
	}
	prefix, ok := strings.CutSuffix(name, ".service")
	if !ok {
		return "", exitcode.Withf(exitcode.Usage, "--unit %q: the proxy runs as a service; use a name ending in .service, such as %s", unit, DefaultUnit)
	}
	if prefix == "" || len(name) > 255 || strings.IndexFunc(prefix, badUnitRune) >= 0 {
		return "", exitcode.Withf(exitcode.Usage, "--unit %q is not a systemd unit name: use letters, digits and : - _ . @ only, such as %s", unit, DefaultUnit)
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
