package authurl

import (
	"context"
	"errors"
	"iter"
	"maps"
	"slices"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/journal"
)

// UnitStarting is systemd's MESSAGE_ID for "Starting <unit>..." (and the
// job that restarts it): a new engine process, which knows nothing of the
// URLs its predecessor handed out, so those are void from here on.
const UnitStarting = "7d4958e842da4a758f6c1cdc7b36dcc5"

// Source reads the journal; *journal.Reader is one.
type Source interface {
	Entries(ctx context.Context, q journal.Query) iter.Seq2[journal.Entry, error]
}

// Options say whose journal to read and how.
type Options struct {
	// Unit is the proxy's systemd unit.
	Unit string
	// Since ignores entries older than this; zero means no bound.
	Since time.Time
	// PythonLines reads the unit's plain lines too, for the Python proxy,
	// which writes no structured entries. journalctl then scans (but
	// sends only the matching lines of) everything the unit logged since
	// the engine started, so it is for when the unit does not (or may not)
	// run orbit.
	PythonLines bool
}

var (
	issuedIDs = []string{events.AuthURL, events.DeviceCode}
	closerIDs = []string{events.AuthSucceeded, events.AuthFailed, events.Login}
	// fields are all that the tracker looks at (MESSAGE for structured
	// entries that lack a field, and for the Python proxy's lines).
	fields = []string{"MESSAGE_ID", "MESSAGE", events.Prefix + events.FieldAccount,
		events.Prefix + events.FieldAuthURL, events.Prefix + events.FieldUserCode}
)

// perAccountQueries is up to how many accounts with a URL each gets its
// own read of closing events; beyond, one read serves them all. A variable
// so that tests cover both ways.
var perAccountQueries = 16

// maxAccountMatches bounds the ORBIT_ACCOUNT matches of one journalctl
// command line; with more candidates the closing events of every account
// are read instead.
const maxAccountMatches = 256

// Watch is the state of the unit's authorisations after Find, from which
// Follow goes on.
type Watch struct {
	opts    Options
	tracker *Tracker
	// cursor is where Follow resumes: the newest entry that Follow's query
	// matches as of before Find read anything ("" when there is none).
	cursor string
	// since bounds Follow when there is no cursor.
	since time.Time
}

// Pending is what is pending now, ordered by account.
func (w *Watch) Pending() []Pending { return w.tracker.Pending() }

// Find reads the unit's journal for the authorisations pending now.
//
// It reads only what decides the answer, newest first: this engine's URL
// entries back to the last engine start (and with PythonLines the Python
// proxy's matching lines since then, selected by journalctl --grep), then
// for each account with a URL its newest structured success, failure or
// login since that URL. Its cost follows the number of URLs and of those
// accounts' recent events, not the size of the journal.
func Find(ctx context.Context, src Source, o Options) (*Watch, error) {
	w := &Watch{opts: o, tracker: NewTracker(), since: o.Since}
	unit := []string{o.Unit}

	// The resume point comes first, so that whatever is logged while Find
	// reads is seen again by Follow rather than lost (the tracker does not
	// mind seeing an entry twice). Follow for the Python proxy reads every
	// new entry: its lines cannot be selected by field.
	rq := journal.Query{Units: unit, MessageIDs: watchIDs(), Since: o.Since, Reverse: true, Lines: 1}
	if o.PythonLines {
		rq.MessageIDs = nil
	}
	newest, err := first(ctx, src, rq)
	if err != nil {
		return nil, err
	}
	w.cursor = newest.Cursor

	// Newest first, so the first URL seen per account is its newest, and
	// the engine's start ends the read.
	issued := map[string]authEvent{}
	closed := map[string]time.Time{}
	var start journal.Entry
	q := journal.Query{Units: unit, MessageIDs: append([]string{UnitStarting}, issuedIDs...), Since: o.Since, Reverse: true, Fields: fields}
	for e, err := range src.Entries(ctx, q) {
		if err != nil {
			return nil, err
		}
		if e.MessageID == UnitStarting {
			start = e
			break
		}
		if ev, ok := classify(e); ok && ev.kind == evIssued {
			if _, seen := issued[ev.account]; !seen {
				issued[ev.account] = ev
			}
		}
	}
	if o.PythonLines {
		if err := pythonEvents(ctx, src, o, start, issued, closed); err != nil {
			return nil, err
		}
	}
	if len(issued) == 0 {
		return w, nil
	}
	order := slices.Sorted(maps.Keys(issued))

	if len(issued) <= perAccountQueries {
		// One newest-first read per account, bounded by its own URL: each
		// stops at its first entry, so an account that logs in all day
		// costs no more than one that never does.
		for _, a := range order {
			q := journal.Query{Units: unit, MessageIDs: closerIDs, Since: issued[a].at, Reverse: true, Lines: 1, Fields: fields,
				Matches: []string{events.Prefix + events.FieldAccount + "=" + a}}
			e, err := first(ctx, src, q)
			if err != nil {
				return nil, err
			}
			if ev, ok := classify(e); ok && ev.kind == evClosed && ev.account == a {
				closeAt(closed, a, ev.at)
			}
		}
	} else if err := closeMany(ctx, src, unit, issued, order, closed); err != nil {
		return nil, err
	}
	for a, c := range closed {
		w.tracker.closeAt(a, c)
	}
	for a, ev := range issued {
		if c, ok := closed[a]; ok && !ev.at.After(c) {
			continue // closed at or after its newest URL
		}
		w.tracker.pending[a] = Pending{Account: a, URL: ev.url, UserCode: ev.userCode, Time: ev.at, Structured: ev.structured}
	}
	return w, nil
}

