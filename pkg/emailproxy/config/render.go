package config

import (
	"strings"
)

// Masked returns the file with every secret value replaced by Mask and the
// token salt hidden too, for --dry-run and `config show`. Everything else
// (comments, order, unknown sections) is shown as written.
func Masked(data []byte) ([]byte, error) {
	d, err := parseDocument(data, "")
	if err != nil {
		return nil, err
	}
	for _, s := range append([]*section{d.defaults}, d.sections...) {
		if s == nil {
			continue
		}
		for _, en := range s.keys {
			if (!isSecretKey(en.name) && !hiddenFromShow(en.name)) || en.value == "" {
				continue
			}
			i := en.line - 1
			text := d.lines[i].text
			k := strings.IndexAny(text, "=:")
			d.lines[i].text = strings.TrimRight(text[:k+1], " ") + " " + Mask
			// A secret continued on further lines is masked whole.
			for j := i + 1; j < len(d.lines) && d.lines[j].kind != keyLine && d.lines[j].kind != headerLine; j++ {
				if d.lines[j].kind == contLine {
					d.lines[j].text = ""
					d.lines[j].kind = blankLine
				}
			}
		}
	}
	return d.render(), nil
}

// KeyValue is one key of a Redacted section.
type KeyValue struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// SectionView is one section of a Redacted configuration.
type SectionView struct {
	Name string     `json:"name"`
	Kind string     `json:"kind"` // "global", "server", "account", "catch-all", "defaults", "unknown"
	Keys []KeyValue `json:"keys"`
}

// View is a JSON-able rendering of a configuration with secrets masked
// and the token salt left out.
type View struct {
	Path     string        `json:"path,omitempty"`
	Sections []SectionView `json:"sections"`
}

// Redacted returns the configuration for display.
func (c *Config) Redacted() View {
	v := View{Path: c.Path, Sections: []SectionView{}}
	all := c.doc.sections
	if c.doc.defaults != nil {
		all = append([]*section{c.doc.defaults}, all...)
	}
	for _, s := range all {
		sv := SectionView{Name: s.name, Kind: sectionKind(s.name), Keys: []KeyValue{}}
		for _, en := range s.keys {
			if hiddenFromShow(en.name) {
				continue
			}
			val := en.value
			if isSecretKey(en.name) && val != "" {
				val = Mask
			}
			sv.Keys = append(sv.Keys, KeyValue{Key: en.name, Value: val})
		}
		v.Sections = append(v.Sections, sv)
	}
	return v
}

func sectionKind(name string) string {
	switch {
	case name == GlobalSection:
		return "global"
	case name == DefaultSection:
		return "defaults"
	case serverSectionRE.MatchString(name):
		return "server"
	case IsCatchAllSection(name):
		return "catch-all"
	case IsAccountSection(name):
		return "account"
	}
	return "unknown"
}
