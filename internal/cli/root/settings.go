package root

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// sharedFlags are command flags that mean the same in every family and so
// are read from orbit's global namespace (ORBIT_OUTPUT, `output:`), like
// the root command's own flags (--host, --ssh-*, --settings).
var sharedFlags = map[string]bool{"output": true}

// flatNameFamilies still read their flags from the flat names orbit used
// before settings were scoped by family (ORBIT_CONFIG, a top-level
// `config:`), below the scoped names and with a deprecation warning:
// provisioning scripts pass ORBIT_OAUTH2_CLIENT_SECRET and ORBIT_CONFIG
// today, and silently ignoring them would register without a secret or
// act on the wrong file. New families never read flat names, so a flat
// ORBIT_CONFIG cannot leak into them.
var flatNameFamilies = map[string]bool{"email-oauth2-proxy": true}

// familyOf is the family a command belongs to: the name of its ancestor
// just below the root when that is a registered family; "" for orbit's own
// commands (version, plugin list).
func (st *rootState) familyOf(c *cobra.Command) string {
	for ; c.HasParent(); c = c.Parent() {
		if !c.Parent().HasParent() && st.families[c.Name()] {
			return c.Name()
		}
	}
	return ""
}

// EnvName is the environment variable for a flag: ORBIT_, the family in
// capitals with dashes as underscores and a _ when scoped, then the flag
// likewise (ORBIT_EMAIL_OAUTH2_PROXY_CONFIG, ORBIT_OUTPUT).
func EnvName(family, flag string) string {
	up := func(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }
	if family == "" {
		return "ORBIT_" + up(flag)
	}
	return "ORBIT_" + up(family) + "_" + up(flag)
}

// settingSource is one place a flag's value may come from.
type settingSource struct {
	env     string // an environment variable, or
	key     string // a settings-file key (family.flag for a section)
	flatFor string // a deprecated flat name, for this family
}

// sources lists where flag fl of a command in family may be set, highest
// precedence first (the command line is above them all).
func sources(family string, fl *pflag.Flag, root *cobra.Command) []settingSource {
	global := root.PersistentFlags().Lookup(fl.Name) != nil || sharedFlags[fl.Name]
	if global || family == "" {
		return []settingSource{{env: EnvName("", fl.Name)}, {key: fl.Name}}
	}
	out := []settingSource{{env: EnvName(family, fl.Name)}, {key: family + "." + fl.Name}}
	if flatNameFamilies[family] {
		out = append(out, settingSource{env: EnvName("", fl.Name), flatFor: family}, settingSource{key: fl.Name, flatFor: family})
	}
	return out
}

// applySettings fills every flag the user did not set from the first of
// its sources that has a value (environment, then the settings file), so
// commands read one value whatever its source. The environment is the
// factory's (f.Getenv), never the process's behind a test's back.
func applySettings(c *cobra.Command, f *factory.Factory, st *rootState, explicit string) error {
	v := f.Settings
	path, mustExist := explicit, explicit != ""
	if path == "" {
		if p := f.Getenv("ORBIT_SETTINGS"); p != "" {
			path, mustExist = p, true
		} else {
			path = DefaultSettingsPath
		}
	}
	v.SetConfigFile(path)
	if filepath.Ext(path) == "" {
		v.SetConfigType("yaml") // e.g. /dev/null, or a file named without extension
	}
	if err := v.ReadInConfig(); err != nil {
		var pe *fs.PathError
		notFound := errors.As(err, &pe) && errors.Is(pe.Err, fs.ErrNotExist)
		denied := errors.Is(err, fs.ErrPermission)
		switch {
		case denied && !mustExist:
			// The default file is root's (/etc/orbit is 0700 as
			// packaged): an administrator without sudo, or the unit's
			// service user running serve, must still get a working
			// command, told that root's settings do not apply to it.
			fmt.Fprintf(f.IO.ErrOut, "orbit: warning: cannot read the settings file %s (permission denied); going on without it (run as root, or name a readable file with --settings)\n", path)
		case denied:
			return exitcode.Withf(exitcode.Permission, "reading settings file %s: %v\nRun as root, or name a file you may read with --settings or ORBIT_SETTINGS.", path, err)
		case !notFound || mustExist:
			return exitcode.Withf(exitcode.Invalid, "reading settings file %s: %v\nFix the file, or name another with --settings or ORBIT_SETTINGS.", path, err)
		}
	} else {
		st.settingsFile = path
	}

	family := st.familyOf(c)
	var firstErr error
	c.Flags().VisitAll(func(fl *pflag.Flag) {
		if fl.Changed || firstErr != nil || fl.Name == "help" || fl.Name == "settings" {
			return
		}
		for _, src := range sources(family, fl, c.Root()) {
			var (
				val   string
				list  []string
				where string
			)
			if src.env != "" {
				val = f.Getenv(src.env)
				if val == "" {
					continue
				}
				list, where = strings.Fields(val), src.env
			} else {
				// A section (email-oauth2-proxy:) is not a value of a flat key.
				if !v.IsSet(src.key) || isSection(v.Get(src.key)) {
					continue
				}
				val, list, where = v.GetString(src.key), v.GetStringSlice(src.key), path+": "+src.key
			}
			if src.flatFor != "" {
				warnFlat(f, st, src, fl.Name)
			}
			firstErr = setFlag(c, fl, val, list, where)
			return
		}
	})
	return firstErr
}

func isSection(x any) bool {
	_, ok := x.(map[string]any)
	return ok
}

// setFlag sets fl from a setting. Marking the flag changed lets commands
// treat a value from the environment or settings file as explicit (it
// beats a preset).
func setFlag(c *cobra.Command, fl *pflag.Flag, val string, list []string, where string) error {
	if sv, ok := fl.Value.(pflag.SliceValue); ok {
		if err := sv.Replace(list); err != nil {
			return exitcode.Withf(exitcode.Usage, "--%s from %s: %v", fl.Name, where, err)
		}
		fl.Changed = true
		return nil
	}
	if err := c.Flags().Set(fl.Name, val); err != nil {
		return exitcode.Withf(exitcode.Usage, "--%s from %s: %v", fl.Name, where, err)
	}
	return nil
}

// warnFlat says, once per name and run, that a flat name was used and what
// replaces it. The value itself is never shown: it may be a secret.
func warnFlat(f *factory.Factory, st *rootState, src settingSource, flag string) {
	name := src.env
	if name == "" {
		name = "settings key " + src.key
	}
	if st.warned == nil {
		st.warned = map[string]bool{}
	}
	if st.warned[name] {
		return
	}
	st.warned[name] = true
	if src.env != "" {
		fmt.Fprintf(f.IO.ErrOut, "orbit: warning: %s is deprecated (a later release will ignore it); use %s\n", src.env, EnvName(src.flatFor, flag))
		return
	}
	fmt.Fprintf(f.IO.ErrOut, "orbit: warning: %q at the top of the settings file is deprecated (a later release will ignore it); move it into the %q section\n", src.key+":", src.flatFor+":")
}
