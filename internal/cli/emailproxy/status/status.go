// Package status is `orbit email-oauth2-proxy status`: the unit's state from
// systemd over D-Bus, each configured listener probed on its port, and each
// account's state from the engine's status file (or, where that has
// nothing, from the token store's plain timestamps).
package status

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/senhasegura/orbit/internal/cli/emailproxy/service"
	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/internal/systemd"
	"github.com/senhasegura/orbit/pkg/emailproxy/accountstate"
	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
	"github.com/spf13/cobra"
)

// DefaultDialTimeout bounds each listener probe: a local port answers in
// microseconds or not at all.
const DefaultDialTimeout = 500 * time.Millisecond

// queryTimeout bounds the whole D-Bus conversation, so status never hangs.
const queryTimeout = 10 * time.Second

// Options are status's inputs and dependencies.
type Options struct {
	IO        *iostreams.IOStreams
	Connector service.Connector
	Installer service.Installer
	// Listening lists the listening sockets (ReadListening). When it is nil
	// or fails, listeners are probed with Dial instead.
	Listening func() ([]Socket, error)
	// Dial probes a listener; net.Dialer.DialContext unless a test swaps it.
	Dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	DialTimeout time.Duration
	Now         func() time.Time
	Location    *time.Location
	// Width is the terminal's width in columns (0: unknown); the panel is
	// drawn only where it fits.
	Width func() int
	// Processes lists the running serve processes (ReadProcesses), so
	// that a proxy run in the foreground is recognised; nil skips that.
	Processes func() ([]Process, error)

	Unit           string
	ConfigPath     string
	ConfigExplicit bool
	StatusFile     string
	TokenCache     string
	Output         output.Format
	// Check prints one monitoring-plugin line instead of the report
	// (--check), judged by Thresholds.
	Check      bool
	Thresholds CheckThresholds
}

// New builds the command. runF replaces Run in tests.
func New(f *factory.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	var d net.Dialer
	opts := &Options{
		IO:          f.IO,
		Connector:   service.SystemConnector{},
		Installer:   service.SystemInstaller{},
		Listening:   ReadListening,
		Dial:        d.DialContext,
		DialTimeout: DefaultDialTimeout,
		Now:         f.Now,
		Width:       f.TerminalWidth,
		Processes:   ReadProcesses,
	}
	cmd := &cobra.Command{
		Use:   "status [flags]",
		Short: "Show the proxy's unit, listeners and accounts",
		Long: `Show whether the proxy runs (the systemd unit's state, main PID, since when,
memory), whether each listener of the configuration file really listens on
its port (read from the kernel's socket table, so that asking does not open a
session with the proxy), and each account's state: authorised (token valid
until ...), waiting for authorisation (with the URL to open), or failing (and
why), with its last activity. Wrong passwords do not change an account's
state; an account that had failed logins in the last hour says how many, from
how many client addresses, the last one and when, and until when the login
guard delays them.

Account states come from the status file the engine keeps (no secrets in
it); accounts it does not know yet are described from the token store's plain
timestamps, and configured accounts nobody used yet are listed as such.

A panel on a terminal, plain text otherwise, JSON with --output json
(schema in docs/status-json.md).

A proxy started by hand (orbit email-oauth2-proxy serve, outside the unit) is
recognised as running in the foreground. When the state directory holds
files the service user cannot use (left by serve run as root), each path is
named with the fix.

Exit status, as systemctl status: 0 the proxy is running (the unit, or serve
in the foreground); 3 it is not (stopped, failed or not installed; the state
is printed first); 6 there is no systemd here and no proxy runs (the file's
listeners and accounts are still shown); 10 a file could not be read (run as
root): the report is then incomplete and says which.

With --check, one line for a monitoring system (Nagios, Icinga, Zabbix,
Checkmk) instead, with perfdata, and the monitoring-plugin exit status
instead of the above: 0 OK, 1 WARNING (an authorisation pending, tokens
unused for --warn-refresh-age, an access token expiring within
--warn-expiry, more than --warn-failed-logins failed logins of an account in
the last hour), 2 CRITICAL (not running, unit failed, a listener down, an
account failing or disabled by errors in the file), 3 UNKNOWN (files unreadable: run as root).`,
		Example: `  orbit email-oauth2-proxy status
  orbit email-oauth2-proxy status --check --warn-refresh-age 60d   # Nagios/Icinga/Zabbix
  orbit email-oauth2-proxy status --output json | jq '.accounts[] | select(.state != "authorised")'`,
		Args: cobra.NoArgs,
		RunE: service.RunE(opts, &opts.ConfigExplicit, runF, Run),
	}
	service.AddCommonFlags(cmd, &opts.ConfigPath, &opts.Unit)
	cmd.Flags().StringVar(&opts.StatusFile, "status-file", oauth.DefaultStatusFile, "the engine's per-account status file")
	cmd.Flags().StringVar(&opts.TokenCache, "token-cache", tokens.DefaultPath, "the engine's token store (only plain timestamps are read)")
	output.AddFlag(cmd, &opts.Output)
	cmd.Flags().BoolVar(&opts.Check, "check", false, "print one line for Nagios, Icinga or Zabbix and exit 0 OK, 1 WARNING, 2 CRITICAL or 3 UNKNOWN")
	opts.Thresholds.RefreshAge = DefaultWarnRefreshAge
	cmd.Flags().Var((*days)(&opts.Thresholds.Expiry), "warn-expiry", "with --check: warn when an access token expires within this long, e.g. 10m (0: off)")
	cmd.Flags().Var((*days)(&opts.Thresholds.RefreshAge), "warn-refresh-age", "with --check: warn when an account's tokens have not been used for this long, e.g. 60d (0: off)")
	opts.Thresholds.FailedLogins = DefaultWarnFailedLogins
	cmd.Flags().Var((*count)(&opts.Thresholds.FailedLogins), "warn-failed-logins", "with --check: warn when an account had more than this many failed logins in the last hour (0: off)")
	return cmd
}

