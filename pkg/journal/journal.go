// Package journal reads the systemd journal through `journalctl -o json`, so
// that the orbit binary stays static (no cgo, no libsystemd). Queries carry
// journalctl matches on the unit and on MESSAGE_ID, so the journal's own
// indexes do the filtering instead of orbit scanning every entry.
package journal

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// ErrNoJournalctl means the journalctl binary is not installed or not on
// PATH; without it nothing can be read (orbit reads the journal only through
// journalctl, so that it needs no cgo and no libsystemd).
var ErrNoJournalctl = errors.New("journalctl not found")

// ErrDenied means journalctl could open no journal file for lack of
// permission: the user is neither root nor in the systemd-journal (or adm)
// group. It wraps fs.ErrPermission.
var ErrDenied = fmt.Errorf("not allowed to read the system journal: %w", fs.ErrPermission)

// ErrNoGrep means journalctl was built without pattern matching, so
// Query.Grep cannot be used; read without it and filter instead.
var ErrNoGrep = errors.New("journalctl cannot match patterns (built without PCRE)")

// Entry is one journal entry.
type Entry struct {
	// Time is when journald received the entry (__REALTIME_TIMESTAMP).
	Time time.Time
	// Cursor identifies the entry; Query.AfterCursor resumes after it.
	Cursor string
	// Unit is the systemd unit the entry belongs to: _SYSTEMD_UNIT for the
	// unit's own processes, else UNIT (systemd's messages about the unit,
	// such as "Started ..."), else USER_UNIT.
	Unit string
	// Identifier is SYSLOG_IDENTIFIER.
	Identifier string
	// Priority is the syslog priority 0 (emerg) .. 7 (debug); -1 when the
	// entry has none.
	Priority int
	// MessageID is MESSAGE_ID: 32 hex digits naming the kind of event.
	MessageID string
	// Message is MESSAGE; non-UTF-8 bytes are kept as they are.
	Message string
	// PID is _PID, 0 when absent.
	PID int
	// Fields holds every field of the entry, user and trusted (_PID,
	// _SYSTEMD_UNIT, ...) and address fields (__CURSOR, ...). A field that
	// occurs more than once holds its first value here; Multi has them all.
	Fields map[string]string
	// Multi holds, for fields that occur more than once, every value in
	// order. It is nil when no field repeats.
	Multi map[string][]string
}

// Field returns the named field's (first) value, "" when absent.
func (e Entry) Field(name string) string { return e.Fields[name] }

// Query selects entries. Different kinds of match are ANDed; several
// values of one kind are ORed, as journalctl does.
type Query struct {
	// Units restricts to these units (journalctl -u): the unit's processes
	// and systemd's own messages about it.
	Units []string
	// MessageIDs restricts to entries with one of these MESSAGE_IDs.
	MessageIDs []string
	// Matches are further FIELD=value matches, passed to journalctl as
	// they are.
	Matches []string
	// Since drops entries older than this; zero means no bound.
	Since time.Time
	// AfterCursor starts right after this entry, whether or not the entry
	// itself matches the query; "" means no bound. It is a cursor as
	// journalctl prints it (Entry.Cursor).
	AfterCursor string
	// Lines keeps only the newest N matching entries; 0 means all of them
	// (also when following, where journalctl alone would show 10).
	Lines int
	// Follow keeps reading new entries until the context ends.
	Follow bool
	// Reverse reads newest first (journalctl --reverse), so that a reader
	// looking for the latest of something stops early instead of reading
	// the whole history. With Lines it yields the newest N, newest first;
	// it cannot be combined with Follow or AfterCursor (journalctl would
	// walk backwards from the cursor).
	Reverse bool
	// Grep keeps only entries whose MESSAGE matches this PCRE pattern,
	// case-sensitively (journalctl --grep): journalctl then formats and
	// sends only those, which is most of its cost. A journalctl built
	// without PCRE fails the query with ErrNoGrep.
	Grep string
	// Fields, when set, restricts each entry to these fields
	// (journalctl --output-fields); __CURSOR and __REALTIME_TIMESTAMP
	// always come along. Reading only what is used makes journalctl's
	// output, and its parsing here, several times smaller.
	Fields []string
}

