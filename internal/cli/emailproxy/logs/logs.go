// Package logs is `orbit email-oauth2-proxy logs`: the proxy unit's journal,
// and with --auth-url only the authorisation URLs still waiting for someone
// to open them, so that provisioning scripts can capture one.
package logs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/senhasegura/orbit/internal/cli/cmdutil"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/service"
	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/pkg/emailproxy/authurl"
	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/journal"
	"github.com/spf13/cobra"
)

// DefaultLines is how many entries logs shows without -n or --since.
const DefaultLines = 100

// DefaultAuthTimeout bounds `--auth-url --follow` unless --timeout says
// otherwise: long enough for a person to log in somewhere, short enough that
// a forgotten script ends.
const DefaultAuthTimeout = 10 * time.Minute

// UnitStarting is systemd's MESSAGE_ID for "Starting <unit>...": a new
// engine, which voids the URLs its predecessor handed out.
const UnitStarting = authurl.UnitStarting

// Options are logs's inputs and dependencies.
type Options struct {
	IO      *iostreams.IOStreams
	Journal service.JournalReader
	// Booted says whether systemd runs this machine (service.Booted).
	Booted func() error
	// PythonEngine says whether the unit may run the Python proxy
	// (PythonEngine); nil means it may.
	PythonEngine func(unit string) bool
	Now          func() time.Time
	Location     *time.Location

	Unit       string
	ConfigPath string
	Lines      int
	LinesSet   bool
	Since      string
	Follow     bool
	AuthURL    bool
	Timeout    time.Duration
	TimeoutSet bool
	Output     output.Format
}

// New builds the command. runF replaces Run in tests.
func New(f *factory.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Journal: &journal.Reader{}, Booted: service.Booted, PythonEngine: PythonEngine, Now: f.Now}
	cmd := &cobra.Command{
		Use:   "logs [flags]",
		Short: "Show the proxy's journal, or the authorisation URL waiting to be opened",
		Long: `Show the proxy unit's journal: the newest 100 entries by default, -n N for
another number (0 for all), --since for a time window, --follow to keep
printing new entries. --output json prints one JSON object per entry and line
(NDJSON; schema in docs/logs-json.md).

--auth-url prints only the authorisation URLs that are waiting for an
administrator to open them: the newest per account, without those whose
authorisation has since succeeded or failed, or that an engine restart made
void. With one account the output is the URL alone; with several it is one
"account<TAB>url" line per account, sorted by account (a device-flow code
follows as a third column). It reads this engine's structured entries and the
Python proxy's plain lines alike.

With --follow, --auth-url waits until a URL is pending (one printed at once if
one already is; while it waits, a note on standard error says so), prints it
and exits 0, or exits 8 when --timeout (default 10m) passes first. Without
--follow and with nothing pending it prints nothing and exits 0 (a note goes
to standard error). With --output json, --auth-url prints one JSON array of
the pending authorisations ([] for none), with or without --follow.`,
		Example: `  orbit email-oauth2-proxy logs -n 50
  orbit email-oauth2-proxy logs --since 1h --follow
  orbit email-oauth2-proxy logs --output json | jq -r 'select(.priority <= 3) | .message'

  # in a provisioning script: wait for the mailer's first login, then mail the URL
  url=$(orbit email-oauth2-proxy logs --auth-url --follow --timeout 5m)`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			opts.LinesSet = c.Flags().Changed("lines")
			opts.TimeoutSet = c.Flags().Changed("timeout")
			if runF != nil {
				return runF(c.Context(), opts)
			}
			return Run(c.Context(), opts)
		},
	}
	service.AddCommonFlags(cmd, &opts.ConfigPath, &opts.Unit)
	fl := cmd.Flags()
	fl.IntVarP(&opts.Lines, "lines", "n", DefaultLines, "show the newest N entries (0: all)")
	fl.StringVar(&opts.Since, "since", "", "entries since this time: 30m, 2h, 1d (ago), 2006-01-02, \"2006-01-02 15:04:05\", RFC 3339, today, yesterday")
	_ = cmd.RegisterFlagCompletionFunc("since", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"10m", "1h", "today", "yesterday"}, cobra.ShellCompDirectiveNoFileComp
	})
	fl.BoolVarP(&opts.Follow, "follow", "f", false, "keep printing new entries (Ctrl-C ends)")
	fl.BoolVar(&opts.AuthURL, "auth-url", false, "print only the pending authorisation URL(s)")
	fl.DurationVar(&opts.Timeout, "timeout", 0, "with --follow: stop after this long (--auth-url: exit 8; default 10m there, none otherwise)")
	output.AddFlag(cmd, &opts.Output)
	return cmd
}

