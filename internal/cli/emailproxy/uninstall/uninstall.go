// Package uninstall mounts the shared `uninstall` verb
// (internal/cli/service) for the e-mail proxy: its unit stopped, disabled
// and removed with its sysusers.d entry, and, only with --purge
// (confirmed), its configuration file and token store too.
package uninstall

import (
	"context"

	"github.com/senhasegura/orbit/internal/cli/emailproxy/service"
	"github.com/senhasegura/orbit/internal/cli/factory"
	svc "github.com/senhasegura/orbit/internal/cli/service"
	"github.com/spf13/cobra"
)

// Options are uninstall's inputs and dependencies.
type Options = svc.UninstallOptions

// Result is what uninstall did, also as --output json.
type Result = svc.UninstallResult

// New builds the command. runF replaces Run in tests.
func New(f *factory.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	return svc.NewUninstall(f, service.Family, runF)
}

// Run uninstalls the proxy's unit (Options built by hand in tests leave
// Family empty).
func Run(ctx context.Context, o *Options) error {
	if o.Family.Command == "" {
		o.Family = service.Family
	}
	return svc.RunUninstall(ctx, o)
}
