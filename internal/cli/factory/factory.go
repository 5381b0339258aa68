// Package factory holds what every command is built from: its streams,
// orbit's own settings (viper), and the few process facts commands need.
// Tests build a Factory over buffers and call commands' run functions.
package factory

import (
	"os"
	"time"

	"github.com/senhasegura/orbit/internal/cli/panel"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/spf13/viper"
)

// Factory is the set of dependencies injected into every command.
type Factory struct {
	IO *iostreams.IOStreams
	// Settings holds orbit's settings file once read; with Getenv it is the
	// only source of settings (flag > environment > settings file > default,
	// per family: internal/cli/root/settings.go, docs/architecture.md).
	Settings *viper.Viper
	// Executable is the path of the running orbit binary; the systemd unit
	// runs this same binary as the engine.
	Executable func() (string, error)
	// Hostname names this appliance in default redirect URIs.
	Hostname func() (string, error)
	Now      func() time.Time
	// Getenv reads the environment: settings (ORBIT_OUTPUT,
	// ORBIT_EMAIL_OAUTH2_PROXY_CONFIG...), PATH for plugins. Tests inject
	// their own; nothing reads os.Getenv behind it.
	Getenv func(string) string
	// Environ is the whole environment, which plugins inherit.
	Environ func() []string
	// TerminalWidth is standard output's width in columns, 0 when it is not
	// a terminal: panels are only drawn where they fit.
	TerminalWidth func() int
}

// New returns a Factory for the real process.
func New(io *iostreams.IOStreams) *Factory {
	return &Factory{
		IO:         io,
		Settings:   viper.New(),
		Executable: os.Executable,
		Hostname:   os.Hostname,
		Now:        time.Now,
		Getenv:     os.Getenv,
		Environ:    os.Environ,

		TerminalWidth: panel.TerminalWidth(io.Out),
	}
}
