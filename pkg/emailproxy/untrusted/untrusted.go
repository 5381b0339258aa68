// Package untrusted makes text that clients control safe to put into
// protocol replies and logs: a login name can carry line breaks (a forged
// reply or log line), terminal escapes, or megabytes.
package untrusted

import (
	"strings"
	"unicode"
)

// MaxLen bounds what Printable keeps of a name.
const MaxLen = 256

// Printable replaces every non-printable rune of s with '?' and cuts it at
// MaxLen bytes, marking the cut.
func Printable(s string) string {
	if len(s) > MaxLen {
		s = s[:MaxLen] + "..."
	}
	return strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, s)
}
