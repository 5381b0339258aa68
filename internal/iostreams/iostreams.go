// Package iostreams carries a command's standard streams and what is known
// about them (terminal or not, colour or not), so that commands are tested
// with buffers and still choose TTY or script output the same way.
package iostreams

import (
	"bytes"
	"io"
	"os"

	"github.com/charmbracelet/lipgloss"
	"github.com/mattn/go-isatty"
	"github.com/muesli/termenv"
)

// IOStreams are a command's input and outputs.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	inTTY, outTTY, errTTY bool
	noColor               bool
}

// System returns the process's own streams, probing whether each is a
// terminal. NO_COLOR (any non-empty value, https://no-color.org) and
// TERM=dumb turn colour off.
func System() *IOStreams {
	return &IOStreams{
		In:      os.Stdin,
		Out:     os.Stdout,
		ErrOut:  os.Stderr,
		inTTY:   isTerminal(os.Stdin),
		outTTY:  isTerminal(os.Stdout),
		errTTY:  isTerminal(os.Stderr),
		noColor: os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb",
	}
}

func isTerminal(f *os.File) bool {
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

// Test returns streams over buffers: stdin, stdout, stderr. None is a
// terminal until SetTTY says so.
func Test() (*IOStreams, *bytes.Buffer, *bytes.Buffer, *bytes.Buffer) {
	in, out, errOut := &bytes.Buffer{}, &bytes.Buffer{}, &bytes.Buffer{}
	return &IOStreams{In: in, Out: out, ErrOut: errOut}, in, out, errOut
}

// SetTTY pretends (in tests) that stdin, stdout and stderr are terminals.
func (s *IOStreams) SetTTY(in, out, err bool) { s.inTTY, s.outTTY, s.errTTY = in, out, err }

// SetNoColor turns colour off, as NO_COLOR does.
func (s *IOStreams) SetNoColor(v bool) { s.noColor = v }

// IsStdinTTY reports whether input comes from a terminal.
func (s *IOStreams) IsStdinTTY() bool { return s.inTTY }

// IsStdoutTTY reports whether output goes to a terminal: choose the human
// layout when true, the plain one for scripts and pipes otherwise.
func (s *IOStreams) IsStdoutTTY() bool { return s.outTTY }

// IsStderrTTY reports whether errors go to a terminal.
func (s *IOStreams) IsStderrTTY() bool { return s.errTTY }

// CanPrompt reports whether a question can be asked and answered: both
// ends must be a terminal (never in CI, cron or a provisioning script).
func (s *IOStreams) CanPrompt() bool { return s.inTTY && s.outTTY }

// ColorEnabled reports whether stdout may carry colour and boxes.
func (s *IOStreams) ColorEnabled() bool { return s.outTTY && !s.noColor }

// Renderer returns a lipgloss renderer for stdout: styled on a colour
// terminal, plain text (styles reduced to nothing) otherwise.
func (s *IOStreams) Renderer() *lipgloss.Renderer {
	r := lipgloss.NewRenderer(s.Out)
	if s.ColorEnabled() {
		r.SetColorProfile(termenv.ANSI256)
	} else {
		r.SetColorProfile(termenv.Ascii)
	}
	return r
}
