package remote

import (
	"strings"

	"github.com/senhasegura/orbit/internal/cli/cmdutil"
	"github.com/spf13/pflag"
)

// LocalFlags are the flags that configure the connection itself. They are
// consumed by the local orbit and never forwarded: the remote orbit would
// otherwise try to connect onwards, or reject a key path it cannot read.
var LocalFlags = []string{"host", "ssh-user", "ssh-port", "ssh-identity", "ssh-known-hosts", "remote-orbit"}

// Args returns the arguments to run remotely: args without the flags named
// in drop (each in its --name=value or --name value form). fs, the parsed
// command's flags, tells which other flags take a value, so that a value
// which happens to look like a dropped flag (`--description --host`) stays
// with its flag. A nil fs treats every unknown flag as a switch. Everything
// from a bare "--" on is copied untouched: it belongs to the command.
func Args(args []string, drop []string, fs *pflag.FlagSet) []string {
	dropped := make(map[string]bool, len(drop))
	for _, d := range drop {
		dropped[d] = true
	}
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(out, args[i:]...)
		case strings.HasPrefix(a, "--"):
			name, _, inline := strings.Cut(a[2:], "=")
			// Every dropped flag takes a value, whatever fs knows about it.
			takes := !inline && (dropped[name] || longTakesValue(fs, name))
			if dropped[name] {
				if takes && i+1 < len(args) {
					i++
				}
				continue
			}
			out = append(out, a)
			if takes && i+1 < len(args) {
				i++
				out = append(out, args[i])
			}
		case len(a) > 1 && a[0] == '-':
			out = append(out, a)
			// A shorthand cluster (-vo json, -ojson): the first letter that
			// takes a value swallows the rest of the word, or the next word.
			for j := 1; j < len(a); j++ {
				if !shortTakesValue(fs, a[j:j+1]) {
					continue
				}
				if j == len(a)-1 && i+1 < len(args) {
					i++
					out = append(out, args[i])
				}
				break
			}
		default:
			out = append(out, a)
		}
	}
	return out
}

func longTakesValue(fs *pflag.FlagSet, name string) bool {
	if fs == nil {
		return false
	}
	f := fs.Lookup(name)
	return f != nil && f.NoOptDefVal == ""
}

func shortTakesValue(fs *pflag.FlagSet, short string) bool {
	if fs == nil {
		return false
	}
	f := fs.ShorthandLookup(short)
	return f != nil && f.NoOptDefVal == ""
}

// SecretInArgs reports whether args (before a bare "--") carry
// --oauth2-client-secret with its value on the command line, where the
// remote process list and shell history would show it.
func SecretInArgs(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--oauth2-client-secret" || strings.HasPrefix(a, "--oauth2-client-secret=") {
			return true
		}
	}
	return false
}

// Quote makes s one word for a POSIX shell (sshd runs the command through
// the remote user's login shell). Plain words stay as they are, so the
// command reads naturally in the remote auth log; anything else is
// single-quoted; a single quote inside ends the quoting, is escaped with a
// backslash, and the quoting starts again.
func Quote(s string) string {
	return cmdutil.ShellQuote(s) // orbit's one quoting, shared with printed commands
}

// CommandLine is the command string sent to sshd: program then args, each
// quoted. A program word with "=" is always quoted, since the shell would
// read a plain NAME=value first word as a variable assignment.
func CommandLine(program string, args []string) string {
	var b strings.Builder
	if strings.Contains(program, "=") {
		b.WriteString("'" + strings.ReplaceAll(program, "'", `'\''`) + "'")
	} else {
		b.WriteString(Quote(program))
	}
	for _, a := range args {
		b.WriteByte(' ')
		b.WriteString(Quote(a))
	}
	return b.String()
}
