package authurl

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/journal"
	"github.com/senhasegura/orbit/pkg/journal/journaltest"
)

const unit = "email-oauth2-proxy.service"

var t0 = time.Date(2025, 6, 7, 10, 0, 0, 0, time.Local)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

// structured builds an entry as this engine's journal handler writes it.
func structured(sec int, id, account string, kv ...string) journal.Entry {
	f := map[string]string{"MESSAGE_ID": id, "ORBIT_ACCOUNT": account}
	for i := 0; i+1 < len(kv); i += 2 {
		f[kv[i]] = kv[i+1]
	}
	return journal.Entry{Time: at(sec), MessageID: id, Fields: f, Message: "structured " + id}
}

func urlEvent(sec int, account, url string) journal.Entry {
	e := structured(sec, events.AuthURL, account, "ORBIT_AUTH_URL", url)
	e.Message = fmt.Sprintf(events.AuthURLText, account, url)
	return e
}

// plain builds an entry holding a line of the Python proxy; stdout lines
// carry its date prefix, syslog lines its application name.
func plain(sec int, msg string) journal.Entry {
	return journal.Entry{Time: at(sec), Message: msg, Fields: map[string]string{"MESSAGE": msg}}
}

func stdoutLine(written, received int, msg string) journal.Entry {
	return plain(received, at(written).Format("2006-01-02 15:04:05")+": "+msg)
}

func syslogLine(sec int, msg string) journal.Entry {
	return plain(sec, "Email OAuth 2.0 Proxy: "+msg)
}

func visit(account, url string) string {
	return fmt.Sprintf("Please visit the following URL to authenticate account %s: %s", account, url)
}

func success(account string) string {
	return fmt.Sprintf("IMAP (127.0.0.1:2993; %s) [ Successfully authenticated IMAP connection - releasing session ]", account)
}

type want struct {
	account, url, code string
	sec                int
	structured         bool
}

