// Package authorize is `orbit email-oauth2-proxy authorize`: sign an
// account in before any mailer login, through the running engine's control
// socket, the way `gh auth login` signs a user in.
package authorize

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/senhasegura/orbit/internal/cli/cmdutil"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/service"
	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/pkg/emailproxy/accountstate"
	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/control"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Options are authorize's inputs.
type Options struct {
	IO *iostreams.IOStreams

	Account      string
	PasswordFile string
	Socket       string
	Timeout      time.Duration
	NoWait       bool
	Output       output.Format

	// ReadFile reads --password-file; ReadPassword prompts on a terminal.
	// Tests replace them.
	ReadFile     func(string) ([]byte, error)
	ReadPassword func(prompt string) (string, error)
	// Call talks to the engine; control.Call unless a test replaces it.
	Call func(ctx context.Context, path string, req control.Request, onReply func(control.Reply)) (control.Reply, error)
	// Probe checks that the socket is there before the password is asked
	// for, so nobody types a password only to hear the engine is not
	// running; nil skips it.
	Probe func(path string) error
	// AccountNames lists what --account completes (SystemAccountNames
	// unless a test replaces it).
	AccountNames func() []string
}

// New builds the command; runF replaces Run in tests of flag parsing.
func New(f *factory.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	return newCommand(newOptions(f), runF)
}

func newOptions(f *factory.Factory) *Options {
	opts := &Options{IO: f.IO, ReadFile: os.ReadFile, Call: control.Call, AccountNames: SystemAccountNames,
		Probe: func(path string) error {
			_, err := os.Stat(path)
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%w (no control socket at %s)", control.ErrNotRunning, path)
			}
			return err
		}}
	opts.ReadPassword = func(prompt string) (string, error) {
		fmt.Fprint(f.IO.ErrOut, prompt)
		b, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(f.IO.ErrOut)
		return string(b), err
	}
	return opts
}

