package config

import (
	"fmt"
	"strings"
)

// Editor changes a configuration file line by line, so that everything it
// is not asked to change (comments, blank lines, key order, spelling of
// other keys, unknown sections) stays byte for byte. The engine's token
// writer and Apply both use it.
type Editor struct {
	d    *document
	path string
}

// Edit parses data, lets fn change it, and returns the new file. data may
// be empty (a new file).
func Edit(data []byte, path string, fn func(*Editor) error) ([]byte, error) {
	d, err := parseDocument(data, path)
	if err != nil {
		return nil, err
	}
	e := &Editor{d: d, path: path}
	if err := fn(e); err != nil {
		return nil, err
	}
	return e.d.render(), nil
}

// reparse refreshes the section view after the lines changed. Files are a
// few dozen lines, so simplicity beats incremental bookkeeping here.
func (e *Editor) reparse() error {
	var b strings.Builder
	for _, l := range e.d.lines {
		b.WriteString(l.text)
		b.WriteString("\n")
	}
	d, err := parseDocument([]byte(b.String()), e.path)
	if err != nil {
		return fmt.Errorf("the edit would make the file unreadable: %w", err)
	}
	d.bom, d.crlf, d.finalEOL = e.d.bom, e.d.crlf, e.d.finalEOL || len(e.d.lines) > 0
	for i := range d.lines {
		if i < len(e.d.lines) {
			d.lines[i].eol = e.d.lines[i].eol
		}
	}
	e.d = d
	return nil
}

// Sections lists the section names in file order ([DEFAULT] excluded).
func (e *Editor) Sections() []string {
	out := make([]string, 0, len(e.d.sections))
	for _, s := range e.d.sections {
		out = append(out, s.name)
	}
	return out
}

// HasSection reports whether the section exists.
func (e *Editor) HasSection(name string) bool {
	_, ok := e.d.section(name)
	return ok
}

// Get returns a section's own value for key (no [DEFAULT] fallback).
func (e *Editor) Get(sectionName, key string) (string, bool) {
	s, ok := e.d.section(sectionName)
	if !ok {
		return "", false
	}
	en, ok := s.get(strings.ToLower(key))
	if !ok {
		return "", false
	}
	return en.value, true
}

// Keys lists a section's own keys (lower-cased, file order), as the edits
// so far left them; nil when the section does not exist.
func (e *Editor) Keys(sectionName string) []string {
	s, ok := e.d.section(sectionName)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(s.keys))
	for _, en := range s.keys {
		out = append(out, en.name)
	}
	return out
}

// headerIndex is the 0-based line index of a section's header.
func (e *Editor) headerIndex(name string) int {
	s, ok := e.d.section(name)
	if !ok {
		return -1
	}
	return s.line - 1
}

// bodyEnd is the index just past the section's last key or continuation
// line (just past the header for an empty section): where a new key goes.
func (e *Editor) bodyEnd(h int) int {
	end := h + 1
	for i := h + 1; i < len(e.d.lines); i++ {
		switch e.d.lines[i].kind {
		case headerLine:
			return end
		case keyLine, contLine:
			end = i + 1
		}
	}
	return end
}

// keySpan is the line range [from, to) of a key and its continuation lines.
func (e *Editor) keySpan(sectionName, key string) (from, to int, ok bool) {
	s, found := e.d.section(sectionName)
	if !found {
		return 0, 0, false
	}
	en, found := s.get(strings.ToLower(key))
	if !found {
		return 0, 0, false
	}
	from = en.line - 1
	to = from + 1
	// Blank and comment lines inside a value belong to it only when a
	// continuation line follows them.
	for i := to; i < len(e.d.lines); i++ {
		k := e.d.lines[i].kind
		if k == contLine {
			to = i + 1
			continue
		}
		if k != blankLine && k != commentLine {
			break
		}
	}
	return from, to, true
}

func formatKeyLines(key, value string) []rawLine {
	parts := strings.Split(value, "\n")
	first := key + " = " + parts[0]
	out := []rawLine{{text: strings.TrimRight(first, " "), kind: keyLine}}
	for _, p := range parts[1:] {
		// Python's writer indents continuation lines with a tab.
		out = append(out, rawLine{text: "\t" + p, kind: contLine})
	}
	return out
}

func (e *Editor) splice(from, to int, repl []rawLine) error {
	old := e.d.lines
	lines := make([]rawLine, 0, len(e.d.lines)-(to-from)+len(repl))
	lines = append(lines, e.d.lines[:from]...)
	lines = append(lines, repl...)
	lines = append(lines, e.d.lines[to:]...)
	e.d.lines = lines
	if err := e.reparse(); err != nil {
		e.d.lines = old
		return err
	}
	return nil
}

