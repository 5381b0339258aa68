// Package reload mounts the shared `reload` verb (internal/cli/service)
// for the e-mail proxy: the running proxy re-reads its file without a
// restart (sessions continue), only after the file passed the engine's own
// checks, and the command reports the verdict the engine logged under its
// lifecycle MESSAGE_ID.
package reload

import (
	"context"
	"time"

	"github.com/senhasegura/orbit/internal/cli/emailproxy/service"
	"github.com/senhasegura/orbit/internal/cli/factory"
	svc "github.com/senhasegura/orbit/internal/cli/service"
	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/journal"
	"github.com/spf13/cobra"
)

// DefaultTimeout bounds the whole command: the reload job and the wait for
// the engine's verdict.
const DefaultTimeout = svc.ReloadTimeout

// The engine's verdicts (ORBIT_STATE of its lifecycle entry after SIGHUP).
const (
	StateReloaded           = "reloaded"
	StateReloadedWithErrors = "reloaded-with-errors"
	StateRefused            = "reload-failed"
)

// Verdict is how the proxy's engine answers a reload.
var Verdict = svc.Verdict{
	MessageID:      events.Lifecycle,
	Field:          events.Prefix + events.FieldState,
	Reloaded:       StateReloaded,
	WithErrors:     StateReloadedWithErrors,
	Refused:        StateRefused,
	WithErrorsSays: "not every listener is up",
}

// Options are reload's inputs and dependencies.
type Options = svc.ReloadOptions

// Result is what reload reports, also as --output json.
type Result = svc.ReloadResult

// family is the proxy's description with its reload verdict.
func family() svc.Description {
	d := service.Family
	d.Verdict = &Verdict
	return d
}

// New builds the command. runF replaces Run in tests.
func New(f *factory.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	return svc.NewReload(f, family(), runF)
}

// Run checks the file, reloads the unit and reports the engine's verdict
// (Options built by hand in tests leave Family empty).
func Run(ctx context.Context, o *Options) error {
	if o.Family.Command == "" {
		o.Family = family()
	}
	return svc.RunReload(ctx, o)
}

// waitVerdict polls the unit's journal for the engine's lifecycle entry
// about a reload.
func waitVerdict(ctx context.Context, r service.JournalReader, unit string, pid uint32, cursor string, since time.Time) (journal.Entry, error) {
	return svc.WaitVerdict(ctx, r, Verdict, unit, pid, cursor, since)
}