// Run prints the journal or the pending URLs.
func Run(ctx context.Context, o *Options) error {
	unit, err := service.CheckUnit(o.Unit)
	if err != nil {
		return err
	}
	o.Unit = unit
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Lines < 0 {
		return exitcode.Withf(exitcode.Usage, "--lines %d: use 0 (all) or more", o.Lines)
	}
	if o.Timeout < 0 {
		return exitcode.Withf(exitcode.Usage, "--timeout %v: use a positive duration", o.Timeout)
	}
	if o.TimeoutSet && !o.Follow {
		// Without --follow logs returns at once; a script that passed a
		// timeout expects to wait, so say so instead of ignoring it.
		return exitcode.Withf(exitcode.Usage, "--timeout only applies with --follow; add --follow (e.g. logs --auth-url --follow --timeout 5m)")
	}
	cfg := o.ConfigPath
	if cfg == "" {
		cfg = config.DefaultPath
	}
	// Every flag is checked before the machine is: a script with a typo
	// learns about the typo (exit 2) wherever it runs.
	var since time.Time
	if o.Since != "" {
		t, err := ParseSince(o.Since, o.Now(), o.loc())
		if err != nil {
			return exitcode.Withf(exitcode.Usage, "--since: %v", err)
		}
		since = t
	}
	if o.Booted != nil {
		if err := o.Booted(); err != nil {
			return service.NoSystemdError("no journal to read for "+o.Unit, cfg, err)
		}
	}
	if o.AuthURL {
		return o.authURL(ctx, since)
	}
	return o.entries(ctx, since)
}

func (o *Options) loc() *time.Location {
	if o.Location == nil {
		return time.Local
	}
	return o.Location
}

func (o *Options) journalError(err error) error {
	if errors.Is(err, journal.ErrNoJournalctl) {
		return exitcode.Withf(exitcode.NoSystemd, "%v\nOn a machine without systemd, run the proxy in the foreground (orbit email-oauth2-proxy serve) and read its standard error.", err)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, journal.ErrDenied) {
		return exitcode.With(exitcode.Permission, cmdutil.Explained(fmt.Sprintf("cannot read the journal of %s: permission denied\nRun as root (sudo orbit email-oauth2-proxy logs), or as a member of the systemd-journal group.", o.Unit), err))
	}
	return fmt.Errorf("reading the journal of %s: %w", o.Unit, err)
}

func (o *Options) entries(ctx context.Context, since time.Time) error {
	q := journal.Query{Units: []string{o.Unit}, Since: since, Follow: o.Follow}
	if o.Output != output.JSON {
		// The text line needs only these; JSON carries every ORBIT_ field.
		q.Fields = textFields
	}
	switch {
	case o.LinesSet:
		q.Lines = o.Lines
	case since.IsZero() && o.Follow:
		q.Lines = 10 // as journalctl -f
	case since.IsZero():
		q.Lines = DefaultLines
	}
	if o.Follow && o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	for e, err := range o.Journal.Entries(ctx, q) {
		if err != nil {
			if o.Follow && o.Timeout > 0 && errors.Is(err, context.DeadlineExceeded) {
				return nil // the requested end of following
			}
			return o.journalError(err)
		}
		if err := o.writeEntry(e); err != nil {
			return err
		}
	}
	return nil
}

// textFields are what service.FormatEntry shows of an entry.
var textFields = []string{"MESSAGE", "SYSLOG_IDENTIFIER", "_PID", "_SYSTEMD_UNIT", "UNIT", "USER_UNIT", "_SYSTEMD_USER_UNIT", "PRIORITY", "MESSAGE_ID"}

// EntryJSON is one line of `logs --output json`.
type EntryJSON struct {
	Time time.Time `json:"time"`
	// Unit is the unit the entry is about: the one that logged it, or for
	// systemd's own lines (Starting, Started, Failed) the unit they concern.
	Unit       string `json:"unit,omitempty"`
	Identifier string `json:"identifier,omitempty"`
	PID        int    `json:"pid,omitempty"`
	Priority   int    `json:"priority"`
	MessageID  string `json:"message_id,omitempty"`
	Message    string `json:"message"`
	// Orbit holds the engine's ORBIT_* fields, named without the prefix in
	// lower case (account, auth_url, protocol, reason, ...).
	Orbit  map[string]string `json:"orbit,omitempty"`
	Cursor string            `json:"cursor"`
}

func toJSON(e journal.Entry) EntryJSON {
	unit := e.Unit
	if u := e.Fields["UNIT"]; u != "" {
		// systemd's own lines about the unit ("Started ...") come from
		// init.scope; the unit they are about is the one that matters here.
		unit = u
	}
	j := EntryJSON{Time: e.Time.UTC(), Unit: unit, Identifier: e.Identifier, PID: e.PID,
		Priority: e.Priority, MessageID: e.MessageID, Message: e.Message, Cursor: e.Cursor}
	for k, v := range e.Fields {
		if name, ok := strings.CutPrefix(k, events.Prefix); ok {
			if j.Orbit == nil {
				j.Orbit = map[string]string{}
			}
			j.Orbit[strings.ToLower(name)] = v
		}
	}
	return j
}

