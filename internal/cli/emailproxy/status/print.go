package status

import (
	"fmt"
	"strings"
	"time"

	"github.com/senhasegura/orbit/internal/cli/cmdutil"
	"github.com/senhasegura/orbit/internal/cli/panel"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
)

// tone is how a value is styled on a terminal.
type tone int

const (
	plain tone = iota
	good
	warn
	bad
	faint
)

// row is a line of the listing: aligned columns, then a free tail that
// carries the tone.
type row struct {
	cols []string
	tail string
	tone tone
}

func (o *Options) print(rep Report) error {
	if o.Output == output.JSON {
		return output.WriteJSON(o.IO.Out, rep)
	}
	cs := cmdutil.NewColorScheme(o.IO)
	style := func(t tone, s string) string {
		switch t {
		case good:
			return cs.Success(s)
		case warn:
			return cs.Warning(s)
		case bad:
			return cs.Failure(s)
		case faint:
			return cs.Faint(s)
		}
		return s
	}
	tty := o.IO.IsStdoutTTY()

	var b strings.Builder
	head := o.headRows(rep)
	writeRows(&b, head, "", style)

	b.WriteString("\nListeners:\n")
	if problems := strings.Split(rep.Config.Error, "\n"); len(problems) > 1 {
		// The file's errors, one per line; each styled on its own, since a
		// style pads a block of lines to its longest.
		fmt.Fprintf(&b, "  %s\n", style(bad, fmt.Sprintf("the configuration has errors (orbit email-oauth2-proxy config validate %s explains each):", cmdutil.ShellQuote(rep.Config.Path))))
		for _, p := range problems {
			fmt.Fprintf(&b, "    %s\n", style(bad, p))
		}
	} else if rep.Config.Error != "" {
		fmt.Fprintf(&b, "  %s\n", style(bad, "cannot use the configuration: "+rep.Config.Error))
	} else if len(rep.Listeners) == 0 {
		fmt.Fprintf(&b, "  %s\n", style(warn, "none configured (no [IMAP-n], [POP-n] or [SMTP-n] section)"))
	}
	var lrows []row
	for _, l := range rep.Listeners {
		rw := row{cols: []string{l.Protocol, l.Address, "-> " + l.Upstream}, tail: "listening", tone: good}
		if !l.Listening {
			rw.tail, rw.tone = "not listening: "+l.Error, bad
			if l.Error == NothingListens {
				rw.tail = "not listening"
			}
			if !rep.Running {
				rw.tone = warn
			}
		}
		rw.tail += startTLSText(l)
		lrows = append(lrows, rw)
	}
	writeRows(&b, lrows, "  ", style)

	b.WriteString("\nAccounts:\n")
	switch {
	case len(rep.Unreadable) > 0:
		fmt.Fprintf(&b, "  %s\n", style(bad, "cannot tell: permission denied reading "+strings.Join(rep.Unreadable, ", ")+" (run as root)"))
	case len(rep.Accounts) == 0:
		fmt.Fprintf(&b, "  %s\n", style(faint, "none configured and none used"))
	}
	var arows []row
	for _, a := range rep.Accounts {
		arows = append(arows, o.accountRow(a))
	}
	for _, c := range rep.CatchAllFailedLogins {
		arows = append(arows, row{cols: []string{c.Section}, tail: "catch-all: " + o.failedTail(c.FailedLogins), tone: warn})
	}
	writeRows(&b, arows, "  ", style)
	for _, e := range rep.AccountErrors {
		fmt.Fprintf(&b, "  %s\n", style(bad, e))
	}

	if sf := rep.StatusFile; sf.Updated != nil && sf.Stale {
		fmt.Fprintf(&b, "\n%s\n", style(faint, fmt.Sprintf("The status file was last written at %s by PID %d, an engine that no longer runs: its account states are not current and are not shown (the accounts above come from the token store and the configuration).", o.when(*sf.Updated), sf.PID)))
	}
	if len(rep.StateProblems) > 0 {
		fmt.Fprintf(&b, "\n%s\n", style(bad, "The service user cannot use its state directory:"))
		for _, p := range rep.StateProblems {
			fmt.Fprintf(&b, "  %s: %s\n    fix: %s\n", p.Path, p.What, p.Fix)
		}
	}
	if next := o.nextStep(rep); next != "" {
		fmt.Fprintf(&b, "\n%s\n", next)
	}

	title := style(good, "email-oauth2-proxy")
	if !rep.Running {
		title = style(bad, "email-oauth2-proxy")
	}
	body := title + "\n" + strings.TrimRight(b.String(), "\n")
	if !tty || !panel.Fits(o.IO, o.width(), body) {
		// Still coloured on a terminal; only the frame is left out.
		_, err := fmt.Fprint(o.IO.Out, b.String())
		return err
	}
	_, err := fmt.Fprintln(o.IO.Out, cs.Box(body))
	return err
}

