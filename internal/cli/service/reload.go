package service

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/internal/systemd"
	"github.com/senhasegura/orbit/pkg/journal"
	"github.com/spf13/cobra"
)

// reload: the running engine re-reads its file without a restart, but
// only after the file passed the family's check (CheckConfig), and, for a
// family whose engine logs its verdict (Description.Verdict), the command
// reports what the engine said in the journal, not what it hoped.

// ReloadTimeout bounds the whole command: the reload job and the wait for
// the engine's verdict.
const ReloadTimeout = 30 * time.Second

// Verdict is how a family's engine answers a reload in the journal: an
// entry with MessageID whose Field holds one of the three states.
type Verdict struct {
	MessageID, Field              string
	Reloaded, WithErrors, Refused string
	// WithErrorsSays is what WithErrors means ("not every listener is up").
	WithErrorsSays string
}

func (d Description) reloadSignal() string {
	if d.Service.ReloadSignal == "" {
		return "HUP"
	}
	return d.Service.ReloadSignal
}

// poll is how often the journal is read for the verdict.
const poll = 100 * time.Millisecond

// ReloadOptions are reload's inputs and dependencies.
type ReloadOptions struct {
	Deps
	// Family is the daemon to reload.
	Family Description

	Unit           string
	ConfigPath     string
	ConfigExplicit bool
	Timeout        time.Duration
	Output         output.Format
}

// ReloadResult is what reload reports, also as --output json.
type ReloadResult struct {
	Unit    string `json:"unit"`
	Config  string `json:"config"`
	MainPID uint32 `json:"main_pid"`
	// Verdict is the engine's (the e-mail proxy's: reloaded,
	// reloaded-with-errors or reload-failed), "" for a family whose
	// engine does not say (Description.Verdict is nil).
	Verdict string `json:"verdict"`
	// Message is the engine's journal message about it.
	Message string     `json:"message"`
	At      *time.Time `json:"at,omitempty"`
}

// NewReload builds `reload`. runF replaces RunReload in tests.
func NewReload(f *factory.Factory, d Description, runF func(context.Context, *ReloadOptions) error) *cobra.Command {
	opts := &ReloadOptions{Deps: SystemDeps(f, d), Family: d}
	cmd := newVerbCmd(d, Reload, opts, &opts.ConfigPath, &opts.Unit, &opts.ConfigExplicit, runF, RunReload)
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", ReloadTimeout, "give up waiting for the engine's answer after this long (exit 8)")
	output.AddFlag(cmd, &opts.Output)
	return cmd
}

