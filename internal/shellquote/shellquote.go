// Package shellquote is orbit's one way to quote a word for a POSIX shell:
// commands printed for pasting (by the CLI through cmdutil, and by
// libraries in their hints) and the command line --host sends to sshd. It
// has no dependencies so that pkg/ libraries may use it too.
package shellquote

import "strings"

// Quote returns s as one word for a POSIX shell, for commands orbit
// prints to be pasted (next steps, fixes) and runs over SSH. A word made
// only of letters, digits and @%_+=:,./- is left as it is, so the command
// reads naturally; anything else is single-quoted, a single quote inside
// becoming '\”. The safe set is Python's shlex.quote's: none of those
// characters is special to sh, bash, dash or zsh inside a word (= only
// makes a first word an assignment, and orbit never quotes a first word
// that could be one; % only matters to job control at the start of fg's
// argument).
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	if strings.IndexFunc(s, unsafe) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func unsafe(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return false
	}
	return !strings.ContainsRune("@%_+=:,./-", r)
}

// Join quotes each word with Quote and joins them with spaces.
func Join(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = Quote(w)
	}
	return strings.Join(q, " ")
}