func closeAt(closed map[string]time.Time, account string, at time.Time) {
	if c, ok := closed[account]; !ok || at.After(c) {
		closed[account] = at
	}
}

// closeMany finds the newest structured closing event of many accounts
// with one newest-first read since the oldest of their URLs, which stops
// once every account has one.
func closeMany(ctx context.Context, src Source, unit []string, issued map[string]authEvent, order []string, closed map[string]time.Time) error {
	oldest := issued[order[0]].at
	for _, ev := range issued {
		if ev.at.Before(oldest) {
			oldest = ev.at
		}
	}
	q := journal.Query{Units: unit, MessageIDs: closerIDs, Since: oldest, Reverse: true, Fields: fields}
	if len(issued) <= maxAccountMatches {
		for _, a := range order {
			q.Matches = append(q.Matches, events.Prefix+events.FieldAccount+"="+a)
		}
	}
	decided := map[string]bool{}
	for e, err := range src.Entries(ctx, q) {
		if err != nil {
			return err
		}
		ev, ok := classify(e)
		if !ok || ev.kind != evClosed || decided[ev.account] {
			continue
		}
		if _, ok := issued[ev.account]; !ok {
			continue
		}
		decided[ev.account] = true
		closeAt(closed, ev.account, ev.at)
		if len(decided) == len(order) {
			break
		}
	}
	return nil
}

// PythonPattern matches the Python proxy's lines that the tracker reads
// (journalctl --grep), so that journalctl sends only those.
const PythonPattern = `Please visit the following URL to authenticate account|\[ Successfully authenticated|Authorisation result error for|Local server auth mode`

// pythonEvents adds what the Python proxy's lines since the engine start
// say: the newest URL per account (by the time the line was written) and
// the latest success or failure.
func pythonEvents(ctx context.Context, src Source, o Options, start journal.Entry, issued map[string]authEvent, closed map[string]time.Time) error {
	q := journal.Query{Units: []string{o.Unit}, Since: o.Since, Fields: fields, Grep: PythonPattern}
	if start.Cursor != "" {
		// journalctl takes either --since or a cursor; the start is
		// within the window (the read that found it was bounded by it).
		q.Since, q.AfterCursor = time.Time{}, start.Cursor
	}
	lines, err := collect(ctx, src, q)
	if errors.Is(err, journal.ErrNoGrep) {
		// Everything, then; classify skips what does not concern it.
		q.Grep = ""
		lines, err = collect(ctx, src, q)
	}
	if err != nil {
		return err
	}
	for _, e := range lines {
		if e.MessageID != "" {
			continue // structured entries are read by MESSAGE_ID
		}
		ev, ok := classify(e)
		switch {
		case !ok:
		case ev.kind == evIssued:
			if cur, seen := issued[ev.account]; !seen || !ev.at.Before(cur.at) {
				issued[ev.account] = ev
			}
		case ev.kind == evClosed:
			closeAt(closed, ev.account, ev.at)
		}
	}
	return nil
}

func collect(ctx context.Context, src Source, q journal.Query) ([]journal.Entry, error) {
	var out []journal.Entry
	for e, err := range src.Entries(ctx, q) {
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Follow reads what the unit logs from where Find stopped and calls changed
// with the pending set whenever it changes, until changed returns false,
// ctx ends (its error is returned) or the journal ends (nil).
func (w *Watch) Follow(ctx context.Context, src Source, changed func([]Pending) bool) error {
	q := journal.Query{Units: []string{w.opts.Unit}, Follow: true, AfterCursor: w.cursor, Fields: fields}
	if w.cursor == "" {
		q.Since = w.since
	}
	if !w.opts.PythonLines {
		q.MessageIDs = watchIDs()
	}
	for e, err := range src.Entries(ctx, q) {
		if err != nil {
			return err
		}
		if w.observe(e) && !changed(w.tracker.Pending()) {
			return nil
		}
	}
	return ctx.Err()
}

// observe feeds one entry in journal order; an engine start forgets
// everything before it.
func (w *Watch) observe(e journal.Entry) bool {
	if e.MessageID == UnitStarting {
		changed := len(w.tracker.pending) > 0
		w.tracker = NewTracker()
		return changed
	}
	return w.tracker.Observe(e)
}

// watchIDs are the MESSAGE_IDs that can change the pending set.
func watchIDs() []string {
	ids := append([]string{UnitStarting}, issuedIDs...)
	return append(ids, closerIDs...)
}

// first is the first entry q yields; a zero Entry when there is none.
func first(ctx context.Context, src Source, q journal.Query) (journal.Entry, error) {
	for e, err := range src.Entries(ctx, q) {
		return e, err
	}
	return journal.Entry{}, nil
}