// RunReload checks the file, reloads the unit and reports the engine's
// verdict.
func RunReload(ctx context.Context, o *ReloadOptions) error {
	d := o.Family
	if err := d.checkUnitAndTimeout(&o.Unit, &o.Timeout, ReloadTimeout); err != nil {
		return err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	cfgPath, err := d.AbsConfig(d.ResolveConfig(o.Installer, o.Unit, o.ConfigPath, o.ConfigExplicit))
	if err != nil {
		return err
	}
	what := "cannot reload " + o.Unit
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	m, err := o.Connector.Connect(ctx)
	if err != nil {
		if errors.Is(err, systemd.ErrNoSystemd) && !errors.Is(err, fs.ErrPermission) {
			return exitcode.Withf(exitcode.NoSystemd, "%s: %v\nThere is no service manager here; a %s run with `orbit %s serve` reloads its file on SIG%s (kill -%s PID).", what, err, d.Noun, d.Command, d.reloadSignal(), d.reloadSignal())
		}
		return d.ConnectError(what, cfgPath, err)
	}
	defer m.Close()

	p, err := m.Properties(ctx, o.Unit)
	if err != nil {
		return d.JobError(what, err)
	}
	if p.ActiveState != "active" && o.Processes != nil {
		// Not under systemd, but maybe by hand: say how that one reloads.
		if procs, err := o.Processes(); err == nil {
			if fg, ok := ForegroundServe(procs, cfgPath, 0); ok {
				check := ""
				if d.ValidateCommand != "" {
					check = fmt.Sprintf("check the file (orbit %s %s %s), then ", d.Command, d.ValidateCommand, cfgPath)
				}
				return exitcode.Withf(exitcode.NotRunning, "%s: the %s runs in the foreground (PID %d), not under systemd; %skill -%s %d makes it re-read it, and its log says whether it took it", what, d.Noun, fg.PID, check, d.reloadSignal(), fg.PID)
			}
		}
	}
	switch {
	case p.LoadState == "not-found":
		return exitcode.Withf(exitcode.NotRunning, "%s: it is not installed, so nothing runs to reload.\nStart it: orbit %s start%s", what, d.Command, d.UnitFlag(o.Unit))
	case p.ActiveState != "active" || p.MainPID == 0:
		return exitcode.Withf(exitcode.NotRunning, "%s: it is not running (%s/%s), so there is nothing to reload; start reads the file anyway:\n  orbit %s start%s", what, p.ActiveState, p.SubState, d.Command, d.UnitFlag(o.Unit))
	}
	cur, _ := d.ReadInstalled(o.Installer, o.Unit)
	var prep Prepared
	if !cur.Foreign {
		if d.CheckConfig != nil {
			if err := d.CheckConfig(cfgPath, fmt.Sprintf("the running %s (main PID %d) keeps its current configuration", d.Noun, p.MainPID)); err != nil {
				return err
			}
		}
		// A unit written by an older orbit has no ExecReload: bring it up
		// to date first (nothing happens when it is current).
		if prep, err = d.Prepare(ctx, o.Deps, m, o.Unit, cfgPath, what); err != nil {
			return err
		}
		// What Provision made (a credential) reaches the engine only
		// through systemd, at its next start.
		for _, l := range prep.Provisioned {
			fmt.Fprintf(o.IO.ErrOut, "%s The running %s gets it at its next restart: orbit %s restart%s\n", l, d.Noun, d.Command, d.UnitFlag(o.Unit))
		}
	}

	// The verdict is the first lifecycle entry of the unit after this
	// point; the cursor of the newest entry marks it exactly, the clock
	// (less a second of slack) where the journal has none yet.
	since := o.Now().Add(-time.Second)
	cursor := newestCursor(ctx, o.Journal, o.Unit)
	if err := m.Reload(ctx, o.Unit); err != nil {
		return d.JobError(what, err)
	}
	res := ReloadResult{Unit: o.Unit, Config: cfgPath, MainPID: p.MainPID}
	if d.Verdict == nil {
		// The engine does not say whether it took the file: report that
		// systemd signalled it, and where its own word would be.
		if o.Output == output.JSON {
			if err := output.WriteJSON(o.IO.Out, res); err != nil {
				return err
			}
			return prep.ProvisionErr
		}
		fmt.Fprintf(o.IO.Out, "Reloaded %s: systemd signalled the engine (main PID %d) to re-read %s; its log says whether it took it (orbit %s logs%s).\n", o.Unit, res.MainPID, cfgPath, d.Command, d.UnitFlag(o.Unit))
		return prep.ProvisionErr
	}
	v := *d.Verdict
	e, err := WaitVerdict(ctx, o.Journal, v, o.Unit, p.MainPID, cursor, since)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return exitcode.Withf(exitcode.Timeout, "%s: systemd signalled the engine (main PID %d), but it logged no verdict within %v; see: orbit %s logs -n 50%s", what, p.MainPID, o.Timeout, d.Command, d.UnitFlag(o.Unit))
		}
		return exitcode.Withf(exitcode.Error, "%s: the reload was sent, but its result cannot be read from the journal: %v", what, err)
	}
	res.Verdict, res.Message = e.Field(v.Field), e.Message
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
	case v.Reloaded:
		if o.Output != output.JSON {
			fmt.Fprintf(o.IO.Out, "Reloaded %s: the engine (main PID %d) took %s.\n", o.Unit, res.MainPID, cfgPath)
		}
		return prep.ProvisionErr
	case v.WithErrors:
		return exitcode.Withf(exitcode.Failed, "%s took the new file, but %s: %s\nSee: orbit %s status%s", o.Unit, v.WithErrorsSays, res.Message, d.Command, d.UnitFlag(o.Unit))
	default:
		return exitcode.Withf(exitcode.Invalid, "the engine of %s refused the file and keeps its previous configuration: %s", o.Unit, res.Message)
	}
}

func newestCursor(ctx context.Context, r JournalReader, unit string) string {
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

// WaitVerdict polls the unit's journal for the engine's entry (v's
// MESSAGE_ID) about a reload, written by pid after cursor (or since,
// without one).
func WaitVerdict(ctx context.Context, r JournalReader, v Verdict, unit string, pid uint32, cursor string, since time.Time) (journal.Entry, error) {
	if r == nil {
		return journal.Entry{}, errors.New("no journal reader")
	}
	// The cursor is of any entry of the unit, usually not a lifecycle one;
	// journal.Query.AfterCursor still starts right after it.
	q := journal.Query{Units: []string{unit}, MessageIDs: []string{v.MessageID}, AfterCursor: cursor}
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
			if e.MessageID != v.MessageID || (pid != 0 && e.PID != 0 && uint32(e.PID) != pid) {
				continue
			}
			switch e.Field(v.Field) {
			case v.Reloaded, v.WithErrors, v.Refused:
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
