// Package service holds the parts of the service verbs (start, stop,
// restart, reload, status, logs, uninstall) that do not depend on which
// engine a family runs: reaching systemd, installing the unit and its user,
// and reading the unit's journal. A family fills a Description with its
// systemd.Service and the hooks only it can answer; the package must never
// import a family's domain (TestOnlyTheFamilyKnowsEmail in
// internal/cli/family enforces that for the e-mail proxy).
package service

import (
	"fmt"

	"github.com/senhasegura/orbit/internal/cli/cmdutil"
	"github.com/senhasegura/orbit/internal/systemd"
)

// Description is what a family tells the generic service code about its
// daemon.
type Description struct {
	// Service is the unit internal/systemd renders, installs and controls.
	Service systemd.Service
	// Command is the family's command path below orbit, such as
	// "email-oauth2-proxy": hints name its verbs.
	Command string
	// Role names the daemon in messages ("the proxy").
	Role string
}

// ForegroundHint tells how to run the family's engine without systemd:
// its serve verb with the configuration file.
func (d Description) ForegroundHint(configPath string) string {
	return fmt.Sprintf("run %s in the foreground instead (it logs to standard error; stop it with Ctrl-C):\n  orbit %s serve --config %s",
		d.Role, d.Command, cmdutil.ShellQuote(configPath))
}

// ServiceFor is the Service for an installed unit's user ("" keeps the
// description's).
func (d Description) ServiceFor(user string) systemd.Service {
	s := d.Service
	if user != "" {
		s.User = user
	}
	return s
}
