// Package reload is `orbit email-oauth2-proxy reload`: the running proxy
// re-reads its file without a restart (sessions continue), but only after
// the file passed the checks the engine itself makes, and the command
// reports what the engine said about it in the journal, not what it hoped.
package reload

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/senhasegura/orbit/internal/cli/emailproxy/service"
	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/internal/systemd"
	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/journal"
	"github.com/spf13/cobra"
)

// DefaultTimeout bounds the whole command: the reload job and the wait for
// the engine's verdict.
const DefaultTimeout = 30 * time.Second

// The engine's verdicts (ORBIT_STATE of its lifecycle entry after SIGHUP).
const (
	StateReloaded           = "reloaded"
	StateReloadedWithErrors = "reloaded-with-errors"
	StateRefused            = "reload-failed"
)

// poll is how often the journal is read for the verdict.
const poll = 100 * time.Millisecond

// Options are reload's inputs and dependencies.
type Options struct {
	service.Deps

	Unit           string
	ConfigPath     string
	ConfigExplicit bool
	Timeout        time.Duration
	Output         output.Format
}

// Result is what reload reports, also as --output json.
type Result struct {
	Unit    string `json:"unit"`
	Config  string `json:"config"`
	MainPID uint32 `json:"main_pid"`
	// Verdict is the engine's: reloaded, reloaded-with-errors or
	// reload-failed (refused, the previous configuration stays).
	Verdict string `json:"verdict"`
	// Message is the engine's journal message about it.
	Message string     `json:"message"`
	At      *time.Time `json:"at,omitempty"`
}

// New builds the command. runF replaces Run in tests.
func New(f *factory.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	opts := &Options{Deps: service.SystemDeps(f)}
	cmd := &cobra.Command{
		Use:   "reload [flags]",
		Short: "Make the running proxy re-read its file, after checking it",
		Long: `Make the running proxy re-read its configuration file without a restart:
listeners are added, changed and removed, running sessions continue, tokens
stay.

The file is checked first, exactly as the engine checks it; a file with
errors is refused here (exit 4, every problem listed) and the proxy is not
touched. Otherwise systemd signals the engine (the unit's ExecReload, the
same as systemctl reload), and reload waits for the engine's own word in the
journal: exit 0 when it took the file, 7 when it took it but a listener
failed, 4 when it refused it and kept the previous configuration, 8 when it
said nothing within --timeout. A proxy that is not running exits 3.`,
		Example: `  orbit email-oauth2-proxy reload
  orbit email-oauth2-proxy reload --output json`,
		Args: cobra.NoArgs,
		RunE: service.RunE(opts, &opts.ConfigExplicit, runF, Run),
	}
	service.AddCommonFlags(cmd, &opts.ConfigPath, &opts.Unit)
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", DefaultTimeout, "give up waiting for the engine's answer after this long (exit 8)")
	output.AddFlag(cmd, &opts.Output)
	return cmd
}