// startTLSText says, for a local_starttls listener, which clients must
// upgrade before they may send a password: what an admin checks after
// opening a listener to other hosts.
func startTLSText(l Listener) string {
	verb := "STARTTLS"
	if l.Protocol == string(config.POP) {
		verb = "STLS"
	}
	setting := " (local_starttls_required = " + l.LocalStartTLSRequired + ")"
	switch config.TLSRequirement(l.LocalStartTLSRequired) {
	case "":
		return ""
	case config.RequireTLSAlways:
		return "; " + verb + " required before a password from every client" + setting
	case config.RequireTLSNever:
		return "; " + verb + " offered, passwords accepted without it" + setting
	}
	return "; " + verb + " required before a password from clients not on loopback" + setting
}

func (o *Options) headRows(rep Report) []row {
	u := rep.Unit
	rows := []row{{cols: []string{"Unit:"}, tail: u.Name}}
	state := row{cols: []string{"State:"}}
	switch {
	case !u.Systemd:
		state.tail, state.tone = "unknown: "+u.Error, bad
	case u.Error != "":
		state.tail, state.tone = "unknown: "+u.Error, bad
	case u.LoadState == "not-found":
		state.tail, state.tone = "not installed", bad
		if rep.Engine != nil {
			state.tone = warn
		}
	default:
		state.tail = fmt.Sprintf("%s (%s)", u.ActiveState, u.SubState)
		if u.Since != nil {
			state.tail += " since " + o.when(*u.Since) + "; " + ago(o.Now().Sub(*u.Since)) + " ago"
		}
		switch {
		case rep.Running:
			state.tone = good
		case u.ActiveState == "failed" || u.SubState == "auto-restart":
			state.tone = bad
			if u.Result != "" && u.Result != "success" {
				state.tail += ", result " + u.Result
			}
		default:
			state.tone = warn
		}
	}
	rows = append(rows, state)
	if e := rep.Engine; e != nil && e.Manager == Foreground {
		rows = append(rows, row{cols: []string{"Engine:"}, tail: fmt.Sprintf("running in the foreground, PID %d (orbit email-oauth2-proxy serve, not under systemd)", e.PID), tone: good})
	}
	if u.MainPID != 0 {
		rows = append(rows, row{cols: []string{"Main PID:"}, tail: fmt.Sprint(u.MainPID)})
	}
	if u.MemoryBytes != nil {
		rows = append(rows, row{cols: []string{"Memory:"}, tail: bytesText(*u.MemoryBytes)})
	}
	if u.Restarts > 0 {
		rows = append(rows, row{cols: []string{"Restarts:"}, tail: fmt.Sprint(u.Restarts), tone: warn})
	}
	if u.UnitFileState != "" {
		rows = append(rows, row{cols: []string{"At boot:"}, tail: u.UnitFileState})
	}
	rows = append(rows, row{cols: []string{"Config:"}, tail: rep.Config.Path})
	return rows
}

