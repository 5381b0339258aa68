package panel

import (
	"bytes"
	"strings"
	"testing"

	"github.com/senhasegura/orbit/internal/iostreams"
)

func TestFits(t *testing.T) {
	line := strings.Repeat("x", 76) // 80 columns once framed
	tests := []struct {
		name         string
		tty, noColor bool
		width        int
		content      string
		want         bool
	}{
		{"pipe", false, false, 200, "short", false},
		{"terminal with NO_COLOR", true, true, 200, "short", false},
		{"terminal, width unknown", true, false, 0, line + "x", true},
		{"exactly fits", true, false, 80, "a\n" + line, true},
		{"one column too wide", true, false, 79, "a\n" + line, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, _, _ := iostreams.Test()
			s.SetTTY(tt.tty, tt.tty, tt.tty)
			s.SetNoColor(tt.noColor)
			if got := Fits(s, tt.width, tt.content); got != tt.want {
				t.Errorf("Fits = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTerminalWidthOfNonTerminal(t *testing.T) {
	if w := TerminalWidth(&bytes.Buffer{})(); w != 0 {
		t.Errorf("a buffer has width %d, want 0", w)
	}
}