func TestPendingURLs(t *testing.T) {
	const (
		a = "a@example.com"
		b = "b@example.com"
	)
	tests := []struct {
		name    string
		entries []journal.Entry
		want    []want
	}{
		{"nothing", nil, nil},
		{"one structured URL", []journal.Entry{urlEvent(1, a, "https://u/1")}, []want{{a, "https://u/1", "", 1, true}}},
		{"newest URL per account wins", []journal.Entry{
			urlEvent(1, a, "https://u/1"), urlEvent(2, b, "https://u/b"), urlEvent(3, a, "https://u/2"),
		}, []want{{a, "https://u/2", "", 3, true}, {b, "https://u/b", "", 2, true}}},
		{"success clears", []journal.Entry{
			urlEvent(1, a, "https://u/1"), urlEvent(2, b, "https://u/b"), structured(5, events.AuthSucceeded, a),
		}, []want{{b, "https://u/b", "", 2, true}}},
		{"a new URL after success is pending again", []journal.Entry{
			urlEvent(1, a, "https://u/1"), structured(5, events.AuthSucceeded, a), urlEvent(9, a, "https://u/3"),
		}, []want{{a, "https://u/3", "", 9, true}}},
		{"failure and login clear too", []journal.Entry{
			urlEvent(1, a, "https://u/1"), urlEvent(1, b, "https://u/b"),
			structured(2, events.AuthFailed, a, "ORBIT_REASON", "access_denied"),
			structured(3, events.Login, b, "ORBIT_PROTOCOL", "IMAP"),
		}, nil},
		{"success of another account does not clear", []journal.Entry{
			urlEvent(1, a, "https://u/1"), structured(2, events.AuthSucceeded, b),
		}, []want{{a, "https://u/1", "", 1, true}}},
		{"device code", []journal.Entry{
			structured(1, events.DeviceCode, a, "ORBIT_AUTH_URL", "https://microsoft.com/devicelogin", "ORBIT_USER_CODE", "ABCD-1234"),
		}, []want{{a, "https://microsoft.com/devicelogin", "ABCD-1234", 1, true}}},
		{"structured entry without fields falls back to its text", []journal.Entry{
			{Time: at(1), MessageID: events.AuthURL, Message: visit(a, "https://u/t"), Fields: map[string]string{}},
		}, []want{{a, "https://u/t", "", 1, false}}},
		{"python: stdout and syslog copies of one line", []journal.Entry{
			syslogLine(1, "Authorisation request received for "+a+" (local server auth mode)"),
			syslogLine(1, visit(a, "https://u/py")),
			stdoutLine(1, 1, visit(a, "https://u/py")),
		}, []want{{a, "https://u/py", "", 1, false}}},
		{"python: bare line without prefix", []journal.Entry{plain(4, visit(a, "https://u/bare"))}, []want{{a, "https://u/bare", "", 4, false}}},
		{"python: success line clears", []journal.Entry{
			syslogLine(1, visit(a, "https://u/py")), stdoutLine(1, 1, visit(a, "https://u/py")),
			syslogLine(30, success(a)),
		}, nil},
		{"python: SMTP and POP success lines clear too", []journal.Entry{
			plain(1, visit(a, "https://u/1")), plain(1, visit(b, "https://u/2")),
			plain(5, "SMTP (127.0.0.1:2465; "+a+") [ Successfully authenticated SMTP connection - releasing session ]"),
			plain(5, "POP (127.0.0.1:2995; "+b+") [ Successfully authenticated POP connection - releasing session ]"),
		}, nil},
		{"python: buffered stdout copy arriving after the success stays cleared", []journal.Entry{
			syslogLine(1, visit(a, "https://u/py")),
			syslogLine(30, success(a)),
			stdoutLine(1, 60, visit(a, "https://u/py")), // block-buffered stdout flushed late
		}, nil},
		{"python: success line without account clears nothing", []journal.Entry{
			plain(1, visit(a, "https://u/py")),
			plain(5, "IMAP (127.0.0.1:2993) [ Successfully authenticated IMAP connection - removing proxy ]"),
		}, []want{{a, "https://u/py", "", 1, false}}},
		{"python: aborted authorisation retires the URL", []journal.Entry{
			plain(1, visit(a, "https://u/1")), plain(2, visit(b, "https://u/2")),
			plain(9, "Authorisation result error for "+a+" - aborting login. access_denied"),
			plain(9, "Local server auth mode (127.0.0.1:8080): request failed - if this error reoccurs, please check `redirect_uri` for "+b+" is not specified as `https` mistakenly. See the sample configuration file for documentation"),
		}, nil},
		{"python: date prefix in the future is not trusted", []journal.Entry{
			stdoutLine(100, 5, visit(a, "https://u/skew")),
		}, []want{{a, "https://u/skew", "", 5, false}}},
		{"mixed engines: python URL then structured success", []journal.Entry{
			stdoutLine(1, 1, visit(a, "https://u/py")), structured(3, events.AuthSucceeded, a),
		}, nil},
		{"unrelated lines are ignored", []journal.Entry{
			plain(1, "listening"), structured(2, events.Lifecycle, "", "ORBIT_STATE", "started"),
			plain(3, "Please authenticate later"),
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PendingURLs(tt.entries)
			var gotW []want
			for _, p := range got {
				gotW = append(gotW, want{p.Account, p.URL, p.UserCode, int(p.Time.Sub(t0) / time.Second), p.Structured})
			}
			if !slices.Equal(gotW, tt.want) {
				t.Errorf("pending:\n got %+v\nwant %+v", gotW, tt.want)
			}
		})
	}
}

func TestTrackerReportsChanges(t *testing.T) {
	tr := NewTracker()
	steps := []struct {
		e       journal.Entry
		changed bool
	}{
		{plain(1, "noise"), false},
		{urlEvent(1, "a@x", "https://u/1"), true},
		{urlEvent(1, "a@x", "https://u/1"), false}, // duplicate
		{urlEvent(2, "a@x", "https://u/2"), true},
		{structured(3, events.AuthSucceeded, "a@x"), true},
		{structured(4, events.AuthSucceeded, "a@x"), false},
	}
	for i, s := range steps {
		if got := tr.Observe(s.e); got != s.changed {
			t.Errorf("step %d: Observe = %v, want %v", i, got, s.changed)
		}
	}
}

