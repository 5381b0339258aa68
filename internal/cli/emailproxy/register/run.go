package register

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/senhasegura/orbit/internal/cli/cmdutil"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

// Result is what register reports, also as --output json.
type Result struct {
	Path      string              `json:"path"`
	Written   bool                `json:"written"`
	DryRun    bool                `json:"dry_run"`
	Backup    string              `json:"backup,omitempty"`
	Account   string              `json:"account"`
	Flow      config.Flow         `json:"flow"`
	RunsAs    config.Flow         `json:"effective_flow"`
	Listeners []Listener          `json:"listeners"`
	Warnings  []config.Diagnostic `json:"warnings"`
	Service   string              `json:"service,omitempty"`
	// Running: the proxy's unit runs after the service hook (started
	// before, and restarted with the new file unless --no-restart).
	Running     bool `json:"running"`
	Interactive bool `json:"needs_authorisation_url"`
}

// Listener is one local port the mailer uses.
type Listener struct {
	Protocol config.Protocol `json:"protocol"`
	Address  string          `json:"address"`
	Upstream string          `json:"upstream"`
}

// Run registers: build the registration, validate it, merge it into the
// existing file and write it.
func Run(ctx context.Context, o *Options) error {
	reg, err := o.registration()
	if err != nil {
		return err
	}
	diags := reg.Validate()
	if config.HasErrors(diags) {
		return invalid(diags, "nothing was written")
	}

	existing, err := os.ReadFile(o.ConfigPath)
	exists := err == nil
	if errors.Is(err, fs.ErrNotExist) {
		existing, err = nil, nil // a new file
	}
	if err != nil {
		return cmdutil.FileError("read", o.ConfigPath, err)
	}

	reg.Normalize()
	data, err := reg.ApplyFile(existing, o.ConfigPath)
	if errors.Is(err, config.ErrSyntax) {
		// Each line already starts with the path and the line number.
		return exitcode.Withf(exitcode.Invalid, "%v\nFix the file by hand (orbit email-oauth2-proxy config validate %s), or move it away and register again.", err, o.ConfigPath)
	}
	if err != nil {
		return exitcode.Withf(exitcode.Invalid, "%s: %v\nFix the file by hand (orbit email-oauth2-proxy config validate %s), or move it away and register again.", o.ConfigPath, err, o.ConfigPath)
	}
	// The registration alone cannot see clashes with sections it does not
	// own; the merged file can.
	cfg, err := config.Parse(data, o.ConfigPath)
	if err != nil {
		return exitcode.Withf(exitcode.Invalid, "the merged file would not parse: %v", err)
	}
	merged := cfg.Validate()
	// An error in another account section (the Python sample file's
	// Fastmail example, say) disables only that account, in serve as here:
	// it is reported, not a reason to refuse this registration.
	fatal, disabled := cfg.ServeErrors(merged)
	if _, own := disabled[reg.Account]; len(fatal) > 0 || own {
		return invalid(merged, "nothing was written")
	}
	res := o.result(cfg, reg, append(append(append(warnings(diags), notOwned(warnings(merged), reg)...), disabledElsewhere(disabled)...), upstreamTLSChanges(existing, cfg, reg.SMTP.AutoStartTLS)...))

	if o.DryRun {
		masked, err := config.Masked(data)
		if err != nil {
			return err
		}
		res.DryRun = true
		if o.Output == output.JSON {
			return output.WriteJSON(o.IO.Out, struct {
				Result
				File string `json:"file"`
			}{res, string(masked)})
		}
		printWarnings(o, res.Warnings)
		_, err = o.IO.Out.Write(masked)
		return err
	}

	if exists && !o.Force {
		if bytes.Equal(existing, data) {
			// Nothing would change: no question to ask.
			return o.report(res)
		}
		if err := o.confirmOverwrite(); err != nil {
			return err
		}
	}
	if !bytes.Equal(existing, data) {
		if err := config.WriteFile(ctx, o.ConfigPath, data); err != nil {
			return cmdutil.FileError("write", o.ConfigPath, err)
		}
		res.Written = true
		if exists {
			res.Backup = o.ConfigPath + ".bak"
		}
	}
	if o.Service != nil && !o.NoService {
		sr, err := o.Service.AfterWrite(ctx, o.ConfigPath, !o.NoRestart)
		if err != nil {
			// The file is written; say so before the service error.
			fmt.Fprintf(o.IO.ErrOut, "Wrote %s.\n", o.ConfigPath)
			return err
		}
		res.Service, res.Running = sr.Message, sr.Running
	}
	return o.report(res)
}