func checkKeyName(key string) error {
	if key == "" || strings.ContainsAny(key, "=:\r\n") || strings.TrimSpace(key) != key || strings.HasPrefix(key, "[") || strings.HasPrefix(key, "#") || strings.HasPrefix(key, ";") {
		return fmt.Errorf("%q cannot be written as a key name", key)
	}
	return nil
}

func checkSectionName(name string) error {
	if name == "" || strings.ContainsAny(name, "\r\n") || strings.TrimSpace(name) != name {
		return fmt.Errorf("%q cannot be written as a section name", name)
	}
	return nil
}

// Set gives key the value in section, in place when the key exists (its
// line keeps its position), else as a new line after the section's last
// key. A missing section is added at the end of the file.
func (e *Editor) Set(sectionName, key, value string) error {
	key = strings.ToLower(key)
	if err := checkKeyName(key); err != nil {
		return err
	}
	if err := e.AddSection(sectionName, ""); err != nil {
		return err
	}
	if from, to, ok := e.keySpan(sectionName, key); ok {
		return e.splice(from, to, formatKeyLines(key, value))
	}
	end := e.bodyEnd(e.headerIndex(sectionName))
	return e.splice(end, end, formatKeyLines(key, value))
}

// Delete removes a key (with its continuation lines); false if absent.
func (e *Editor) Delete(sectionName, key string) bool {
	from, to, ok := e.keySpan(sectionName, key)
	if !ok {
		return false
	}
	// Removing whole lines from a readable file leaves it readable.
	return e.splice(from, to, nil) == nil
}

// RenameKey renames a key in place, keeping its value and position. When
// newKey already exists the old key is dropped instead.
func (e *Editor) RenameKey(sectionName, oldKey, newKey string) error {
	newKey = strings.ToLower(newKey)
	if err := checkKeyName(newKey); err != nil {
		return err
	}
	v, ok := e.Get(sectionName, oldKey)
	if !ok {
		return nil
	}
	if _, exists := e.Get(sectionName, newKey); exists {
		e.Delete(sectionName, oldKey)
		return nil
	}
	from, to, _ := e.keySpan(sectionName, oldKey)
	return e.splice(from, to, formatKeyLines(newKey, v))
}

// blankSeparated reports whether the file's author puts a blank line
// before section headers, so new sections follow the same style.
func (e *Editor) blankSeparated() bool {
	for _, s := range e.d.sections[min(1, len(e.d.sections)):] {
		i := s.line - 2
		for i >= 0 && e.d.lines[i].kind == commentLine {
			i--
		}
		if i >= 0 && e.d.lines[i].kind == blankLine {
			return true
		}
	}
	return false
}

// AddSection adds an empty section before the section named before (and
// before the comment lines directly above it), or at the end of the file
// when before is "" or absent. It does nothing if the section exists.
func (e *Editor) AddSection(name, before string) error {
	if e.HasSection(name) {
		return nil
	}
	if err := checkSectionName(name); err != nil {
		return err
	}
	sep := e.blankSeparated()
	header := rawLine{text: "[" + name + "]", kind: headerLine}
	if h := e.headerIndex(before); before != "" && h >= 0 {
		for h > 0 && e.d.lines[h-1].kind == commentLine {
			h--
		}
		repl := []rawLine{header}
		if sep {
			repl = append(repl, rawLine{kind: blankLine})
		}
		return e.splice(h, h, repl)
	}
	var repl []rawLine
	if n := len(e.d.lines); sep && n > 0 && e.d.lines[n-1].kind != blankLine {
		repl = append(repl, rawLine{kind: blankLine})
	}
	repl = append(repl, header)
	e.d.finalEOL = true
	return e.splice(len(e.d.lines), len(e.d.lines), repl)
}

// RenameSection renames a section in place, keeping its keys and
// comments. It fails when the new name is taken.
func (e *Editor) RenameSection(oldName, newName string) error {
	h := e.headerIndex(oldName)
	if h < 0 {
		return fmt.Errorf("no section [%s] to rename", oldName)
	}
	if e.HasSection(newName) {
		return fmt.Errorf("cannot rename [%s] to [%s]: that section exists", oldName, newName)
	}
	if err := checkSectionName(newName); err != nil {
		return err
	}
	return e.splice(h, h+1, []rawLine{{text: "[" + newName + "]", kind: headerLine}})
}

// DeleteSection removes a section's header and body up to its last key;
// comments and blank lines after that stay, since they usually introduce
// the next section.
func (e *Editor) DeleteSection(name string) bool {
	h := e.headerIndex(name)
	if h < 0 {
		return false
	}
	return e.splice(h, e.bodyEnd(h), nil) == nil
}