func (o *Options) accountRow(a Account) row {
	rw := row{cols: []string{a.Name}}
	flow := ""
	if a.Flow != "" {
		flow = " (" + a.Flow + ")"
	}
	activity := ""
	if a.LastActivity != nil {
		activity = "; last activity " + o.when(*a.LastActivity)
	}
	switch a.State {
	case string(oauth.StateAuthorised):
		rw.tone = good
		rw.tail = "authorised" + flow
		if a.TokenExpiry != nil {
			rw.tail = "authorised, token valid until " + o.when(*a.TokenExpiry) + flow
		}
		if a.Source == SourceTokenStore {
			rw.tail += ", from the token store"
		}
	case string(oauth.StateWaiting):
		rw.tone = warn
		rw.tail = "waiting for authorisation" + flow + ": open " + a.AuthURL
		if a.UserCode != "" {
			rw.tail += " and enter the code " + a.UserCode
		}
	case string(oauth.StateFailing):
		rw.tone = bad
		rw.tail = "failing" + flow + ": " + a.Reason
	case StateExpired:
		rw.tone = warn
		rw.tail = "token expired, no refresh token: the next login authorises again" + flow
	case StateDisabled:
		rw.tone = bad
		rw.tail = "disabled" + flow + ": " + a.Reason
	case StateNotUsed:
		rw.tone = faint
		rw.tail = "not used yet" + flow
	default:
		rw.tail = a.State + flow
	}
	rw.tail += activity
	if a.FailedLogins != nil {
		rw.tail += "; " + o.failedTail(*a.FailedLogins)
	}
	return rw
}

// failedTail is the account line's account of its failed logins: how
// many, from where, and what the guard does about them.
func (o *Options) failedTail(f FailedLogins) string {
	s := failedText(f, o.when)
	if f.Refused > 0 {
		s += fmt.Sprintf(", %d refused unchecked", f.Refused)
	}
	if f.DelayedUntil != nil {
		s += ", their attempts delayed until " + o.when(*f.DelayedUntil)
	}
	return s
}

func (o *Options) nextStep(rep Report) string {
	u := rep.Unit
	if e := rep.Engine; e != nil && e.Manager == Foreground {
		return fmt.Sprintf("To run it under systemd instead: stop the foreground proxy (Ctrl-C, or kill %d), then orbit email-oauth2-proxy start%s; its tokens carry over.", e.PID, unitFlag(u.Name))
	}
	switch {
	case rep.configMissing && !rep.Running:
		cfg := ""
		if rep.Config.Path != config.DefaultPath {
			cfg = " --config " + cmdutil.ShellQuote(rep.Config.Path)
		}
		return "Write the file first (start needs it): orbit email-oauth2-proxy register" + cfg + " --provider office365|google ...; " +
			"register --help shows examples, docs/email-oauth2-proxy.md walks through it."
	case !u.Systemd:
		return ""
	case u.LoadState == "not-found":
		return "Install and start it: orbit email-oauth2-proxy start" + unitFlag(u.Name)
	case len(rep.StateProblems) > 0 && (u.ActiveState == "failed" || u.SubState == "auto-restart" || !rep.Running):
		return "Repair and start it: orbit email-oauth2-proxy start" + unitFlag(u.Name)
	case u.ActiveState == "failed" || u.SubState == "auto-restart":
		return "Why it failed: orbit email-oauth2-proxy logs -n 50" + unitFlag(u.Name)
	case !rep.Running:
		return "Start it: orbit email-oauth2-proxy start" + unitFlag(u.Name)
	}
	for _, a := range rep.Accounts {
		if a.State == string(oauth.StateWaiting) {
			return "An administrator must open the URL above once (orbit email-oauth2-proxy logs --auth-url prints it alone)."
		}
	}
	return ""
}

func unitFlag(name string) string {
	if name == "" || name == "email-oauth2-proxy.service" {
		return ""
	}
	return " --unit " + name
}

// writeRows aligns the columns; styling is applied after padding so escape
// codes do not upset the widths.
func writeRows(b *strings.Builder, rows []row, indent string, style func(tone, string) string) {
	var widths []int
	for _, r := range rows {
		for i, c := range r.cols {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	for _, r := range rows {
		b.WriteString(indent)
		for i, c := range r.cols {
			b.WriteString(c)
			b.WriteString(strings.Repeat(" ", widths[i]-len([]rune(c))+2))
		}
		b.WriteString(style(r.tone, r.tail))
		b.WriteByte('\n')
	}
}

func (o *Options) when(t time.Time) string {
	loc := o.Location
	if loc == nil {
		loc = time.Local
	}
	return t.In(loc).Format("2006-01-02 15:04:05 MST")
}

// ago is a short duration for people: 45s, 12m, 3h5m, 2d4h.
func ago(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	days := int(d.Hours()) / 24
	return fmt.Sprintf("%dd%dh", days, int(d.Hours())%24)
}

func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func (o *Options) width() int {
	if o.Width == nil {
		return 0
	}
	return o.Width()
}
