package service

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
	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/internal/systemd"
	"github.com/spf13/cobra"
)

// uninstall: the unit stopped, disabled and removed with its sysusers.d
// entry, and, only with --purge (confirmed), the configuration file and
// the state directory too. Running it again finds nothing to do and
// succeeds.

// UninstallOptions are uninstall's inputs and dependencies.
type UninstallOptions struct {
	Deps
	// Family is the daemon whose unit goes.
	Family Description

	Unit           string
	ConfigPath     string
	ConfigExplicit bool
	Purge          bool
	Yes            bool
	Timeout        time.Duration
	Output         output.Format
}

// UninstallResult is what uninstall did, also as --output json.
type UninstallResult struct {
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

// NewUninstall builds `uninstall`. runF replaces RunUninstall in tests.
func NewUninstall(f *factory.Factory, d Description, runF func(context.Context, *UninstallOptions) error) *cobra.Command {
	opts := &UninstallOptions{Deps: SystemDeps(f, d), Family: d}
	cmd := newVerbCmd(d, Uninstall, opts, &opts.ConfigPath, &opts.Unit, &opts.ConfigExplicit, runF, RunUninstall)
	cmd.Flags().BoolVar(&opts.Purge, "purge", false, "also remove the configuration file and "+d.Purge.State+" (asks first)")
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "do not ask before --purge removes files (needed without a terminal)")
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", DefaultTimeout, "give up waiting for systemd after this long (exit 8)")
	output.AddFlag(cmd, &opts.Output)
	return cmd
}

// RunUninstall uninstalls.
func RunUninstall(ctx context.Context, o *UninstallOptions) error {
	d := o.Family
	if err := d.checkUnitAndTimeout(&o.Unit, &o.Timeout, DefaultTimeout); err != nil {
		return err
	}
	// What the unit ran with, read before the unit file goes.
	cfgPath, err := d.AbsConfig(d.ResolveConfig(o.Installer, o.Unit, o.ConfigPath, o.ConfigExplicit))
	if err != nil {
		return err
	}
	user, stateDir := d.Service.User, d.Service.StateDirectory
	if cur, ok := d.ReadInstalled(o.Installer, o.Unit); ok {
		if cur.User != "" {
			user = cur.User
		}
		if cur.StateDirectory != "" {
			stateDir = cur.StateDirectory
		}
	}
	purgeList := d.purgeTargets(cfgPath, stateDir)
	if o.Purge && !o.Yes {
		if err := o.confirm(purgeList); err != nil {
			return err
		}
	}

	what := "cannot uninstall " + o.Unit
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	res := UninstallResult{Unit: o.Unit, Removed: []string{}, Kept: []string{}}
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
		return d.ConnectError(what, cfgPath, err)
	}

	removed, err := o.Installer.Uninstall(ctx, o.Unit, user)
	res.Removed = append(res.Removed, removed...)
	if err != nil {
		return uninstallPermissionOr(what, err)
	}
	if m != nil && len(removed) > 0 {
		if err := m.DaemonReload(ctx); err != nil {
			return o.Family.JobError(what, err)
		}
		// A unit that failed before it was removed would otherwise stay
		// listed (not-found, failed) until the next boot.
		if err := m.ResetFailed(ctx, o.Unit); err != nil {
			return o.Family.JobError(what, err)
		}
	}

	if o.Purge {
		for _, p := range purgeList.files {
			switch err := os.Remove(p); {
			case err == nil:
				res.Removed = append(res.Removed, p)
			case errors.Is(err, fs.ErrNotExist):
			default:
				return uninstallPermissionOr(what, fmt.Errorf("removing %s: %w", p, err))
			}
		}
		// The file's own directory goes only when nothing else is in it.
		if dir := filepath.Dir(cfgPath); os.Remove(dir) == nil {
			res.Removed = append(res.Removed, dir)
		}
		gone, err := o.Installer.Purge(ctx, stateDir)
		res.Removed = append(res.Removed, gone...)
		if err != nil {
			return uninstallPermissionOr(what, err)
		}
	} else {
		for _, p := range append([]string{cfgPath, systemd.StateDirPath("", stateDir)}, d.Purge.Extra...) {
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

func (o *UninstallOptions) stopAndDisable(ctx context.Context, m Manager, res *UninstallResult, what string) error {
	p, err := m.Properties(ctx, o.Unit)
	if err != nil {
		return o.Family.JobError(what, err)
	}
	if p.LoadState == "not-found" {
		return nil
	}
	if p.ActiveState != "inactive" && p.ActiveState != "failed" {
		if err := m.Stop(ctx, o.Unit); err != nil {
			return o.Family.JobError(what, err)
		}
		res.Stopped = true
	}
	if p.UnitFileState == "enabled" || p.UnitFileState == "enabled-runtime" || p.UnitFileState == "linked" {
		changed, err := m.Disable(ctx, o.Unit)
		if err != nil {
			return o.Family.JobError(what, err)
		}
		res.Disabled = changed
	}
	return nil
}

type targets struct {
	files []string // removed one by one
	shown []string // what the question names
}

func (d Description) purgeTargets(cfgPath, stateDir string) targets {
	t := targets{files: []string{cfgPath}}
	shown := cfgPath
	if len(d.Purge.Companions) > 0 {
		for _, c := range d.Purge.Companions {
			t.files = append(t.files, cfgPath+c)
		}
		shown += " (and its " + strings.Join(d.Purge.Companions, ", ") + ")"
	}
	t.shown = []string{shown, systemd.StateDirPath("", stateDir) + " (" + d.Purge.StateHolds + ")"}
	for _, p := range d.Purge.Extra {
		if _, err := os.Lstat(p); err == nil {
			t.files = append(t.files, p)
			t.shown = append(t.shown, p)
		}
	}
	return t
}

func (o *UninstallOptions) confirm(t targets) error {
	if !o.IO.CanPrompt() {
		return exitcode.Withf(exitcode.Usage, "--purge would remove %s, and there is no terminal to ask: pass --yes to confirm", listing(t.shown))
	}
	fmt.Fprintf(o.IO.Out, "This removes %s.\n%sRemove them? [y/N] ", listing(t.shown), o.Family.Purge.Consequence)
	answer, _ := bufio.NewReader(o.IO.In).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	return exitcode.Withf(exitcode.Error, "nothing was removed (answer y to purge, or run without --purge to keep %s)", o.Family.Purge.Keeps)
}

// listing is "a, b and c".
func listing(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func uninstallPermissionOr(what string, err error) error {
	if cmdutil.IsPermission(err) {
		return cmdutil.Denied(what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (o *UninstallOptions) report(res UninstallResult) error {
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
