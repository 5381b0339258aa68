package service

import (
	"context"

	"github.com/senhasegura/orbit/internal/cli/factory"
	svc "github.com/senhasegura/orbit/internal/cli/service"
	"github.com/senhasegura/orbit/internal/systemd"
	"github.com/spf13/cobra"
)

// start, stop and restart are the shared verbs (internal/cli/service)
// mounted with the e-mail proxy's Family; these names keep the family's
// other commands and tests unchanged.
type (
	Action        = svc.Action
	Deps          = svc.Deps
	Options       = svc.Options
	Result        = svc.Result
	Prepared      = svc.Prepared
	Setup         = svc.Setup
	Process       = svc.Process
	InstalledUnit = systemd.Installed
)

// The actions of start, stop and restart.
const (
	Start   = svc.Start
	Stop    = svc.Stop
	Restart = svc.Restart
)

// DefaultTimeout bounds start, stop and restart.
const DefaultTimeout = svc.DefaultTimeout

// verbHelp words start, stop and restart for the proxy.
var verbHelp = map[Action]svc.Help{
	Start: {
		Short: "Install, enable and start the proxy's systemd unit",
		Long: `Start the proxy under systemd. The unit (default email-oauth2-proxy.service) is
installed or refreshed first when it is missing or out of date (systemd is then
reloaded), it is enabled at boot unless --no-enable, and start waits for the
job and for the unit to settle: it returns only when the proxy listens.

A unit that runs another engine (register --exec) is never rewritten.

A proxy that already runs is left as it is and keeps the file it read when it
started (reload applies a new one); start still checks the file, and exits 4
with the problems listed when a reload, restart or the next boot would refuse
it.

When the start fails, the unit's last journal lines are printed with what to
do next, and the exit status is 7. Without systemd (a container, a chroot)
the exit status is 6 and the message shows how to run the proxy in the
foreground instead.

With background_refresh = True in the file, start first makes the systemd
credential it needs (/etc/credstore.encrypted/orbit-background-refresh) when
it does not exist, with systemd-creds, and never replaces an existing one.
When it cannot, the proxy is started without it and the exit status is 12.`,
		Example: `  orbit email-oauth2-proxy start
  orbit email-oauth2-proxy start --config /srv/mail/emailproxy.config --no-enable`,
	},
	Stop: {
		Short: "Stop the proxy's systemd unit",
		Long: `Stop the proxy and wait until its unit is inactive. The unit stays enabled at
boot (systemctl disable email-oauth2-proxy.service turns that off). Stopping a
unit that is not installed does nothing and succeeds.`,
		Example: `  orbit email-oauth2-proxy stop`,
	},
	Restart: {
		Short: "Restart the proxy's systemd unit (starts it when stopped)",
		Long: `Restart the proxy so that it reads its file again. Like start, it installs or
refreshes the unit first (making background_refresh's credential when the
file asks for it and it is missing; exit 12 when it cannot), enables it at
boot unless --no-enable, waits until the unit settles, and on failure prints
the unit's last journal lines (exit 7).`,
		Example: `  orbit email-oauth2-proxy restart`,
	},
	svc.Reload: {
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
	},
	svc.Uninstall: {
		Short: "Stop and remove the proxy's systemd unit (--purge: its file and tokens too)",
		Long: `Stop the proxy, disable it at boot, and remove its unit file and the
sysusers.d entry that creates its user; systemd is then reloaded. The service
user itself stays in /etc/passwd (its ID may still own files).

The configuration file, the token store and background_refresh's credential
are kept, so that start (or register) brings the same proxy back without a
new authorisation. --purge removes them too: the file (and its .bak and
.lock), the state directory /var/lib/orbit/email-oauth2-proxy (tokens,
background_refresh's sealed copies, status file) and the credential
/etc/credstore.encrypted/orbit-background-refresh. --purge asks first at a
terminal and needs --yes where nobody can answer.

Drop-ins (systemctl edit) are the administrator's and stay. Uninstalling what
is not installed does nothing and succeeds, so scripts may run it twice.`,
		Example: `  orbit email-oauth2-proxy uninstall
  orbit email-oauth2-proxy uninstall --purge --yes`,
	},
}

// SystemDeps are the running system's.
func SystemDeps(f *factory.Factory) Deps { return svc.SystemDeps(f, Family) }

// NewOptions fills the dependencies for the running system.
func NewOptions(f *factory.Factory, a Action) *Options { return svc.NewOptions(f, Family, a) }

// NewStart builds `start`.
func NewStart(f *factory.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	return svc.NewStart(f, Family, runF)
}

// NewStop builds `stop`.
func NewStop(f *factory.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	return svc.NewStop(f, Family, runF)
}

// NewRestart builds `restart`.
func NewRestart(f *factory.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	return svc.NewRestart(f, Family, runF)
}

// RunE is svc.RunE.
func RunE[O any](opts *O, configExplicit *bool, runF, run func(context.Context, *O) error) func(*cobra.Command, []string) error {
	return svc.RunE(opts, configExplicit, runF, run)
}

// AddCommonFlags adds --config and --unit, shared by every service command.
func AddCommonFlags(cmd *cobra.Command, configPath, unit *string) {
	Family.AddCommonFlags(cmd, configPath, unit)
}

// Run carries out o.Action for the proxy's unit (Options built by hand in
// tests leave Family empty).
func Run(ctx context.Context, o *Options) error {
	if o.Family.Command == "" {
		o.Family = Family
	}
	return svc.Run(ctx, o)
}

// The unit's helpers, for reload, uninstall, status and logs.

// ParseInstalled reads a unit file.
func ParseInstalled(data []byte) (InstalledUnit, error) { return Description.ParseInstalled(data) }

// ReadInstalled returns the installed unit; ok is false when there is none.
func ReadInstalled(inst Installer, name string) (InstalledUnit, bool) {
	return Family.ReadInstalled(inst, name)
}

// ResolveConfig picks the configuration file: --config when given, else the
// installed unit's, else the default.
func ResolveConfig(inst Installer, unitName, flagValue string, explicit bool) string {
	return Family.ResolveConfig(inst, unitName, flagValue, explicit)
}

// Prepare is what start does before it starts the unit.
func Prepare(ctx context.Context, d Deps, m Manager, unit, cfgPath, what string) (Prepared, error) {
	return Family.Prepare(ctx, d, m, unit, cfgPath, what)
}

// JobError classifies an error of the service manager under what.
func JobError(what string, err error) error { return Family.JobError(what, err) }

// UnitFlag is " --unit NAME" for commands printed as advice, "" for the
// default unit.
func UnitFlag(unit string) string { return Family.UnitFlag(unit) }

// AbsConfig makes the configuration path absolute.
func AbsConfig(p string) (string, error) { return Family.AbsConfig(p) }

// CheckUnit checks --unit before anything reaches systemd.
func CheckUnit(unit string) (string, error) { return Family.CheckUnit(unit) }

// ReadProcesses lists the running `orbit email-oauth2-proxy serve`s.
func ReadProcesses() ([]Process, error) { return Family.ReadProcesses() }

// ForegroundServe finds a serve process for cfgPath other than the unit's
// main process.
func ForegroundServe(procs []Process, cfgPath string, mainPID uint32) (Process, bool) {
	return svc.ForegroundServe(procs, cfgPath, mainPID)
}
