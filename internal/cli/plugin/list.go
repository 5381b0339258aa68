package plugin

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/spf13/cobra"
)

// NewCmd builds `orbit plugin` with its `list` verb. finder is called when
// the command runs, after every built-in command is known.
func NewCmd(f *factory.Factory, finder func() Finder) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plugin <command>",
		Short: "Work with orbit's external plugins (orbit-NAME programs on PATH)",
		Long: `An executable called orbit-NAME on PATH adds the command 'orbit NAME' when
orbit has no built-in command of that name; orbit-foo-bar adds 'orbit foo bar'.
Writing one: docs/plugins.md.`,
	}
	cmd.AddCommand(NewListCmd(f, finder, nil))
	return cmd
}

// ListOptions are `orbit plugin list`'s inputs.
type ListOptions struct {
	IO     *iostreams.IOStreams
	Finder Finder
	Format output.Format
}

// NewListCmd builds `orbit plugin list`; runF replaces Run in tests.
func NewListCmd(f *factory.Factory, finder func() Finder, runF func(context.Context, *ListOptions) error) *cobra.Command {
	opts := &ListOptions{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the plugins on PATH and warn about those that cannot run",
		Long: `List every orbit-NAME program on PATH that 'orbit NAME' runs, with its path.
Warnings (on standard error) name the files that never run: shadowed by a
built-in command or by a file of the same name earlier in PATH, or not
executable. The exit status is 0 either way; --output json gives every file
with its warnings.`,
		Example: `  orbit plugin list
  orbit plugin list --output json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			opts.Finder = finder()
			if runF != nil {
				return runF(c.Context(), opts)
			}
			return RunList(c.Context(), opts)
		},
	}
	output.AddFlag(cmd, &opts.Format)
	return cmd
}

// RunList lists the plugins.
func RunList(_ context.Context, o *ListOptions) error {
	all := o.Finder.All()
	if o.Format == output.JSON {
		if all == nil {
			all = []Plugin{}
		}
		return output.WriteJSON(o.IO.Out, all)
	}
	tw := tabwriter.NewWriter(o.IO.Out, 0, 0, 3, ' ', 0)
	runs := 0
	for _, p := range o.Finder.Runnable() {
		runs++
		fmt.Fprintf(tw, "orbit %s\t%s\n", strings.Join(p.Words(), " "), p.Path)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range all {
		for _, w := range p.Warnings {
			fmt.Fprintf(o.IO.ErrOut, "warning: %s %s\n", p.Path, w)
		}
	}
	if runs == 0 {
		fmt.Fprintf(o.IO.ErrOut, "No plugins: no executable %sNAME on PATH. Writing one: docs/plugins.md\n", Prefix)
	}
	return nil
}
