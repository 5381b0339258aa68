package config

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// pySpace is Python's str.isspace: Go's unicode.IsSpace plus the four
// information separators U+001C..U+001F.
func pySpace(r rune) bool { return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f) }

// pyStrip is Python's str.strip().
func pyStrip(s string) string { return strings.TrimFunc(s, pySpace) }

func invalidUTF8At(s string) int {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size <= 1 {
				return i
			}
		}
	}
	return len(s)
}

// The reader below follows Python's configparser (ConfigParser with
// interpolation=None and its defaults: '=' and ':' delimiters, '#' and ';'
// full-line comments only, no inline comments, strict duplicates, values
// continued on deeper-indented lines, [DEFAULT] as the defaults section),
// because that is the reader that defines the format: a file must mean the
// same thing to both engines. It keeps every line so that Apply can edit a
// file without disturbing comments, order or anything it does not own.

// DefaultSection is configparser's defaults section: its keys are visible in
// every other section unless the section sets them itself.
const DefaultSection = "DEFAULT"

type lineKind uint8

const (
	blankLine   lineKind = iota // empty or only white space
	commentLine                 // first non-space character is '#' or ';'
	headerLine                  // [section]
	keyLine                     // option = value
	contLine                    // deeper-indented continuation of the previous value
)

type rawLine struct {
	text string // without the line ending
	kind lineKind
	// eol is the line's own ending as read ("\r\n", "\n" or "\r"), so a
	// file with mixed endings is written back as it was; "" (a line an
	// edit added) takes the file's.
	eol string
}

// entry is one option as configparser stores it.
type entry struct {
	name  string // lower-cased option name
	value string // continuation lines joined with "\n", right-trimmed
	line  int    // 1-based line of the option
}

// section is one [name] block. Keys keep file order.
type section struct {
	name string
	line int // 1-based line of the header
	keys []*entry
	// byKey indexes keys once a section has more than keyIndexMin of
	// them; below that a scan is faster than hashing and costs no map.
	byKey map[string]*entry
}

// keyIndexMin is the number of keys from which a section indexes them.
const keyIndexMin = 16

func (s *section) get(name string) (*entry, bool) {
	if s.byKey != nil {
		e, ok := s.byKey[name]
		return e, ok
	}
	for _, e := range s.keys {
		if e.name == name {
			return e, true
		}
	}
	return nil, false
}

// add appends a key, indexing the section's keys once there are many.
func (s *section) add(e *entry) {
	s.keys = append(s.keys, e)
	switch {
	case s.byKey != nil:
		s.byKey[e.name] = e
	case len(s.keys) > keyIndexMin:
		s.byKey = make(map[string]*entry, 2*len(s.keys))
		for _, k := range s.keys {
			s.byKey[k.name] = k
		}
	}
}

// document is a parsed file: the sections (configparser's view) and the
// lines they came from (the editor's view).
type document struct {
	bom      bool // the file started with a UTF-8 byte order mark
	lines    []rawLine
	crlf     bool // the file used \r\n line endings
	finalEOL bool // the last line ended with a line ending
	defaults *section
	sections []*section // in file order, without DEFAULT
	// byName indexes sections: validation and loading look a section up
	// for every key of every section, so a scan here made a file of
	// 20,000 accounts take minutes (issue 11).
	byName map[string]*section
}

func (d *document) section(name string) (*section, bool) {
	if name == DefaultSection {
		return d.defaults, d.defaults != nil
	}
	s, ok := d.byName[name]
	return s, ok
}

// addSection appends a section (not DEFAULT) and indexes it.
func (d *document) addSection(s *section) {
	if d.byName == nil {
		d.byName = map[string]*section{}
	}
	d.sections = append(d.sections, s)
	d.byName[s.name] = s
}

// SyntaxError is a line that the Python proxy's reader rejects too, so the
// file cannot be used by either engine until it is fixed.
type SyntaxError struct {
	Path string // "" when parsed from memory without a name
	Line int    // 1-based
	Msg  string
}

func (e *SyntaxError) Error() string {
	p := e.Path
	if p == "" {
		p = "<config>"
	}
	return fmt.Sprintf("%s:%d: %s", p, e.Line, e.Msg)
}

// ErrSyntax is matched (errors.Is) by every *SyntaxError.
var ErrSyntax = errors.New("config syntax error")

func (e *SyntaxError) Is(target error) bool { return target == ErrSyntax }

