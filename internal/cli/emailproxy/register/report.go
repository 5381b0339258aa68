package register

import (
	"fmt"
	"strings"

	"github.com/senhasegura/orbit/internal/cli/cmdutil"
	"github.com/senhasegura/orbit/internal/cli/panel"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

func printWarnings(o *Options, ws []config.Diagnostic) {
	for _, w := range ws {
		fmt.Fprintf(o.IO.ErrOut, "%s\n", w.String())
	}
}

// report prints what was written and what to do next: a styled panel on a
// terminal wide enough for it (and without NO_COLOR), plain lines otherwise
// and for scripts, or JSON.
func (o *Options) report(res Result) error {
	if o.Output == output.JSON {
		return output.WriteJSON(o.IO.Out, res)
	}
	printWarnings(o, res.Warnings)

	var b strings.Builder
	verb := "Wrote"
	if !res.Written {
		verb = "Unchanged:"
	}
	fmt.Fprintf(&b, "%s %s (account [%s])\n", verb, res.Path, res.Account)
	if res.Backup != "" {
		fmt.Fprintf(&b, "Previous version kept as %s\n", res.Backup)
	}
	if res.Flow != res.RunsAs {
		fmt.Fprintf(&b, "Flow: %s is configured, but %s will run because a permission URL is set\n", res.Flow, res.RunsAs)
	} else {
		fmt.Fprintf(&b, "Flow: %s\n", res.RunsAs)
	}
	for _, l := range res.Listeners {
		fmt.Fprintf(&b, "%-4s %s -> %s\n", l.Protocol, l.Address, l.Upstream)
	}
	if res.Service != "" {
		fmt.Fprintf(&b, "Service: %s\n", res.Service)
	}

	// start and status read the default file unless told otherwise; a file
	// written elsewhere must be named, or the steps would act on another.
	cfgFlag := ""
	if o.ConfigPath != config.DefaultPath {
		cfgFlag = " --config " + cmdutil.ShellQuote(o.ConfigPath)
	}
	var next []string
	switch {
	case !res.Running:
		next = append(next, "orbit email-oauth2-proxy start"+cfgFlag+"            # run the proxy under systemd")
	case o.NoRestart:
		next = append(next, "orbit email-oauth2-proxy restart"+cfgFlag+"          # the running proxy still has the previous file")
	}
	for _, l := range res.Listeners {
		next = append(next, fmt.Sprintf("point the mailer's %s at %s, no TLS, with a plain password", l.Protocol, l.Address))
	}
	if res.Interactive {
		next = append(next, "orbit email-oauth2-proxy logs --auth-url   # after the mailer's first login: the URL an admin must open once")
	}
	next = append(next, "orbit email-oauth2-proxy status"+cfgFlag+"            # check listeners and accounts")

	cs := cmdutil.NewColorScheme(o.IO)
	var steps strings.Builder
	for i, n := range next {
		fmt.Fprintf(&steps, "%d. %s\n", i+1, n)
	}
	body := cs.Success("email-oauth2-proxy registered") + "\n" + strings.TrimRight(b.String(), "\n") +
		"\n\n" + cs.Faint("Next steps") + "\n" + strings.TrimRight(steps.String(), "\n")
	if !panel.Fits(o.IO, o.width(), body) {
		fmt.Fprint(o.IO.Out, b.String())
		fmt.Fprintln(o.IO.Out, "Next steps:")
		for i, n := range next {
			fmt.Fprintf(o.IO.Out, "  %d. %s\n", i+1, n)
		}
		return nil
	}
	fmt.Fprintln(o.IO.Out, cs.Box(body))
	return nil
}

func (o *Options) width() int {
	if o.Width == nil {
		return 0
	}
	return o.Width()
}
