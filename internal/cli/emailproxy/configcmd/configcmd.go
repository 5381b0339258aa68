// Package configcmd is `orbit email-oauth2-proxy config`: show the proxy's
// file with its secrets masked, and validate any such file, whoever wrote it.
package configcmd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"

	"github.com/senhasegura/orbit/internal/cli/cmdutil"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/service"
	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
	"github.com/spf13/cobra"
)

// Options are the inputs of show and validate.
type Options struct {
	IO *iostreams.IOStreams
	// Installer finds the installed unit, whose file is the one shown or
	// checked when none is named (as start, stop, status and logs do).
	Installer service.Installer

	ConfigPath string
	// ConfigExplicit: the file was named (--config or the argument);
	// otherwise the installed unit's file wins over the default.
	ConfigExplicit bool
	Unit           string
	// TokenPath is the token store whose mode validate checks (skipped
	// when empty or missing).
	TokenPath string
	Strict    bool // validate: list notes too, and fail on warnings
	Output    output.Format
}

// New builds `config` with its two verbs.
func New(f *factory.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config <command>",
		Short: "Show or validate the proxy's configuration file",
	}
	cmd.AddCommand(NewShow(f, nil), NewValidate(f, nil))
	return cmd
}

const whichFile = `Without FILE or --config, the file is the one the installed unit
(--unit, default email-oauth2-proxy.service) runs with, as for start, stop,
status and logs; without an installed unit, the default
/etc/orbit/email-oauth2-proxy/emailproxy.config.`

// NewShow builds `config show`; runF replaces Show when not nil (tests).
func NewShow(f *factory.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	if runF == nil {
		runF = Show
	}
	return newVerb(newOptions(f), &cobra.Command{
		Use:   "show [FILE]",
		Short: "Print the configuration file with secrets masked",
		Long: `Print the proxy's configuration file as it is on disk, with client secrets and
tokens replaced by ********. With --output json, print its sections and keys.

` + whichFile,
		Args: cobra.MaximumNArgs(1),
	}, runF)
}

// NewValidate builds `config validate`; runF replaces Validate when not nil
// (tests).
func NewValidate(f *factory.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	if runF == nil {
		runF = Validate
	}
	opts := newOptions(f)
	cmd := newVerb(opts, &cobra.Command{
		Use:   "validate [FILE]",
		Short: "Check a configuration file and explain every problem",
		Long: `Check a proxy configuration file: written by register, edited by hand, or
written by the Python proxy. Each problem names its section, key and line, and
says how to fix it: unknown keys (with a did-you-mean), missing keys for the
flow, duplicate local ports, placeholders left in, catch-all sections without
allow_catch_all_accounts, and flows that will not run as written. It also
checks who else may use the files: a configuration file writable by other
users, or a token store (--token-cache) readable by them, is an error (serve
refuses to start too); a client secret in a file every user may read is a
warning.

An error inside an account section disables only that account: serve runs the
file and refuses that account's logins with the reason. Any other error (the
syntax, [emailproxy], a server section), or errors in every account, makes
serve refuse the whole file. The summary line says which applies.

What the format allows and the proxy ignores on purpose (the Python proxy
sample file's documentation keys and heading sections, redirect settings of a
flow that opens no browser) is a note, listed only with --strict.

` + whichFile + `

Exits 0 when the file has no errors (warnings allowed; with --strict, none
either) and 4 when it has errors (see docs/exit-codes.md).`,
		Example: `  orbit email-oauth2-proxy config validate
  orbit email-oauth2-proxy config validate /root/emailproxy.config --strict
  orbit email-oauth2-proxy config validate --output json | jq '.diagnostics[] | select(.severity == "error")'`,
		Args: cobra.MaximumNArgs(1),
	}, runF)
	cmd.Flags().StringVar(&opts.TokenPath, "token-cache", tokens.DefaultPath, "the token store whose permissions to check (skipped when it does not exist)")
	_ = cmd.MarkFlagFilename("token-cache")
	return cmd
}

func newOptions(f *factory.Factory) *Options {
	return &Options{IO: f.IO, Installer: service.SystemInstaller{}}
}

// newVerb completes show or validate: both read one file, named by the
// argument or --config, or else the installed unit's, and print it as text
// or JSON.
func newVerb(opts *Options, cmd *cobra.Command, run func(context.Context, *Options) error) *cobra.Command {
	cmd.RunE = func(c *cobra.Command, args []string) error {
		opts.ConfigExplicit = c.Flags().Changed("config")
		if len(args) == 1 {
			if opts.ConfigExplicit && args[0] != opts.ConfigPath {
				return exitcode.Withf(exitcode.Usage, "two files named: %s and --config %s; give one", args[0], opts.ConfigPath)
			}
			opts.ConfigPath = args[0]
			opts.ConfigExplicit = true
		}
		return run(c.Context(), opts)
	}
	cmd.ValidArgsFunction = func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return nil, cobra.ShellCompDirectiveDefault
	}
	service.AddCommonFlags(cmd, &opts.ConfigPath, &opts.Unit)
	if cmd.Name() == "validate" {
		cmd.Flags().BoolVar(&opts.Strict, "strict", false, "also list notes (what the proxy ignores on purpose) and fail on warnings")
	}
	output.AddFlag(cmd, &opts.Output)
	return cmd
}

// resolve picks the file: the one named, else the installed unit's, else
// the default.
func (o *Options) resolve() error {
	if o.ConfigExplicit || o.Installer == nil {
		if o.ConfigPath == "" {
			o.ConfigPath = config.DefaultPath
		}
		return nil
	}
	unit, err := service.CheckUnit(o.Unit)
	if err != nil {
		return err
	}
	if o.ConfigPath == "" {
		o.ConfigPath = config.DefaultPath
	}
	o.ConfigPath = service.ResolveConfig(o.Installer, unit, o.ConfigPath, false)
	return nil
}

