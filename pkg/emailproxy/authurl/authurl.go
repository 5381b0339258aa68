// Package authurl finds the authorisation URLs that wait for someone to
// open them, in the proxy unit's journal: this engine's structured entries
// (pkg/emailproxy/events) and the Python proxy's plain lines alike. The
// journal reader itself (pkg/journal) knows nothing of e-mail.
package authurl

import (
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/journal"
)

// Pending is an interactive authorisation that waits for someone to
// open URL in a browser (or, for the device flow, to enter UserCode there).
type Pending struct {
	Account  string
	URL      string
	UserCode string // device flow only
	// Time is when the URL was issued: the entry's time, or for the Python
	// proxy's stdout lines the (earlier) time in their date prefix.
	Time time.Time
	// Structured is true for this engine's MESSAGE_ID entries and false for
	// lines recognised in the Python proxy's plain text.
	Structured bool
}

// Tracker folds journal entries, in journal order, into the set of
// pending authorisations: the newest URL per account, minus accounts whose
// authorisation succeeded, that logged in upstream, or whose authorisation
// failed (which retires the URL too) at or after the time that URL was
// issued. Feed it the whole history or a
// follow stream; it understands this engine's structured entries and the
// Python proxy's plain lines, with or without its date prefix, and does not
// mind each of those lines appearing twice (syslog and stdout).
type Tracker struct {
	pending map[string]Pending
	// closed is, per account, the time of the latest success or failure.
	closed map[string]time.Time
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker {
	return &Tracker{pending: map[string]Pending{}, closed: map[string]time.Time{}}
}

// Observe takes one entry and reports whether the pending set changed.
func (t *Tracker) Observe(e journal.Entry) bool {
	ev, ok := classify(e)
	if !ok {
		return false
	}
	switch ev.kind {
	case evIssued:
		if c, ok := t.closed[ev.account]; ok && !ev.at.After(c) {
			return false // a late copy of a URL that was already used
		}
		cur, ok := t.pending[ev.account]
		if ok && ev.at.Before(cur.Time) {
			return false
		}
		next := Pending{Account: ev.account, URL: ev.url, UserCode: ev.userCode, Time: ev.at, Structured: ev.structured}
		if ok && cur == next {
			return false
		}
		t.pending[ev.account] = next
		return true
	case evClosed:
		t.closeAt(ev.account, ev.at)
		if cur, ok := t.pending[ev.account]; ok && !cur.Time.After(ev.at) {
			delete(t.pending, ev.account)
			return true
		}
	}
	return false
}

// closeAt records a success or failure of account at that time.
func (t *Tracker) closeAt(account string, at time.Time) {
	if c, ok := t.closed[account]; !ok || at.After(c) {
		t.closed[account] = at
	}
}

// Pending returns the pending authorisations, ordered by account.
func (t *Tracker) Pending() []Pending {
	out := make([]Pending, 0, len(t.pending))
	for _, p := range t.pending {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Account < out[j].Account })
	return out
}

// PendingURLs is Tracker over a finished list of entries.
func PendingURLs(entries []journal.Entry) []Pending {
	t := NewTracker()
	for _, e := range entries {
		t.Observe(e)
	}
	return t.Pending()
}

type evKind int

const (
	evIssued evKind = iota + 1
	evClosed
)

type authEvent struct {
	kind       evKind
	account    string
	url        string
	userCode   string
	at         time.Time
	structured bool
}

