// Package root builds orbit's root command and runs it: the one place where
// arguments are normalised (-help), settings are layered (flag > ORBIT_*
// environment > settings file > default), and errors become exit codes.
package root

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/agnivade/levenshtein"
	_ "github.com/senhasegura/orbit/internal/cli/emailproxy" // registers the family

	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/cli/family"
	"github.com/senhasegura/orbit/internal/cli/plugin"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// DefaultSettingsPath is orbit's own settings file (YAML, TOML or JSON by
// extension). Keys are flag names: `output: json` applies to every command
// that has --output. ORBIT_SETTINGS or --settings name another file.
const DefaultSettingsPath = "/etc/orbit/orbit.yaml"

// Main runs orbit with args (without the program name) and returns the
// process exit code.
func Main(ctx context.Context, args []string, io *iostreams.IOStreams) int {
	return Run(ctx, args, factory.New(io))
}

// Run is Main over a given factory: tests inject the environment
// (f.Getenv, f.Environ), which is then the only one orbit reads.
func Run(ctx context.Context, args []string, f *factory.Factory) int {
	io := f.IO
	cmd, st := build(f)
	args, answer, answered := preparePlugins(ctx, cmd, f, st, args)
	if answered {
		fmt.Fprint(io.Out, answer)
		return 0
	}
	st.argv = args
	cmd.SetArgs(NormalizeArgs(args))
	err := cmd.ExecuteContext(ctx)
	code := exitcode.Of(err)
	if err != nil {
		if ctx.Err() != nil && code == exitcode.Error {
			code = exitcode.Interrupted
		}
		if msg := err.Error(); msg != "" && !isSilent(err) {
			fmt.Fprintf(io.ErrOut, "orbit: %s\n", msg)
		}
	}
	return int(code)
}

func isSilent(err error) bool {
	var ee *exitcode.ExitError
	return errors.As(err, &ee) && ee.Err == nil
}

// NormalizeArgs rewrites the single-dash -help (which the product docs tell
// admins to type) to --help. pflag would otherwise read it as the shorthand
// cluster -h -e -l -p. Nothing after a bare "--" is touched: those words
// belong to whatever comes after.
func NormalizeArgs(args []string) []string {
	out := make([]string, len(args))
	copy(out, args)
	for i, a := range out {
		if a == "--" {
			break
		}
		if a == "-help" {
			out[i] = "--help"
		}
	}
	return out
}

// New builds the root command with every registered family.
func New(f *factory.Factory) *cobra.Command {
	cmd, _ := build(f)
	return cmd
}

// rootState is what the root command's hooks share with Main: the command
// line as typed, which --host forwards.
type rootState struct {
	argv   []string
	remote remoteFlags
	// tail are a plugin's arguments (after its name), which cobra never
	// parses; --host forwards them untouched after argv.
	tail []string
	// settingsFile is the settings file read, "" when none was.
	settingsFile string
	// builtins are the names of orbit's own commands (plugin.go).
	builtins map[string]bool
	// warned are the deprecated setting names already warned about.
	warned map[string]bool
	// families are the registered families' command names.
	families map[string]bool
}