// registration turns flags into a config.Registration. Server ports and
// STARTTLS come from a preset unless given explicitly.
func (o *Options) registration() (*config.Registration, error) {
	v := o.Values
	secret, err := o.clientSecret()
	if err != nil {
		return nil, err
	}
	host := ""
	if o.Hostname != nil {
		host, _ = o.Hostname()
	}
	explicit := func(flag string) bool { return o.Changed != nil && o.Changed(flag) }
	// A flag's default is not the user asking for the protocol: a
	// server port counts only when given, or as the partner of a server
	// address that was given (without a preset, which has its own ports).
	port := func(flag string, val int, addr string) int {
		switch {
		case explicit(flag):
			return val
		case o.Provider == "" && strings.TrimSpace(addr) != "":
			return val
		}
		return 0
	}
	localPort := func(flag string, val int) int {
		if explicit(flag) {
			return val
		}
		return 0 // the registration's default for the protocol
	}
	// The registration reads a zero local port as "the default"; a zero
	// typed by the user is a mistake, not a request for the default.
	for _, lp := range []struct {
		flag string
		val  int
	}{{"imap-local-port", v.IMAPLocalPort}, {"smtp-local-port", v.SMTPLocalPort}, {"pop-local-port", v.POPLocalPort}} {
		if explicit(lp.flag) && (lp.val < 1 || lp.val > 65535) {
			return nil, exitcode.Withf(exitcode.Invalid, "--%s: %d is not a port; use 1-65535 (the mailer connects to it)", lp.flag, lp.val)
		}
	}
	r := config.NewRegistration()
	r.DeleteAccountTokenOnPasswordError = v.DeleteTokenOnPasswordError
	r.EncryptClientSecretOnFirstUse = v.EncryptSecretOnFirstUse
	r.UseLoginPasswordAsClientCredentialsSecret = v.LoginPasswordAsSecret
	r.AllowCatchAllAccounts = v.AllowCatchAll
	r.IMAP = config.ServerRegistration{ServerAddress: v.IMAPServerAddress, ServerPort: port("imap-server-port", v.IMAPServerPort, v.IMAPServerAddress), LocalPort: localPort("imap-local-port", v.IMAPLocalPort)}
	r.SMTP = config.ServerRegistration{ServerAddress: v.SMTPServerAddress, ServerPort: port("smtp-server-port", v.SMTPServerPort, v.SMTPServerAddress), LocalPort: localPort("smtp-local-port", v.SMTPLocalPort), StartTLS: v.SMTPStartTLS,
		AutoStartTLS: !explicit("smtp-server-starttls")}
	r.POP = config.ServerRegistration{ServerAddress: v.POPServerAddress, ServerPort: port("pop-server-port", v.POPServerPort, v.POPServerAddress), LocalPort: localPort("pop-local-port", v.POPLocalPort)}
	r.LocalAddress = v.LocalAddress
	r.Account = v.Account
	r.TokenURL, r.PermissionURL, r.Scope = v.TokenURL, v.PermissionURL, v.Scope
	r.Flow = config.Flow(strings.TrimSpace(v.Flow))
	r.ClientID, r.ClientSecret = v.ClientID, secret
	// The redirect settings are given only when asked for; the
	// registration fills their defaults where the flow opens a browser.
	r.RedirectURI = v.RedirectURI
	r.RedirectHost = host
	if explicit("redirect-listen-address") {
		r.RedirectListenAddress = v.RedirectListenAddress
	}
	r.Provider, r.TenantID = o.Provider, o.TenantID
	return r, nil
}