func (o *Options) writeEntry(e journal.Entry) error {
	if o.Output == output.JSON {
		// One compact object per line: NDJSON survives --follow and jq -c.
		enc := json.NewEncoder(o.IO.Out)
		enc.SetEscapeHTML(false)
		return enc.Encode(toJSON(e))
	}
	_, err := fmt.Fprintln(o.IO.Out, service.FormatEntry(e, o.loc()))
	return err
}

// PendingJSON is one element of `logs --auth-url --output json` (an array).
type PendingJSON struct {
	Account  string    `json:"account"`
	URL      string    `json:"url"`
	UserCode string    `json:"user_code,omitempty"`
	Time     time.Time `json:"time"`
}

func (o *Options) authURL(ctx context.Context, since time.Time) error {
	python := true
	if o.PythonEngine != nil {
		python = o.PythonEngine(o.Unit)
	}
	w, err := authurl.Find(ctx, o.Journal, authurl.Options{Unit: o.Unit, Since: since, PythonLines: python})
	if err != nil {
		return o.journalError(err)
	}
	if p := w.Pending(); len(p) > 0 || !o.Follow {
		if len(p) == 0 {
			fmt.Fprintf(o.IO.ErrOut, "No authorisation is pending for %s (--follow waits for one).\n", o.Unit)
		}
		return o.writePending(p)
	}

	timeout := o.Timeout
	if !o.TimeoutSet || timeout == 0 {
		timeout = DefaultAuthTimeout
	}
	// Standard output stays the URL alone; the wait is said on stderr, so
	// that an admin at a terminal knows the command is not stuck.
	fmt.Fprintf(o.IO.ErrOut, "No authorisation is pending for %s yet; waiting up to %v for one (the mailer's next login asks for it; Ctrl-C stops).\n", o.Unit, timeout)
	fctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var found []authurl.Pending
	err = w.Follow(fctx, o.Journal, func(p []authurl.Pending) bool {
		found = p
		return len(p) == 0
	})
	switch {
	case len(found) > 0:
		return o.writePending(found)
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return exitcode.Withf(exitcode.Timeout, "no authorisation URL appeared for %s within %v; the mailer has to log in first (see: orbit email-oauth2-proxy status)", o.Unit, timeout)
	case err != nil:
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		return o.journalError(err)
	}
	return exitcode.Withf(exitcode.Error, "the journal of %s ended while waiting for an authorisation URL", o.Unit)
}

// PythonEngine reports whether unit may run the Python proxy, whose plain
// lines --auth-url must then read too: yes unless the installed unit runs
// `orbit email-oauth2-proxy serve`.
func PythonEngine(unit string) bool {
	u, err := service.Description.ReadInstalled("", unit)
	return err != nil || u.Foreign
}

func (o *Options) writePending(p []authurl.Pending) error {
	if o.Output == output.JSON {
		out := make([]PendingJSON, len(p))
		for i, a := range p {
			out[i] = PendingJSON{Account: a.Account, URL: a.URL, UserCode: a.UserCode, Time: a.Time.UTC()}
		}
		return output.WriteJSON(o.IO.Out, out)
	}
	if len(p) == 1 {
		if p[0].UserCode != "" {
			fmt.Fprintf(o.IO.ErrOut, "Account %s: open the URL and enter the code %s\n", p[0].Account, p[0].UserCode)
		}
		_, err := fmt.Fprintln(o.IO.Out, p[0].URL)
		return err
	}
	for _, a := range p {
		line := a.Account + "\t" + a.URL
		if a.UserCode != "" {
			line += "\t" + a.UserCode
		}
		if _, err := fmt.Fprintln(o.IO.Out, line); err != nil {
			return err
		}
	}
	return nil
}

// ParseSince reads --since: a duration back from now ("30m", "2h", "1d"),
// "today", "yesterday", a date, a date and time (local), or RFC 3339.
func ParseSince(s string, now time.Time, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "today":
		y, m, d := now.In(loc).Date()
		return time.Date(y, m, d, 0, 0, 0, 0, loc), nil
	case "yesterday":
		y, m, d := now.In(loc).Date()
		return time.Date(y, m, d-1, 0, 0, 0, 0, loc), nil
	case "now":
		return now, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if d, err := time.ParseDuration(n + "h"); err == nil && d >= 0 {
			return now.Add(-24 * d), nil
		}
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "-")); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04:05", "2006-01-02"} {
		if layout == time.RFC3339Nano {
			if t, err := time.Parse(layout, s); err == nil {
				return t, nil
			}
			continue
		}
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time: use 30m, 2h, 1d (ago), today, yesterday, 2006-01-02, \"2006-01-02 15:04:05\" or RFC 3339", s)
}
