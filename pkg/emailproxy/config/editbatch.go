package config

import (
	"fmt"
	"slices"
	"strings"
)

// KeyEdit is one change of a key in an EditSections batch: the key gets
// Value (as Set does), or is removed when Delete is set (as Delete does).
type KeyEdit struct {
	Key    string
	Value  string
	Delete bool
}

// SectionEdit is the key edits of one section, made in order.
type SectionEdit struct {
	Section string
	Keys    []KeyEdit
}

// EditSections makes many sections' edits in one pass over the file. The
// result is the file that calling Set and Delete one by one would give,
// with the edits of existing sections made first (in any order: they do
// not affect each other) and then the missing sections added at the end in
// the order given. Set and Delete re-read the whole file after every
// change, which is right for a handful of edits but quadratic for a token
// store of thousands of accounts; here each section is edited on its own
// lines and the file is re-read once. A section may be named only once. On
// error the file is unchanged.
func (e *Editor) EditSections(edits []SectionEdit) error {
	seen := make(map[string]bool, len(edits))
	for _, se := range edits {
		if seen[se.Section] {
			return fmt.Errorf("section [%s] is named twice in one batch of edits", se.Section)
		}
		seen[se.Section] = true
	}
	// Each section's lines run from its header to the next header; edits
	// inside a section never reach past them (a new key goes after the
	// section's last key, a value's continuation lines end at a header).
	var headers []int
	for i, l := range e.d.lines {
		if l.kind == headerLine {
			headers = append(headers, i)
		}
	}
	chunkEnd := make(map[int]int, len(headers))
	for j, h := range headers {
		end := len(e.d.lines)
		if j+1 < len(headers) {
			end = headers[j+1]
		}
		chunkEnd[h] = end
	}
	replaced := map[int][]rawLine{} // header index -> the section's new lines
	var added []SectionEdit
	changed := false
	for _, se := range edits {
		s, ok := e.d.section(se.Section)
		if !ok {
			added = append(added, se)
			continue
		}
		h := s.line - 1
		lines, ch, err := editChunk(e.d.lines[h:chunkEnd[h]], e.path, se)
		if err != nil {
			return err
		}
		if ch {
			replaced[h] = lines
			changed = true
		}
	}

	var out []rawLine
	if len(replaced) == 0 {
		out = e.d.lines
	} else {
		out = make([]rawLine, 0, len(e.d.lines)+8*len(replaced))
		next := 0
		for _, h := range headers {
			repl, ok := replaced[h]
			if !ok {
				continue
			}
			out = append(out, e.d.lines[next:h]...)
			out = append(out, repl...)
			next = chunkEnd[h]
		}
		out = append(out, e.d.lines[next:]...)
	}

	// New sections, as AddSection and Set would add them one after the
	// other: a blank line before each when the file's sections are
	// blank-separated, which the first blank-separated addition makes so.
	finalEOL := e.d.finalEOL
	if len(added) > 0 {
		// Section lines may have moved; blankSeparated only reads the
		// lines above each header.
		probe := &Editor{d: &document{lines: out, sections: headerSections(out)}}
		sep := probe.blankSeparated()
		nSections := len(e.d.sections)
		for _, se := range added {
			if !hasSet(se) {
				continue // deleting keys of a missing section changes nothing
			}
			if err := checkSectionName(se.Section); err != nil {
				return err
			}
			lines, err := newChunk(e.path, se)
			if err != nil {
				return err
			}
			if sep && len(out) > 0 && out[len(out)-1].kind != blankLine {
				out = append(out, rawLine{kind: blankLine})
			}
			// [DEFAULT] is not one of the sections blankSeparated reads.
			isDefault := se.Section == DefaultSection
			if nSections >= 1 && !sep && !isDefault {
				i := len(out) - 1
				for i >= 0 && out[i].kind == commentLine {
					i--
				}
				sep = i >= 0 && out[i].kind == blankLine
			}
			out = append(out, lines...)
			if !isDefault {
				nSections++
			}
			finalEOL = true
			changed = true
		}
	}
	if !changed {
		return nil
	}
	old := e.d
	e.d = &document{lines: out, bom: old.bom, crlf: old.crlf, finalEOL: finalEOL}
	if err := e.reparse(); err != nil {
		e.d = old
		return err
	}
	return nil
}

