package logs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/cli/emailproxy/logs"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/service"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/service/servicetest"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/journal"
)

var t0 = time.Date(2026, 1, 2, 8, 0, 0, 0, time.UTC)

const (
	urlA = "https://login.microsoftonline.com/t/oauth2/v2.0/authorize?client_id=c&state=A"
	urlB = "https://login.microsoftonline.com/t/oauth2/v2.0/authorize?client_id=c&state=B"
	urlC = "https://accounts.google.com/o/oauth2/auth?client_id=c&state=C"
)

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

func authURL(min int, cursor, account, url string) journal.Entry {
	return servicetest.Entry(at(min), cursor, fmt.Sprintf(events.AuthURLText, account, url),
		"MESSAGE_ID="+events.AuthURL, events.Prefix+events.FieldAccount+"="+account, events.Prefix+events.FieldAuthURL+"="+url)
}

func succeeded(min int, cursor, account string) journal.Entry {
	return servicetest.Entry(at(min), cursor, "authorised "+account,
		"MESSAGE_ID="+events.AuthSucceeded, events.Prefix+events.FieldAccount+"="+account)
}

func login(min int, cursor, account string) journal.Entry {
	return servicetest.Entry(at(min), cursor, "IMAP login "+account,
		"MESSAGE_ID="+events.Login, events.Prefix+events.FieldAccount+"="+account)
}

func starting(min int, cursor string) journal.Entry {
	return servicetest.Entry(at(min), cursor, "Starting orbit email OAuth 2.0 proxy...",
		"MESSAGE_ID="+logs.UnitStarting, "SYSLOG_IDENTIFIER=systemd", "UNIT="+service.DefaultUnit)
}

// python is a line of the Python proxy: its stdout copy carries a date
// prefix, its syslog copy does not, and both reach the journal.
func python(min int, cursor, text string, withDate bool) journal.Entry {
	msg := "Email OAuth 2.0 Proxy: " + text
	if withDate {
		msg = at(min).In(time.Local).Format("2006-01-02 15:04:05") + ": " + text
	}
	e := servicetest.Entry(at(min), cursor, msg, "SYSLOG_IDENTIFIER=emailproxy")
	return e
}

type fixture struct {
	opts *logs.Options
	jrnl *servicetest.Journal
	out  func() (string, string)
}

func newFixture(history ...journal.Entry) *fixture {
	io, _, out, errOut := iostreams.Test()
	j := &servicetest.Journal{History: history, Tick: 5 * time.Millisecond}
	return &fixture{
		jrnl: j,
		opts: &logs.Options{IO: io, Journal: j, Booted: func() error { return nil },
			Now: func() time.Time { return at(60) }, Location: time.UTC,
			Unit: service.DefaultUnit, Lines: logs.DefaultLines, Output: output.Text},
		out: func() (string, string) { return out.String(), errOut.String() },
	}
}

func (f *fixture) run(t *testing.T) (exitcode.Code, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := logs.Run(ctx, f.opts)
	o, e := f.out()
	if err != nil {
		e += err.Error()
	}
	return exitcode.Of(err), o, e
}

