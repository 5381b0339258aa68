// Package panel decides whether a command's human output is drawn as a
// bordered panel, and how wide the terminal is. A panel is only drawn where
// it helps: on a terminal that allows decoration (no NO_COLOR, not dumb) and
// wide enough for it, since a box wrapped by the terminal is unreadable.
package panel

import (
	"io"
	"os"
	"strings"

	"github.com/charmbracelet/lipgloss"
	"github.com/senhasegura/orbit/internal/iostreams"
	"golang.org/x/sys/unix"
)

// frame is what a rounded border with one column of padding each side adds
// to the widest line.
const frame = 4

// Fits reports whether content may be drawn in a panel on s's standard
// output, width columns wide (0: unknown, taken as wide enough).
func Fits(s *iostreams.IOStreams, width int, content string) bool {
	if !s.ColorEnabled() {
		return false
	}
	if width <= 0 {
		return true
	}
	widest := 0
	for _, l := range strings.Split(content, "\n") {
		widest = max(widest, lipgloss.Width(l))
	}
	return widest+frame <= width
}

// TerminalWidth returns a function that reports w's width in columns when w
// is a terminal, and 0 otherwise.
func TerminalWidth(w io.Writer) func() int {
	return func() int {
		f, ok := w.(*os.File)
		if !ok {
			return 0
		}
		ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
		if err != nil {
			return 0
		}
		return int(ws.Col)
	}
}
