package systemd

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/coreos/go-systemd/v22/unit"
)

// Installed is what matters of a unit file already on disk.
type Installed struct {
	// Argv is ExecStart split into words, systemd's quoting and escapes
	// undone.
	Argv []string
	// ConfigPath is the file the engine is started with: the word after
	// --config (orbit) or --config-file (the Python proxy); "" if neither.
	ConfigPath string
	// User is User=, "" when unset.
	User string
	// StateDirectory is StateDirectory= (relative to /var/lib), "" when
	// unset.
	StateDirectory string
	// Foreign is true when ExecStart does not run the Service's own
	// command (Service.Runs): another engine (the e-mail family's
	// register --exec) or a hand-written unit, which start and register's
	// hook never rewrite.
	Foreign bool
}

// ParseInstalled reads a unit file's content, judging whether it runs s's
// engine (Foreign).
func (s Service) ParseInstalled(data []byte) (Installed, error) {
	u, err := parseInstalled(data)
	if err != nil {
		return u, err
	}
	u.Foreign = !s.Runs(u.Argv)
	return u, nil
}

// Runs reports whether argv (an ExecStart) runs s's engine: the words of
// Args before its first option (such as "email-oauth2-proxy serve") appear
// in it in order. Args that start with an option cannot tell, and count as
// s's.
func (s Service) Runs(argv []string) bool {
	var sub []string
	for _, a := range s.Args {
		if strings.HasPrefix(a, "-") || a == ConfigPlaceholder {
			break
		}
		sub = append(sub, a)
	}
	if len(sub) == 0 {
		return true
	}
	for i := 0; i+len(sub) <= len(argv); i++ {
		match := true
		for j, w := range sub {
			if argv[i+j] != w {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

// parseInstalled reads a unit file's content; Foreign is left to the
// Service that asks.
func parseInstalled(data []byte) (Installed, error) {
	opts, err := unit.DeserializeOptions(bytes.NewReader(data))
	if err != nil {
		return Installed{}, fmt.Errorf("parsing the unit file: %w", err)
	}
	var u Installed
	exec := ""
	for _, o := range opts {
		if o.Section != "Service" {
			continue
		}
		switch o.Name {
		case "ExecStart":
			exec = o.Value
		case "User":
			u.User = o.Value
		case "StateDirectory":
			u.StateDirectory = strings.ReplaceAll(o.Value, "%%", "%")
		}
	}
	u.Argv = splitExec(exec)
	for i, w := range u.Argv {
		if (w == "--config" || w == "--config-file") && i+1 < len(u.Argv) {
			u.ConfigPath = u.Argv[i+1]
		} else if v, ok := strings.CutPrefix(w, "--config="); ok {
			u.ConfigPath = v
		} else if v, ok := strings.CutPrefix(w, "--config-file="); ok {
			u.ConfigPath = v
		}
	}
	return u, nil
}

// ReadInstalled reads and parses the unit file name (s's, or the one
// --unit renamed it to) below root ("" is the running system). A missing
// unit is an error wrapping fs.ErrNotExist.
func (s Service) ReadInstalled(root, name string) (Installed, error) {
	if name == "" {
		return Installed{}, errors.New("reading an installed unit: no unit named")
	}
	data, err := os.ReadFile(UnitPath(root, name))
	if err != nil {
		return Installed{}, err
	}
	u, err := s.ParseInstalled(data)
	if err != nil {
		return Installed{}, fmt.Errorf("%s: %w", UnitPath(root, name), err)
	}
	return u, nil
}

// InstalledConfig is the configuration file the installed unit name runs
// the engine with, on the running system.
// ok is false when no such unit is installed, it cannot be read or parsed,
// or its command line names no file: callers then use their default.
// This is what `config show/validate`, start, status and logs agree on.
func InstalledConfig(name string) (path string, ok bool) {
	u, err := Service{}.ReadInstalled("", name)
	if err != nil || u.ConfigPath == "" {
		return "", false
	}
	return u.ConfigPath, true
}

// IsNotInstalled reports whether err from ReadInstalled means there is no
// unit file.
func IsNotInstalled(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// splitExec undoes what Render does to ExecStart words: double quotes with
// C escapes, %% for %, $$ for $. A leading prefix character (@, -, :, +, !)
// on the first word is dropped.
func splitExec(s string) []string {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted && c == '\\' && i+1 < len(s):
			i++
			switch s[i] {
			case 'n':
				cur.WriteByte('\n')
			case 't':
				cur.WriteByte('\t')
			case 'x':
				if i+2 < len(s) {
					var b byte
					if _, err := fmt.Sscanf(s[i+1:i+3], "%02x", &b); err == nil {
						cur.WriteByte(b)
						i += 2
						continue
					}
				}
				cur.WriteByte('x')
			default:
				cur.WriteByte(s[i])
			}
		case c == '"':
			quoted = !quoted
			inWord = true
		case !quoted && (c == ' ' || c == '\t'):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	for i, w := range words {
		w = strings.ReplaceAll(w, "%%", "%")
		words[i] = strings.ReplaceAll(w, "$$", "$")
	}
	if len(words) > 0 {
		words[0] = strings.TrimLeft(words[0], "@-:+!")
	}
	return words
}
