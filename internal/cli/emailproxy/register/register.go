// Package register is `orbit email-oauth2-proxy register`: flags in, the
// proxy's INI file out, validated, merged with what the file already holds,
// and written atomically.
package register

import (
	"context"

	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/spf13/cobra"
)

// Service is what register needs from the service manager after a write:
// install or refresh the unit, and restart the proxy if it is running so the
// new file applies. Nil means no service integration (tests, --no-service).
type Service interface {
	AfterWrite(ctx context.Context, configPath string, restart bool) (ServiceResult, error)
}

// ServiceResult is what the service hook did, in words, and whether the
// proxy's unit runs afterwards (so the next steps need no start).
type ServiceResult struct {
	Message string
	Running bool
}

// Options are register's inputs and dependencies.
type Options struct {
	IO       *iostreams.IOStreams
	Hostname func() (string, error)
	Service  Service
	// Width is the terminal's width in columns (0: unknown); the summary
	// panel is drawn only where it fits.
	Width func() int
	// ReadFile reads --oauth2-client-secret-file; os.ReadFile unless a test
	// needs an error root would never see.
	ReadFile func(string) ([]byte, error)

	ConfigPath string
	Force      bool
	DryRun     bool
	NoRestart  bool
	NoService  bool
	Output     output.Format

	Provider   string
	TenantID   string
	SecretFile string

	Values Values
	// Changed reports whether the user set a flag (by name) on the command
	// line, in the environment or in the settings file: explicit values win
	// over a provider preset.
	Changed func(flag string) bool
}

// New builds the command. runF replaces the run function in tests.
func New(f *factory.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	return NewWithService(f, nil, runF)
}

// NewWithService builds the command with svc as the service hook (the
// email-oauth2-proxy family passes the systemd one; nil means none).
func NewWithService(f *factory.Factory, svc Service, runF func(context.Context, *Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Hostname: f.Hostname, Service: svc, Width: f.TerminalWidth}
	cmd := &cobra.Command{
		Use:   "register [flags]",
		Short: "Write the proxy's configuration file from flags",
		Long: `Write the email OAuth 2.0 proxy's INI file ([emailproxy], [IMAP-2993],
[SMTP-2465] and the account section, by default the catch-all [@]).

Values are trimmed (quoted URLs often end in a space), checked, and merged into
an existing file: comments, sections register does not own and every stored
token are kept. The write is atomic, the file is mode 0600, and the previous
version is kept as FILE.bak. An existing file is only replaced with --force
(or after a yes at a terminal prompt).

The client secret can come from --oauth2-client-secret, from
--oauth2-client-secret-file FILE (or - for standard input), or from the
environment variable ORBIT_EMAIL_OAUTH2_PROXY_OAUTH2_CLIENT_SECRET, which keeps
it out of the process list and shell history.`,
		Example: `  # Office 365, the values filled in by the preset; the secret from a 0600 file
  orbit email-oauth2-proxy register --provider office365 \
    --tenant-id 0f3e3b5c-1a2b-4c3d-8e9f-0123456789ab \
    --oauth2-client-id 6731de76-14a6-49ae-97bc-6eba6914391e \
    --oauth2-client-secret-file /root/client-secret \
    --redirect-uri https://vault.example.com/email-oauth2-proxy-authorize/

  # The product documentation's command, every flag spelled out; the secret on standard input
  orbit email-oauth2-proxy register \
    --imap-server-address=outlook.office365.com --imap-server-port=993 \
    --smtp-server-address=smtp.office365.com --smtp-server-port=587 --smtp-server-starttls \
    --oauth2-token-url="https://login.microsoftonline.com/0f3e3b5c-1a2b-4c3d-8e9f-0123456789ab/oauth2/v2.0/token" \
    --oauth2-permission-url="https://login.microsoftonline.com/0f3e3b5c-1a2b-4c3d-8e9f-0123456789ab/oauth2/v2.0/authorize" \
    --oauth2-scope="https://outlook.office365.com/IMAP.AccessAsUser.All https://outlook.office365.com/SMTP.Send offline_access" \
    --oauth2-flow=authorization_code --oauth2-client-id=6731de76-14a6-49ae-97bc-6eba6914391e \
    --oauth2-client-secret-file=- --redirect-uri=https://vault.example.com/email-oauth2-proxy-authorize/ --force

  # Google Workspace, shown (secrets masked) and not written
  orbit email-oauth2-proxy register --provider google \
    --oauth2-client-id 1234567890-abc.apps.googleusercontent.com \
    --oauth2-client-secret-file /root/client-secret \
    --redirect-uri https://vault.example.com/email-oauth2-proxy-authorize/ --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			opts.Changed = func(name string) bool {
				fl := c.Flags().Lookup(name)
				return fl != nil && fl.Changed
			}
			if runF != nil {
				return runF(c.Context(), opts)
			}
			return Run(c.Context(), opts)
		},
	}
	addFlags(cmd, opts)
	return cmd
}