// Run checks the file, reloads the unit and reports the engine's verdict.
func Run(ctx context.Context, o *Options) error {
	unit, err := service.CheckUnit(o.Unit)
	if err != nil {
		return err
	}
	o.Unit = unit
	if o.Timeout < 0 {
		return exitcode.Withf(exitcode.Usage, "--timeout %v: use a positive duration such as 30s", o.Timeout)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	cfgPath, err := service.AbsConfig(service.ResolveConfig(o.Installer, o.Unit, o.ConfigPath, o.ConfigExplicit))
	if err != nil {
		return err
	}
	what := "cannot reload " + o.Unit
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	m, err := o.Connector.Connect(ctx)
	if err != nil {
		if errors.Is(err, systemd.ErrNoSystemd) && !errors.Is(err, fs.ErrPermission) {
			return exitcode.Withf(exitcode.NoSystemd, "%s: %v\nThere is no service manager here; a proxy run with `orbit email-oauth2-proxy serve` reloads its file on SIGHUP (kill -HUP PID).", what, err)
		}
		return service.ConnectError(what, cfgPath, err)
	}
	defer m.Close()

	p, err := m.Properties(ctx, o.Unit)
	if err != nil {
		return service.JobError(what, err)
	}
	if p.ActiveState != "active" && o.Processes != nil {
		// Not under systemd, but maybe by hand: say how that one reloads.
		if procs, err := o.Processes(); err == nil {
			if fg, ok := service.ForegroundServe(procs, cfgPath, 0); ok {
				return exitcode.Withf(exitcode.NotRunning, "%s: the proxy runs in the foreground (PID %d), not under systemd; check the file (orbit email-oauth2-proxy config validate %s), then kill -HUP %d makes it re-read it, and its log says whether it took it", what, fg.PID, cfgPath, fg.PID)
			}
		}
	}
	switch {
	case p.LoadState == "not-found":
		return exitcode.Withf(exitcode.NotRunning, "%s: it is not installed, so nothing runs to reload.\nStart it: orbit email-oauth2-proxy start%s", what, service.UnitFlag(o.Unit))
	case p.ActiveState != "active" || p.MainPID == 0:
		return exitcode.Withf(exitcode.NotRunning, "%s: it is not running (%s/%s), so there is nothing to reload; start reads the file anyway:\n  orbit email-oauth2-proxy start%s", what, p.ActiveState, p.SubState, service.UnitFlag(o.Unit))
	}
	cur, _ := service.ReadInstalled(o.Installer, o.Unit)
	if !cur.Foreign {
		if err := service.CheckFile(cfgPath, fmt.Sprintf("the running proxy (main PID %d) keeps its current configuration", p.MainPID)); err != nil {
			return err
		}
		// A unit written by an older orbit has no ExecReload: bring it up
		// to date first (nothing happens when it is current).
		if _, err := service.Prepare(ctx, o.Deps, m, o.Unit, cfgPath, what); err != nil {
			return err
		}
	}

	// The verdict is the first lifecycle entry of the unit after this
	// point; the cursor of the newest entry marks it exactly, the clock
	// (less a second of slack) where the journal has none yet.
	since := o.Now().Add(-time.Second)
	cursor := newestCursor(ctx, o.Journal, o.Unit)
	if err := m.Reload(ctx, o.Unit); err != nil {
		return service.JobError(what, err)
	}
	res := Result{Unit: o.Unit, Config: cfgPath, MainPID: p.MainPID}
	e, err := waitVerdict(ctx, o.Journal, o.Unit, p.MainPID, cursor, since)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return exitcode.Withf(exitcode.Timeout, "%s: systemd signalled the engine (main PID %d), but it logged no verdict within %v; see: orbit email-oauth2-proxy logs -n 50%s", what, p.MainPID, o.Timeout, service.UnitFlag(o.Unit))
		}
		return exitcode.Withf(exitcode.Error, "%s: the reload was sent, but its result cannot be read from the journal: %v", what, err)
	}
	res.Verdict, res.Message = e.Field(events.Prefix+events.FieldState), e.Message
	if !e.Time.IsZero() {
		t := e.Time.UTC()
		res.At = &t
	}
	if o.Output == output.JSON {
		if err := output.WriteJSON(o.IO.Out, res); err != nil {
			return err
		}
	}
	switch res.Verdict {
	case StateReloaded:
		if o.Output != output.JSON {
			fmt.Fprintf(o.IO.Out, "Reloaded %s: the engine (main PID %d) took %s.\n", o.Unit, res.MainPID, cfgPath)
		}
		return nil
	case StateReloadedWithErrors:
		return exitcode.Withf(exitcode.Failed, "%s took the new file, but not every listener is up: %s\nSee: orbit email-oauth2-proxy status%s", o.Unit, res.Message, service.UnitFlag(o.Unit))
	default:
		return exitcode.Withf(exitcode.Invalid, "the engine of %s refused the file and keeps its previous configuration: %s", o.Unit, res.Message)
	}
}

func newestCursor(ctx context.Context, r service.JournalReader, unit string) string {
	if r == nil {
		return ""
	}
	for e, err := range r.Entries(ctx, journal.Query{Units: []string{unit}, Lines: 1}) {
		if err != nil {
			return ""
		}
		return e.Cursor
	}
	return ""
}

// waitVerdict polls the unit's journal for the engine's lifecycle entry
// about a reload, written by pid after cursor (or since, without one).
func waitVerdict(ctx context.Context, r service.JournalReader, unit string, pid uint32, cursor string, since time.Time) (journal.Entry, error) {
	if r == nil {
		return journal.Entry{}, errors.New("no journal reader")
	}
	// The cursor is of any entry of the unit, usually not a lifecycle one;
	// journal.Query.AfterCursor still starts right after it.
	q := journal.Query{Units: []string{unit}, MessageIDs: []string{events.Lifecycle}, AfterCursor: cursor}
	if cursor == "" {
		q.Since = since
	}
	for {
		for e, err := range r.Entries(ctx, q) {
			if err != nil {
				if ctx.Err() != nil {
					return journal.Entry{}, ctx.Err()
				}
				return journal.Entry{}, err
			}
			if e.MessageID != events.Lifecycle || (pid != 0 && e.PID != 0 && uint32(e.PID) != pid) {
				continue
			}
			switch e.Field(events.Prefix + events.FieldState) {
			case StateReloaded, StateReloadedWithErrors, StateRefused:
				return e, nil
			}
		}
		select {
		case <-ctx.Done():
			return journal.Entry{}, ctx.Err()
		case <-time.After(poll):
		}
	}
}