// Reader runs journalctl. The zero value reads the system journal with the
// journalctl found on PATH.
type Reader struct {
	// Journalctl is the binary; "" means "journalctl" looked up on PATH.
	Journalctl string
	// Args are added to every invocation, before the matches: for example
	// --file=PATH, --directory=DIR, --root=DIR or --namespace=NS.
	Args []string
}

// Command returns the argv that Entries runs for q.
func (r *Reader) Command(q Query) []string {
	bin := r.Journalctl
	if bin == "" {
		bin = "journalctl"
	}
	argv := []string{bin, "--output=json", "--all", "--no-pager", "--quiet"}
	argv = append(argv, r.Args...)
	for _, u := range q.Units {
		argv = append(argv, "--unit="+u)
	}
	if !q.Since.IsZero() {
		us := q.Since.UnixMicro()
		argv = append(argv, fmt.Sprintf("--since=@%d.%06d", us/1e6, us%1e6))
	}
	if q.AfterCursor != "" {
		// --cursor, not --after-cursor: journalctl 252's --after-cursor
		// steps twice from the cursor's place, assuming the first step
		// lands on the cursor's own entry; when that entry does not match
		// the query, the first entry that does is skipped (and a lone one
		// is not shown at all). --cursor starts at the first matching entry
		// at or after the cursor; Entries drops the cursor's own entry.
		argv = append(argv, "--cursor="+q.AfterCursor)
	}
	switch {
	case q.Lines > 0:
		argv = append(argv, "--lines="+strconv.Itoa(q.Lines))
	case q.Follow:
		argv = append(argv, "--lines=all")
	}
	if q.Follow {
		argv = append(argv, "--follow")
	}
	if q.Reverse {
		argv = append(argv, "--reverse")
	}
	if len(q.Fields) > 0 {
		argv = append(argv, "--output-fields="+strings.Join(q.Fields, ","))
	}
	if q.Grep != "" {
		argv = append(argv, "--case-sensitive=true", "--grep="+q.Grep)
	}
	for _, id := range q.MessageIDs {
		argv = append(argv, "MESSAGE_ID="+id)
	}
	return append(argv, q.Matches...)
}

// stderrLimit bounds how much of journalctl's complaints is kept for the
// error message.
const stderrLimit = 4096

// Entries runs journalctl for q and yields its entries in journal order.
// A line that does not parse yields an error and reading goes on; a failed
// journalctl yields a final error carrying its stderr. Breaking out of the
// loop, or ctx ending, kills journalctl; when ctx ends the last value is
// ctx's error, so a follow stopped by a timeout is told apart from the end
// of the journal.
func (r *Reader) Entries(ctx context.Context, q Query) iter.Seq2[Entry, error] {
	switch {
	case q.Lines > 0 && !q.Follow && !q.Reverse && q.AfterCursor == "" && !q.Since.IsZero():
		return r.newestSince(ctx, q)
	case q.Lines > 0 && !q.Follow && !q.Reverse && q.AfterCursor != "":
		return r.newestOfWindow(ctx, q)
	}
	return r.entries(ctx, q)
}

// newestSince yields the newest q.Lines entries since q.Since in journal
// order. journalctl given both --since and --lines shows the oldest N
// entries after --since, the opposite of what "the last N since then"
// means; read backwards from the end instead, which stops after N entries
// however long the window is.
func (r *Reader) newestSince(ctx context.Context, q Query) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		q.Reverse = true
		got := make([]Entry, 0, q.Lines)
		for e, err := range r.entries(ctx, q) {
			if err != nil {
				yield(e, err)
				return
			}
			got = append(got, e)
		}
		for i := len(got) - 1; i >= 0; i-- {
			if !yield(got[i], nil) {
				return
			}
		}
	}
}

// newestOfWindow keeps the newest q.Lines entries after a cursor, reading
// the window forwards: journalctl --reverse --after-cursor would walk
// backwards from the cursor instead.
func (r *Reader) newestOfWindow(ctx context.Context, q Query) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		n := q.Lines
		q.Lines = 0
		ring := make([]Entry, 0, n)
		for e, err := range r.entries(ctx, q) {
			if err != nil {
				yield(e, err)
				return
			}
			if len(ring) == n {
				copy(ring, ring[1:])
				ring = ring[:n-1]
			}
			ring = append(ring, e)
		}
		for _, e := range ring {
			if !yield(e, nil) {
				return
			}
		}
	}
}

