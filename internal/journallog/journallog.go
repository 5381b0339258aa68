// Package journallog is orbit's log/slog handler. Under systemd it writes
// native journal entries, so every attribute becomes a field that
// `journalctl MESSAGE_ID=...` and pkg/journal can match exactly; elsewhere it
// writes one plain line per record to stderr.
//
// It exists to beat the Python proxy's logging, which writes each line both
// to syslog and, with a date prefix, to stdout, so that under journald every
// line appears twice. This handler picks exactly one destination per
// process, and drops the date when journald already stamps the line.
package journallog

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/coreos/go-systemd/v22/journal"
)

// MessageIDKey is the attribute key whose value becomes the entry's
// MESSAGE_ID (the application's catalogue of IDs, such as
// pkg/emailproxy/events, uses it). Pass it with
// slog.String(journallog.MessageIDKey, id).
const MessageIDKey = "message_id"

// FieldPrefix goes in front of every attribute's journal field name, so
// that entries do not collide with other programs' fields (ACCOUNT becomes
// ORBIT_ACCOUNT).
const FieldPrefix = "ORBIT_"

// DefaultIdentifier is the SYSLOG_IDENTIFIER of every native entry, so
// `journalctl -t orbit` finds them whatever the unit is called.
const DefaultIdentifier = "orbit"

// Mode is where records go.
type Mode int

const (
	// ModeAuto picks ModeJournal when stderr is connected to journald and its
	// native socket answers, ModePlain when stderr is a journald stream
	// without a usable socket, and ModeTerminal otherwise.
	ModeAuto Mode = iota
	// ModeJournal sends native entries over the journal socket.
	ModeJournal
	// ModePlain writes "LEVEL message key=value" lines: journald adds the
	// time and identifier itself, so a date here would only be noise.
	ModePlain
	// ModeTerminal writes plain lines with a leading timestamp.
	ModeTerminal
)

func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeJournal:
		return "journal"
	case ModePlain:
		return "plain"
	case ModeTerminal:
		return "terminal"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// Detect reports the mode ModeAuto resolves to in this process.
func Detect() Mode {
	stream, err := journal.StderrIsJournalStream()
	if err != nil || !stream {
		// A terminal, a pipe or a file: whoever reads it wants the time.
		return ModeTerminal
	}
	if journal.Enabled() {
		return ModeJournal
	}
	return ModePlain
}

// SendFunc delivers one native journal entry. journal.Send is the real one.
type SendFunc func(message string, priority journal.Priority, fields map[string]string) error

// Options configure a Handler. The zero value is usable.
type Options struct {
	// Level is the minimum level handled; nil means slog.LevelInfo.
	Level slog.Leveler
	// Mode chooses the destination; ModeAuto (zero) detects it once, in New.
	Mode Mode
	// Identifier is the SYSLOG_IDENTIFIER; empty means DefaultIdentifier.
	Identifier string
	// Writer receives plain lines (ModePlain, ModeTerminal, and the fallback
	// when a native send fails); nil means os.Stderr.
	Writer io.Writer
	// Send replaces journal.Send; tests use it to see the exact fields.
	Send SendFunc
	// AddSource adds CODE_FILE, CODE_LINE and CODE_FUNC to native entries.
	AddSource bool
}

// Handler implements slog.Handler. It is safe for concurrent use; handlers
// derived with WithAttrs and WithGroup share the writer's lock.
type Handler struct {
	level      slog.Leveler
	mode       Mode
	identifier string
	w          io.Writer
	mu         *sync.Mutex
	send       SendFunc
	addSource  bool

	// groups is the open group path (from WithGroup), prefix of later keys.
	groups []string
	// pre holds the attributes from WithAttrs, already flattened.
	pre []field
	// preID is a MESSAGE_ID set through WithAttrs.
	preID string
}

// field is one flattened attribute: its path of keys and its text value.
type field struct {
	path  []string
	value string
}

// New returns a handler configured by opts.
func New(opts Options) *Handler {
	h := &Handler{
		level:      opts.Level,
		mode:       opts.Mode,
		identifier: opts.Identifier,
		w:          opts.Writer,
		mu:         new(sync.Mutex),
		send:       opts.Send,
		addSource:  opts.AddSource,
	}
	if h.level == nil {
		h.level = slog.LevelInfo
	}
	if h.mode == ModeAuto {
		h.mode = Detect()
	}
	if h.identifier == "" {
		h.identifier = DefaultIdentifier
	}
	if h.w == nil {
		h.w = os.Stderr
	}
	if h.send == nil {
		h.send = journal.Send
	}
	return h
}