// patterns are compiled on first use, not when the program starts: every
// orbit command links this package, and only logs needs them
// (BenchmarkStartup, GODEBUG=inittrace=1).
var patterns = sync.OnceValue(func() *linePatterns {
	return &linePatterns{
		// "Please visit the following URL to authenticate account <a>: <url>",
		// anywhere in the line: the Python proxy prints it after a date on
		// stdout and after "Email OAuth 2.0 Proxy: " on syslog.
		reVisit: regexp.MustCompile(`Please visit the following URL to authenticate account (\S+): (\S+)`),
		// The Python proxy's success line names the account after the local
		// address: "IMAP (127.0.0.1:2993; a@b.c) [ Successfully authenticated
		// IMAP connection - releasing session ]" (older versions say "removing
		// proxy"; without an account in the parentheses nothing can be cleared).
		reSuccess: regexp.MustCompile(`\(([^()]*)\)\s*\[ Successfully authenticated (?:IMAP|POP|SMTP) connection`),
		// Its failures that retire a URL: the redirect carried an error, or the
		// local server gave up waiting.
		reResultError: regexp.MustCompile(`Authorisation result error for (\S+) - aborting login`),
		reLocalFailed: regexp.MustCompile(`Local server auth mode \([^)]*\): request failed - .* for (\S+@\S+) is not specified`),
		// The date the Python proxy prints on stdout: "2024-05-06 07:08:09: ".
		reDatePrefix: regexp.MustCompile(`^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}): `),
	}
})

type linePatterns struct {
	reVisit, reSuccess, reResultError, reLocalFailed, reDatePrefix *regexp.Regexp
}

func classify(e journal.Entry) (authEvent, bool) {
	f := e.Fields
	account := f[events.Prefix+events.FieldAccount]
	switch e.MessageID {
	case events.AuthURL, events.DeviceCode:
		url := f[events.Prefix+events.FieldAuthURL]
		if account != "" && url != "" {
			return authEvent{kind: evIssued, account: account, url: url,
				userCode: f[events.Prefix+events.FieldUserCode], at: e.Time, structured: true}, true
		}
		// Missing fields: fall back to the text, which says the same.
	case events.AuthSucceeded, events.AuthFailed, events.Login:
		// A login upstream means the account has working tokens, so any
		// URL issued before it is moot, as after an explicit success.
		if account != "" {
			return authEvent{kind: evClosed, account: account, at: e.Time, structured: true}, true
		}
	}

	msg := e.Message
	if !strings.Contains(msg, "authenticat") && !strings.Contains(msg, "Authorisation") && !strings.Contains(msg, "Local server auth mode") {
		return authEvent{}, false // the common case, decided cheaply
	}
	at := lineTime(e)
	if m := patterns().reVisit.FindStringSubmatch(msg); m != nil {
		return authEvent{kind: evIssued, account: m[1], url: m[2], at: at}, true
	}
	if m := patterns().reSuccess.FindStringSubmatch(msg); m != nil {
		if a := accountIn(m[1]); a != "" {
			return authEvent{kind: evClosed, account: a, at: at}, true
		}
		return authEvent{}, false
	}
	if m := patterns().reResultError.FindStringSubmatch(msg); m != nil {
		return authEvent{kind: evClosed, account: m[1], at: at}, true
	}
	if m := patterns().reLocalFailed.FindStringSubmatch(msg); m != nil {
		return authEvent{kind: evClosed, account: m[1], at: at}, true
	}
	return authEvent{}, false
}

// accountIn picks the account out of "127.0.0.1:2993; a@b.c": the Python
// proxy's account names always contain "@".
func accountIn(paren string) string {
	parts := strings.Split(paren, ";")
	a := strings.TrimSpace(parts[len(parts)-1])
	if len(parts) < 2 || !strings.Contains(a, "@") {
		return ""
	}
	return a
}

// lineTime is when a plain line was written: the Python proxy's stdout is
// block-buffered when it is not a terminal, so its copy of a line can reach
// journald long after the syslog copy; the date it carries is the truth.
// It is local time with one-second precision, so it is never later than
// the entry's own time unless the clocks disagree, and then the entry wins.
func lineTime(e journal.Entry) time.Time {
	m := patterns().reDatePrefix.FindStringSubmatch(e.Message)
	if m == nil {
		return e.Time
	}
	t, err := time.ParseInLocation("2006-01-02 15:04:05", m[1], time.Local)
	if err != nil || (!e.Time.IsZero() && t.After(e.Time)) {
		return e.Time
	}
	return t
}
