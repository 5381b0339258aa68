package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/senhasegura/orbit/internal/shellquote"
)

// CheckPermissions reports the proxy's files that other local users could
// read or change, as diagnostics without a line (they are about the file,
// not a value in it):
//
//   - a configuration file writable by its group or others is an Error:
//     whoever can edit it can point token_url at their own server and
//     collect every mailer's password (and the client secret);
//   - a token store (tokenPath; skipped when empty or missing) readable or
//     writable by its group or others is an Error: its tokens are encrypted
//     under the mailers' passwords, which a copy can be attacked for
//     offline;
//   - a configuration file readable by others while it holds a
//     client_secret is a Warning.
//
// c may be nil (a file that does not parse); the client secret check is
// then skipped. orbit itself always writes these files 0600.
func CheckPermissions(configPath string, c *Config, tokenPath string) []Diagnostic {
	var ds []Diagnostic
	if fi, err := os.Stat(configPath); err == nil {
		mode := fi.Mode().Perm()
		if mode&0o022 != 0 {
			ds = append(ds, Diagnostic{Severity: Error,
				Message: fmt.Sprintf("the configuration file %s is writable by %s (mode %04o): any local user could point token_url at their own server and collect the mailers' passwords", configPath, who(mode, 0o020, 0o002), mode),
				Hint:    "chmod 600 " + shellquote.Quote(configPath)})
		}
		if mode&0o004 != 0 && c != nil && holdsClientSecret(c) {
			ds = append(ds, Diagnostic{Severity: Warning,
				Message: fmt.Sprintf("the configuration file %s holds a client_secret and is readable by every local user (mode %04o)", configPath, mode),
				Hint:    "chmod 600 " + shellquote.Quote(configPath)})
		}
	}
	if tokenPath == "" {
		return ds
	}
	fi, err := os.Stat(tokenPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		// Reading it is the engine's business; it reports a clearer error.
	default:
		if mode := fi.Mode().Perm(); mode&0o066 != 0 {
			ds = append(ds, Diagnostic{Severity: Error,
				Message: fmt.Sprintf("the token store %s is open to %s (mode %04o): a copy of its encrypted tokens can be attacked offline for the mailers' passwords", tokenPath, who(mode, 0o060, 0o006), mode),
				Hint:    "chmod 600 " + shellquote.Quote(tokenPath)})
		}
	}
	return ds
}

// who names the classes that have a bit of mask (group bits, other bits).
func who(mode, group, other fs.FileMode) string {
	switch {
	case mode&group != 0 && mode&other != 0:
		return "its group and all other users"
	case mode&group != 0:
		return "its group"
	}
	return "all other users"
}

func holdsClientSecret(c *Config) bool {
	for _, s := range append([]string{DefaultSection}, c.Sections()...) {
		if v, ok := c.Get(s, "client_secret"); ok && strings.TrimSpace(v) != "" {
			return true
		}
	}
	return false
}