// Mode reports where this handler writes.
func (h *Handler) Mode() Mode { return h.mode }

// Enabled implements slog.Handler.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := h.clone()
	for _, a := range attrs {
		h2.preID = flatten(&h2.pre, h2.groups, a, h2.preID)
	}
	return h2
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := h.clone()
	h2.groups = append(slices.Clip(h2.groups), name)
	return h2
}

func (h *Handler) clone() *Handler {
	h2 := *h
	h2.groups = slices.Clip(h.groups)
	h2.pre = slices.Clip(h.pre)
	return &h2
}

// Handle implements slog.Handler.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	fields := slices.Clone(h.pre)
	msgID := h.preID
	r.Attrs(func(a slog.Attr) bool {
		msgID = flatten(&fields, h.groups, a, msgID)
		return true
	})
	fields, dropped := dropSecrets(fields)

	if h.mode == ModeJournal {
		vars := h.journalFields(r, msgID, fields, dropped)
		err := h.send(r.Message, priority(r.Level), vars)
		if err == nil {
			return nil
		}
		// The socket went away (journald restarting): the line must not be
		// lost, and stderr still reaches journald's stream. Say why once
		// per occurrence, in the same line, so nothing is logged twice.
		fields = append(fields, field{path: []string{"journal_error"}, value: err.Error()})
		return h.writeLine(r, msgID, fields, dropped, false)
	}
	return h.writeLine(r, msgID, fields, dropped, h.mode == ModeTerminal)
}

func (h *Handler) journalFields(r slog.Record, msgID string, fields []field, dropped []string) map[string]string {
	vars := make(map[string]string, len(fields)+6)
	vars["SYSLOG_IDENTIFIER"] = h.identifier
	if msgID != "" {
		vars["MESSAGE_ID"] = msgID
	}
	for _, f := range fields {
		vars[FieldPrefix+FieldName(f.path...)] = f.value
	}
	if len(dropped) > 0 {
		vars[FieldPrefix+"REDACTED"] = strings.Join(dropped, ",")
	}
	if h.addSource && r.PC != 0 {
		frame, _ := runtime.CallersFrames([]uintptr{r.PC}).Next()
		vars["CODE_FILE"] = frame.File
		vars["CODE_LINE"] = strconv.Itoa(frame.Line)
		vars["CODE_FUNC"] = frame.Function
	}
	return vars
}

func (h *Handler) writeLine(r slog.Record, msgID string, fields []field, dropped []string, withTime bool) error {
	var b bytes.Buffer
	// slog's contract: a zero time means "no time", not "now".
	if withTime && !r.Time.IsZero() {
		b.WriteString(r.Time.Format("2006-01-02T15:04:05.000Z07:00"))
		b.WriteByte(' ')
	}
	b.WriteString(r.Level.String())
	b.WriteByte(' ')
	b.WriteString(oneLine(r.Message))
	if msgID != "" {
		writeKV(&b, MessageIDKey, msgID)
	}
	for _, f := range fields {
		writeKV(&b, strings.Join(f.path, "."), f.value)
	}
	if len(dropped) > 0 {
		writeKV(&b, "redacted", strings.Join(dropped, ","))
	}
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.w.Write(b.Bytes())
	return err
}

// oneLine keeps a record on one line: journald's stream transport splits on
// newlines, which would turn one record into several entries.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s)
}

func writeKV(b *bytes.Buffer, k, v string) {
	b.WriteByte(' ')
	b.WriteString(k)
	b.WriteByte('=')
	if v == "" || strings.ContainsFunc(v, func(r rune) bool {
		return unicode.IsSpace(r) || r == '"' || r == '=' || !unicode.IsPrint(r)
	}) {
		b.WriteString(strconv.Quote(v))
		return
	}
	b.WriteString(v)
}

