package remote

import (
	"strings"

	"github.com/senhasegura/orbit/internal/secretflag"
	"github.com/senhasegura/orbit/internal/shellquote"
	"github.com/spf13/pflag"
)

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

// shortValueWords is 1 when the shorthand cluster a (-vo) ends with a
// letter that takes its value from the next word, else 0.
func shortValueWords(a string, fs *pflag.FlagSet) int {
	for j := 1; j < len(a); j++ {
		if shortTakesValue(fs, a[j:j+1]) {
			if j == len(a)-1 {
				return 1
			}
			return 0
		}
	}
	return 0
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

// Secret is the value of a secret-bearing flag (one marked with
// secretflag.Mark) lifted off a command line.
type Secret struct {
	Flag     string // the flag it was given to, e.g. oauth2-client-secret
	FileFlag string // the flag that reads it from a file or "-", e.g. oauth2-client-secret-file
	Value    string
}

// LiftSecrets returns args with every secret-bearing flag that was given a
// value (--name VALUE or --name=VALUE) replaced by its file flag reading
// standard input (--name-file -), and the values taken out. A value of "-"
// already reads standard input and stays. fs, the parsed command's flags,
// says which flags are secret; everything from a bare "--" on is the
// command's and stays untouched.
func LiftSecrets(args []string, fs *pflag.FlagSet) ([]string, []Secret) {
	out := make([]string, 0, len(args))
	var secrets []Secret
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...), secrets
		}
		name, val, inline := "", "", false
		if strings.HasPrefix(a, "--") {
			name, val, inline = strings.Cut(a[2:], "=")
		}
		fileFlag, secret := "", false
		if fs != nil && name != "" {
			fileFlag, secret = secretflag.FileFlag(fs.Lookup(name))
		}
		if !secret && name == "" && len(a) > 1 && a[0] == '-' {
			out = append(out, a)
			if n := shortValueWords(a, fs); n > 0 && i+1 < len(args) {
				i++
				out = append(out, args[i])
			}
			continue
		}
		if !secret {
			out = append(out, a)
			// Keep a flag's value with it, so a value that looks like a
			// secret flag (--description --oauth2-client-secret) is not
			// taken for one.
			if name != "" && !inline && longTakesValue(fs, name) && i+1 < len(args) {
				i++
				out = append(out, args[i])
			}
			continue
		}
		if !inline {
			if i+1 >= len(args) {
				out = append(out, a) // the command reports the missing value
				continue
			}
			i++
			val = args[i]
		}
		if val == "-" {
			out = append(out, "--"+name, "-")
			continue
		}
		secrets = append(secrets, Secret{Flag: name, FileFlag: fileFlag, Value: val})
		out = append(out, "--"+fileFlag, "-")
	}
	return out, secrets
}

// Quote makes s one word for a POSIX shell (sshd runs the command through
// the remote user's login shell). Plain words stay as they are, so the
// command reads naturally in the remote auth log; anything else is
// single-quoted; a single quote inside ends the quoting, is escaped with a
// backslash, and the quoting starts again.
func Quote(s string) string {
	return shellquote.Quote(s) // orbit's one quoting, shared with printed commands
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