// Report is status's result and its --output json document.
type Report struct {
	Running bool `json:"running"`
	// Engine is the proxy process found running, under the unit or in the
	// foreground; absent when none runs.
	Engine     *Engine    `json:"engine,omitempty"`
	Unit       Unit       `json:"unit"`
	Config     Config     `json:"config"`
	Listeners  []Listener `json:"listeners"`
	Accounts   []Account  `json:"accounts"`
	StatusFile StatusFile `json:"status_file"`
	// CatchAllFailedLogins: failed logins of names nobody uses under each
	// catch-all section; absent when there were none in the last hour.
	CatchAllFailedLogins []CatchAllFailedLogins `json:"catch_all_failed_logins,omitempty"`
	// StateProblems lists what in the unit's state directory the service
	// user cannot use, each with its fix; absent when all is well (or it
	// could not be checked).
	StateProblems []systemd.StateProblem `json:"state_problems,omitempty"`
	// Unreadable lists files status could not read for lack of permission:
	// the report is incomplete (exit 10).
	Unreadable []string `json:"unreadable,omitempty"`
	// AccountErrors are the token stores that could not be read for
	// another reason (a damaged file): their accounts are missing above.
	AccountErrors []string `json:"account_errors,omitempty"`

	// configMissing: the file does not exist (never written, or removed by
	// uninstall --purge), so start could only fail.
	configMissing bool
}

// Unit is the systemd unit's state.
type Unit struct {
	Name string `json:"name"`
	// Systemd is false when there is no service manager to ask; Error says
	// why, and the other fields are empty.
	Systemd       bool       `json:"systemd"`
	Error         string     `json:"error,omitempty"`
	LoadState     string     `json:"load_state,omitempty"`
	ActiveState   string     `json:"active_state,omitempty"`
	SubState      string     `json:"sub_state,omitempty"`
	UnitFileState string     `json:"unit_file_state,omitempty"`
	MainPID       uint32     `json:"main_pid"`
	Since         *time.Time `json:"since,omitempty"`
	MemoryBytes   *uint64    `json:"memory_bytes,omitempty"`
	Result        string     `json:"result,omitempty"`
	Restarts      uint32     `json:"restarts"`
}

// Config names the file and whether it could be read.
type Config struct {
	Path  string `json:"path"`
	Error string `json:"error,omitempty"`
}

// Listener is one [IMAP-n], [POP-n] or [SMTP-n] section and its probe.
type Listener struct {
	Section   string `json:"section"`
	Protocol  string `json:"protocol"`
	Address   string `json:"address"`
	Upstream  string `json:"upstream"`
	Listening bool   `json:"listening"`
	Error     string `json:"error,omitempty"`
	// LocalStartTLSRequired is the listener's local_starttls_required
	// (remote, always, never; remote when unset), given only where
	// local_starttls is on: which clients must upgrade before a password.
	LocalStartTLSRequired string `json:"local_starttls_required,omitempty"`
}

// Account states besides the status file's authorised, waiting, failing,
// and where each came from: the merge is pkg/emailproxy/accountstate's.
const (
	StateExpired = accountstate.StateExpired
	StateNotUsed = accountstate.StateNotUsed
	// StateDisabled: the file's errors disable the account's section.
	StateDisabled = accountstate.StateDisabled

	SourceStatusFile = accountstate.SourceStatusFile
	SourceTokenStore = accountstate.SourceTokenStore
	SourceConfig     = accountstate.SourceConfig
)

// Account is one account's state.
type Account = accountstate.Account

// StatusFile says where account states came from.
type StatusFile = accountstate.StatusFile