// clientSecret picks the secret from exactly one source. "-" reads the
// first line of standard input, so `pass show x | orbit ... -` works.
func (o *Options) clientSecret() (string, error) {
	flagVal := o.Values.ClientSecret
	if flagVal != "" && o.SecretFile != "" {
		return "", exitcode.Withf(exitcode.Usage, "--oauth2-client-secret and --oauth2-client-secret-file both given (perhaps one through ORBIT_EMAIL_OAUTH2_PROXY_OAUTH2_CLIENT_SECRET); use one")
	}
	src := ""
	switch {
	case flagVal == "-" || o.SecretFile == "-":
		src = "standard input"
		line, err := bufio.NewReader(o.IO.In).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("reading the client secret from standard input: %w", err)
		}
		flagVal = strings.TrimRight(line, "\r\n")
	case o.SecretFile != "":
		src = o.SecretFile
		read := o.ReadFile
		if read == nil {
			read = os.ReadFile
		}
		b, err := read(o.SecretFile)
		switch {
		case errors.Is(err, fs.ErrPermission):
			return "", fmt.Errorf("--oauth2-client-secret-file: %w", cmdutil.FileError("read", o.SecretFile, err))
		case errors.Is(err, fs.ErrNotExist):
			return "", exitcode.Withf(exitcode.Invalid, "--oauth2-client-secret-file: %s does not exist; write the secret's value to it first (install -m 0600 /dev/stdin %s), or pass - to read it from standard input", o.SecretFile, o.SecretFile)
		case err != nil:
			return "", exitcode.Withf(exitcode.Invalid, "--oauth2-client-secret-file: %v; name a file that holds the secret's value, or - for standard input", err)
		}
		flagVal = strings.TrimSpace(string(b))
	}
	if src != "" && strings.TrimSpace(flagVal) == "" {
		return "", exitcode.Withf(exitcode.Invalid, "--oauth2-client-secret-file: %s holds no secret", src)
	}
	return flagVal, nil
}

func (o *Options) confirmOverwrite() error {
	if !o.IO.CanPrompt() {
		return exitcode.Withf(exitcode.Exists, "%s already exists; pass --force to replace it (its tokens, comments and other sections are kept; a backup is written to %s.bak)", o.ConfigPath, o.ConfigPath)
	}
	fmt.Fprintf(o.IO.Out, "%s already exists. Replace it (tokens, comments and other sections are kept)? [y/N] ", o.ConfigPath)
	answer, _ := bufio.NewReader(o.IO.In).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	return exitcode.Withf(exitcode.Exists, "not replaced: %s is unchanged (pass --force to replace without asking)", o.ConfigPath)
}

func (o *Options) result(cfg *config.Config, reg *config.Registration, warns []config.Diagnostic) Result {
	res := Result{Path: o.ConfigPath, Account: reg.Account, Flow: reg.Flow, Warnings: warns}
	if res.Warnings == nil {
		res.Warnings = []config.Diagnostic{}
	}
	acct := config.Account{PermissionURL: reg.PermissionURL, Flow: reg.Flow}
	res.RunsAs = acct.EffectiveFlow()
	res.Interactive = acct.Interactive()
	for _, s := range cfg.Servers {
		addr := s.LocalAddress
		if strings.Contains(addr, ":") {
			addr = "[" + addr + "]"
		}
		res.Listeners = append(res.Listeners, Listener{
			Protocol: s.Protocol,
			Address:  fmt.Sprintf("%s:%d", addr, s.LocalPort),
			Upstream: fmt.Sprintf("%s:%d", s.ServerAddress, s.ServerPort),
		})
	}
	return res
}