func (r *Reader) entries(ctx context.Context, q Query) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		if err := validate(q); err != nil {
			yield(Entry{}, err)
			return
		}
		runCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		argv := r.Command(q)
		cmd := exec.CommandContext(runCtx, argv[0], argv[1:]...)
		// Killing journalctl closes its end of the pipe, but a grandchild
		// (there is none today) could hold it open; never wait forever.
		cmd.WaitDelay = 2 * time.Second
		stderr := &limitedBuffer{limit: stderrLimit}
		cmd.Stderr = stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			yield(Entry{}, fmt.Errorf("reading the journal: %w", err))
			return
		}
		if err := cmd.Start(); err != nil {
			if errors.Is(err, exec.ErrNotFound) {
				err = fmt.Errorf("%w: %s is needed to read the journal (install systemd, or set the journalctl path): %w", ErrNoJournalctl, argv[0], err)
			} else {
				err = fmt.Errorf("starting %s: %w", argv[0], err)
			}
			yield(Entry{}, err)
			return
		}
		stopped := false
		// journalctl --cursor yields the cursor's own entry first when it
		// matches the query (see Command); only the first entry can be it.
		dropCursor := q.AfterCursor
		br := bufio.NewReaderSize(stdout, 64<<10)
		for {
			line, rerr := br.ReadBytes('\n')
			if len(bytes.TrimSpace(line)) > 0 {
				e, perr := ParseEntry(line)
				if perr != nil {
					perr = fmt.Errorf("journalctl output: %w", perr)
				}
				skip := perr == nil && dropCursor != "" && e.Cursor == dropCursor
				dropCursor = ""
				if skip {
					if rerr != nil {
						break
					}
					continue
				}
				if !yield(e, perr) {
					stopped = true
					break
				}
			}
			if rerr != nil {
				break
			}
		}
		if stopped {
			cancel() // the consumer is gone: kill journalctl, do not drain it
		}
		werr := cmd.Wait()
		var exitErr *exec.ExitError
		if q.Grep != "" && errors.As(werr, &exitErr) && exitErr.ExitCode() == 1 && strings.TrimSpace(stderr.String()) == "" {
			werr = nil // journalctl --grep exits 1, silently, when nothing matched
		}
		switch {
		case stopped:
		case ctx.Err() != nil:
			yield(Entry{}, ctx.Err())
		case werr != nil:
			msg := strings.TrimSpace(stderr.String())
			if msg == "" {
				msg = "no message"
			}
			if q.Grep != "" && strings.Contains(msg, "pattern matching support") {
				werr = fmt.Errorf("%w: %w", ErrNoGrep, werr)
			}
			if strings.Contains(msg, "insufficient permissions") {
				werr = fmt.Errorf("%w: %w", ErrDenied, werr)
			}
			yield(Entry{}, fmt.Errorf("%s failed: %s: %w", strings.Join(argv, " "), msg, werr))
		}
	}
}

// Collect reads every entry of a query that ends (Follow is refused) into
// a slice. The first error ends it.
func (r *Reader) Collect(ctx context.Context, q Query) ([]Entry, error) {
	if q.Follow {
		return nil, errors.New("journal: Collect cannot follow; range over Entries instead")
	}
	var out []Entry
	for e, err := range r.Entries(ctx, q) {
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
	return out, nil
}

func validate(q Query) error {
	for _, m := range q.Matches {
		name, _, ok := strings.Cut(m, "=")
		if !ok || name == "" || strings.ToUpper(name) != name {
			return fmt.Errorf("journal: match %q must be FIELD=value with an upper-case field name", m)
		}
	}
	for _, id := range q.MessageIDs {
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
			return fmt.Errorf("journal: MESSAGE_ID %q is not 32 lower-case hex digits", id)
		}
	}
	for _, u := range q.Units {
		if u == "" || strings.HasPrefix(u, "-") {
			return fmt.Errorf("journal: unit name %q is not usable", u)
		}
	}
	if q.Lines < 0 {
		return fmt.Errorf("journal: Lines is %d, want 0 (all) or more", q.Lines)
	}
	if q.Reverse && (q.Follow || q.AfterCursor != "") {
		return errors.New("journal: Reverse cannot be combined with Follow or AfterCursor")
	}
	for _, f := range q.Fields {
		if f == "" || strings.ToUpper(f) != f || strings.ContainsAny(f, ", =") {
			return fmt.Errorf("journal: field name %q is not an upper-case journal field name", f)
		}
	}
	return nil
}

