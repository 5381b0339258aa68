package root

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// pluginDir puts a few plugins on a PATH of their own (with /bin for sh).
func pluginDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	plugins := map[string]string{
		// Reports exactly what it was given.
		"orbit-hello":       `printf '%s|' hello "$#" "$@"; echo; env | grep -E '^(ORBIT_[A-Z_]*|NO_COLOR)=' | sort; exit 7`,
		"orbit-hello-world": `printf '%s|' hello-world "$@"; echo`,
		"orbit-version":     `echo "a plugin ran instead of the built-in"; exit 99`,
		"orbit-cobra": `if [ "$1" = __complete ]; then shift; echo "--ask	a flag of the plugin"; echo "got $#: $*"; echo ":4"; exit 0; fi
exit 1`,
	}
	for name, body := range plugins {
		writeFile(t, filepath.Join(dir, name), "#!/bin/sh\n"+body+"\n")
		if err := os.Chmod(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+":/usr/bin:/bin")
	return dir
}

func TestPluginRuns(t *testing.T) {
	dir := pluginDir(t)
	settings := filepath.Join(t.TempDir(), "orbit.yaml")
	writeFile(t, settings, "output: text\n")
	tests := []struct {
		name string
		args []string
		code int
		out  string // prefix of standard output
	}{
		{"arguments untouched, orbit's flags and -help included", []string{"hello", "a b", "--host", "h", "-help", "--", "--settings=x"}, 7, "hello|6|a b|--host|h|-help|--|--settings=x|\n"},
		{"flags before the name are orbit's", []string{"--settings", settings, "hello", "x"}, 7, "hello|1|x|\n"},
		{"longest name first", []string{"hello", "world", "--x"}, 0, "hello-world|--x|\n"},
		{"dashes typed as in the file name", []string{"hello-world", "y"}, 0, "hello-world|y|\n"},
		{"a flag ends the name", []string{"hello", "--x", "world"}, 7, "hello|2|--x|world|\n"},
		{"built-ins always win", []string{"version", "--output", "json"}, 0, "{"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, nil, tt.args...)
			if code != tt.code || !strings.HasPrefix(out, tt.out) {
				t.Errorf("orbit %q: exit %d, stdout %q, stderr %q; want exit %d, stdout starting %q", tt.args, code, out, errOut, tt.code, tt.out)
			}
		})
	}

	_, out, _ := run(t, nil, "--settings", settings, "hello")
	for _, want := range []string{"ORBIT_PLUGIN_NAME=hello\n", "ORBIT_SETTINGS=" + settings + "\n", "ORBIT_STDOUT_TTY=false\n", "ORBIT_VERSION=", "ORBIT_EXECUTABLE=/"} {
		if !strings.Contains(out, want) {
			t.Errorf("plugin environment lacks %q:\n%s", want, out)
		}
	}

	code, _, errOut := run(t, nil, "nosuch", "--whatever")
	if code != int(exitcode.Usage) || !strings.Contains(errOut, `unknown command "nosuch" for "orbit"`) {
		t.Errorf("unknown command: exit %d, %q", code, errOut)
	}
	_ = dir
}

func TestPluginHelpAndList(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, plain, _ := run(t, nil, "--help")
	if strings.Contains(plain, "Plugin Commands") {
		t.Errorf("help without plugins has a plugin group:\n%s", plain)
	}
	dir := pluginDir(t)
	_, help, _ := run(t, nil, "--help")
	builtinAt, pluginAt := strings.Index(help, "Available Commands:"), strings.Index(help, "Plugin Commands:")
	if builtinAt < 0 || pluginAt < builtinAt || !strings.Contains(help[pluginAt:], "hello ") || !strings.Contains(help[pluginAt:], "orbit-hello, orbit-hello-world") ||
		strings.Contains(help[builtinAt:pluginAt], "hello") || strings.Contains(help[pluginAt:], "version") {
		t.Errorf("orbit --help does not list plugins in their own group:\n%s", help)
	}
	code, out, errOut := run(t, nil, "plugin", "list")
	if code != 0 || !strings.Contains(out, "orbit hello world   "+dir+"/orbit-hello-world\n") ||
		!strings.Contains(errOut, dir+`/orbit-version is shadowed by the built-in command "version"`) {
		t.Errorf("plugin list: exit %d\n%s---\n%s", code, out, errOut)
	}
}

