// Package emailproxy is the email-oauth2-proxy command family: one
// subpackage per verb, assembled here and registered with the root command.
package emailproxy

import (
	"github.com/senhasegura/orbit/internal/cli/emailproxy/authorize"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/configcmd"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/logs"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/register"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/reload"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/serve"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/service"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/status"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/uninstall"
	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/cli/family"
	"github.com/spf13/cobra"
)

func init() { family.Register("email-oauth2-proxy", New) }

// New builds `orbit email-oauth2-proxy`.
func New(f *factory.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "email-oauth2-proxy <command>",
		Short: "Configure and run the email OAuth 2.0 proxy",
		Long: `The email OAuth 2.0 proxy lets the appliance's mailer, which only speaks plain
IMAP/POP/SMTP login, use Office 365 and Google Workspace mailboxes that demand
OAuth 2.0 (SASL XOAUTH2). The mailer logs in to 127.0.0.1:2993 (IMAP) and
127.0.0.1:2465 (SMTP) with a plain password; the proxy obtains OAuth 2.0
tokens and logs in upstream with XOAUTH2.

Typical use:
  1. orbit email-oauth2-proxy register --provider office365 --tenant-id ... (writes the file)
  2. orbit email-oauth2-proxy start                                         (runs the proxy under systemd)
  3. orbit email-oauth2-proxy logs --auth-url                               (the URL an admin must visit)
  4. orbit email-oauth2-proxy status                                        (is everything authorised?)`,
	}
	cmd.AddCommand(register.NewWithService(f, service.NewHook(f), nil))
	cmd.AddCommand(service.NewStart(f, nil), service.NewStop(f, nil), service.NewRestart(f, nil), reload.New(f, nil))
	cmd.AddCommand(uninstall.New(f, nil))
	cmd.AddCommand(status.New(f, nil), logs.New(f, nil))
	cmd.AddCommand(configcmd.New(f))
	cmd.AddCommand(serve.New(f, nil))
	cmd.AddCommand(authorize.New(f, nil))
	return cmd
}
