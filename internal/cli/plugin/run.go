package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
)

// Context is what orbit tells a plugin through ORBIT_* variables, added to
// the environment orbit itself was given (docs/plugins.md lists them).
type Context struct {
	Name       string // the plugin's name, words joined by dashes
	Version    string // orbit's version
	Executable string // orbit's own binary, for plugins that call orbit back
	// SettingsFile is the settings file orbit read, "" when none: the
	// plugin can read its own section from it.
	SettingsFile string
	StdoutTTY    bool
	// NoColor is true when orbit would not colour its own output on this
	// terminal (NO_COLOR or TERM=dumb).
	NoColor bool
}

// Environ returns base with the context's variables set (replacing any
// earlier value of the same name).
func (c Context) Environ(base []string) []string {
	set := map[string]string{
		"ORBIT_PLUGIN_NAME": c.Name,
		"ORBIT_VERSION":     c.Version,
		"ORBIT_EXECUTABLE":  c.Executable,
		"ORBIT_STDOUT_TTY":  boolWord(c.StdoutTTY),
	}
	if c.SettingsFile != "" {
		set["ORBIT_SETTINGS"] = c.SettingsFile
	}
	if c.NoColor {
		set["NO_COLOR"] = "1"
	}
	out := make([]string, 0, len(base)+len(set))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, over := set[k]; !over {
			out = append(out, kv)
		}
	}
	for _, k := range []string{"ORBIT_PLUGIN_NAME", "ORBIT_VERSION", "ORBIT_EXECUTABLE", "ORBIT_SETTINGS", "ORBIT_STDOUT_TTY", "NO_COLOR"} {
		if v, ok := set[k]; ok {
			out = append(out, k+"="+v)
		}
	}
	return out
}

func boolWord(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// ownStreams reports whether io is the process's own standard streams, the
// only case where orbit can hand them over by replacing itself.
func ownStreams(io *iostreams.IOStreams) bool {
	return io.In == os.Stdin && io.Out == os.Stdout && io.ErrOut == os.Stderr
}

// execFn is syscall.Exec; a variable only so that a test can prove the
// choice between replacing the process and running a child.
var execFn = syscall.Exec

// Run runs the plugin with args (passed exactly as given) and env.
//
// When io is the process's own streams, orbit replaces itself with the
// plugin (execve, as kubectl does): the plugin keeps orbit's process ID,
// terminal and process group, so every signal sent to "orbit" (Ctrl-C,
// SIGTERM from a script or systemd, SIGWINCH) reaches the plugin as if it
// had been started directly, and its exit status is the status the caller
// sees, with nothing in between to get either wrong. Run only returns in
// that case if the exec itself fails.
//
// Otherwise (tests, or orbit embedded with other streams) the plugin runs as
// a child on those streams; cancelling ctx sends it SIGTERM (then SIGKILL
// after a grace period), and its exit status is returned as a silent exit
// code: 128+N when it died of signal N, as shells report it.
func Run(ctx context.Context, p Plugin, args, env []string, io *iostreams.IOStreams) error {
	if ownStreams(io) {
		err := execFn(p.Path, append([]string{p.Path}, args...), env)
		return runError(p, err)
	}
	cmd := exec.CommandContext(ctx, p.Path, args...)
	cmd.Args[0] = p.Path
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = io.In, io.Out, io.ErrOut
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		return exitcode.Silent(ExitStatus(ee.ProcessState))
	default:
		return runError(p, err)
	}
}

func runError(p Plugin, err error) error {
	code := exitcode.Error
	if errors.Is(err, os.ErrPermission) {
		code = exitcode.Permission
	}
	return exitcode.With(code, fmt.Errorf("running plugin %s: %w", p.Path, err))
}

// ExitStatus is a finished process's status as a shell reports it: its exit
// code, or 128+N when signal N killed it.
func ExitStatus(ps *os.ProcessState) exitcode.Code {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exitcode.Code(128 + int(ws.Signal()))
	}
	return exitcode.Code(ps.ExitCode())
}
