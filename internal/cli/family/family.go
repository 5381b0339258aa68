// Package family is the registry of orbit's subcommand families. A family
// (email-oauth2-proxy is the first) is one package that calls Register from
// its init function; internal/cli/root imports it for that side effect and
// adds every registered family to the root command.
package family

import (
	"fmt"
	"sort"
	"sync"

	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/spf13/cobra"
)

// New builds a family's top-level command.
type New func(f *factory.Factory) *cobra.Command

var (
	mu       sync.Mutex
	families = map[string]New{}
)

// Register adds a family under its command name. Registering one name twice
// is a programming error and panics at start-up, not at a user's prompt.
func Register(name string, build New) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := families[name]; dup {
		panic(fmt.Sprintf("family %q registered twice", name))
	}
	families[name] = build
}

// Commands builds every registered family's command, sorted by name so help
// output is stable.
func Commands(f *factory.Factory) []*cobra.Command {
	mu.Lock()
	names := make([]string, 0, len(families))
	for n := range families {
		names = append(names, n)
	}
	builders := make([]New, 0, len(names))
	sort.Strings(names)
	for _, n := range names {
		builders = append(builders, families[n])
	}
	mu.Unlock()
	cmds := make([]*cobra.Command, 0, len(builders))
	for _, b := range builders {
		cmds = append(cmds, b(f))
	}
	return cmds
}
