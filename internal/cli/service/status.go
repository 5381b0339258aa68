package service

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/senhasegura/orbit/internal/cli/cmdutil"
	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/internal/systemd"
	"github.com/senhasegura/orbit/pkg/journal"
	"github.com/spf13/cobra"
)

// status and logs, shared: the unit's state with the family's own part
// (StatusExtra), and the unit's journal lines. The e-mail proxy keeps its
// richer status (listeners, accounts, --check) and logs (--auth-url) for
// now; a new family mounts these.

// StatusOptions are status's inputs and dependencies.
type StatusOptions struct {
	Deps
	// Family is the daemon whose unit is shown.
	Family Description

	Unit           string
	ConfigPath     string
	ConfigExplicit bool
	Output         output.Format
}

// StatusReport is status's result, also as --output json.
type StatusReport struct {
	Unit          string     `json:"unit"`
	Running       bool       `json:"running"`
	LoadState     string     `json:"load_state"`
	ActiveState   string     `json:"active_state"`
	SubState      string     `json:"sub_state"`
	UnitFileState string     `json:"unit_file_state"`
	MainPID       uint32     `json:"main_pid"`
	Since         *time.Time `json:"since,omitempty"`
	Config        string     `json:"config"`
	// Extra is the family's part (StatusExtra).
	Extra any `json:"extra,omitempty"`
}

// NewStatus builds `status`. runF replaces RunStatus in tests.
func NewStatus(f *factory.Factory, d Description, runF func(context.Context, *StatusOptions) error) *cobra.Command {
	opts := &StatusOptions{Deps: SystemDeps(f, d), Family: d}
	cmd := newVerbCmd(d, Status, opts, &opts.ConfigPath, &opts.Unit, &opts.ConfigExplicit, runF, RunStatus)
	output.AddFlag(cmd, &opts.Output)
	return cmd
}

// RunStatus shows the unit. Exit status as systemctl status: 0 running, 3
// not (the state is printed first), 6 no systemd here.
func RunStatus(ctx context.Context, o *StatusOptions) error {
	d := o.Family
	unit, err := d.CheckUnit(o.Unit)
	if err != nil {
		return err
	}
	o.Unit = unit
	cfgPath, err := d.AbsConfig(d.ResolveConfig(o.Installer, o.Unit, o.ConfigPath, o.ConfigExplicit))
	if err != nil {
		return err
	}
	what := "cannot show " + o.Unit
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := o.Connector.Connect(ctx)
	if err != nil {
		if errors.Is(err, systemd.ErrNoSystemd) && !errors.Is(err, fs.ErrPermission) {
			return d.NoSystemdError(what, cfgPath, err)
		}
		return d.ConnectError(what, cfgPath, err)
	}
	defer m.Close()
	p, err := m.Properties(ctx, o.Unit)
	if err != nil {
		return d.JobError(what, err)
	}
	rep := StatusReport{Unit: o.Unit, Running: p.ActiveState == "active" && p.MainPID != 0,
		LoadState: p.LoadState, ActiveState: p.ActiveState, SubState: p.SubState,
		UnitFileState: p.UnitFileState, MainPID: p.MainPID, Config: cfgPath}
	if !p.StateChangeTimestamp.IsZero() {
		t := p.StateChangeTimestamp.UTC()
		rep.Since = &t
	}
	var extra string
	if d.StatusExtra != nil {
		extra, rep.Extra = d.StatusExtra(ctx, cfgPath, rep.Running)
	}
	if o.Output == output.JSON {
		if err := output.WriteJSON(o.IO.Out, rep); err != nil {
			return err
		}
	} else {
		w := o.IO.Out
		switch {
		case p.LoadState == "not-found":
			fmt.Fprintf(w, "%s is not installed (start installs it: orbit %s start%s).\n", o.Unit, d.Command, d.UnitFlag(o.Unit))
		default:
			fmt.Fprintf(w, "%s: %s (%s)", o.Unit, p.ActiveState, p.SubState)
			if p.MainPID != 0 {
				fmt.Fprintf(w, ", main PID %d", p.MainPID)
			}
			if rep.Since != nil {
				fmt.Fprintf(w, ", since %s", rep.Since.Local().Format("2006-01-02 15:04:05"))
			}
			fmt.Fprintf(w, "\nAt boot: %s\n", p.UnitFileState)
		}
		fmt.Fprintf(w, "Configuration: %s\n", cfgPath)
		if extra != "" {
			fmt.Fprintln(w, extra)
		}
	}
	if !rep.Running {
		return exitcode.Silent(exitcode.NotRunning)
	}
	return nil
}

// LogsOptions are logs's inputs and dependencies.
type LogsOptions struct {
	Deps
	// Family is the daemon whose journal is shown.
	Family Description

	Unit           string
	ConfigPath     string
	ConfigExplicit bool
	Lines          int
	Location       *time.Location
}

// NewLogs builds `logs`. runF replaces RunLogs in tests.
func NewLogs(f *factory.Factory, d Description, runF func(context.Context, *LogsOptions) error) *cobra.Command {
	opts := &LogsOptions{Deps: SystemDeps(f, d), Family: d}
	cmd := newVerbCmd(d, Logs, opts, &opts.ConfigPath, &opts.Unit, &opts.ConfigExplicit, runF, RunLogs)
	cmd.Flags().IntVarP(&opts.Lines, "lines", "n", 50, "show this many of the newest lines")
	return cmd
}

// RunLogs prints the unit's newest journal lines.
func RunLogs(ctx context.Context, o *LogsOptions) error {
	unit, err := o.Family.CheckUnit(o.Unit)
	if err != nil {
		return err
	}
	o.Unit = unit
	if o.Lines <= 0 {
		return exitcode.Withf(exitcode.Usage, "--lines %d: use a positive number of lines, such as 50", o.Lines)
	}
	entries, err := Tail(ctx, o.Journal, o.Unit, o.Lines, time.Time{})
	if errors.Is(err, journal.ErrDenied) {
		return exitcode.With(exitcode.Permission, cmdutil.Explained(fmt.Sprintf("cannot read the journal of %s: permission denied\nRun as root (sudo orbit %s logs), or as a member of the systemd-journal group.", o.Unit, o.Family.Command), err))
	}
	if err != nil {
		return fmt.Errorf("reading the journal of %s: %w", o.Unit, err)
	}
	if len(entries) == 0 {
		fmt.Fprintf(o.IO.ErrOut, "The journal holds no lines of %s.\n", o.Unit)
		return nil
	}
	for _, e := range entries {
		fmt.Fprintln(o.IO.Out, FormatEntry(e, o.Location))
	}
	return nil
}