// flatten appends a's leaves to dst and returns the MESSAGE_ID, which a
// top-level MessageIDKey attribute sets instead of becoming a field.
func flatten(dst *[]field, groups []string, a slog.Attr, msgID string) string {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return msgID
	}
	if a.Value.Kind() == slog.KindGroup {
		sub := groups
		if a.Key != "" {
			sub = append(slices.Clip(groups), a.Key)
		}
		for _, ga := range a.Value.Group() {
			msgID = flatten(dst, sub, ga, msgID)
		}
		return msgID
	}
	if len(groups) == 0 && (a.Key == MessageIDKey || a.Key == "MESSAGE_ID") {
		return a.Value.String()
	}
	path := append(slices.Clip(groups), a.Key)
	*dst = append(*dst, field{path: path, value: valueText(a.Value)})
	return msgID
}

func valueText(v slog.Value) string {
	switch v.Kind() {
	case slog.KindTime:
		return v.Time().Format(time.RFC3339Nano)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok && err != nil {
			return err.Error()
		}
		return fmt.Sprint(v.Any())
	default:
		return v.String()
	}
}

// priority maps slog levels onto syslog priorities, keeping levels between
// the named ones (slog allows any integer) on the milder side.
func priority(l slog.Level) journal.Priority {
	switch {
	case l < slog.LevelInfo:
		return journal.PriDebug
	case l < slog.LevelWarn:
		return journal.PriInfo
	case l < slog.LevelError:
		return journal.PriWarning
	case l < slog.LevelError+4:
		return journal.PriErr
	default:
		return journal.PriCrit
	}
}

// FieldName turns a key path into the journal's field alphabet: upper case
// letters, digits and underscores, with camelCase and any other character
// split by underscores ("authURL" -> "AUTH_URL", "user-code" -> "USER_CODE").
// The ORBIT_ prefix (FieldPrefix) is not included.
func FieldName(path ...string) string {
	var b strings.Builder
	for _, p := range path {
		if b.Len() > 0 {
			b.WriteByte('_')
		}
		rs := []rune(p)
		for i, r := range rs {
			switch {
			case r >= 'a' && r <= 'z':
				b.WriteRune(unicode.ToUpper(r))
			case r >= 'A' && r <= 'Z':
				// A capital after a lower-case letter or digit, or the last
				// capital of an acronym before a lower-case letter, starts a
				// new word: authURL -> AUTH_URL, URLPath -> URL_PATH.
				if i > 0 && needsBreak(rs, i) {
					writeUnderscore(&b)
				}
				b.WriteRune(r)
			case r >= '0' && r <= '9':
				b.WriteRune(r)
			default:
				writeUnderscore(&b)
			}
		}
	}
	s := strings.Trim(b.String(), "_")
	if s == "" {
		return "EMPTY"
	}
	return s
}

func needsBreak(rs []rune, i int) bool {
	prev := rs[i-1]
	if unicode.IsLower(prev) || unicode.IsDigit(prev) {
		return true
	}
	return unicode.IsUpper(prev) && i+1 < len(rs) && unicode.IsLower(rs[i+1])
}

func writeUnderscore(b *strings.Builder) {
	s := b.String()
	if len(s) > 0 && s[len(s)-1] != '_' {
		b.WriteByte('_')
	}
}

// secretWords mark keys that must never reach a log: callers are expected
// not to pass secrets at all, and this is the net under that rule.
var secretWords = []string{"PASSWORD", "PASSWD", "SECRET", "TOKEN", "BEARER", "CREDENTIAL", "PRIVATE_KEY", "COOKIE"}

// publicKeys contain a secret word but carry no secret.
var publicKeys = map[string]bool{
	"AUTH_URL":          true,
	"TOKEN_URL":         true,
	"TOKEN_EXPIRY":      true,
	"TOKEN_EXPIRES":     true,
	"TOKEN_VALID_UNTIL": true,
	"TOKEN_ITERATIONS":  true,
}

// LooksSecret reports whether an attribute with this key path would be
// dropped by the handler.
func LooksSecret(path ...string) bool {
	name := FieldName(path...)
	last := FieldName(path[len(path)-1])
	if publicKeys[name] || publicKeys[last] {
		return false
	}
	for _, w := range secretWords {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

func dropSecrets(fields []field) (kept []field, dropped []string) {
	kept = fields[:0:0]
	for _, f := range fields {
		if LooksSecret(f.path...) {
			dropped = append(dropped, strings.Join(f.path, "."))
			continue
		}
		kept = append(kept, f)
	}
	return kept, dropped
}