// parseDocument reads data the way configparser does. Every problem
// configparser would raise is returned, each with its line, joined.
func parseDocument(data []byte, path string) (*document, error) {
	text := string(data)
	d := &document{}
	if t, ok := strings.CutPrefix(text, "\ufeff"); ok {
		// Kept for rendering; not part of the first line's text.
		d.bom, text = true, t
	}
	if !utf8.ValidString(text) {
		line := 1 + strings.Count(text[:invalidUTF8At(text)], "\n")
		return nil, &SyntaxError{Path: path, Line: line, Msg: "the file is not valid UTF-8 (the Python proxy cannot read it either); save it as UTF-8"}
	}
	if strings.Contains(text, "\r\n") {
		d.crlf = true
	}
	original := text
	// Python reads text with universal newlines: \r\n and a lone \r both
	// end a line.
	text = strings.ReplaceAll(text, "\r\n", "\n")
	text = strings.ReplaceAll(text, "\r", "\n")
	if text != "" {
		d.finalEOL = strings.HasSuffix(text, "\n")
		text = strings.TrimSuffix(text, "\n")
		for _, l := range strings.Split(text, "\n") {
			d.lines = append(d.lines, rawLine{text: l})
		}
		// Only a file that mixes endings keeps them per line; otherwise
		// every line takes the file's (so lines an edit adds match).
		def := "\n"
		if d.crlf {
			def = "\r\n"
		}
		eols := lineEndings(original)
		mixed := false
		for _, eol := range eols {
			mixed = mixed || eol != def
		}
		for i, eol := range eols {
			if mixed && i < len(d.lines) {
				d.lines[i].eol = eol
			}
		}
	}

	var (
		errs      []error
		cur       *section
		curEntry  *entry
		contParts []string // the value lines of curEntry, blank lines included
		indent    = -1     // indent of the current option line; -1 = no value open
	)
	fail := func(i int, format string, a ...any) {
		errs = append(errs, &SyntaxError{Path: path, Line: i + 1, Msg: fmt.Sprintf(format, a...)})
	}
	closeEntry := func() {
		if curEntry != nil {
			curEntry.value = strings.TrimRightFunc(strings.Join(contParts, "\n"), pySpace)
		}
		curEntry, contParts = nil, nil
	}

	for i := range d.lines {
		raw := d.lines[i].text
		stripped := pyStrip(raw)
		if strings.HasPrefix(stripped, "#") || strings.HasPrefix(stripped, ";") {
			// A comment inside a multi-line value neither ends the value
			// nor becomes part of it, exactly as configparser does.
			d.lines[i].kind = commentLine
			continue
		}
		if stripped == "" {
			d.lines[i].kind = blankLine
			if curEntry != nil {
				contParts = append(contParts, "")
			}
			continue
		}
		lead := utf8.RuneCountInString(raw) - utf8.RuneCountInString(strings.TrimLeftFunc(raw, pySpace))
		if curEntry != nil && lead > indent {
			d.lines[i].kind = contLine
			contParts = append(contParts, stripped)
			continue
		}
		closeEntry()
		indent = lead
		if name, ok := headerName(stripped); ok {
			d.lines[i].kind = headerLine
			if name == DefaultSection {
				if d.defaults == nil {
					d.defaults = &section{name: name, line: i + 1}
				}
				cur = d.defaults
				continue
			}
			if prev, ok := d.section(name); ok {
				fail(i, "section [%s] appears a second time (first at line %d); merge the two sections into one", name, prev.line)
				cur = prev
				continue
			}
			cur = &section{name: name, line: i + 1}
			d.addSection(cur)
			continue
		}
		if cur == nil {
			fail(i, "this line comes before any [section] header; move it under a section such as [emailproxy] or delete it")
			continue
		}
		k := strings.IndexAny(stripped, "=:")
		if k < 0 {
			// The line's text is not repeated: a stray line may be a pasted secret.
			fail(i, "this line is neither a [section] header nor a key = value line; fix it or comment it out with '#'")
			continue
		}
		name := strings.ToLower(strings.TrimRightFunc(stripped[:k], pySpace))
		if name == "" {
			fail(i, "line starts with %q but has no key name before it", stripped[k:k+1])
			continue
		}
		d.lines[i].kind = keyLine
		if prev, ok := cur.get(name); ok {
			fail(i, "key %q appears a second time in [%s] (first at line %d); keep only one", name, cur.name, prev.line)
			curEntry = &entry{name: name} // swallows its continuation lines; never stored
			contParts = nil
			continue
		}
		curEntry = &entry{name: name, line: i + 1}
		contParts = []string{pyStrip(stripped[k+1:])}
		cur.add(curEntry)
	}
	closeEntry()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return d, nil
}

// headerName applies configparser's SECTCRE, \[(?P<header>.+)\], to a
// stripped line: the name runs from the first '[' to the last ']', and
// anything after that ']' is ignored.
func headerName(stripped string) (string, bool) {
	if !strings.HasPrefix(stripped, "[") {
		return "", false
	}
	end := strings.LastIndexByte(stripped, ']')
	if end < 2 {
		return "", false
	}
	return stripped[1:end], true
}

// render writes the lines back with the file's own line endings.
func (d *document) render() []byte {
	eol := "\n"
	if d.crlf {
		eol = "\r\n"
	}
	var b strings.Builder
	if d.bom {
		b.WriteString("\ufeff")
	}
	for i, l := range d.lines {
		b.WriteString(l.text)
		if i < len(d.lines)-1 || d.finalEOL {
			if l.eol != "" {
				b.WriteString(l.eol)
			} else {
				b.WriteString(eol)
			}
		}
	}
	return []byte(b.String())
}

// lineEndings lists the ending of each line of text in order, as Python's
// universal newlines split it: "\r\n", "\r" or "\n".
func lineEndings(text string) []string {
	var out []string
	for i := 0; i < len(text); i++ {
		switch text[i] {
		case '\r':
			if i+1 < len(text) && text[i+1] == '\n' {
				out = append(out, "\r\n")
				i++
			} else {
				out = append(out, "\r")
			}
		case '\n':
			out = append(out, "\n")
		}
	}
	return out
}
