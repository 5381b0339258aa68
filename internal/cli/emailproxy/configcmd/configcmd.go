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

	"github.com/senhasegura/orbit/internal/cli/cmdutil"
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
	IO         *iostreams.IOStreams
	ConfigPath string
	// TokenPath is the token store whose mode validate checks (skipped
	// when empty or missing).
	TokenPath string
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

// NewShow builds `config show`; runF replaces Show when not nil (tests).
func NewShow(f *factory.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	if runF == nil {
		runF = Show
	}
	return newVerb(f, &cobra.Command{
		Use:   "show",
		Short: "Print the configuration file with secrets masked",
		Long: `Print the proxy's configuration file as it is on disk, with client secrets and
tokens replaced by ********. With --output json, print its sections and keys.`,
		Args: cobra.NoArgs,
	}, "the proxy's configuration file", runF)
}

// NewValidate builds `config validate`; runF replaces Validate when not nil
// (tests).
func NewValidate(f *factory.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	if runF == nil {
		runF = Validate
	}
	opts := &Options{IO: f.IO}
	cmd := newVerbWith(f, opts, &cobra.Command{
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

Exits 0 when the file has no errors (warnings allowed) and 4 when it has
errors (see docs/exit-codes.md).`,
		Args: cobra.MaximumNArgs(1),
	}, "the file to check (or give it as the argument)", runF)
	cmd.Flags().StringVar(&opts.TokenPath, "token-cache", tokens.DefaultPath, "the token store whose permissions to check (skipped when it does not exist)")
	_ = cmd.MarkFlagFilename("token-cache")
	return cmd
}

// newVerb completes show or validate: both read the one file named by
// --config (or by an argument, where cmd.Args allows one) and print it as
// text or JSON.
func newVerb(f *factory.Factory, cmd *cobra.Command, configUsage string, run func(context.Context, *Options) error) *cobra.Command {
	return newVerbWith(f, &Options{IO: f.IO}, cmd, configUsage, run)
}

func newVerbWith(f *factory.Factory, opts *Options, cmd *cobra.Command, configUsage string, run func(context.Context, *Options) error) *cobra.Command {
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if len(args) == 1 {
			opts.ConfigPath = args[0]
		}
		return run(c.Context(), opts)
	}
	cmd.Flags().StringVar(&opts.ConfigPath, "config", config.DefaultPath, configUsage)
	_ = cmd.MarkFlagFilename("config")
	output.AddFlag(cmd, &opts.Output)
	return cmd
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
	Path        string              `json:"path"`
	Valid       bool                `json:"valid"`
	Errors      int                 `json:"errors"`
	Warnings    int                 `json:"warnings"`
	Diagnostics []config.Diagnostic `json:"diagnostics"`
}

// Validate lints the file and reports every diagnostic.
func Validate(_ context.Context, o *Options) error {
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
	rep := Report{Path: o.ConfigPath, Diagnostics: ds}
	if rep.Diagnostics == nil {
		rep.Diagnostics = []config.Diagnostic{}
	}
	for _, d := range ds {
		if d.Severity == config.Error {
			rep.Errors++
		} else {
			rep.Warnings++
		}
	}
	rep.Valid = rep.Errors == 0

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
		if d.Severity == config.Error {
			label = cs.Failure("error")
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
	switch {
	case rep.Errors > 0:
		fmt.Fprintf(o.IO.Out, "%s: %s (%d error(s), %d warning(s))\n", rep.Path, cs.Failure("invalid"), rep.Errors, rep.Warnings)
	case rep.Warnings > 0:
		fmt.Fprintf(o.IO.Out, "%s: %s with %d warning(s)\n", rep.Path, cs.Success("valid"), rep.Warnings)
	default:
		fmt.Fprintf(o.IO.Out, "%s: %s\n", rep.Path, cs.Success("valid"))
	}
}
