// Package cmdutil is what every orbit command would otherwise repeat: one
// colour scheme, one way to quote a word in a command printed for pasting
// (internal/shellquote, which libraries use directly), and one mapping from a refused file or operation to exit code 10 with the
// "run as root" hint.
//
// Every command follows one shape (as gh does), so tests drive each the same
// way:
//
//	type Options struct { IO *iostreams.IOStreams; ...inputs... }
//
//	// New builds the command from the factory. runF replaces Run when not
//	// nil: tests use it to check flag parsing alone.
//	func New(f *factory.Factory, runF func(context.Context, *Options) error) *cobra.Command
//
//	// Run does the work; tests call it directly with iostreams.Test().
//	func Run(ctx context.Context, o *Options) error
//
// A command with dependencies beyond the factory (a systemd connection, a
// journal reader) keeps them as fields of Options, filled by New from the
// factory and replaced by tests.
package cmdutil