func TestAuthURL(t *testing.T) {
	tests := []struct {
		name    string
		history []journal.Entry
		json    bool
		want    string
		// pythonOnly: plain lines, which only the Python engine writes.
		pythonOnly bool
	}{
		{name: "one account: the URL alone",
			history: []journal.Entry{starting(0, "c0"), authURL(1, "c1", "alice@example.com", urlA)},
			want:    urlA + "\n"},
		{name: "newest URL per account wins",
			history: []journal.Entry{authURL(1, "c1", "alice@example.com", urlA), authURL(2, "c2", "alice@example.com", urlB)},
			want:    urlB + "\n"},
		{name: "several accounts: account TAB url, sorted",
			history: []journal.Entry{authURL(1, "c1", "bob@example.com", urlB), authURL(2, "c2", "alice@example.com", urlA)},
			want:    "alice@example.com\t" + urlA + "\nbob@example.com\t" + urlB + "\n"},
		{name: "a succeeded authorisation drops its account",
			history: []journal.Entry{authURL(1, "c1", "alice@example.com", urlA), authURL(2, "c2", "bob@example.com", urlB), succeeded(3, "c3", "alice@example.com")},
			want:    urlB + "\n"},
		{name: "an engine restart voids earlier URLs",
			history: []journal.Entry{authURL(1, "c1", "alice@example.com", urlA), starting(5, "c5"), authURL(6, "c6", "bob@example.com", urlB)},
			want:    urlB + "\n"},
		{name: "nothing pending prints nothing",
			history: []journal.Entry{authURL(1, "c1", "alice@example.com", urlA), succeeded(2, "c2", "alice@example.com")},
			want:    ""},
		{name: "the Python proxy's plain lines, each twice",
			history: []journal.Entry{
				python(1, "p1", "Please visit the following URL to authenticate account carol@example.com: "+urlC, false),
				python(1, "p2", "Please visit the following URL to authenticate account carol@example.com: "+urlC, true),
				python(2, "p3", "Please visit the following URL to authenticate account dan@example.com: "+urlA, true),
				python(3, "p4", "IMAP (127.0.0.1:2993; dan@example.com) [ Successfully authenticated IMAP connection - releasing session ]", false),
				python(3, "p5", "IMAP (127.0.0.1:2993; dan@example.com) [ Successfully authenticated IMAP connection - releasing session ]", true),
			},
			want: urlC + "\n", pythonOnly: true},
		{name: "a URL issued again after its success is pending",
			history: []journal.Entry{authURL(1, "c1", "alice@example.com", urlA), succeeded(2, "c2", "alice@example.com"), authURL(3, "c3", "alice@example.com", urlB)},
			want:    urlB + "\n"},
		{name: "a login after the URL retires it; other accounts' logins do not",
			history: []journal.Entry{authURL(1, "c1", "alice@example.com", urlA), authURL(2, "c2", "bob@example.com", urlB),
				login(3, "c3", "carol@example.com"), login(4, "c4", "bob@example.com"), login(5, "c5", "carol@example.com")},
			want: urlA + "\n"},
		{name: "a restart after the URLs leaves nothing",
			history: []journal.Entry{authURL(1, "c1", "alice@example.com", urlA), starting(2, "c2"), login(3, "c3", "bob@example.com")},
			want:    ""},
		{name: "JSON is an array",
			history: []journal.Entry{authURL(1, "c1", "alice@example.com", urlA)}, json: true,
			want: `[
  {
    "account": "alice@example.com",
    "url": "` + urlA + `",
    "time": "2026-01-02T08:01:00Z"
  }
]
`},
	}
	for _, tt := range tests {
		for _, python := range []bool{false, true} {
			if tt.pythonOnly && !python {
				continue
			}
			t.Run(fmt.Sprintf("%s/python=%v", tt.name, python), func(t *testing.T) {
				f := newFixture(tt.history...)
				f.opts.AuthURL = true
				f.opts.PythonEngine = func(unit string) bool { return python }
				if tt.json {
					f.opts.Output = output.JSON
				}
				code, stdout, stderr := f.run(t)
				if code != 0 {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				if stdout != tt.want {
					t.Errorf("stdout:\n%q\nwant:\n%q", stdout, tt.want)
				}
				if tt.want == "" && !strings.Contains(stderr, "No authorisation is pending") {
					t.Errorf("no note on stderr: %q", stderr)
				}
				for _, q := range f.jrnl.Queries {
					if len(q.Units) != 1 || q.Units[0] != service.DefaultUnit {
						t.Errorf("query %+v: want the unit's journal", q)
					}
					// With orbit running, no query reads everything the
					// unit logged: each selects MESSAGE_IDs.
					if !python && len(q.MessageIDs) == 0 {
						t.Errorf("query %+v reads every entry of the unit", q)
					}
				}
			})
		}
	}
}

func TestAuthURLFollow(t *testing.T) {
	t.Run("waits for the URL and exits 0 as soon as it appears", func(t *testing.T) {
		f := newFixture(starting(0, "c0"), authURL(1, "c1", "alice@example.com", urlA), succeeded(2, "c2", "alice@example.com"))
		f.jrnl.Later = []journal.Entry{
			servicetest.Entry(at(61), "c3", "an unrelated line"),
			authURL(62, "c4", "bob@example.com", urlB),
			authURL(63, "c5", "carol@example.com", urlC), // never reached
		}
		f.opts.AuthURL, f.opts.Follow = true, true
		f.opts.PythonEngine = func(string) bool { return false }
		f.opts.Timeout, f.opts.TimeoutSet = 5*time.Second, true
		code, stdout, stderr := f.run(t)
		if code != 0 || stdout != urlB+"\n" {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and bob's URL", code, stdout, stderr)
		}
		// It says it waits, not that --follow would.
		if !strings.Contains(stderr, "waiting up to 5s") || strings.Contains(stderr, "--follow waits") {
			t.Errorf("stderr %q: want the wait said", stderr)
		}
		if q := f.jrnl.Queries[len(f.jrnl.Queries)-1]; !q.Follow || q.AfterCursor != "c2" || len(q.MessageIDs) == 0 {
			t.Errorf("follow query %+v: want to resume after the newest entry that matters, selecting by MESSAGE_ID", q)
		}
	})
	t.Run("a URL already pending is printed without waiting", func(t *testing.T) {
		f := newFixture(authURL(1, "c1", "alice@example.com", urlA))
		f.jrnl.Later = []journal.Entry{authURL(62, "c4", "bob@example.com", urlB)}
		f.opts.AuthURL, f.opts.Follow = true, true
		code, stdout, stderr := f.run(t)
		if code != 0 || stdout != urlA+"\n" || stderr != "" {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		for _, q := range f.jrnl.Queries {
			if q.Follow {
				t.Errorf("followed (%+v) although a URL was pending", q)
			}
		}
	})
	// --follow ends with one answer, so its JSON is the same one array
	// as without it (docs/logs-json.md says why not NDJSON).
	t.Run("JSON: one array, also after waiting", func(t *testing.T) {
		f := newFixture(starting(0, "c0"))
		f.jrnl.Later = []journal.Entry{authURL(62, "c4", "bob@example.com", urlB)}
		f.opts.AuthURL, f.opts.Follow, f.opts.Output = true, true, output.JSON
		f.opts.PythonEngine = func(string) bool { return false }
		code, stdout, stderr := f.run(t)
		var got []logs.PendingJSON
		if err := json.Unmarshal([]byte(stdout), &got); code != 0 || err != nil || len(got) != 1 || got[0].URL != urlB {
			t.Fatalf("exit %d, stdout %q (%v), stderr %q; want one array holding bob's URL", code, stdout, err, stderr)
		}
	})
	t.Run("timeout: exit 8", func(t *testing.T) {
		f := newFixture(authURL(1, "c1", "alice@example.com", urlA), succeeded(2, "c2", "alice@example.com"))
		f.opts.AuthURL, f.opts.Follow = true, true
		f.opts.Timeout, f.opts.TimeoutSet = 50*time.Millisecond, true
		code, stdout, stderr := f.run(t)
		if code != exitcode.Timeout || stdout != "" || !strings.Contains(stderr, "no authorisation URL appeared") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
	})
}

func TestEntries(t *testing.T) {
	hist := []journal.Entry{
		servicetest.Entry(at(1), "c1", "listening on 127.0.0.1:2993", "MESSAGE_ID="+events.Lifecycle, "ORBIT_STATE=listening"),
		servicetest.Entry(at(2), "c2", "line one\nline two"),
	}
	t.Run("text", func(t *testing.T) {
		f := newFixture(hist...)
		code, stdout, _ := f.run(t)
		want := "2026-01-02 08:01:00 orbit[4242]: listening on 127.0.0.1:2993\n2026-01-02 08:02:00 orbit[4242]: line one\n    line two\n"
		if code != 0 || stdout != want {
			t.Errorf("exit %d, stdout:\n%q\nwant\n%q", code, stdout, want)
		}
		if q := f.jrnl.Queries[0]; q.Lines != logs.DefaultLines || q.Follow || !slices.Contains(q.Fields, "MESSAGE") {
			t.Errorf("query %+v: want the newest lines, only the fields a line shows", q)
		}
	})
	t.Run("json is one object per line", func(t *testing.T) {
		f := newFixture(hist...)
		f.opts.Output = output.JSON
		_, stdout, _ := f.run(t)
		lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
		if len(lines) != 2 {
			t.Fatalf("%d lines:\n%s", len(lines), stdout)
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
			t.Fatal(err)
		}
		if q := f.jrnl.Queries[0]; len(q.Fields) != 0 {
			t.Errorf("query %+v: JSON shows every ORBIT_ field, so it needs every field", q)
		}
		want := map[string]any{"time": "2026-01-02T08:01:00Z", "unit": service.DefaultUnit, "identifier": "orbit",
			"pid": float64(4242), "priority": float64(6), "message_id": events.Lifecycle,
			"message": "listening on 127.0.0.1:2993", "orbit": map[string]any{"state": "listening"}, "cursor": "c1"}
		if fmt.Sprint(e) != fmt.Sprint(want) {
			t.Errorf("entry %v\nwant  %v", e, want)
		}
	})
	t.Run("since and lines go to the query", func(t *testing.T) {
		f := newFixture(hist...)
		f.opts.Since = "90s"
		f.opts.Lines, f.opts.LinesSet = 0, true
		f.run(t)
		if q := f.jrnl.Queries[0]; !q.Since.Equal(at(60).Add(-90*time.Second)) || q.Lines != 0 {
			t.Errorf("query %+v", q)
		}
	})
	t.Run("follow stops quietly at --timeout", func(t *testing.T) {
		f := newFixture(hist...)
		f.jrnl.Later = []journal.Entry{servicetest.Entry(at(61), "c3", "new")}
		f.opts.Follow, f.opts.Timeout = true, 100*time.Millisecond
		code, stdout, _ := f.run(t)
		if code != 0 || !strings.HasSuffix(stdout, "orbit[4242]: new\n") {
			t.Errorf("exit %d, stdout %q", code, stdout)
		}
		if q := f.jrnl.Queries[0]; q.Lines != 10 || !q.Follow {
			t.Errorf("follow query %+v: want journalctl -f's 10 lines of context", q)
		}
	})
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(f *fixture)
		code   exitcode.Code
		stderr string
	}{
		{"no systemd", func(f *fixture) { f.opts.Booted = func() error { return servicetest.ErrNoSystemd } },
			exitcode.NoSystemd, "orbit email-oauth2-proxy serve --config"},
		{"no journalctl", func(f *fixture) {
			f.jrnl.Err = fmt.Errorf("%w: journalctl is needed to read the journal", journal.ErrNoJournalctl)
		}, exitcode.NoSystemd, "journalctl not found"},
		// journalctl's own message and command line are no use to an
		// administrator who forgot sudo; before, this was exit 1 with both.
		{"not allowed to read the journal", func(f *fixture) {
			f.jrnl.Err = fmt.Errorf("journalctl --output=json --unit=x failed: No journal files were opened due to insufficient permissions.: %w", journal.ErrDenied)
		}, exitcode.Permission, "cannot read the journal of email-oauth2-proxy.service: permission denied\nRun as root (sudo orbit email-oauth2-proxy logs), or as a member of the systemd-journal group."},
		{"not allowed, --auth-url", func(f *fixture) {
			f.opts.AuthURL = true
			f.jrnl.Err = fmt.Errorf("journalctl failed: %w", journal.ErrDenied)
		}, exitcode.Permission, "Run as root (sudo orbit email-oauth2-proxy logs)"},
		{"bad --since", func(f *fixture) { f.opts.Since = "last tuesday" }, exitcode.Usage, "is not a time"},
		{"negative --lines", func(f *fixture) { f.opts.Lines = -1 }, exitcode.Usage, "--lines"},
		{"timer as --unit", func(f *fixture) { f.opts.Unit = "proxy.timer" }, exitcode.Usage, "ending in .service"},
		{"--timeout without --follow", func(f *fixture) { f.opts.Timeout, f.opts.TimeoutSet = time.Minute, true }, exitcode.Usage, "only applies with --follow"},
		// A typo is reported as such on a machine without systemd too.
		{"bad --since without systemd", func(f *fixture) {
			f.opts.Since = "last tuesday"
			f.opts.Booted = func() error { return servicetest.ErrNoSystemd }
		}, exitcode.Usage, "is not a time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture()
			tt.setup(f)
			code, _, stderr := f.run(t)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("exit %d (want %d), stderr %q (want %q)", code, tt.code, stderr, tt.stderr)
			}
		})
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 3, 4, 15, 30, 0, 0, time.UTC)
	tests := map[string]time.Time{
		"30m":                  now.Add(-30 * time.Minute),
		"2h":                   now.Add(-2 * time.Hour),
		"1d":                   now.Add(-24 * time.Hour),
		"today":                time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC),
		"yesterday":            time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC),
		"2026-03-01":           time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
		"2026-03-01 10:11:12":  time.Date(2026, 3, 1, 10, 11, 12, 0, time.UTC),
		"2026-03-01T10:11:12Z": time.Date(2026, 3, 1, 10, 11, 12, 0, time.UTC),
	}
	for in, want := range tests {
		got, err := logs.ParseSince(in, now, time.UTC)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := logs.ParseSince("soon", now, time.UTC); err == nil {
		t.Error("ParseSince(soon) succeeded")
	}
}
