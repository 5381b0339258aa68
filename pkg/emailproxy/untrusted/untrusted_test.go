package untrusted

import (
	"strings"
	"testing"
)

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.com":            "alice@example.com",
		"a\r\nb\x00c\x1b[31m":          "a??b?c?[31m",
		"ünïcode@example.com":          "ünïcode@example.com",
		strings.Repeat("x", MaxLen+10): strings.Repeat("x", MaxLen) + "...",
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}
