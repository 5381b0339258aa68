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
// own lines about it).
func Tail(ctx context.Context, r JournalReader, unit string, n int, since time.Time) ([]journal.Entry, error) {
	read := func(q journal.Query) ([]journal.Entry, error) {
		var out []journal.Entry
		for e, err := range r.Entries(ctx, q) {
			if err != nil {
				return out, err
			}
			out = append(out, e)
		}
		return out, nil
	}
	q := journal.Query{Units: []string{unit}, Lines: n}
	if !since.IsZero() {
		q.Since = since
		got, err := read(q)
		if err != nil || len(got) > 0 {
			return got, err
		}
		q.Since = time.Time{}
	}
	return read(q)
}

// printTail writes the unit's last journal lines to w, for a failed start.
// Journal trouble is reported in place of the lines, never instead of the
// failure itself.
func printTail(ctx context.Context, w io.Writer, r JournalReader, unit string, since time.Time, loc *time.Location) {
	if r == nil {
		return
	}
	// The job's own context may be what ran out; the journal gets its own.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	entries, err := Tail(ctx, r, unit, FailureLines, since)
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
