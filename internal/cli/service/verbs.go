package service

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/senhasegura/orbit/internal/cli/cmdutil"
	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/internal/systemd"
	"github.com/senhasegura/orbit/pkg/journal"
	"github.com/spf13/cobra"
)

// Action is what a command asks of the unit.
type Action string

const (
	Start   Action = "start"
	Stop    Action = "stop"
	Restart Action = "restart"
	// The other verbs, for Description.Help.
	Uninstall Action = "uninstall"
	Reload    Action = "reload"
	Status    Action = "status"
	Logs      Action = "logs"
)

// Deps are what start, stop, restart and the register hook use of the
// system; tests replace them with servicetest's fakes.
type Deps struct {
	IO         *iostreams.IOStreams
	Connector  Connector
	Installer  Installer
	Journal    JournalReader
	Executable func() (string, error)
	Now        func() time.Time
	// Processes lists running serve processes (ReadProcesses); nil skips
	// the check for a foreground proxy that holds the unit's ports.
	Processes func() ([]Process, error)
}

// SystemDeps are the running system's, for d's daemon.
func SystemDeps(f *factory.Factory, d Description) Deps {
	return Deps{
		IO:         f.IO,
		Connector:  SystemConnector{},
		Installer:  SystemInstaller{Service: d.Service},
		Journal:    &journal.Reader{},
		Executable: f.Executable,
		Now:        f.Now,
		Processes:  d.ReadProcesses,
	}
}

// Options are the inputs and dependencies of start, stop and restart.
type Options struct {
	Deps
	// Family is the daemon the verbs drive.
	Family Description
	// Location formats times (time.Local unless a test pins it).
	Location *time.Location

	Action     Action
	Unit       string
	ConfigPath string
	// ConfigExplicit: --config was given; otherwise the installed unit's
	// file wins over the default.
	ConfigExplicit bool
	NoEnable       bool
	Timeout        time.Duration
	Output         output.Format
}

// Result is what start, stop and restart report, also as --output json.
type Result struct {
	Action Action `json:"action"`
	Unit   string `json:"unit"`
	Config string `json:"config,omitempty"`
	Prepared
	// Enabled: the unit is enabled at boot after the command (start and
	// restart enable it unless --no-enable).
	EnabledNow  bool       `json:"enabled_now"`
	ActiveState string     `json:"active_state"`
	SubState    string     `json:"sub_state"`
	MainPID     uint32     `json:"main_pid"`
	Since       *time.Time `json:"since,omitempty"`
	// NotInstalled: stop found no such unit, so there was nothing to stop.
	NotInstalled bool `json:"not_installed,omitempty"`
	// EnabledChanged: this command enabled the unit at boot (it was not).
	EnabledChanged bool `json:"enabled_changed"`
	// AlreadyRunning: start found the unit running; systemd left it as it
	// was, and the engine keeps the file it read when it started.
	AlreadyRunning bool `json:"already_running,omitempty"`
}

// NewOptions fills the dependencies for the running system.
func NewOptions(f *factory.Factory, d Description, a Action) *Options {
	return &Options{Deps: SystemDeps(f, d), Family: d, Action: a}
}

// Help is a verb's help text, which the family words for its daemon.
type Help struct{ Short, Long, Example string }

// NewStart builds `start`.
func NewStart(f *factory.Factory, d Description, runF func(context.Context, *Options) error) *cobra.Command {
	return newCmd(f, d, Start, runF)
}

// NewStop builds `stop`.
func NewStop(f *factory.Factory, d Description, runF func(context.Context, *Options) error) *cobra.Command {
	return newCmd(f, d, Stop, runF)
}

// NewRestart builds `restart`.
func NewRestart(f *factory.Factory, d Description, runF func(context.Context, *Options) error) *cobra.Command {
	return newCmd(f, d, Restart, runF)
}

func newCmd(f *factory.Factory, d Description, a Action, runF func(context.Context, *Options) error) *cobra.Command {
	opts := NewOptions(f, d, a)
	cmd := newVerbCmd(d, a, opts, &opts.ConfigPath, &opts.Unit, &opts.ConfigExplicit, runF, Run)
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", DefaultTimeout, "give up waiting for systemd after this long (exit 8)")
	if a != Stop {
		cmd.Flags().BoolVar(&opts.NoEnable, "no-enable", false, "do not enable the unit at boot")
	}
	output.AddFlag(cmd, &opts.Output)
	return cmd
}

