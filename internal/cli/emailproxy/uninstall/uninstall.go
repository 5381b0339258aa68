// Package uninstall is `orbit email-oauth2-proxy uninstall`: the proxy's
// unit stopped, disabled and removed with its sysusers.d entry, and, only
// with --purge (confirmed), its configuration file and token store too.
// Running it again finds nothing to do and succeeds.
package uninstall

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/senhasegura/orbit/internal/cli/cmdutil"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/service"
	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/internal/systemd"
	"github.com/spf13/cobra"
)

// Options are uninstall's inputs and dependencies.
type Options struct {
	service.Deps

	Unit           string
	ConfigPath     string
	ConfigExplicit bool
	Purge          bool
	Yes            bool
	Timeout        time.Duration
	Output         output.Format
}

// Result is what uninstall did, also as --output json.
type Result struct {
	Unit string `json:"unit"`
	// Stopped: the unit was running and has been stopped.
	Stopped bool `json:"stopped"`
	// Disabled: it was enabled at boot and is not any more.
	Disabled bool `json:"disabled"`
	// Removed lists the files and directories removed.
	Removed []string `json:"removed"`
	// Kept lists what stays (without --purge: the file and token store).
	Kept []string `json:"kept"`
	// NothingToDo: no unit, no sysusers entry (and with --purge nothing
	// left to purge) were found.
	NothingToDo bool `json:"nothing_to_do"`
}

// New builds the command. runF replaces Run in tests.
func New(f *factory.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	opts := &Options{Deps: service.SystemDeps(f)}
	cmd := &cobra.Command{
		Use:   "uninstall [flags]",
		Short: "Stop and remove the proxy's systemd unit (--purge: its file and tokens too)",
		Long: `Stop the proxy, disable it at boot, and remove its unit file and the
sysusers.d entry that creates its user; systemd is then reloaded. The service
user itself stays in /etc/passwd (its ID may still own files).

The configuration file and the token store are kept, so that start (or
register) brings the same proxy back without a new authorisation. --purge
removes them too: the file (and its .bak and .lock) and the state directory
/var/lib/orbit/email-oauth2-proxy (tokens, status file). --purge asks first at
a terminal and needs --yes where nobody can answer.

Drop-ins (systemctl edit) are the administrator's and stay. Uninstalling what
is not installed does nothing and succeeds, so scripts may run it twice.`,
		Example: `  orbit email-oauth2-proxy uninstall
  orbit email-oauth2-proxy uninstall --purge --yes`,
		Args: cobra.NoArgs,
		RunE: service.RunE(opts, &opts.ConfigExplicit, runF, Run),
	}
	service.AddCommonFlags(cmd, &opts.ConfigPath, &opts.Unit)
	cmd.Flags().BoolVar(&opts.Purge, "purge", false, "also remove the configuration file and the token store (asks first)")
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "do not ask before --purge removes files (needed without a terminal)")
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", service.DefaultTimeout, "give up waiting for systemd after this long (exit 8)")
	output.AddFlag(cmd, &opts.Output)
	return cmd
}

// Run uninstalls.
func Run(ctx context.Context, o *Options) error {
	unit, err := service.CheckUnit(o.Unit)
	if err != nil {
		return err
	}
	o.Unit = unit
	if o.Timeout < 0 {
		return exitcode.Withf(exitcode.Usage, "--timeout %v: use a positive duration such as 30s or 5m", o.Timeout)
	}
	if o.Timeout == 0 {
		o.Timeout = service.DefaultTimeout
	}
	// What the unit ran with, read before the unit file goes.
	cfgPath, err := service.AbsConfig(service.ResolveConfig(o.Installer, o.Unit, o.ConfigPath, o.ConfigExplicit))
	if err != nil {
		return err
	}
	user, stateDir := service.DefaultUser, service.DefaultStateDirectory
	if cur, ok := service.ReadInstalled(o.Installer, o.Unit); ok {
		if cur.User != "" {
			user = cur.User
		}
		if cur.StateDirectory != "" {
			stateDir = cur.StateDirectory
		}
	}
	purgeList := purgeTargets(cfgPath, stateDir)
	if o.Purge && !o.Yes {
		if err := o.confirm(purgeList); err != nil {
			return err
		}
	}

	what := "cannot uninstall " + o.Unit
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	res := Result{Unit: o.Unit, Removed: []string{}, Kept: []string{}}
	m, err := o.Connector.Connect(ctx)
	switch {
	case err == nil:
		defer m.Close()
		if err := o.stopAndDisable(ctx, m, &res, what); err != nil {
			return err
		}
	case errors.Is(err, systemd.ErrNoSystemd) && !errors.Is(err, fs.ErrPermission):
		// No service manager (a chroot, an image being prepared): nothing
		// runs the unit, and its files can still go.
		m = nil
	default:
		return service.ConnectError(what, cfgPath, err)
	}

	removed, err := o.Installer.Uninstall(ctx, o.Unit, user)
	res.Removed = append(res.Removed, removed...)
	if err != nil {
		return permissionOr(what, err)
	}
	if m != nil && len(removed) > 0 {
		if err := m.DaemonReload(ctx); err != nil {
			return service.JobError(what, err)
		}
		// A unit that failed before it was removed would otherwise stay
		// listed (not-found, failed) until the next boot.
		if err := m.ResetFailed(ctx, o.Unit); err != nil {
			return service.JobError(what, err)
		}
	}

	if o.Purge {
		for _, p := range purgeList.files {
			switch err := os.Remove(p); {
			case err == nil:
				res.Removed = append(res.Removed, p)
			case errors.Is(err, fs.ErrNotExist):
			default:
				return permissionOr(what, fmt.Errorf("removing %s: %w", p, err))
			}
		}
		// The file's own directory goes only when nothing else is in it.
		if dir := filepath.Dir(cfgPath); os.Remove(dir) == nil {
			res.Removed = append(res.Removed, dir)
		}
		gone, err := o.Installer.Purge(ctx, stateDir)
		res.Removed = append(res.Removed, gone...)
		if err != nil {
			return permissionOr(what, err)
		}
	} else {
		for _, p := range []string{cfgPath, systemd.StateDirPath("", stateDir)} {
			if _, err := os.Stat(p); err == nil {
				res.Kept = append(res.Kept, p)
			}
		}
	}
	// Drop-ins are the administrator's own files (systemctl edit): they
	// stay, and are named so that a later install does not surprise.
	if dropIns := systemd.UnitPath("", o.Unit) + ".d"; dirExists(dropIns) {
		res.Kept = append(res.Kept, dropIns)
	}
	res.NothingToDo = !res.Stopped && !res.Disabled && len(res.Removed) == 0
	return o.report(res)
}