// TestPendingURLsFromJournalFile runs the whole path a provisioning
// script uses: a real journal file, the unit's entries, the pending URLs.
func TestPendingURLsFromJournalFile(t *testing.T) {
	const a, b = "a@example.com", "b@example.com"
	ts := func(sec int) string { return fmt.Sprint(at(sec).UnixMicro()) }
	path := journaltest.Write(t, filepath.Join(t.TempDir(), "auth.journal"), 0,
		// Python proxy: syslog copy (no identifier) and late stdout copy.
		journaltest.Rec{{"__REALTIME_TIMESTAMP", ts(1)}, {"_SYSTEMD_UNIT", unit}, {"_TRANSPORT", "syslog"}, {"MESSAGE", "Email OAuth 2.0 Proxy: " + visit(a, "https://login.example/a?p=1")}},
		journaltest.Rec{{"__REALTIME_TIMESTAMP", ts(2)}, {"_SYSTEMD_UNIT", unit}, {"_TRANSPORT", "syslog"}, {"MESSAGE", "Email OAuth 2.0 Proxy: " + visit(b, "https://login.example/b?p=1")}},
		journaltest.Rec{{"__REALTIME_TIMESTAMP", ts(20)}, {"_SYSTEMD_UNIT", unit}, {"_TRANSPORT", "syslog"}, {"MESSAGE", "Email OAuth 2.0 Proxy: " + success(a)}},
		journaltest.Rec{{"__REALTIME_TIMESTAMP", ts(40)}, {"_SYSTEMD_UNIT", unit}, {"_TRANSPORT", "stdout"}, {"MESSAGE", at(1).Format("2006-01-02 15:04:05") + ": " + visit(a, "https://login.example/a?p=1")}},
		// Another unit's URL must not leak in.
		journaltest.Rec{{"__REALTIME_TIMESTAMP", ts(41)}, {"_SYSTEMD_UNIT", "other.service"}, {"MESSAGE_ID", events.AuthURL}, {"ORBIT_ACCOUNT", "c@example.com"}, {"ORBIT_AUTH_URL", "https://login.example/c"}, {"MESSAGE", "c"}},
		// This engine: b gets a newer structured URL.
		journaltest.Rec{{"__REALTIME_TIMESTAMP", ts(50)}, {"_SYSTEMD_UNIT", unit}, {"_TRANSPORT", "journal"}, {"MESSAGE_ID", events.AuthURL}, {"ORBIT_ACCOUNT", b}, {"ORBIT_AUTH_URL", "https://login.example/b?p=2"}, {"MESSAGE", visit(b, "https://login.example/b?p=2")}},
	)
	entries, err := (&journal.Reader{Args: []string{"--file=" + path}}).Collect(context.Background(), journal.Query{Units: []string{unit}})
	if err != nil {
		t.Fatal(err)
	}
	got := PendingURLs(entries)
	if len(got) != 1 || got[0].Account != b || got[0].URL != "https://login.example/b?p=2" || !got[0].Structured {
		t.Errorf("pending = %+v, want only %s's structured URL", got, b)
	}
}

func BenchmarkTracker(b *testing.B) {
	entries := make([]journal.Entry, 0, 1000)
	for i := range 1000 {
		switch i % 10 {
		case 0:
			entries = append(entries, stdoutLine(i, i, visit(fmt.Sprintf("u%d@x", i%7), "https://u/x")))
		case 5:
			entries = append(entries, structured(i, events.AuthSucceeded, fmt.Sprintf("u%d@x", i%7)))
		default:
			entries = append(entries, plain(i, "IMAP (127.0.0.1:2993) --> [ Client connected ]"))
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		PendingURLs(entries)
	}
}