// ParseEntry decodes one line of `journalctl -o json`. Values may be
// strings, arrays of byte values (journalctl's form for data that is not
// printable UTF-8), null (data too large without --all), or arrays of those
// when a field occurs more than once.
func ParseEntry(line []byte) (Entry, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(line, &raw); err != nil {
		return Entry{}, fmt.Errorf("entry is not a JSON object: %w (line starts %q)", err, head(line))
	}
	e := Entry{Fields: make(map[string]string, len(raw)), Priority: -1}
	for name, v := range raw {
		vals, err := decodeValues(v)
		if err != nil {
			return Entry{}, fmt.Errorf("field %s: %w", name, err)
		}
		if len(vals) == 0 {
			continue
		}
		e.Fields[name] = vals[0]
		if len(vals) > 1 {
			if e.Multi == nil {
				e.Multi = map[string][]string{}
			}
			e.Multi[name] = vals
		}
	}
	f := e.Fields
	e.Cursor = f["__CURSOR"]
	e.Message = f["MESSAGE"]
	e.MessageID = f["MESSAGE_ID"]
	e.Identifier = f["SYSLOG_IDENTIFIER"]
	e.Unit = firstOf(f, "_SYSTEMD_UNIT", "UNIT", "USER_UNIT", "_SYSTEMD_USER_UNIT")
	if p, err := strconv.Atoi(f["PRIORITY"]); err == nil && p >= 0 && p <= 7 {
		e.Priority = p
	}
	if pid, err := strconv.Atoi(f["_PID"]); err == nil {
		e.PID = pid
	}
	if us, err := strconv.ParseInt(f["__REALTIME_TIMESTAMP"], 10, 64); err == nil {
		e.Time = time.UnixMicro(us)
	}
	return e, nil
}

// decodeValues returns a field's values: one for a plain field, several
// for a repeated one, none for null.
func decodeValues(v json.RawMessage) ([]string, error) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || bytes.Equal(v, []byte("null")) {
		return nil, nil
	}
	switch v[0] {
	case '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, err
		}
		return []string{s}, nil
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(v, &items); err != nil {
			return nil, err
		}
		if len(items) == 0 {
			return []string{""}, nil
		}
		// An array of numbers is one binary value; an array of anything
		// else is a repeated field.
		if b := bytes.TrimSpace(items[0]); len(b) > 0 && (b[0] >= '0' && b[0] <= '9') {
			return bytesValue(items)
		}
		var out []string
		for _, it := range items {
			vals, err := decodeValues(it)
			if err != nil {
				return nil, err
			}
			out = append(out, vals...)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unexpected JSON value %q", head(v))
}

func bytesValue(items []json.RawMessage) ([]string, error) {
	buf := make([]byte, 0, len(items))
	for _, it := range items {
		n, err := strconv.ParseUint(string(bytes.TrimSpace(it)), 10, 8)
		if err != nil {
			return nil, fmt.Errorf("byte array holds %q: %w", it, err)
		}
		buf = append(buf, byte(n))
	}
	return []string{string(buf)}, nil
}

func firstOf(f map[string]string, names ...string) string {
	for _, n := range names {
		if v := f[n]; v != "" {
			return v
		}
	}
	return ""
}

func head(b []byte) string {
	if len(b) > 60 {
		b = b[:60]
	}
	return strings.ToValidUTF8(string(b), string(utf8.RuneError))
}

// limitedBuffer keeps the first limit bytes written to it and discards the
// rest, so a chatty journalctl cannot grow memory without bound.
type limitedBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.limit - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var _ io.Writer = (*limitedBuffer)(nil)
