package config

import (
	"errors"
	"regexp"
	"testing"

	"gopkg.in/ini.v1"
)

// iniV1Best are the gopkg.in/ini.v1 options closest to Python's
// configparser as the Python proxy uses it (interpolation off, no inline
// comments, indented continuations, keys case-insensitive, sections not).
var iniV1Best = ini.LoadOptions{
	InsensitiveKeys:            true,
	IgnoreInlineComment:        true,
	AllowPythonMultilineValues: true,
	PreserveSurroundedQuote:    true,
	// A trailing backslash is part of the value, as in configparser.
	IgnoreContinuation: true,
	// No section inherits from another by its name: [alice@example.com]
	// must not take keys from [alice@example]. NUL never appears in a
	// section header of a text file the Python proxy reads.
	ChildSectionDelimiter: "\x00",
	KeyValueDelimiters:    "=:",
}

// TestWhyNotIniV1 records, case by case, where gopkg.in/ini.v1 with its
// best options (iniV1Best) still reads a proxy file differently from Python's
// configparser, which this package follows (docs/compatibility.md). The
// first cases record what those options fixed, so the docs do not claim
// more than is true; the rest are the real divergences. When a later ini.v1
// changes any of them, this test fails and the comparison must be redone.
func TestWhyNotIniV1(t *testing.T) {
	type want struct {
		same   bool   // both read the value the same
		iniVal string // otherwise ini.v1's value (configparser's is Parse's)
	}
	values := []struct {
		name, data, section, key string
		want                     want
	}{
		// Agreements that need the options above.
		{"dotted section does not inherit (ChildSectionDelimiter)", "[alice@example]\nclient_id = parent\n[alice@example.com]\nx = 1\n", "alice@example.com", "client_id", want{same: true}},
		{"trailing backslash kept (IgnoreContinuation)", "[s]\nk = a\\\nj = 2\n", "s", "k", want{same: true}},
		{"double quotes kept (PreserveSurroundedQuote)", "[s]\nk = \"quoted\"\n", "s", "k", want{same: true}},
		{"inline ; is part of the value (IgnoreInlineComment)", "[s]\nk = v ; c\n", "s", "k", want{same: true}},
		{"colon delimiter", "[s]\nk: v\n", "s", "k", want{same: true}},
		// Divergences no option removes.
		{"backticks are stripped", "[s]\nk = `quoted`\n", "s", "k", want{iniVal: "quoted"}},
		{"triple quotes are stripped", "[s]\nk = \"\"\"quoted\"\"\"\n", "s", "k", want{iniVal: "quoted"}},
		{"continuation lines keep their indentation", "[s]\nk = a\n  b\n    c\nj = 1\n", "s", "k", want{iniVal: "a\n  b\n    c"}},
		{"CRLF continuation keeps the carriage return", "[s]\r\nk = a\r\n  b\r\n", "s", "k", want{iniVal: "a\n  b\r"}},
		{"[DEFAULT] is not a fallback for other sections", "[DEFAULT]\nk = d\n[s]\nj = 2\n", "s", "k", want{iniVal: ""}},
	}
	for _, tt := range values {
		ours, err := Parse([]byte(tt.data), "test.config")
		if err != nil {
			t.Fatalf("%s: Parse: %v", tt.name, err)
		}
		f, err := ini.LoadSources(iniV1Best, []byte(tt.data))
		if err != nil {
			t.Errorf("%s: ini.v1 refuses the file: %v", tt.name, err)
			continue
		}
		cp, _ := ours.Get(tt.section, tt.key)
		got := ""
		if sec, err := f.GetSection(tt.section); err == nil && sec.HasKey(tt.key) {
			got = sec.Key(tt.key).String()
		}
		switch {
		case tt.want.same && got != cp:
			t.Errorf("%s: ini.v1 reads [%s] %s as %q, configparser as %q; the docs say they agree", tt.name, tt.section, tt.key, got, cp)
		case !tt.want.same && got != tt.want.iniVal:
			t.Errorf("%s: ini.v1 now reads [%s] %s as %q (was %q; configparser: %q): redo the comparison in docs/compatibility.md", tt.name, tt.section, tt.key, got, tt.want.iniVal, cp)
		case !tt.want.same && got == cp:
			t.Errorf("%s: the case does not diverge: configparser also reads %q", tt.name, cp)
		}
	}

	// Files configparser (and so the Python proxy) refuses, which ini.v1
	// reads without complaint: the last duplicate silently wins, and a key
	// before any header lands in its default section.
	refused := []struct{ name, data string }{
		{"duplicate section", "[s]\nk = 1\n[s]\nj = 2\n"},
		{"duplicate key", "[s]\nk = 1\nk = 2\n"},
		{"key before any section", "k = 1\n[s]\nj = 2\n"},
	}
	for _, tt := range refused {
		if _, err := Parse([]byte(tt.data), "test.config"); !errors.Is(err, ErrSyntax) {
			t.Errorf("%s: Parse = %v, want a syntax error (configparser refuses it)", tt.name, err)
		}
		if _, err := ini.LoadSources(iniV1Best, []byte(tt.data)); err != nil {
			t.Errorf("%s: ini.v1 now refuses it too (%v): redo the comparison", tt.name, err)
		}
	}

	// Files configparser reads, which ini.v1 refuses: a blank line or a
	// comment inside an indented multi-line value.
	readable := []struct{ name, data string }{
		{"blank line inside a multi-line value", "[s]\nk = a\n  b\n\n  c\n"},
		{"comment inside a multi-line value", "[s]\nk = a\n# note\n  b\n"},
	}
	for _, tt := range readable {
		if _, err := Parse([]byte(tt.data), "test.config"); err != nil {
			t.Errorf("%s: Parse: %v (configparser reads it)", tt.name, err)
		}
		if _, err := ini.LoadSources(iniV1Best, []byte(tt.data)); err == nil {
			t.Errorf("%s: ini.v1 now reads it: redo the comparison", tt.name)
		}
	}

	// config validate points at lines; ini.v1's errors name none.
	bad := "[s]\nk = 1\njunk\n"
	_, oursErr := Parse([]byte(bad), "test.config")
	_, iniErr := ini.LoadSources(iniV1Best, []byte(bad))
	if !regexp.MustCompile(`test\.config:3:`).MatchString(oursErr.Error()) {
		t.Errorf("Parse error %q does not name line 3", oursErr)
	}
	if iniErr == nil || regexp.MustCompile(`\b3\b`).MatchString(iniErr.Error()) {
		t.Errorf("ini.v1 error %v: now names the line? redo the comparison", iniErr)
	}
}
