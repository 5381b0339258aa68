package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/senhasegura/orbit/pkg/journal"
)

// FormatEntry renders an entry as one line, like journalctl's short
// format: "2006-01-02 15:04:05 identifier[pid]: message". The year is
// there because appliances run for years and logs get pasted into tickets.
func FormatEntry(e journal.Entry, loc *time.Location) string {
	if loc == nil {
		loc = time.Local
	}
	var b strings.Builder
	if !e.Time.IsZero() {
		b.WriteString(e.Time.In(loc).Format("2006-01-02 15:04:05"))
		b.WriteByte(' ')
	}
	id := e.Identifier
	if id == "" {
		id = e.Unit
	}
	b.WriteString(id)
	if e.PID != 0 {
		fmt.Fprintf(&b, "[%d]", e.PID)
	}
	b.WriteString(": ")
	// One entry, one line: a multi-line message (a Python traceback) keeps
	// its lines but indented, so the next entry is still easy to spot.
	b.WriteString(strings.ReplaceAll(strings.TrimRight(e.Message, "\n"), "\n", "\n    "))
	return b.String()
}

// Tail reads the unit's newest n journal entries, at or after since when it
// is not zero (falling back to the newest n of all time when that window is
// empty, so that an engine that died before logging still shows systemd's
// own lines about it). Only n entries are read, whatever the window holds:
// the journal package reads a Since window backwards from its end.
func Tail(ctx context.Context, r JournalReader, unit string, n int, since time.Time) ([]journal.Entry, error) {
	read := func(q journal.Query) ([]journal.Entry, error) {
		q.Units, q.Lines, q.Fields = []string{unit}, n, tailFields
		out := make([]journal.Entry, 0, n)
		for e, err := range r.Entries(ctx, q) {
			if err != nil {
				return out, err
			}
			out = append(out, e)
		}
		return out, nil
	}
	if !since.IsZero() {
		got, err := read(journal.Query{Since: since})
		if err != nil || len(got) > 0 {
			return got, err
		}
	}
	return read(journal.Query{})
}

// tailFields are the journal fields FormatEntry and hasFailure read:
// asking journalctl for these alone keeps its output a fraction of an
// entry's full size.
var tailFields = []string{"MESSAGE", "MESSAGE_ID", "SYSLOG_IDENTIFIER", "_PID", "PRIORITY",
	"_SYSTEMD_UNIT", "UNIT", "USER_UNIT", "_SYSTEMD_USER_UNIT"}

// The catalog IDs of the lines systemd logs when a unit fails ("...: Failed
// with result 'exit-code'.") and when a start job fails ("Failed to start
// ..."): once one of them is in the journal, so is what the engine said
// before it died.
const (
	msgUnitFailureResult = "d9b373ed55a64feb8242e02dbe79a49c"
	msgStartJobFailed    = "be02cf6855d2428ba40df7e9d022f03d"
)

// FailureSettle bounds how long a failed start waits for journald to take
// in the unit's last lines: journald reads its sockets on its own time, and
// right after the job failed it may not have read even systemd's
// "Starting" line, let alone the engine's reason.
const FailureSettle = 2 * time.Second

// hasFailure reports whether entries hold systemd's word, at or after
// since, that the unit or its start job failed.
func hasFailure(entries []journal.Entry, since time.Time) bool {
	for _, e := range entries {
		if (e.MessageID == msgUnitFailureResult || e.MessageID == msgStartJobFailed) && !e.Time.Before(since) {
			return true
		}
	}
	return false
}

// PrintTail writes the unit's last journal lines to w, for a failed start.
// With settle, it first waits (up to FailureSettle) until systemd's failure
// line is in the journal, so the lines shown are the ones that explain the
// failure. Journal trouble is reported in place of the lines, never instead
// of the failure itself.
func PrintTail(ctx context.Context, w io.Writer, r JournalReader, unit string, since time.Time, settle bool, loc *time.Location) {
	if r == nil {
		return
	}
	// The job's own context may be what ran out; the journal gets its own.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	entries, err := Tail(ctx, r, unit, FailureLines, since)
	for deadline := time.Now().Add(FailureSettle); settle && err == nil && !hasFailure(entries, since) && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
		entries, err = Tail(ctx, r, unit, FailureLines, since)
	}
	if len(entries) > 0 {
		fmt.Fprintf(w, "Last %d journal lines of %s:\n", len(entries), unit)
		for _, e := range entries {
			fmt.Fprintf(w, "  %s\n", FormatEntry(e, loc))
		}
	}
	switch {
	case errors.Is(err, journal.ErrNoJournalctl):
		fmt.Fprintf(w, "(the unit's journal cannot be shown: %v)\n", err)
	case err != nil:
		fmt.Fprintf(w, "(reading the unit's journal failed: %v)\n", err)
	case len(entries) == 0:
		fmt.Fprintf(w, "(the journal holds no lines of %s)\n", unit)
	}
}

// FailureLines is how many of the unit's journal lines a failed start shows.
const FailureLines = 20
