package tokens

import (
	"strings"
)

// The cache file is small, machine-written and shared with the Python proxy,
// whose configparser defines the dialect: `[section]` headers (names
// case-sensitive), `key = value` or `key: value` (keys case-insensitive),
// whole-line comments starting with # or ;, indented continuation lines, no
// interpolation and no inline comments. This is a line-level model of that
// dialect rather than a general INI library because a write must change
// only one account's section: every other line (comments, other accounts,
// keys we do not know) is written back byte for byte, which a parse-and-
// re-render cycle cannot promise.

// iniDoc is a parsed file: the lines before the first header, then each
// section with its own raw lines.
type iniDoc struct {
	preamble []string
	sections []*iniSection
}

type iniSection struct {
	name   string
	header string   // the raw header line
	lines  []string // raw body lines, including blank and comment lines
	added  bool     // created by this write, not read from the file
}

// parseINI never fails: lines it cannot make sense of are kept verbatim so
// that rewriting the file loses nothing, and are ignored when reading.
func parseINI(data string) *iniDoc {
	doc := &iniDoc{}
	data = strings.TrimPrefix(data, "\ufeff")
	data = strings.ReplaceAll(data, "\r\n", "\n")
	lines := strings.Split(data, "\n")
	if n := len(lines); n > 0 && lines[n-1] == "" {
		lines = lines[:n-1]
	}
	var cur *iniSection
	for _, l := range lines {
		if name, ok := sectionHeader(l); ok {
			cur = &iniSection{name: name, header: l}
			doc.sections = append(doc.sections, cur)
			continue
		}
		if cur == nil {
			doc.preamble = append(doc.preamble, l)
		} else {
			cur.lines = append(cur.lines, l)
		}
	}
	return doc
}

func sectionHeader(l string) (string, bool) {
	t := strings.TrimSpace(l)
	// configparser only takes a header that starts the line (no indent).
	if len(t) < 3 || t[0] != '[' || l[0] != '[' {
		return "", false
	}
	end := strings.LastIndexByte(t, ']')
	if end < 2 {
		return "", false
	}
	return t[1:end], true
}

// keyLine splits a "key = value" line; ok is false for blanks, comments,
// continuations and junk.
func keyLine(l string) (key, value string, ok bool) {
	if l == "" || l[0] == ' ' || l[0] == '\t' {
		return "", "", false
	}
	t := strings.TrimSpace(l)
	if t == "" || t[0] == '#' || t[0] == ';' {
		return "", "", false
	}
	i := strings.IndexAny(t, "=:")
	if i <= 0 {
		return "", "", false
	}
	return strings.ToLower(strings.TrimSpace(t[:i])), strings.TrimSpace(t[i+1:]), true
}

func isContinuation(l string) bool {
	return l != "" && (l[0] == ' ' || l[0] == '\t') && strings.TrimSpace(l) != ""
}

// values reads a section's keys. A key given twice keeps its last value;
// continuation lines are joined with newlines, as configparser does.
func (s *iniSection) values() map[string]string {
	m := make(map[string]string)
	last := ""
	for _, l := range s.lines {
		if k, v, ok := keyLine(l); ok {
			m[k] = v
			last = k
			continue
		}
		if last != "" && isContinuation(l) {
			m[last] += "\n" + strings.TrimSpace(l)
			continue
		}
		if strings.TrimSpace(l) == "" {
			continue
		}
		last = ""
	}
	return m
}

// section returns the last section with that exact name (configparser
// would refuse duplicates; the last one is what a lenient reader sees).
func (d *iniDoc) section(name string) *iniSection {
	for i := len(d.sections) - 1; i >= 0; i-- {
		if d.sections[i].name == name {
			return d.sections[i]
		}
	}
	return nil
}

// setKeys gives the named section exactly the values in set for the keys in
// managed: each managed key is replaced in place, dropped when absent from
// set, or appended after the section's last key line. Other lines stay as
// they are. Duplicate sections of that name are merged into the first.
func (d *iniDoc) setKeys(name string, managed []string, set map[string]string) {
	var sec *iniSection
	kept := d.sections[:0]
	for _, s := range d.sections {
		if s.name != name {
			kept = append(kept, s)
			continue
		}
		if sec == nil {
			sec = s
			kept = append(kept, s)
			continue
		}
		sec.lines = append(sec.lines, s.lines...)
	}
	d.sections = kept
	if sec == nil {
		if len(set) == 0 {
			return
		}
		// Python's writer ends every section with a blank line; so do we.
		sec = &iniSection{name: name, header: "[" + name + "]", lines: []string{""}, added: true}
		d.sections = append(d.sections, sec)
	}
	isManaged := make(map[string]bool, len(managed))
	for _, k := range managed {
		isManaged[k] = true
	}
	written := make(map[string]bool, len(managed))
	var out []string
	lastKey := -1
	dropping := false // skipping the continuation lines of a dropped key
	for _, l := range sec.lines {
		if k, _, ok := keyLine(l); ok {
			dropping = false
			if isManaged[k] {
				v, want := set[k]
				if !want || written[k] {
					dropping = true
					continue
				}
				written[k] = true
				out = append(out, k+" = "+v)
				lastKey = len(out) - 1
				dropping = true // the old value's continuation lines go too
				continue
			}
			out = append(out, l)
			lastKey = len(out) - 1
			continue
		}
		if dropping && isContinuation(l) {
			continue
		}
		dropping = false
		out = append(out, l)
		if isContinuation(l) {
			lastKey = len(out) - 1
		}
	}
	var add []string
	for _, k := range managed {
		if v, want := set[k]; want && !written[k] {
			add = append(add, k+" = "+v)
		}
	}
	out = append(out[:lastKey+1], append(add, out[lastKey+1:]...)...)
	sec.lines = out
}

// removeIfEmpty drops the named section when it holds nothing but blank
// lines, so that Delete leaves no empty [user@domain] behind.
func (d *iniDoc) removeIfEmpty(name string) {
	kept := d.sections[:0]
	for _, s := range d.sections {
		if s.name == name && s.blank() {
			continue
		}
		kept = append(kept, s)
	}
	d.sections = kept
}

func (s *iniSection) blank() bool {
	for _, l := range s.lines {
		if strings.TrimSpace(l) != "" {
			return false
		}
	}
	return true
}

// render writes the document back: the lines read, in order, plus any
// added section, set off by a blank line when the text before has none.
func (d *iniDoc) render() []byte {
	var b strings.Builder
	for _, l := range d.preamble {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	prevBlank := len(d.preamble) == 0 || strings.TrimSpace(d.preamble[len(d.preamble)-1]) == ""
	for _, s := range d.sections {
		if s.added && !prevBlank {
			b.WriteByte('\n')
		}
		b.WriteString(s.header)
		b.WriteByte('\n')
		prevBlank = false
		for _, l := range s.lines {
			b.WriteString(l)
			b.WriteByte('\n')
			prevBlank = strings.TrimSpace(l) == ""
		}
	}
	return []byte(b.String())
}