func build(f *factory.Factory) (*cobra.Command, *rootState) {
	var settingsPath string
	st := &rootState{}
	cmd := &cobra.Command{
		Use:   "orbit <command> [flags]",
		Short: "Operate the vault appliance",
		Long: `orbit is the operator CLI of the vault appliance. Run it over SSH as the
administrative user, from provisioning scripts, or from a shell with completion.

Every command accepts -h, --help and -help. Exit codes are listed in
docs/exit-codes.md; commands with --output json print machine-readable output.
The docs/*.md pages that help and messages name are installed with orbit in
/usr/share/doc/orbit/ (docs/exit-codes.md is /usr/share/doc/orbit/exit-codes.md).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(c *cobra.Command, _ []string) error {
			if err := applySettings(c, f, st, settingsPath); err != nil {
				return err
			}
			return runRemote(c, f, st)
		},
	}
	cmd.PersistentFlags().StringVar(&settingsPath, "settings", "", "orbit's own settings file (default "+DefaultSettingsPath+", or $ORBIT_SETTINGS)")
	addRemoteFlags(cmd.PersistentFlags(), &st.remote)
	registerRemoteCompletion(cmd)
	cmd.SetIn(f.IO.In)
	cmd.SetOut(f.IO.Out)
	cmd.SetErr(f.IO.ErrOut)
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		msg := err.Error()
		if s := flagSuggestions(c, msg); len(s) > 0 {
			msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
		}
		return exitcode.Withf(exitcode.Usage, "%s\nRun '%s --help' for usage.", msg, c.CommandPath())
	})
	cmd.AddCommand(newVersionCmd(f))
	cmd.AddCommand(plugin.NewCmd(f, func() plugin.Finder { return pluginFinder(f, st) }))
	st.families = map[string]bool{}
	for _, c := range family.Commands(f) {
		cmd.AddCommand(c)
		st.families[c.Name()] = true
	}
	// cobra adds its completion command lazily; add it now so help lists it
	// and so the walk below gives it usage errors like every other command.
	cmd.InitDefaultCompletionCmd()
	walk(cmd, func(c *cobra.Command) {
		noFileCompletion(c)
		makeUsageErrors(c)
	})
	st.builtins = builtinNames(cmd)
	return cmd, st
}

// flagSuggestions names c's flags close to the unknown long flag that msg
// (pflag's "unknown flag: --name") reports, nearest first: cobra suggests
// commands for a typo, but not flags, and an administrator who typed
// --acount should not have to read the whole help to find --account.
func flagSuggestions(c *cobra.Command, msg string) []string {
	typed, ok := strings.CutPrefix(msg, "unknown flag: --")
	if !ok || typed == "" {
		return nil
	}
	typed = strings.ToLower(typed)
	type cand struct {
		name string
		d    int
	}
	var found []cand
	seen := map[string]bool{}
	add := func(fl *pflag.Flag) {
		if fl.Hidden || seen[fl.Name] {
			return
		}
		seen[fl.Name] = true
		d := levenshtein.ComputeDistance(typed, strings.ReplaceAll(fl.Name, "_", "-"))
		if alt := levenshtein.ComputeDistance(strings.ReplaceAll(typed, "_", "-"), fl.Name); alt < d {
			d = alt
		}
		if d <= 2 || (len(typed) >= 3 && strings.HasPrefix(fl.Name, typed)) {
			found = append(found, cand{fl.Name, d})
		}
	}
	c.Flags().VisitAll(add)
	c.InheritedFlags().VisitAll(add)
	slices.SortFunc(found, func(a, b cand) int {
		if a.d != b.d {
			return a.d - b.d
		}
		return strings.Compare(a.name, b.name)
	})
	var out []string
	for _, f := range found {
		out = append(out, "--"+f.name)
	}
	return out
}

func walk(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		walk(sub, fn)
	}
}

// makeUsageErrors gives argument errors the usage exit code, and makes a
// group command (one with only subcommands) reject unknown subcommands with
// a usage error instead of printing help and exiting 0.
// noFileCompletion stops shells from offering file names as the arguments
// of a command that takes none (register, status, ...): cobra's default is
// file completion wherever a command defines no completion of its own. A
// group (email-oauth2-proxy, config) takes only its subcommands' names,
// which cobra offers either way. The root is left alone: plugin names
// complete there.
func noFileCompletion(c *cobra.Command) {
	if !c.HasParent() || c.ValidArgsFunction != nil || len(c.ValidArgs) > 0 {
		return
	}
	takesNone := c.HasSubCommands() && c.Run == nil && c.RunE == nil
	if !takesNone && c.Args != nil {
		takesNone = c.Args(c, []string{"x"}) != nil
	}
	if takesNone {
		c.ValidArgsFunction = cobra.NoFileCompletions
	}
}

func makeUsageErrors(c *cobra.Command) {
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return c.Help()
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
			// cobra leaves the distance at 0 unless its own lookup runs, so
			// a typo such as "regster" would get no suggestion.
			if c.SuggestionsMinimumDistance <= 0 {
				c.SuggestionsMinimumDistance = 2
			}
			if s := c.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
			}
			return exitcode.Withf(exitcode.Usage, "%s\nRun '%s --help' for usage.", msg, c.CommandPath())
		}
		return
	}
	if c.Args != nil {
		inner := c.Args
		c.Args = func(c *cobra.Command, args []string) error {
			if err := inner(c, args); err != nil {
				return exitcode.Withf(exitcode.Usage, "%v\nRun '%s --help' for usage.", err, c.CommandPath())
			}
			return nil
		}
	}
}