// FailedLogins and CatchAllFailedLogins are an account's, and a catch-all
// section's unknown names', failed logins in the last hour.
type (
	FailedLogins         = accountstate.FailedLogins
	CatchAllFailedLogins = accountstate.CatchAllFailedLogins
)

// Run gathers the report, prints it, and returns the exit status.
func Run(ctx context.Context, o *Options) error {
	unit, err := service.CheckUnit(o.Unit)
	if err != nil {
		return err
	}
	o.Unit = unit
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	cfgPath := o.ConfigPath
	if o.Installer != nil {
		cfgPath = service.ResolveConfig(o.Installer, o.Unit, o.ConfigPath, o.ConfigExplicit)
	}
	rep := Report{Unit: Unit{Name: o.Unit}, Config: Config{Path: cfgPath}, Listeners: []Listener{}, Accounts: []Account{}}

	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	var connErr error
	if m, err := o.Connector.Connect(qctx); err != nil {
		connErr = err
		rep.Unit.Error = err.Error()
	} else {
		p, err := m.Properties(qctx, o.Unit)
		m.Close()
		if err != nil {
			connErr = err
			rep.Unit.Error = err.Error()
		} else {
			rep.Unit = unitOf(p)
		}
		rep.Unit.Systemd = true
	}
	rep.Running = rep.Unit.ActiveState == "active" || rep.Unit.ActiveState == "reloading"
	if rep.Running && rep.Unit.MainPID != 0 {
		rep.Engine = &Engine{PID: int(rep.Unit.MainPID), Manager: ManagedBySystemd}
	}
	var procs []Process
	procsKnown := false
	if o.Processes != nil {
		if ps, err := o.Processes(); err == nil {
			procs, procsKnown = ps, true
		}
	}
	if rep.Engine == nil {
		if p, ok := foregroundEngine(procs, cfgPath, o.StatusFile); ok {
			rep.Engine = &Engine{PID: p.PID, Manager: Foreground}
			rep.Running = true
		}
	}

	cfg, err := config.Load(cfgPath)
	if err != nil {
		rep.Config.Error = configError(cfgPath, err)
		rep.configMissing = errors.Is(err, fs.ErrNotExist)
		if errors.Is(err, fs.ErrPermission) {
			rep.Unreadable = append(rep.Unreadable, cfgPath)
		}
	} else {
		rep.Listeners = o.probe(ctx, cfg)
	}
	acc := o.accounts(cfg, cfgPath, rep.Engine, rep.Unit.Systemd || procsKnown)
	rep.Accounts, rep.StatusFile, rep.CatchAllFailedLogins = acc.Accounts, acc.StatusFile, acc.CatchAllFailedLogins
	// The token summaries read the configuration file too: a path that
	// could not be read is listed once.
	for _, p := range acc.Unreadable {
		if !slices.Contains(rep.Unreadable, p) {
			rep.Unreadable = append(rep.Unreadable, p)
		}
	}
	for _, err := range acc.Errors {
		rep.AccountErrors = append(rep.AccountErrors, err.Error())
	}
	if rep.Unit.LoadState == "loaded" && o.Installer != nil {
		rep.StateProblems = o.stateProblems()
	}

	if o.Check {
		code, line := check(rep, o.Thresholds, o.Now(), o.Location)
		fmt.Fprintln(o.IO.Out, line)
		if code == CheckOK {
			return nil
		}
		return exitcode.Silent(code)
	}
	if err := o.print(rep); err != nil {
		return err
	}
	switch {
	case len(rep.Unreadable) > 0:
		return exitcode.Withf(exitcode.Permission, "cannot read %s: permission denied, so the report above is incomplete; run as root (sudo orbit email-oauth2-proxy status)", strings.Join(rep.Unreadable, ", "))
	case rep.Running:
		return nil
	case connErr != nil && errors.Is(connErr, systemd.ErrNoSystemd) && !errors.Is(connErr, fs.ErrPermission):
		return service.NoSystemdError("cannot read the state of "+o.Unit, cfgPath, connErr)
	case connErr != nil:
		if rep.Unit.Systemd {
			return exitcode.Withf(exitcode.Error, "reading the state of %s: %v", o.Unit, connErr)
		}
		return service.ConnectError("cannot read the state of "+o.Unit, cfgPath, connErr)
	case !rep.Running:
		return exitcode.Silent(exitcode.NotRunning)
	}
	return nil
}

func configError(path string, err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("%s does not exist: write it with orbit email-oauth2-proxy register", path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Sprintf("cannot read %s: permission denied (run as root)", path)
	}
	return err.Error()
}

