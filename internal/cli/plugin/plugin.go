// Package plugin finds and runs orbit's external plugins: an executable
// called orbit-NAME on PATH serves `orbit NAME ...` when no built-in command
// is called NAME, as kubectl plugins do. A dash in the file name separates
// words: orbit-foo-bar serves `orbit foo bar`, and the longest match wins.
// docs/plugins.md is the plugin author's side of this contract.
package plugin

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Prefix starts every plugin's file name.
const Prefix = "orbit-"

// Plugin is one orbit-* file found on PATH.
type Plugin struct {
	// Name is the command it serves, words joined by dashes ("foo-bar" for
	// orbit-foo-bar, typed as `orbit foo bar`).
	Name string `json:"name"`
	Path string `json:"path"`
	// Warnings say why this file does not run (or not always): shadowed by
	// a built-in command or by an earlier PATH entry, not executable. A
	// plugin without warnings runs.
	Warnings []string `json:"warnings"`
}

// Words are the command words the plugin serves.
func (p Plugin) Words() []string { return strings.Split(p.Name, "-") }

// Runs reports whether `orbit NAME` runs this file.
func (p Plugin) Runs() bool { return len(p.Warnings) == 0 }

// Finder looks for plugins. Its fields are the facts discovery depends on,
// so tests give it a PATH of their own.
type Finder struct {
	// Path is the PATH value to search, directories separated by ':'. An
	// empty entry is the current directory, as for the shell; orbit skips it
	// (a plugin must not be picked up from wherever the admin happens to be).
	Path string
	// Builtin reports whether a word is one of orbit's own commands (or an
	// alias of one), which always win over plugins.
	Builtin func(word string) bool
}

func (f Finder) dirs() []string {
	var out []string
	seen := map[string]bool{}
	for _, d := range filepath.SplitList(f.Path) {
		if d == "" || d == "." || !filepath.IsAbs(d) {
			continue
		}
		d = filepath.Clean(d)
		if seen[d] {
			continue
		}
		seen[d] = true
		out = append(out, d)
	}
	return out
}

// All lists every orbit-* file on PATH, in PATH order and by name within a
// directory, each with its warnings.
func (f Finder) All() []Plugin {
	var out []Plugin
	first := map[string]string{} // name -> path of the first executable file
	for _, dir := range f.dirs() {
		for _, file := range pluginFiles(dir) {
			name := strings.TrimPrefix(file, Prefix)
			path := filepath.Join(dir, file)
			p := Plugin{Name: name, Path: path, Warnings: []string{}}
			info, err := os.Stat(path) // follows symlinks, as exec does
			switch {
			case err != nil:
				p.Warnings = append(p.Warnings, "cannot be read: "+err.Error())
			case info.IsDir():
				continue
			case !executable(info):
				p.Warnings = append(p.Warnings, "is not executable (chmod +x "+path+")")
			}
			if w := p.Words()[0]; f.Builtin != nil && f.Builtin(w) {
				p.Warnings = append(p.Warnings, "is shadowed by the built-in command "+`"`+w+`"`)
			}
			// exec runs the first executable file of a name on PATH; the
			// ones after it never run.
			if prev, dup := first[name]; dup {
				p.Warnings = append(p.Warnings, "is shadowed by "+prev+", earlier in PATH")
			} else if err == nil && executable(info) {
				first[name] = path
			}
			out = append(out, p)
		}
	}
	return out
}

// pluginFiles are the orbit-* names in dir, sorted. Names only: PATH
// directories such as /usr/bin hold thousands of files, and sorting or
// stat-ing all of them would cost every `orbit NAME` several milliseconds
// (BenchmarkMatch).
func pluginFiles(dir string) []string {
	d, err := os.Open(dir)
	if err != nil {
		return nil // a missing or unreadable PATH entry is common and harmless
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	var out []string
	for _, n := range names {
		name, ok := strings.CutPrefix(n, Prefix)
		if ok && name != "" && !strings.HasPrefix(name, "-") && !strings.HasSuffix(name, "-") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func executable(info fs.FileInfo) bool {
	return info.Mode().IsRegular() && info.Mode().Perm()&0o111 != 0
}

// Runnable is every plugin `orbit NAME` would run, sorted by name.
func (f Finder) Runnable() []Plugin {
	var out []Plugin
	for _, p := range f.All() {
		if p.Runs() {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Match finds the plugin for a command line that starts with a plugin's
// first word: the longest run of leading words (up to the first that looks
// like a flag) naming a runnable plugin. It returns the plugin and how many
// words of args its name took; ok is false when none matches.
func (f Finder) Match(args []string) (p Plugin, n int, ok bool) {
	var words []string
	for _, a := range args {
		if a == "" || strings.HasPrefix(a, "-") {
			break
		}
		words = append(words, a)
	}
	if len(words) == 0 {
		return Plugin{}, 0, false
	}
	byName := map[string]Plugin{}
	for _, p := range f.Runnable() {
		byName[p.Name] = p
	}
	for n := len(words); n > 0; n-- {
		if p, ok := byName[strings.Join(words[:n], "-")]; ok {
			return p, n, true
		}
	}
	return Plugin{}, 0, false
}