// editChunk applies one section's edits to that section's lines alone
// (header first) with Set and Delete, which re-read only those lines.
func editChunk(lines []rawLine, path string, se SectionEdit) ([]rawLine, bool, error) {
	if out, changed, ok, err := editPlainChunk(lines, se); ok {
		return out, changed, err
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.text)
		b.WriteString("\n")
	}
	d, err := parseDocument([]byte(b.String()), path)
	if err != nil {
		return nil, false, err
	}
	sub := &Editor{d: d, path: path}
	changed := false
	for _, k := range se.Keys {
		if k.Delete {
			changed = sub.Delete(se.Section, k.Key) || changed
			continue
		}
		if err := sub.Set(se.Section, k.Key, k.Value); err != nil {
			return nil, false, err
		}
		changed = true
	}
	return sub.d.lines, changed, nil
}

// editPlainChunk is editChunk without parsing for the usual section, the
// store's own: every key on one unindented line, no continuation lines,
// and single-line values. Then each key is exactly one line, a changed
// line cannot change how the lines after it read, and Set and Delete come
// down to replacing, appending after the last key, and removing a line.
// ok is false when the section is not of that kind.
func editPlainChunk(lines []rawLine, se SectionEdit) (out []rawLine, changed, ok bool, err error) {
	for _, k := range se.Keys {
		if !k.Delete && strings.ContainsAny(k.Value, "\r\n") {
			return nil, false, false, nil
		}
	}
	names := make([]string, len(lines))
	for i, l := range lines[1:] {
		switch l.kind {
		case contLine:
			return nil, false, false, nil
		case keyLine:
			if strings.TrimLeftFunc(l.text, pySpace) != l.text {
				return nil, false, false, nil
			}
			stripped := pyStrip(l.text)
			k := strings.IndexAny(stripped, "=:")
			names[i+1] = strings.ToLower(strings.TrimRightFunc(stripped[:k], pySpace))
		}
	}
	out = slices.Clone(lines)
	for _, k := range se.Keys {
		key := strings.ToLower(k.Key)
		at, last := -1, 0
		for i := 1; i < len(out); i++ {
			if out[i].kind == keyLine {
				last = i
				if names[i] == key {
					at = i
				}
			}
		}
		switch {
		case k.Delete:
			if at >= 0 {
				out = slices.Delete(out, at, at+1)
				names = slices.Delete(names, at, at+1)
				changed = true
			}
		default:
			if err := checkKeyName(key); err != nil {
				return nil, false, true, err
			}
			l := formatKeyLines(key, k.Value)[0]
			if at >= 0 {
				out[at], names[at] = l, key
			} else {
				out = slices.Insert(out, last+1, l)
				names = slices.Insert(names, last+1, key)
			}
			changed = true
		}
	}
	return out, changed, true, nil
}

// newChunk is the lines of a section that does not exist yet after its
// edits. Single-line values need no parsing: each key is one "key = value"
// line, set in place or appended, as Set would. Others go through
// editChunk, since their continuation lines can be blank or look like
// comments, which moves where Set puts the next key.
func newChunk(path string, se SectionEdit) ([]rawLine, error) {
	header := rawLine{text: "[" + se.Section + "]", kind: headerLine}
	for _, k := range se.Keys {
		if !k.Delete && strings.ContainsAny(k.Value, "\r\n") {
			lines, _, err := editChunk([]rawLine{header}, path, se)
			return lines, err
		}
	}
	lines := []rawLine{header}
	for _, k := range se.Keys {
		key := strings.ToLower(k.Key)
		at := -1
		for i, l := range lines[1:] {
			if name, _, _ := strings.Cut(l.text, " ="); name == key {
				at = i + 1
				break
			}
		}
		switch {
		case k.Delete:
			if at >= 0 {
				lines = append(lines[:at], lines[at+1:]...)
			}
		default:
			if err := checkKeyName(key); err != nil {
				return nil, err
			}
			l := formatKeyLines(key, k.Value)[0]
			if at >= 0 {
				lines[at] = l
			} else {
				lines = append(lines, l)
			}
		}
	}
	return lines, nil
}

func hasSet(se SectionEdit) bool {
	for _, k := range se.Keys {
		if !k.Delete {
			return true
		}
	}
	return false
}

// headerSections lists the non-DEFAULT sections of lines by header line,
// enough for blankSeparated.
func headerSections(lines []rawLine) []*section {
	var out []*section
	for i, l := range lines {
		if l.kind != headerLine {
			continue
		}
		if name, ok := headerName(pyStrip(l.text)); ok && name == DefaultSection {
			continue
		}
		out = append(out, &section{line: i + 1})
	}
	return out
}
