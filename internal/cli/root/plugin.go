package root

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/senhasegura/orbit/internal/buildinfo"
	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/cli/plugin"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Command groups of the root help, used once plugins are listed beside the
// built-in commands.
const (
	builtinGroup = "builtin"
	pluginGroup  = "plugins"
)

// pluginFinder searches the PATH orbit was given; built-in commands shadow
// plugins of the same first word.
func pluginFinder(f *factory.Factory, st *rootState) plugin.Finder {
	return plugin.Finder{Path: f.Getenv("PATH"), Builtin: st.isBuiltin}
}

// builtinNames are the names and aliases of root's commands, before any
// plugin command is added, with cobra's help and completion requests.
func builtinNames(root *cobra.Command) map[string]bool {
	names := map[string]bool{"help": true, cobra.ShellCompRequestCmd: true, cobra.ShellCompNoDescRequestCmd: true}
	for _, c := range root.Commands() {
		names[c.Name()] = true
		for _, a := range c.Aliases {
			names[a] = true
		}
	}
	return names
}

func (st *rootState) isBuiltin(word string) bool { return st.builtins[word] }

// commandWord returns the index in args of the first word that is not one
// of the root command's flags or a flag's value: the command name, or -1.
// It reads flags as cobra does when it looks for the command: a flag it
// does not know (a command's own, like --output, written before the
// command) takes the next word as its value unless written --flag=value,
// so `orbit --output json email-oauth2-proxy status` finds the same
// command here as cobra does, and --output reaches status.
func commandWord(args []string, fs *pflag.FlagSet) int {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return -1
		case strings.HasPrefix(a, "--"):
			name, _, inline := strings.Cut(a[2:], "=")
			if fl := fs.Lookup(name); !inline && (fl == nil || fl.NoOptDefVal == "") {
				i++
			}
		case len(a) > 1 && a[0] == '-':
			if fl := fs.ShorthandLookup(a[len(a)-1:]); len(a) == 2 && (fl == nil || fl.NoOptDefVal == "") {
				i++
			}
		default:
			return i
		}
	}
	return -1
}

// preparePlugins is Main's plugin step, before cobra parses anything. It
// returns the arguments cobra is to parse, or a completion answer that
// settles the run. Plugins are only looked for where they can matter (a
// command word that is not built in, help, completion), so built-in
// commands never pay for a PATH scan.
//
// A command word that is not built in gets a command of its own, whose
// arguments (everything after the word) are kept in st.tail, out of cobra's
// reach: they belong to the plugin, untouched, including what looks like
// orbit's flags or -help. Only the flags before the word are orbit's.
func preparePlugins(ctx context.Context, root *cobra.Command, f *factory.Factory, st *rootState, args []string) (cobraArgs []string, answer string, answered bool) {
	// Root's own -h/--help is a switch, as commandWord takes any flag it
	// does not know to be.
	fs := root.PersistentFlags()
	k := commandWord(args, fs)
	if k < 0 {
		addPluginCommands(root, f, st, "")
		return args, "", false
	}
	word := args[k]
	switch {
	case word == cobra.ShellCompRequestCmd || word == cobra.ShellCompNoDescRequestCmd:
		rest := args[k+1:]
		if j := commandWord(rest, fs); j >= 0 && len(rest)-j >= 2 && !st.isBuiltin(rest[j]) {
			finder := pluginFinder(f, st)
			words, toComplete := rest[j:len(rest)-1], rest[len(rest)-1]
			env := pluginContext(f, st, "").Environ(environ(f))
			if out, ok := finder.Complete(ctx, word, words, toComplete, env); ok {
				return nil, out, true
			}
		}
		addPluginCommands(root, f, st, "")
		return args, "", false
	case word == "help":
		addPluginCommands(root, f, st, "")
		return args, "", false
	case st.isBuiltin(word):
		return args, "", false
	}
	addPluginCommands(root, f, st, word)
	st.tail = args[k+1:]
	return args[:k+1], "", false
}

// addPluginCommands adds a command for the first word of every runnable
// plugin, under its own heading in the root help, and a hidden one for
// word when no plugin starts with it: that one runs the command on the
// remote host with --host (where the plugin may be installed) and is an
// unknown command otherwise.
func addPluginCommands(root *cobra.Command, f *factory.Factory, st *rootState, word string) {
	byWord := map[string][]plugin.Plugin{}
	var order []string
	for _, p := range pluginFinder(f, st).Runnable() {
		w := p.Words()[0]
		if byWord[w] == nil {
			order = append(order, w)
		}
		byWord[w] = append(byWord[w], p)
	}
	if len(order) > 0 {
		root.AddGroup(&cobra.Group{ID: builtinGroup, Title: "Available Commands:"}, &cobra.Group{ID: pluginGroup, Title: "Plugin Commands:"})
		for _, c := range root.Commands() {
			c.GroupID = builtinGroup
		}
		root.SetHelpCommandGroupID(builtinGroup)
		root.SetCompletionCommandGroupID(builtinGroup)
	}
	for _, w := range order {
		root.AddCommand(newPluginCmd(f, st, w, byWord[w]))
	}
	if word != "" && byWord[word] == nil {
		c := newPluginCmd(f, st, word, nil)
		c.Hidden = true
		root.AddCommand(c)
	}
}

func newPluginCmd(f *factory.Factory, st *rootState, word string, plugins []plugin.Plugin) *cobra.Command {
	var paths, names []string
	for _, p := range plugins {
		paths = append(paths, p.Path)
		names = append(names, filepath.Base(p.Path))
	}
	cmd := &cobra.Command{
		Use:   word,
		Short: "plugin: " + strings.Join(names, ", "),
		Long: fmt.Sprintf(`'orbit %s' runs an external plugin: %s.
Run 'orbit %s --help' for the plugin's own help; 'orbit plugin list' lists plugins.`, word, strings.Join(paths, ", "), word),
		Args:               cobra.ArbitraryArgs,
		DisableFlagParsing: false,
		RunE: func(c *cobra.Command, _ []string) error {
			return runPlugin(c, f, st, word)
		},
	}
	if len(plugins) > 0 {
		cmd.GroupID = pluginGroup
	}
	return cmd
}

// runPlugin runs the plugin the command line names (the longest match of
// word and the words after it), or reports an unknown command as the root
// command does for a word it does not know.
func runPlugin(c *cobra.Command, f *factory.Factory, st *rootState, word string) error {
	root := c.Root()
	p, n, ok := pluginFinder(f, st).Match(append([]string{word}, st.tail...))
	if !ok {
		return root.RunE(root, []string{word})
	}
	args := st.tail[n-1:]
	env := pluginContext(f, st, p.Name).Environ(environ(f))
	return plugin.Run(c.Context(), p, args, env, f.IO)
}

// pluginContext is what a plugin learns from orbit (docs/plugins.md).
func pluginContext(f *factory.Factory, st *rootState, name string) plugin.Context {
	exe, _ := f.Executable()
	settings := st.settingsFile
	if a, err := filepath.Abs(settings); err == nil && settings != "" {
		settings = a // the plugin may change directory
	}
	return plugin.Context{
		Name:         name,
		Version:      buildinfo.Get().Version,
		Executable:   exe,
		SettingsFile: settings,
		StdoutTTY:    f.IO.IsStdoutTTY(),
		NoColor:      f.IO.IsStdoutTTY() && !f.IO.ColorEnabled(),
	}
}

func environ(f *factory.Factory) []string {
	if f.Environ == nil {
		return nil
	}
	return f.Environ()
}
