package cmdutil

import "github.com/senhasegura/orbit/internal/shellquote"

// ShellQuote returns s as one word for a POSIX shell, for commands a
// command prints to be pasted: internal/shellquote, orbit's one quoting
// (shlex's safe set, left bare; anything else single-quoted).
func ShellQuote(s string) string { return shellquote.Quote(s) }

// ShellJoin quotes each word with ShellQuote and joins them with spaces.
func ShellJoin(words ...string) string { return shellquote.Join(words...) }
