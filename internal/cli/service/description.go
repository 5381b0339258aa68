// Package service holds the parts of the service verbs (start, stop,
// restart, reload, status, logs, uninstall) that do not depend on which
// engine a family runs: reaching systemd, installing the unit and its user,
// and reading the unit's journal. A family fills a Description with its
// systemd.Service and the hooks only it can answer; the package must never
// import a family's domain (TestOnlyTheFamilyKnowsEmail in
// internal/cli/family enforces that for the e-mail proxy).
package service

import (
	"context"
	"fmt"

	"github.com/senhasegura/orbit/internal/cli/cmdutil"
	"github.com/senhasegura/orbit/internal/systemd"
)

// Description is what a family tells the shared verbs about its daemon:
// the unit, and the hooks only the family can answer. Every wording of the
// verbs comes from here, so that a second family's messages never name
// another's commands.
type Description struct {
	// Service is the unit internal/systemd renders, installs and controls.
	Service systemd.Service
	// Command is the family's command below orbit ("email-oauth2-proxy"):
	// the foreground engine is `orbit Command serve`, and hints name its
	// status and logs verbs.
	Command string
	// Noun names the daemon in messages ("proxy").
	Noun string
	// DefaultConfig is --config's default.
	DefaultConfig string
	// Help words each verb for the daemon.
	Help map[Action]Help

	// CheckConfig loads the file as the engine would, before a restart or
	// a reload hands it over; keep says what was left alone ("nothing was
	// restarted"). nil: the engine alone judges its file.
	CheckConfig func(path, keep string) error
	// Verdict is how the engine answers a reload in the journal; nil when
	// it does not, and reload then reports only that systemd signalled it.
	Verdict *Verdict
	// StatusExtra is the family's part of status for the file at cfgPath:
	// text after the unit's lines, and data for --output json ("extra");
	// nil shows the unit alone.
	StatusExtra func(ctx context.Context, cfgPath string, running bool) (text string, data any)
	// RenderExtras adds what the file asks of the unit (resource limits,
	// credentials) before it is rendered; nil adds nothing.
	RenderExtras func(*systemd.UnitOptions)
	// Provision creates what the file at cfgPath needs to exist before
	// the unit is rendered (the e-mail proxy's background_refresh
	// credential), and never replaces what exists. done says what it
	// created, for the report. An error does not stop the command: the
	// unit is rendered without what is missing and the command does the
	// rest, then ends with the error (which carries its exit code). nil
	// creates nothing.
	Provision func(ctx context.Context, cfgPath string) (done []string, err error)
	// WriteConfig is the command that writes a missing file
	// ("orbit email-oauth2-proxy register"); "" when there is none.
	WriteConfig string
	// ValidateCommand is the family's verb that explains a file's problems
	// ("config validate"); "" when there is none.
	ValidateCommand string
	// ForeignNote says how another engine got into the unit
	// (" (register --exec)").
	ForeignNote string
	// StopNote adds how the foreground engine stops
	// (" (it lets running sessions finish first)").
	StopNote string
	// Purge words what uninstall --purge removes besides the unit.
	Purge PurgeWords
	// HandOverNote adds what carries over from a foreground engine to the
	// unit ("; the tokens it saved carry over to the unit").
	HandOverNote string
}

// ForegroundHint tells how to run the family's engine without systemd:
// its serve verb with the configuration file.
func (d Description) ForegroundHint(configPath string) string {
	return fmt.Sprintf("run the %s in the foreground instead (it logs to standard error; stop it with Ctrl-C):\n  orbit %s serve --config %s",
		d.Noun, d.Command, cmdutil.ShellQuote(configPath))
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

// PurgeWords describe the files uninstall --purge removes: the
// configuration file with its Companions, and the state directory.
type PurgeWords struct {
	// Companions are suffixes of files kept next to the configuration
	// file (".bak", ".lock").
	Companions []string
	// State names the state directory in --purge's help ("the token
	// store"); StateHolds says what it holds, in the question.
	State, StateHolds string
	// Consequence is said before the question, ending in a space ("The
	// mailboxes must then be authorised again. ").
	Consequence string
	// Keeps is what a run without --purge keeps ("the file and tokens").
	Keeps string
	// Extra lists files of the daemon's outside the configuration and
	// state directories (the e-mail proxy's background_refresh
	// credential): --purge removes those that exist, and a run without
	// it names them as kept.
	Extra []string
}
