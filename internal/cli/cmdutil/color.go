package cmdutil

import (
	"github.com/charmbracelet/lipgloss"
	"github.com/senhasegura/orbit/internal/iostreams"
)

// ColorScheme is orbit's one set of colours, so that "good", "needs
// attention" and "broken" look the same in every command. On a stream
// without colour (not a terminal, NO_COLOR, TERM=dumb) every method returns
// its text unchanged, so callers never branch on colour themselves.
type ColorScheme struct {
	r                         *lipgloss.Renderer
	enabled                   bool
	success, warning, failure lipgloss.Style
	bold, faint               lipgloss.Style
}

// NewColorScheme returns the scheme for io's standard output.
func NewColorScheme(io *iostreams.IOStreams) *ColorScheme {
	r := io.Renderer()
	return &ColorScheme{
		r:       r,
		enabled: io.ColorEnabled(),
		success: r.NewStyle().Bold(true).Foreground(lipgloss.Color("10")),
		warning: r.NewStyle().Bold(true).Foreground(lipgloss.Color("11")),
		failure: r.NewStyle().Bold(true).Foreground(lipgloss.Color("9")),
		bold:    r.NewStyle().Bold(true),
		faint:   r.NewStyle().Faint(true),
	}
}

// Enabled reports whether the scheme colours anything.
func (c *ColorScheme) Enabled() bool { return c.enabled }

// Success is for what works: running, valid, authorised.
func (c *ColorScheme) Success(s string) string { return c.success.Render(s) }

// Warning is for what needs attention but works.
func (c *ColorScheme) Warning(s string) string { return c.warning.Render(s) }

// Failure is for what is broken.
func (c *ColorScheme) Failure(s string) string { return c.failure.Render(s) }

// Bold emphasises without judging.
func (c *ColorScheme) Bold(s string) string { return c.bold.Render(s) }

// Faint is for secondary text (systemd's own lines, hints).
func (c *ColorScheme) Faint(s string) string { return c.faint.Render(s) }

// SuccessIcon is a check mark in the success colour.
func (c *ColorScheme) SuccessIcon() string { return c.Success("✓") }

// Box draws s in orbit's panel frame: a rounded border with one column of
// padding. Only call it where internal/cli/panel says a panel fits; the
// frame is drawn whatever the colour support.
func (c *ColorScheme) Box(s string) string {
	return c.r.NewStyle().Border(lipgloss.RoundedBorder()).Padding(0, 1).Render(s)
}
