package register

import (
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/internal/secretflag"
	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/spf13/cobra"
)

// Values are the file's settings as the flags give them, before presets,
// defaults and trimming.
type Values struct {
	IMAPServerAddress, SMTPServerAddress, POPServerAddress string
	IMAPServerPort, SMTPServerPort, POPServerPort          int
	IMAPLocalPort, SMTPLocalPort, POPLocalPort             int
	SMTPStartTLS                                           bool
	LocalAddress                                           string

	Account               string
	TokenURL              string
	PermissionURL         string
	Scope                 string
	Flow                  string
	ClientID              string
	ClientSecret          string
	RedirectURI           string
	RedirectListenAddress string

	DeleteTokenOnPasswordError bool
	EncryptSecretOnFirstUse    bool
	AllowCatchAll              bool
	LoginPasswordAsSecret      bool
}

// Providers lists the --provider presets.
var Providers = []string{"office365", "google"}

func addFlags(cmd *cobra.Command, o *Options) {
	fl := cmd.Flags()
	v := &o.Values
	fl.SortFlags = false

	fl.StringVar(&o.ConfigPath, "config", config.DefaultPath, "the proxy's configuration file to write")
	fl.StringVar(&o.Provider, "provider", "", "fill servers, ports, URLs and scopes for a provider: office365 or google")
	fl.StringVar(&o.TenantID, "tenant-id", "", "Microsoft Entra tenant ID (with --provider office365)")

	fl.StringVar(&v.IMAPServerAddress, "imap-server-address", "", "upstream IMAP server (implicit TLS)")
	fl.IntVar(&v.IMAPServerPort, "imap-server-port", 993, "upstream IMAP port")
	fl.IntVar(&v.IMAPLocalPort, "imap-local-port", 2993, "local IMAP port the mailer connects to")
	fl.StringVar(&v.SMTPServerAddress, "smtp-server-address", "", "upstream SMTP server")
	fl.IntVar(&v.SMTPServerPort, "smtp-server-port", 587, "upstream SMTP port")
	fl.BoolVar(&v.SMTPStartTLS, "smtp-server-starttls", false, "use STARTTLS upstream instead of implicit TLS (default: on for ports 25 and 587, off for 465, else as the file has it)")
	fl.IntVar(&v.SMTPLocalPort, "smtp-local-port", 2465, "local SMTP port the mailer connects to")
	fl.StringVar(&v.POPServerAddress, "pop-server-address", "", "upstream POP3 server (implicit TLS); empty: no POP listener")
	fl.IntVar(&v.POPServerPort, "pop-server-port", 995, "upstream POP3 port")
	fl.IntVar(&v.POPLocalPort, "pop-local-port", 2995, "local POP3 port the mailer connects to")
	fl.StringVar(&v.LocalAddress, "local-address", "127.0.0.1", "address the local listeners bind to")

	fl.StringVar(&v.Account, "account", "@", `account section: "@" (every account), "@domain" (one domain) or "user@domain"`)
	fl.StringVar(&v.TokenURL, "oauth2-token-url", "", "the provider's token endpoint")
	fl.StringVar(&v.PermissionURL, "oauth2-permission-url", "", "the provider's authorisation endpoint (authorization_code, device)")
	fl.StringVar(&v.Scope, "oauth2-scope", "", "space-separated scopes")
	fl.StringVar(&v.Flow, "oauth2-flow", "", "authorization_code, device, client_credentials, password or service_account")
	fl.StringVar(&v.ClientID, "oauth2-client-id", "", "the application (client) ID registered with the provider")
	fl.StringVar(&v.ClientSecret, "oauth2-client-secret", "", "the client secret; prefer --oauth2-client-secret-file or $ORBIT_EMAIL_OAUTH2_PROXY_OAUTH2_CLIENT_SECRET (- reads standard input)")
	fl.StringVar(&o.SecretFile, "oauth2-client-secret-file", "", "read the client secret from this file (- for standard input)")
	fl.StringVar(&v.RedirectURI, "redirect-uri", "", "authorization_code only: the redirect URI registered with the provider (default "+config.DefaultRedirectURI("<this host>")+")")
	fl.StringVar(&v.RedirectListenAddress, "redirect-listen-address", config.DefaultRedirectListenAddress, "authorization_code only: where the proxy's redirect listener binds")

	fl.BoolVar(&v.DeleteTokenOnPasswordError, "delete-account-token-on-password-error", true, "on a wrong login password, delete the account's tokens and authorise again")
	fl.BoolVar(&v.EncryptSecretOnFirstUse, "encrypt-client-secret-on-first-use", false, "replace client_secret with client_secret_encrypted on first use")
	fl.BoolVar(&v.AllowCatchAll, "allow-catch-all-accounts", true, "allow the [@] and [@domain] sections")
	fl.BoolVar(&v.LoginPasswordAsSecret, "use-login-password-as-client-credentials-secret", false, "client_credentials: use the login password as the client secret")

	fl.BoolVar(&o.Force, "force", false, "replace an existing file without asking")
	fl.BoolVar(&o.DryRun, "dry-run", false, "print the file that would be written (secrets masked) and change nothing")
	fl.BoolVar(&o.NoRestart, "no-restart", false, "do not restart the proxy's unit when it is running")
	fl.BoolVar(&o.NoService, "no-service", false, "only write the file: do not install, refresh or restart the systemd unit")
	output.AddFlag(cmd, &o.Output)

	_ = cmd.RegisterFlagCompletionFunc("oauth2-flow", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		names := make([]string, len(config.Flows))
		for i, f := range config.Flows {
			names[i] = string(f)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	})
	_ = cmd.RegisterFlagCompletionFunc("provider", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return Providers, cobra.ShellCompDirectiveNoFileComp
	})
	_ = cmd.MarkFlagFilename("config")
	_ = cmd.MarkFlagFilename("oauth2-client-secret-file")
	// The one place that says this flag's value is a secret: --host sends
	// it over standard input, and a local run warns about ps and history.
	secretflag.Mark(fl, "oauth2-client-secret", "oauth2-client-secret-file")
}