func readErr(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return exitcode.Withf(exitcode.Invalid, "%s does not exist; write it with `orbit email-oauth2-proxy register`, or name another file with --config", path)
	}
	return cmdutil.FileError("read", path, err)
}

// Show prints the file, masked.
func Show(_ context.Context, o *Options) error {
	if err := o.resolve(); err != nil {
		return err
	}
	data, err := os.ReadFile(o.ConfigPath)
	if err != nil {
		return readErr(o.ConfigPath, err)
	}
	if o.Output == output.JSON {
		cfg, err := config.Parse(data, o.ConfigPath)
		if err != nil {
			return exitcode.Withf(exitcode.Invalid, "%v\nRun `orbit email-oauth2-proxy config validate %s` for details.", err, o.ConfigPath)
		}
		return output.WriteJSON(o.IO.Out, cfg.Redacted())
	}
	masked, err := config.Masked(data)
	if err != nil {
		return exitcode.Withf(exitcode.Invalid, "%v\nRun `orbit email-oauth2-proxy config validate %s` for details.", err, o.ConfigPath)
	}
	_, err = o.IO.Out.Write(masked)
	return err
}

// Report is validate's --output json document.
type Report struct {
	Path  string `json:"path"`
	Valid bool   `json:"valid"`
	// Serves: serve runs this file (every error, if any, is confined to
	// an account section, which is then disabled).
	Serves   bool `json:"serves"`
	Errors   int  `json:"errors"`
	Warnings int  `json:"warnings"`
	Notes    int  `json:"notes"`
	// DisabledAccounts are the account sections serve disables.
	DisabledAccounts []string            `json:"disabled_accounts"`
	Diagnostics      []config.Diagnostic `json:"diagnostics"`
}

// Validate lints the file and reports every diagnostic.
func Validate(_ context.Context, o *Options) error {
	if err := o.resolve(); err != nil {
		return err
	}
	data, err := os.ReadFile(o.ConfigPath)
	if err != nil {
		return readErr(o.ConfigPath, err)
	}
	ds := config.LintBytes(data, o.ConfigPath)
	cfg, _ := config.Parse(data, o.ConfigPath)
	ds = append(config.CheckPermissions(o.ConfigPath, cfg, o.TokenPath), ds...)
	// File order reads like the file; problems of the whole file (no line)
	// come first.
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].Line < ds[j].Line })
	rep := Report{Path: o.ConfigPath, Diagnostics: []config.Diagnostic{}}
	for _, d := range ds {
		switch d.Severity {
		case config.Error:
			rep.Errors++
		case config.Warning:
			rep.Warnings++
		default:
			rep.Notes++
			if !o.Strict {
				continue
			}
		}
		rep.Diagnostics = append(rep.Diagnostics, d)
	}
	fatal, disabled := cfg.ServeErrors(ds)
	rep.Serves = len(fatal) == 0
	rep.DisabledAccounts = disabled.Sections()
	rep.Valid = rep.Errors == 0 && (!o.Strict || rep.Warnings == 0)

	if o.Output == output.JSON {
		if err := output.WriteJSON(o.IO.Out, rep); err != nil {
			return err
		}
	} else {
		o.print(rep)
	}
	if !rep.Valid {
		return exitcode.Silent(exitcode.Invalid)
	}
	return nil
}

// print writes one block per diagnostic, in file order: where, what, and
// the fix on its own line; colour only on a terminal.
func (o *Options) print(rep Report) {
	cs := cmdutil.NewColorScheme(o.IO)
	for _, d := range rep.Diagnostics {
		label := cs.Warning("warning")
		switch d.Severity {
		case config.Error:
			label = cs.Failure("error")
		case config.Note:
			label = cs.Faint("note")
		}
		where := rep.Path
		if w := d.Where(); w != "" {
			where += ": " + w
		}
		fmt.Fprintf(o.IO.Out, "%s: %s: %s\n", where, label, d.Message)
		if d.Hint != "" {
			fmt.Fprintf(o.IO.Out, "  %s %s\n", cs.Faint("fix:"), d.Hint)
		}
	}
	notes := ""
	if rep.Notes > 0 && !o.Strict {
		notes = fmt.Sprintf("; %d note(s) (--strict lists them)", rep.Notes)
	}
	switch {
	case rep.Errors > 0 && !rep.Serves:
		fmt.Fprintf(o.IO.Out, "%s: %s (%d error(s), %d warning(s)%s): serve refuses this file\n", rep.Path, cs.Failure("invalid"), rep.Errors, rep.Warnings, notes)
	case rep.Errors > 0:
		fmt.Fprintf(o.IO.Out, "%s: %s (%d error(s), %d warning(s)%s): serve runs it with %d account(s) disabled: [%s]\n", rep.Path, cs.Failure("invalid"), rep.Errors, rep.Warnings, notes,
			len(rep.DisabledAccounts), strings.Join(rep.DisabledAccounts, "], ["))
	case rep.Warnings > 0 && o.Strict:
		fmt.Fprintf(o.IO.Out, "%s: %s (%d warning(s)%s)\n", rep.Path, cs.Failure("invalid with --strict"), rep.Warnings, notes)
	case rep.Warnings > 0:
		fmt.Fprintf(o.IO.Out, "%s: %s with %d warning(s)%s\n", rep.Path, cs.Success("valid"), rep.Warnings, notes)
	default:
		fmt.Fprintf(o.IO.Out, "%s: %s%s\n", rep.Path, cs.Success("valid"), notes)
	}
}
