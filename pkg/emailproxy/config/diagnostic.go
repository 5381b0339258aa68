package config

import (
	"errors"
	"fmt"
	"strings"
)

// Severity says whether a problem stops the proxy or an account (Error),
// deserves attention (Warning), or is only worth knowing (Note: what the
// format allows and both engines ignore, such as the Python proxy's
// documentation keys; `config validate` lists notes with --strict).
type Severity int

const (
	Note Severity = iota + 1
	Warning
	Error
)

func (s Severity) String() string {
	switch s {
	case Error:
		return "error"
	case Warning:
		return "warning"
	case Note:
		return "note"
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// MarshalText makes Severity read as "error"/"warning" in JSON output.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText is the inverse of MarshalText.
func (s *Severity) UnmarshalText(b []byte) error {
	switch string(b) {
	case "error":
		*s = Error
	case "warning":
		*s = Warning
	case "note":
		*s = Note
	default:
		return fmt.Errorf("unknown severity %q (want error, warning or note)", b)
	}
	return nil
}

// Diagnostic is one finding of Validate: what is wrong (Message), where
// (Section, Key, Line for files, Flag for registrations), and how to fix
// it (Hint). Messages never contain secret values.
type Diagnostic struct {
	Severity Severity `json:"severity"`
	Section  string   `json:"section,omitempty"`
	Key      string   `json:"key,omitempty"`
	Flag     string   `json:"flag,omitempty"` // the register flag that sets the value, for Registration.Validate
	Line     int      `json:"line,omitempty"` // 1-based line in the file, when known
	Message  string   `json:"message"`
	Hint     string   `json:"hint,omitempty"`
}

// Where is the location part of String: "--flag", or "[section] key (line n)".
func (d Diagnostic) Where() string {
	// A message that opens with the flag or key already says where; the
	// location then only adds the section and line.
	names := func(n string) bool { return n != "" && !strings.HasPrefix(d.Message, n+" ") }
	var parts []string
	if d.Flag != "" {
		if names(d.Flag) {
			parts = append(parts, d.Flag)
		}
	} else {
		if d.Section != "" {
			parts = append(parts, "["+d.Section+"]")
		}
		if names(d.Key) {
			parts = append(parts, d.Key)
		}
	}
	if d.Line > 0 {
		parts = append(parts, fmt.Sprintf("(line %d)", d.Line))
	}
	return strings.Join(parts, " ")
}

// String renders "error: [@] token_url (line 14): message; fix: hint".
func (d Diagnostic) String() string {
	var b strings.Builder
	b.WriteString(d.Severity.String())
	if w := d.Where(); w != "" {
		b.WriteString(": ")
		b.WriteString(w)
	}
	b.WriteString(": ")
	b.WriteString(d.Message)
	if d.Hint != "" {
		b.WriteString("; fix: ")
		b.WriteString(d.Hint)
	}
	return b.String()
}

// HasErrors reports whether any diagnostic is an Error.
func HasErrors(ds []Diagnostic) bool {
	for _, d := range ds {
		if d.Severity == Error {
			return true
		}
	}
	return false
}

// DiagnosticsError wraps Error diagnostics as a Go error, for callers that
// must refuse (the engine at start-up, Apply's callers).
type DiagnosticsError struct{ Diagnostics []Diagnostic }

func (e *DiagnosticsError) Error() string {
	var msgs []string
	for _, d := range e.Diagnostics {
		if d.Severity == Error {
			msgs = append(msgs, d.String())
		}
	}
	return strings.Join(msgs, "\n")
}

// ErrInvalid is matched (errors.Is) by every *DiagnosticsError.
var ErrInvalid = errors.New("invalid proxy configuration")

func (e *DiagnosticsError) Is(target error) bool { return target == ErrInvalid }

// Err returns a *DiagnosticsError when ds holds an Error, else nil.
func Err(ds []Diagnostic) error {
	if HasErrors(ds) {
		return &DiagnosticsError{Diagnostics: ds}
	}
	return nil
}