func (o *Options) stopAndDisable(ctx context.Context, m service.Manager, res *Result, what string) error {
	p, err := m.Properties(ctx, o.Unit)
	if err != nil {
		return service.JobError(what, err)
	}
	if p.LoadState == "not-found" {
		return nil
	}
	if p.ActiveState != "inactive" && p.ActiveState != "failed" {
		if err := m.Stop(ctx, o.Unit); err != nil {
			return service.JobError(what, err)
		}
		res.Stopped = true
	}
	if p.UnitFileState == "enabled" || p.UnitFileState == "enabled-runtime" || p.UnitFileState == "linked" {
		changed, err := m.Disable(ctx, o.Unit)
		if err != nil {
			return service.JobError(what, err)
		}
		res.Disabled = changed
	}
	return nil
}

type targets struct {
	files []string // removed one by one
	shown []string // what the question names
}

func purgeTargets(cfgPath, stateDir string) targets {
	t := targets{files: []string{cfgPath, cfgPath + ".bak", cfgPath + ".lock"}}
	t.shown = []string{cfgPath + " (and its .bak, .lock)", systemd.StateDirPath("", stateDir) + " (the token store and status file)"}
	return t
}

func (o *Options) confirm(t targets) error {
	if !o.IO.CanPrompt() {
		return exitcode.Withf(exitcode.Usage, "--purge would remove %s, and there is no terminal to ask: pass --yes to confirm", strings.Join(t.shown, " and "))
	}
	fmt.Fprintf(o.IO.Out, "This removes %s.\nThe mailboxes must then be authorised again. Remove them? [y/N] ", strings.Join(t.shown, " and "))
	answer, _ := bufio.NewReader(o.IO.In).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	return exitcode.Withf(exitcode.Error, "nothing was removed (answer y to purge, or run without --purge to keep the file and tokens)")
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func permissionOr(what string, err error) error {
	if cmdutil.IsPermission(err) {
		return cmdutil.Denied(what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (o *Options) report(res Result) error {
	if o.Output == output.JSON {
		return output.WriteJSON(o.IO.Out, res)
	}
	w := o.IO.Out
	if res.NothingToDo {
		fmt.Fprintf(w, "%s is not installed; nothing to remove.\n", res.Unit)
	}
	if res.Stopped {
		fmt.Fprintf(w, "Stopped %s.\n", res.Unit)
	}
	if res.Disabled {
		fmt.Fprintf(w, "Disabled %s at boot.\n", res.Unit)
	}
	for _, p := range res.Removed {
		fmt.Fprintf(w, "Removed %s.\n", p)
	}
	for _, p := range res.Kept {
		if strings.HasSuffix(p, ".service.d") {
			fmt.Fprintf(w, "Kept %s (your drop-ins; remove them yourself if they are no longer wanted).\n", p)
			continue
		}
		fmt.Fprintf(w, "Kept %s (uninstall --purge removes it).\n", p)
	}
	if !res.NothingToDo {
		fmt.Fprintf(w, "Uninstalled %s.\n", res.Unit)
	}
	return nil
}