// upstreamTLSChanges notes each SMTP listener whose upstream TLS the new
// file changes (STARTTLS or implicit TLS), so that re-registering with
// another port never flips it silently. A change the admin asked for with
// --smtp-server-starttls[=false] (auto false) needs no note.
func upstreamTLSChanges(existing []byte, cfg *config.Config, auto bool) []config.Diagnostic {
	if len(existing) == 0 || !auto {
		return nil
	}
	old, err := config.Parse(existing, "")
	if err != nil {
		return nil
	}
	was := map[string]bool{}
	for _, s := range old.Servers {
		if s.Protocol == config.SMTP {
			was[s.Section] = s.ServerStartTLS
		}
	}
	mode := func(starttls bool) string {
		if starttls {
			return "STARTTLS"
		}
		return "implicit TLS"
	}
	var out []config.Diagnostic
	for _, s := range cfg.Servers {
		before, ok := was[s.Section]
		if s.Protocol != config.SMTP || !ok || before == s.ServerStartTLS {
			continue
		}
		set, keep := "server_starttls = True removed", "--smtp-server-starttls"
		if s.ServerStartTLS {
			set, keep = "server_starttls = True added", "--smtp-server-starttls=false"
		}
		out = append(out, config.Diagnostic{Severity: config.Note, Section: s.Section, Key: "server_starttls",
			Message: fmt.Sprintf("upstream %s:%d now uses %s, not %s (%s)", s.ServerAddress, s.ServerPort, mode(s.ServerStartTLS), mode(before), set),
			Hint:    fmt.Sprintf("if the server wants %s on this port, register again with %s", mode(before), keep)})
	}
	return out
}

func warnings(ds []config.Diagnostic) []config.Diagnostic {
	var out []config.Diagnostic
	for _, d := range ds {
		if d.Severity == config.Warning {
			out = append(out, d)
		}
	}
	return out
}

// notOwned keeps the merged file's warnings about sections this
// registration did not write: its own were already reported by flag name.
func notOwned(merged []config.Diagnostic, reg *config.Registration) []config.Diagnostic {
	owned := map[string]bool{reg.Account: true, config.GlobalSection: true}
	for _, s := range []struct {
		p config.Protocol
		r config.ServerRegistration
	}{{config.IMAP, reg.IMAP}, {config.POP, reg.POP}, {config.SMTP, reg.SMTP}} {
		if s.r.LocalPort != 0 {
			owned[fmt.Sprintf("%s-%d", s.p, s.r.LocalPort)] = true
		}
	}
	var out []config.Diagnostic
	for _, m := range merged {
		if !owned[m.Section] {
			out = append(out, m)
		}
	}
	return out
}

// disabledElsewhere turns the errors of other account sections into
// warnings saying that serve disables those accounts.
func disabledElsewhere(d config.Disabled) []config.Diagnostic {
	var out []config.Diagnostic
	for _, sec := range d.Sections() {
		for _, e := range d[sec] {
			e.Severity = config.Warning
			e.Message = "this account is disabled until fixed: " + e.Message
			out = append(out, e)
		}
	}
	return out
}

// invalid lists the errors first (they are why nothing happened), then the
// warnings, under a count that matches the lines that follow.
func invalid(ds []config.Diagnostic, tail string) error {
	var errs, warns []config.Diagnostic
	for _, d := range ds {
		switch d.Severity {
		case config.Error:
			errs = append(errs, d)
		case config.Warning:
			warns = append(warns, d)
		}
	}
	var b strings.Builder
	b.WriteString(plural(len(errs), "error"))
	if len(warns) > 0 {
		b.WriteString(", " + plural(len(warns), "warning"))
	}
	fmt.Fprintf(&b, "; %s:", tail)
	for _, d := range append(errs, warns...) {
		b.WriteString("\n  ")
		b.WriteString(d.String())
	}
	return exitcode.With(exitcode.Invalid, errors.New(b.String()))
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