func newCommand(opts *Options, runF func(context.Context, *Options) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "authorize --account ADDRESS [--password-file FILE|-]",
		Short: "Sign an account in now, before any mailer login",
		Long: `Sign an account in ahead of time, so the mailer's first login needs no
authorisation and no token request.

The running proxy (under systemd or in the foreground) starts the account's
flow through its control socket: for authorization_code the URL to open in a
browser is printed, for device the verification URL and code; for flows
without a person (client_credentials, password, service_account) the tokens
are fetched at once. The command waits until the tokens are stored, with a
spinner on a terminal, and exits 0.

The password is the one the mailer will use for this account: the tokens are
encrypted with it, as a mailer login would. Give it with --password-file FILE,
--password-file - (standard input), or type it at the prompt; never on the
command line.

With --no-wait the command returns once the URL is known and the proxy keeps
the authorisation open (for --auth-timeout, 10 minutes by default).`,
		Example: `  # Sign alice in; paste the URL into a browser, sign in as alice
  orbit email-oauth2-proxy authorize --account alice@example.com

  # From a script: the password from a file, the URL as JSON, no waiting
  orbit email-oauth2-proxy authorize --account alice@example.com \
    --password-file /root/alice-mailer-password --no-wait --output json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if opts.Account == "" {
				return exitcode.Withf(exitcode.Usage, "--account is required: the address to sign in, as in the file's [user@domain] section")
			}
			if opts.Timeout < 0 {
				return exitcode.Withf(exitcode.Usage, "--timeout %s is negative", opts.Timeout)
			}
			if runF != nil {
				return runF(c.Context(), opts)
			}
			return Run(c.Context(), opts)
		},
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Account, "account", "", "the account (login name) to sign in; completes the file's accounts and those with stored tokens")
	fl.StringVar(&opts.PasswordFile, "password-file", "", "read the mailer's password for the account from this file (- for standard input)")
	fl.StringVar(&opts.Socket, "socket", control.DefaultPath, "the running proxy's control socket")
	fl.DurationVar(&opts.Timeout, "timeout", 15*time.Minute, "how long to wait for the sign-in (0: as long as the proxy waits)")
	fl.BoolVar(&opts.NoWait, "no-wait", false, "return once the URL (or device code) is known; the proxy keeps the authorisation open")
	output.AddFlag(cmd, &opts.Output)
	_ = cmd.MarkFlagFilename("password-file")
	_ = cmd.RegisterFlagCompletionFunc("account", func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		var names []string
		if opts.AccountNames != nil {
			for _, n := range opts.AccountNames() {
				if strings.HasPrefix(n, toComplete) {
					names = append(names, n)
				}
			}
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

// SystemAccountNames is AccountNames for the file the installed unit runs
// with (else the default) and the engine's default status file and token
// store. Files this user cannot read add nothing.
func SystemAccountNames() []string {
	cfg := service.ResolveConfig(service.SystemInstaller{}, service.DefaultUnit, config.DefaultPath, false)
	return AccountNames(cfg, oauth.DefaultStatusFile, tokens.DefaultPath)
}

// AccountNames lists the logins authorize can sign in, sorted: the file's
// own account sections and every account the status file or a token
// store knows (under a catch-all section, a login is named nowhere else).
// Catch-all sections (@, @domain) are not logins and are left out.
func AccountNames(cfgPath, statusFile, tokenCache string) []string {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		cfg = nil
	}
	merged := accountstate.Merge(accountstate.Sources{StatusFile: statusFile, TokenCache: tokenCache, ConfigPath: cfgPath, Config: cfg, Now: time.Now()})
	var names []string
	for _, a := range merged.Accounts {
		if config.IsAccountSection(a.Name) && !config.IsCatchAllSection(a.Name) {
			names = append(names, a.Name)
		}
	}
	return names
}

// result is the JSON document of --output json.
type result struct {
	Account     string    `json:"account"`
	State       string    `json:"state"` // authorised | waiting
	Flow        string    `json:"flow,omitempty"`
	AuthURL     string    `json:"auth_url,omitempty"`
	UserCode    string    `json:"user_code,omitempty"`
	TokenExpiry time.Time `json:"token_expiry,omitzero"`
}

// errNoWaitDone ends the call once --no-wait has what it waited for.
var errNoWaitDone = errors.New("done: --no-wait")

// Run signs the account in.
func Run(ctx context.Context, o *Options) error {
	if o.Probe != nil {
		if err := o.Probe(o.Socket); err != nil {
			return o.callError(ctx, err)
		}
	}
	password, err := o.password()
	if err != nil {
		return err
	}
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)

	res := result{Account: o.Account}
	spin := newSpinner(o.IO)
	defer spin.stop()
	onReply := func(r control.Reply) {
		if r.Type != control.TypeWaiting {
			return
		}
		res.State, res.AuthURL, res.UserCode = "waiting", r.AuthURL, r.UserCode
		spin.stop()
		o.printWaiting(r)
		if o.NoWait {
			stop(errNoWaitDone)
			return
		}
		spin.start("Waiting for the sign-in to complete")
	}
	final, err := o.Call(ctx, o.Socket, control.Request{Op: "authorize", Account: o.Account, Password: password}, onReply)
	spin.stop()
	if errors.Is(context.Cause(ctx), errNoWaitDone) {
		return o.printResult(res)
	}
	if err != nil {
		return o.callError(ctx, err)
	}
	if final.Type == control.TypeError {
		return replyError(final)
	}
	res.State, res.Flow, res.TokenExpiry = "authorised", final.Flow, final.TokenExpiry
	return o.printResult(res)
}

func (o *Options) password() (string, error) {
	var raw []byte
	switch {
	case o.PasswordFile == "-":
		b, err := io.ReadAll(io.LimitReader(o.IO.In, 64<<10))
		if err != nil {
			return "", fmt.Errorf("reading the password from standard input: %w", err)
		}
		raw = b
	case o.PasswordFile != "":
		b, err := o.ReadFile(o.PasswordFile)
		if errors.Is(err, fs.ErrNotExist) {
			return "", exitcode.Withf(exitcode.Usage, "--password-file %s does not exist", o.PasswordFile)
		}
		if err != nil {
			return "", cmdutil.FileError("read", o.PasswordFile, err)
		}
		raw = b
	case o.IO.CanPrompt():
		p, err := o.ReadPassword(fmt.Sprintf("The mailer's password for %s (it encrypts the tokens): ", o.Account))
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		raw = []byte(p)
	default:
		return "", exitcode.Withf(exitcode.Usage, "no password: give the mailer's password for %s with --password-file FILE or --password-file - (standard input)", o.Account)
	}
	p := strings.TrimRight(string(raw), "\r\n")
	if p == "" {
		return "", exitcode.Withf(exitcode.Invalid, "the password is empty: give the password the mailer will use for %s", o.Account)
	}
	return p, nil
}

func (o *Options) printWaiting(r control.Reply) {
	if o.Output == output.JSON {
		return
	}
	cs := cmdutil.NewColorScheme(o.IO)
	w := o.IO.Out
	if r.UserCode != "" {
		if o.IO.IsStdoutTTY() {
			fmt.Fprintf(w, "Open %s in a browser, enter the code %s and sign in as %s.\n", cs.Bold(r.AuthURL), cs.Bold(r.UserCode), o.Account)
		} else {
			fmt.Fprintf(w, "Visit %s and use code %s to authenticate account %s\n", r.AuthURL, r.UserCode, o.Account)
		}
		return
	}
	if o.IO.IsStdoutTTY() {
		fmt.Fprintf(w, "Open this URL in a browser and sign in as %s:\n\n  %s\n\n", o.Account, cs.Bold(r.AuthURL))
	} else {
		// The journal's wording, so scripts that read one read the other.
		fmt.Fprintf(w, "Please visit the following URL to authenticate account %s: %s\n", o.Account, r.AuthURL)
	}
}

func (o *Options) printResult(res result) error {
	if o.Output == output.JSON {
		return output.WriteJSON(o.IO.Out, res)
	}
	if res.State != "authorised" {
		if o.IO.IsStdoutTTY() {
			fmt.Fprintln(o.IO.Out, "Not waiting (--no-wait): the proxy keeps the authorisation open; `orbit email-oauth2-proxy status` shows when it completes.")
		}
		return nil
	}
	cs := cmdutil.NewColorScheme(o.IO)
	msg := fmt.Sprintf("%s is signed in", o.Account)
	if res.Flow != "" {
		msg += " (" + res.Flow + ")"
	}
	if !res.TokenExpiry.IsZero() {
		msg += fmt.Sprintf("; access token valid until %s", res.TokenExpiry.Local().Format("2006-01-02 15:04 MST"))
	}
	fmt.Fprintln(o.IO.Out, cs.SuccessIcon()+" "+msg+". The mailer's next login needs no token request.")
	return nil
}

func (o *Options) callError(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, control.ErrNotRunning):
		return exitcode.With(exitcode.NotRunning, fmt.Errorf("%w.\nStart it with `orbit email-oauth2-proxy start` (or `serve` in the foreground), then run authorize again.\nIf `orbit email-oauth2-proxy status` says it runs, its state directory was removed under it: `orbit email-oauth2-proxy reload` opens the socket again", err))
	case errors.Is(err, fs.ErrPermission):
		return cmdutil.Denied("cannot use the proxy's control socket "+o.Socket, err)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(context.Cause(ctx), context.DeadlineExceeded):
		return exitcode.With(exitcode.Timeout, fmt.Errorf("the sign-in of %s did not complete within --timeout %s; the proxy may still be waiting: `orbit email-oauth2-proxy status`", o.Account, o.Timeout))
	case errors.Is(err, context.Canceled):
		return exitcode.With(exitcode.Interrupted, errors.New("interrupted; the proxy keeps the authorisation open until its own timeout"))
	}
	return err
}

func replyError(r control.Reply) error {
	err := errors.New(r.Message)
	switch r.Kind {
	case control.KindUnknownAccount, control.KindBadRequest:
		return exitcode.With(exitcode.Invalid, err)
	case control.KindBadPassword:
		return exitcode.With(exitcode.Invalid, fmt.Errorf("%w\nThe account already has tokens encrypted with another password: use the mailer's password", err))
	case control.KindTimeout:
		return exitcode.With(exitcode.Timeout, err)
	}
	return err
}

// spinner shows that the command waits, on a terminal only.
type spinner struct {
	io   *iostreams.IOStreams
	mu   sync.Mutex
	done chan struct{}
	wg   sync.WaitGroup
}

func newSpinner(io *iostreams.IOStreams) *spinner { return &spinner{io: io} }

func (s *spinner) start(msg string) {
	if !s.io.IsStderrTTY() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return
	}
	s.done = make(chan struct{})
	done := s.done
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		frames := []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			fmt.Fprintf(s.io.ErrOut, "\r%s %s", frames[i%len(frames)], msg)
			select {
			case <-done:
				fmt.Fprint(s.io.ErrOut, "\r\033[K")
				return
			case <-t.C:
			}
		}
	}()
}

func (s *spinner) stop() {
	s.mu.Lock()
	if s.done != nil {
		close(s.done)
		s.done = nil
	}
	s.mu.Unlock()
	s.wg.Wait()
}