// RunE is the RunE of a command with AddCommonFlags: it records whether
// --config was given (otherwise the installed unit's file wins over the
// default) and calls run, or runF when a test supplies one.
func RunE[O any](opts *O, configExplicit *bool, runF, run func(context.Context, *O) error) func(*cobra.Command, []string) error {
	if runF != nil {
		run = runF
	}
	return func(c *cobra.Command, _ []string) error {
		*configExplicit = c.Flags().Changed("config")
		return run(c.Context(), opts)
	}
}

// newVerbCmd is the command every service verb starts from: its help
// from d.Help, no arguments, --config and --unit, and RunE calling runF
// (tests) or run with opts.
func newVerbCmd[O any](d Description, a Action, opts *O, configPath, unit *string, configExplicit *bool, runF, run func(context.Context, *O) error) *cobra.Command {
	h := d.Help[a]
	cmd := &cobra.Command{
		Use:     string(a) + " [flags]",
		Short:   h.Short,
		Long:    h.Long,
		Example: h.Example,
		Args:    cobra.NoArgs,
		RunE:    RunE(opts, configExplicit, runF, run),
	}
	d.AddCommonFlags(cmd, configPath, unit)
	return cmd
}

// AddCommonFlags adds --config and --unit, shared by every service command.
func (d Description) AddCommonFlags(cmd *cobra.Command, configPath, unit *string) {
	cmd.Flags().StringVar(configPath, "config", d.DefaultConfig, "the "+d.Noun+"'s configuration file; when not given, the one the installed unit runs with, else this default")
	cmd.Flags().StringVar(unit, "unit", d.Service.Name, "the systemd unit that runs the "+d.Noun)
	_ = cmd.MarkFlagFilename("config")
	_ = cmd.RegisterFlagCompletionFunc("unit", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{d.Service.Name}, cobra.ShellCompDirectiveNoFileComp
	})
}

// checkUnitAndTimeout is what every verb that waits checks first, as
// usage errors before systemd is asked anything: --unit, and a --timeout
// that is not negative (zero takes def).
func (d Description) checkUnitAndTimeout(unit *string, timeout *time.Duration, def time.Duration) error {
	u, err := d.CheckUnit(*unit)
	if err != nil {
		return err
	}
	*unit = u
	if *timeout < 0 {
		return exitcode.Withf(exitcode.Usage, "--timeout %v: use a positive duration such as 30s or 5m", *timeout)
	}
	if *timeout == 0 {
		*timeout = def
	}
	return nil
}