func TestPluginCompletion(t *testing.T) {
	pluginDir(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"__complete", "h"}, "hello\tplugin: orbit-hello, orbit-hello-world\n"},
		{[]string{"__complete", "hello", ""}, "world\tplugin orbit-hello-world\n"},
		{[]string{"__complete", "cobra", "x", "--y", ""}, "--ask\ta flag of the plugin\ngot 3: x --y \n:4\n"},
		{[]string{"__completeNoDesc", "cobra", "-"}, "--ask\ngot 1: -\n:4\n"},
		{[]string{"__complete", "--settings", "/dev/null", "cobra", ""}, "--ask\ta flag of the plugin\ngot 1: \n:4\n"},
	}
	for _, tt := range tests {
		code, out, errOut := run(t, nil, tt.args...)
		if code != 0 || !strings.Contains(out, tt.want) {
			t.Errorf("orbit %q: exit %d, %q (stderr %q); want %q", tt.args, code, out, errOut, tt.want)
		}
	}
}

// TestPluginExecBinary runs the built orbit binary: there orbit replaces
// itself with the plugin, so the plugin has orbit's process ID, and a
// signal sent to the orbit process the caller started is the plugin's.
func TestPluginExecBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the orbit binary (-short)")
	}
	bin := testenv.BuildOrbit(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "orbit-pid"), "#!/bin/sh\necho $$\nexit 5\n")
	writeFile(t, filepath.Join(dir, "orbit-wait"), "#!/bin/sh\ntrap 'echo TERM; exit 42' TERM\necho ready\nwhile :; do sleep 0.05; done\n")
	for _, n := range []string{"orbit-pid", "orbit-wait"} {
		if err := os.Chmod(filepath.Join(dir, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env := append(os.Environ(), "PATH="+dir+":/usr/bin:/bin", "ORBIT_SETTINGS=")

	var out bytes.Buffer
	cmd := exec.Command(bin, "pid")
	cmd.Env, cmd.Stdout = env, &out
	err := cmd.Run()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 5 || strings.TrimSpace(out.String()) != strconv.Itoa(cmd.Process.Pid) {
		t.Errorf("orbit pid: %v, output %q, orbit's pid %d; want exit 5 and the same pid", err, out.String(), cmd.Process.Pid)
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(bin, "wait")
	cmd.Env, cmd.Stdout = env, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	buf := make([]byte, 64)
	r.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := r.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "ready") {
		t.Fatalf("plugin did not start: %q %v", buf[:n], err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	rest := make([]byte, 64)
	n, _ := r.Read(rest)
	if cmd.ProcessState.ExitCode() != 42 || !strings.Contains(string(rest[:n]), "TERM") {
		t.Errorf("SIGTERM to orbit: %v, output %q; want the plugin's trap to exit 42", err, rest[:n])
	}
}

// TestBuiltinsDoNotLookForPlugins: a built-in command never reads PATH, so
// it pays nothing for plugins; help and unknown words do.
func TestBuiltinsDoNotLookForPlugins(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.yaml")
	writeFile(t, empty, "")
	for _, tt := range []struct {
		args []string
		scan bool
	}{
		{[]string{"version"}, false},
		{[]string{"email-oauth2-proxy", "config", "validate", "--config", "/nonexistent"}, false},
		{[]string{"--help"}, true},
		{[]string{"help"}, true},
		{[]string{"nosuch"}, true},
		{[]string{"plugin", "list"}, true},
	} {
		read := false
		io, _, _, _ := iostreams.Test()
		f := factory.New(io)
		f.Getenv = func(k string) string {
			switch k {
			case "PATH":
				read = true
				return t.TempDir()
			case "ORBIT_SETTINGS":
				return empty
			}
			return ""
		}
		Run(context.Background(), tt.args, f)
		if read != tt.scan {
			t.Errorf("orbit %q read PATH: %v, want %v", tt.args, read, tt.scan)
		}
	}
}