func unitOf(p systemd.Properties) Unit {
	u := Unit{
		Name: p.Name, LoadState: p.LoadState, ActiveState: p.ActiveState, SubState: p.SubState,
		UnitFileState: p.UnitFileState, MainPID: p.MainPID, Result: p.Result, Restarts: p.NRestarts,
	}
	since := p.ActiveEnterTimestamp
	if p.ActiveState != "active" || since.IsZero() {
		since = p.StateChangeTimestamp
	}
	if !since.IsZero() {
		t := since.UTC()
		u.Since = &t
	}
	if p.MemoryKnown {
		m := p.MemoryCurrent
		u.MemoryBytes = &m
	}
	return u
}

// probeAddress is where a listener bound to addr can be reached from here:
// a wildcard bind is probed on IPv4 loopback (a dual-stack "::" accepts it).
func probeAddress(addr string, port int) string {
	switch addr {
	case "", "::", "0.0.0.0", "[::]":
		addr = "127.0.0.1"
	}
	return net.JoinHostPort(addr, strconv.Itoa(port))
}

func (o *Options) probe(ctx context.Context, cfg *config.Config) []Listener {
	out := make([]Listener, len(cfg.Servers))
	var socks []Socket
	var err error = errNoTable
	if o.Listening != nil {
		socks, err = o.Listening()
	}
	if err == nil {
		for i, s := range cfg.Servers {
			out[i] = listenerOf(s)
			if out[i].Listening = listensFor(socks, s.LocalAddress, s.LocalPort); !out[i].Listening {
				out[i].Error = NothingListens
			}
		}
		return out
	}
	var wg sync.WaitGroup
	for i, s := range cfg.Servers {
		out[i] = listenerOf(s)
		target := probeAddress(s.LocalAddress, s.LocalPort)
		wg.Add(1)
		go func() {
			defer wg.Done()
			dctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
			defer cancel()
			c, err := o.Dial(dctx, "tcp", target)
			if err != nil {
				out[i].Error = dialError(err)
				return
			}
			c.Close()
			out[i].Listening = true
		}()
	}
	wg.Wait()
	return out
}

var errNoTable = errors.New("no socket table")

// NothingListens is Listener.Error when the socket table has no listening
// socket for the listener.
const NothingListens = "nothing listens on this port"

func listenerOf(s config.Server) Listener {
	l := Listener{
		Section:  s.Section,
		Protocol: string(s.Protocol),
		Address:  net.JoinHostPort(s.LocalAddress, strconv.Itoa(s.LocalPort)),
		Upstream: net.JoinHostPort(s.ServerAddress, strconv.Itoa(s.ServerPort)),
	}
	if s.LocalStartTLS {
		l.LocalStartTLSRequired = string(cmp.Or(s.LocalStartTLSRequired, config.RequireTLSRemote))
	}
	return l
}

// dialError keeps the reason and drops Go's "dial tcp 127.0.0.1:2993:"
// preamble, which the address column already says.
func dialError(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer within the probe time-out"
	}
	var se interface{ Unwrap() error }
	if errors.As(err, &se) {
		if inner := se.Unwrap(); inner != nil {
			return inner.Error()
		}
	}
	return err.Error()
}

// foregroundEngine finds a serve process outside the unit that serves
// cfgPath, or that wrote the status file (its PID is in it).
func foregroundEngine(procs []Process, cfgPath, statusFile string) (Process, bool) {
	if p, ok := service.ForegroundServe(procs, cfgPath, 0); ok {
		return p, true
	}
	if statusFile == "" {
		return Process{}, false
	}
	st, err := oauth.ReadStatus(statusFile)
	if err != nil {
		return Process{}, false
	}
	for _, p := range procs {
		if p.PID == st.PID {
			return p, true
		}
	}
	return Process{}, false
}

// stateProblems checks the unit's state directory for its user; only root
// can see all of it, and a user that does not exist yet is start's to
// create.
func (o *Options) stateProblems() []systemd.StateProblem {
	user, stateDir := service.DefaultUser, service.DefaultStateDirectory
	if cur, ok := service.ReadInstalled(o.Installer, o.Unit); ok {
		if cur.User != "" {
			user = cur.User
		}
		stateDir = cur.StateDirectory
	}
	if stateDir == "" {
		return nil
	}
	ps, err := o.Installer.CheckStateDir(stateDir, user)
	if err != nil {
		return nil
	}
	return ps
}

// accounts merges the status file, the token stores and the configuration
// (accountstate.Merge). The status file's states count only while the
// engine that wrote it runs (engine); known says whether it could be told
// what runs at all.
func (o *Options) accounts(cfg *config.Config, cfgPath string, engine *Engine, known bool) accountstate.Result {
	src := accountstate.Sources{
		StatusFile: o.StatusFile, TokenCache: o.TokenCache,
		ConfigPath: cfgPath, Config: cfg, Known: known, Now: o.Now(),
	}
	if engine != nil {
		src.EnginePID = engine.PID
	}
	return accountstate.Merge(src)
}