// Run carries out o.Action.
func Run(ctx context.Context, o *Options) error {
	d := o.Family
	if err := d.checkUnitAndTimeout(&o.Unit, &o.Timeout, DefaultTimeout); err != nil {
		return err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	cfgPath, err := d.AbsConfig(d.ResolveConfig(o.Installer, o.Unit, o.ConfigPath, o.ConfigExplicit))
	if err != nil {
		return err
	}
	what := fmt.Sprintf("cannot %s %s", o.Action, o.Unit)
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	m, err := o.Connector.Connect(ctx)
	if err != nil {
		if o.Action == Stop && errors.Is(err, systemd.ErrNoSystemd) && !errors.Is(err, fs.ErrPermission) {
			// Without systemd there is no unit to stop; an engine run by
			// hand stops like any foreground process.
			return exitcode.Withf(exitcode.NoSystemd, "%s: %v\nThere is no service manager here, so no unit runs the %s; a %s started with `orbit %s serve` stops with Ctrl-C or SIGTERM%s.", what, err, d.Noun, d.Noun, d.Command, d.StopNote)
		}
		return d.ConnectError(what, cfgPath, err)
	}
	defer m.Close()

	res := Result{Action: o.Action, Unit: o.Unit, Config: cfgPath}
	// fileErr: start found the unit running with a file the engine would
	// refuse at its next reload, restart or boot; said after the report.
	var fileErr error
	switch o.Action {
	case Stop:
		p, err := m.Properties(ctx, o.Unit)
		if err != nil {
			return d.jobError(what, err)
		}
		if p.LoadState == "not-found" {
			res.NotInstalled = true
			res.ActiveState, res.SubState = p.ActiveState, p.SubState
			return o.report(res)
		}
		if err := m.Stop(ctx, o.Unit); err != nil {
			return o.failed(ctx, "", err, time.Time{}, cfgPath)
		}
	case Start, Restart:
		if err := o.checkForeground(ctx, m, cfgPath, what); err != nil {
			return err
		}
		if o.Action == Restart {
			// A restart stops a proxy that may be serving well: never for
			// a file the new engine would refuse.
			if err := d.checkBeforeRestart(ctx, o.Installer, m, o.Unit, cfgPath); err != nil {
				return err
			}
		}
		if o.Action == Start {
			// systemd's start does nothing to a running unit: the engine
			// keeps the file it read, and whether the file on disk is
			// still good only shows at the next reload, restart or boot.
			if p, err := m.Properties(ctx, o.Unit); err == nil && (p.ActiveState == "active" || p.ActiveState == "reloading") {
				res.AlreadyRunning = true
				fileErr = d.checkRunning(o.Installer, o.Unit, cfgPath, p.MainPID)
			}
		}
		if res.Prepared, err = d.install(ctx, o.Installer, m, o.Executable, o.Unit, cfgPath, what); err != nil {
			return err
		}
		// A unit that gave up restarting (start-limit-hit) refuses even an
		// administrator's start until its failure is cleared.
		if err := m.ResetFailed(ctx, o.Unit); err != nil {
			return d.jobError(what, err)
		}
		if !o.NoEnable {
			changed, err := m.Enable(ctx, o.Unit)
			if err != nil {
				return d.jobError(what, err)
			}
			res.EnabledChanged = changed
		}
		// A second of slack: journald's timestamps and ours come from the
		// same clock, but the window must include systemd's "Starting" line.
		issued := o.Now().Add(-time.Second)
		op := m.Start
		if o.Action == Restart {
			op = m.Restart
		}
		if err := op(ctx, o.Unit); err != nil {
			return o.failed(ctx, "", err, issued, cfgPath)
		}
	default:
		return fmt.Errorf("unknown action %q", o.Action)
	}
	p, err := m.Properties(ctx, o.Unit)
	if err != nil {
		return d.jobError(what, err)
	}
	res.fill(p)
	if err := o.report(res); err != nil {
		return err
	}
	if fileErr != nil {
		return fileErr
	}
	// The unit runs without what could not be made; the command still
	// fails, so that a script notices.
	return res.ProvisionErr
}

// checkRunning judges the file of a unit start found running (the
// family's CheckConfig): the engine goes on with the file it read, but a
// reload, restart or boot would refuse this one.
func (d Description) checkRunning(inst Installer, unit, cfgPath string, mainPID uint32) error {
	if d.CheckConfig == nil {
		return nil
	}
	if cur, ok := d.ReadInstalled(inst, unit); ok && cur.Foreign {
		return nil
	}
	return d.CheckConfig(cfgPath, fmt.Sprintf("the running %s (%s, main PID %d) keeps the file it read when it started, but a reload, restart or the next boot would refuse it", d.Noun, unit, mainPID))
}

// checkForeground refuses to start the unit while `serve`, run by hand for
// the same file, holds its ports: the unit would only fail with "address
// already in use" after a while, and the proxy that answers the mailer is
// the foreground one.
func (o *Options) checkForeground(ctx context.Context, m Manager, cfgPath, what string) error {
	if o.Processes == nil {
		return nil
	}
	procs, err := o.Processes()
	if err != nil {
		return nil
	}
	var mainPID uint32
	if p, err := m.Properties(ctx, o.Unit); err == nil {
		mainPID = p.MainPID
	}
	if p, ok := ForegroundServe(procs, cfgPath, mainPID); ok {
		return exitcode.Withf(exitcode.Failed, "%s: the %s already runs in the foreground for %s (PID %d: %s) and holds its ports.\nStop it first (Ctrl-C where it runs, or kill %d), then start again%s.", what, o.Family.Noun, cfgPath, p.PID, strings.Join(p.Argv, " "), p.PID, o.Family.HandOverNote)
	}
	return nil
}

// CheckBeforeRestart is checkBeforeRestart, for other commands that
// restart the unit (register's hook).
func (d Description) CheckBeforeRestart(ctx context.Context, inst Installer, m Manager, unit, cfgPath string) error {
	return d.checkBeforeRestart(ctx, inst, m, unit, cfgPath)
}

// checkBeforeRestart validates the file a restart would hand the engine
// (the family's CheckConfig); a unit running another engine is that
// engine's to judge.
func (d Description) checkBeforeRestart(ctx context.Context, inst Installer, m Manager, unit, cfgPath string) error {
	if d.CheckConfig == nil {
		return nil
	}
	if cur, ok := d.ReadInstalled(inst, unit); ok && cur.Foreign {
		return nil
	}
	keep := "nothing was restarted"
	if p, err := m.Properties(ctx, unit); err == nil && p.ActiveState == "active" && p.MainPID != 0 {
		keep = fmt.Sprintf("the running %s (%s, main PID %d) was left as it is", d.Noun, unit, p.MainPID)
	}
	return d.CheckConfig(cfgPath, keep)
}

func (r *Result) fill(p systemd.Properties) {
	r.ActiveState, r.SubState, r.MainPID = p.ActiveState, p.SubState, p.MainPID
	r.EnabledNow = p.UnitFileState == "enabled"
	if !p.StateChangeTimestamp.IsZero() {
		t := p.StateChangeTimestamp.UTC()
		r.Since = &t
	}
}

// JobError classifies an error of the service manager under what: refused
// for lack of privilege (10), out of time (8), or anything else systemd
// said (7).
func (d Description) JobError(what string, err error) error { return d.jobError(what, err) }

func (d Description) jobError(what string, err error) error {
	var de dbus.Error
	switch {
	case errors.As(err, &de) && (de.Name == "org.freedesktop.DBus.Error.AccessDenied" || strings.HasSuffix(de.Name, "InteractiveAuthorizationRequired")):
		return cmdutil.Denied(what, err)
	case errors.Is(err, context.DeadlineExceeded):
		return exitcode.Withf(exitcode.Timeout, "%s: %v\nsystemd may still be working on it: orbit %s status", what, err, d.Command)
	}
	return exitcode.Withf(exitcode.Failed, "%s: %v", what, err)
}

// Failed is failed for a command that restarted the unit on its own
// account (register's hook): what prefixes the error.
func (o *Options) Failed(ctx context.Context, what string, err error, since time.Time, cfgPath string) error {
	return o.failed(ctx, what, err, since, cfgPath)
}

// failed explains a start, stop or restart that did not work: the unit's
// last journal lines on stderr, then an error that says what to do.
func (o *Options) failed(ctx context.Context, what string, err error, since time.Time, cfgPath string) error {
	// Only a start or restart whose job systemd ended (not one we gave up
	// waiting for) is sure to get systemd's failure line to wait for.
	var opErr *systemd.OpError
	settle := o.Action != Stop && errors.As(err, &opErr) && !errors.Is(err, context.DeadlineExceeded)
	// systemd refused the job to this user: the unit did nothing, so its
	// journal has nothing to say (and is closed to such a user anyway).
	var de dbus.Error
	if errors.As(err, &de) && (de.Name == "org.freedesktop.DBus.Error.AccessDenied" || strings.HasSuffix(de.Name, "InteractiveAuthorizationRequired")) {
		return cmdutil.Denied(what, err)
	}
	PrintTail(ctx, o.IO.ErrOut, o.Journal, o.Unit, since, settle, o.Location)
	d := o.Family
	code := exitcode.Failed
	if errors.Is(err, context.DeadlineExceeded) {
		code = exitcode.Timeout
	}
	var b strings.Builder
	if what != "" {
		// The job's error already names the operation and the unit.
		fmt.Fprintf(&b, "%s: ", what)
	}
	fmt.Fprintf(&b, "%v", err)
	if code == exitcode.Timeout {
		fmt.Fprintf(&b, "\nsystemd may still be working on it (raise --timeout, or see: orbit %s status).", d.Command)
	}
	if opErr != nil && opErr.Props.ExecMainCode == 1 {
		// systemd's own set-up failures and serve's permission exit point
		// at the state directory: name what in it is still wrong.
		switch opErr.Props.ExecMainStatus {
		case 10, 200, 238:
			o.stateHint(&b)
		}
	}
	b.WriteString("\nWhat to do:")
	if o.Action != Stop && d.ValidateCommand != "" {
		fmt.Fprintf(&b, "\n  orbit %s %s %s   # check the file", d.Command, d.ValidateCommand, cmdutil.ShellQuote(cfgPath))
	}
	fmt.Fprintf(&b, "\n  orbit %s logs -n 100%s   # the unit's whole story", d.Command, d.UnitFlag(o.Unit))
	fmt.Fprintf(&b, "\n  orbit %s status%s", d.Command, d.UnitFlag(o.Unit))
	return exitcode.With(code, errors.New(b.String()))
}

// stateHint adds what CheckStateDir finds in the unit's state directory.
func (o *Options) stateHint(b *strings.Builder) {
	if o.Installer == nil {
		return
	}
	user, stateDir := o.Family.Service.User, o.Family.Service.StateDirectory
	if cur, ok := o.Family.ReadInstalled(o.Installer, o.Unit); ok {
		if cur.User != "" {
			user = cur.User
		}
		stateDir = cur.StateDirectory
	}
	if stateDir == "" {
		return
	}
	problems, err := o.Installer.CheckStateDir(stateDir, user)
	if err != nil || len(problems) == 0 {
		return
	}
	b.WriteString("\nThe service user cannot use its state directory:")
	for _, p := range problems {
		fmt.Fprintf(b, "\n  %s: %s\n    fix: %s", p.Path, p.What, p.Fix)
	}
}

// UnitFlag is " --unit NAME" for commands printed as advice, "" for the
// family's own unit.
func (d Description) UnitFlag(unit string) string {
	if unit == d.Service.Name {
		return ""
	}
	return " --unit " + cmdutil.ShellQuote(unit)
}

func (o *Options) report(res Result) error {
	if o.Output == output.JSON {
		return output.WriteJSON(o.IO.Out, res)
	}
	var lines []string
	if res.Foreign {
		lines = append(lines, fmt.Sprintf("%s runs another engine%s; left as it is.", res.UnitFile, o.Family.ForeignNote))
	} else if res.Written {
		lines = append(lines, fmt.Sprintf("Installed %s.", res.UnitFile))
	}
	if res.Reloaded {
		lines = append(lines, "Reloaded systemd's unit files.")
	}
	for _, c := range res.StateRepaired {
		lines = append(lines, "Repaired the state directory for the service user: "+c)
	}
	lines = append(lines, res.Provisioned...)
	if res.EnabledChanged {
		lines = append(lines, "Enabled at boot.")
	}
	var done string
	switch {
	case res.NotInstalled:
		done = fmt.Sprintf("%s is not installed; nothing to stop.", res.Unit)
	case o.Action == Stop:
		done = fmt.Sprintf("Stopped %s (%s).", res.Unit, res.ActiveState)
	case res.AlreadyRunning:
		done = fmt.Sprintf("%s was already running: %s (%s), main PID %d. It keeps the file it read when it started; orbit %s reload%s applies changes.",
			res.Unit, res.ActiveState, res.SubState, res.MainPID, o.Family.Command, o.Family.UnitFlag(res.Unit))
	default:
		verb := "Started"
		if o.Action == Restart {
			verb = "Restarted"
		}
		done = fmt.Sprintf("%s %s: %s (%s), main PID %d.", verb, res.Unit, res.ActiveState, res.SubState, res.MainPID)
	}
	if o.IO.IsStdoutTTY() {
		cs := cmdutil.NewColorScheme(o.IO)
		for _, l := range lines {
			fmt.Fprintln(o.IO.Out, cs.Faint(l))
		}
		fmt.Fprintf(o.IO.Out, "%s %s\n", cs.SuccessIcon(), done)
		return nil
	}
	for _, l := range lines {
		fmt.Fprintln(o.IO.Out, l)
	}
	fmt.Fprintln(o.IO.Out, done)
	return nil
}
