package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/output"
)

func script(t *testing.T, dir, name, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func builtin(w string) bool { return w == "version" || w == "email-oauth2-proxy" }

func TestFinderAllWarnings(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	script(t, a, "orbit-foo", "", 0o755)
	script(t, a, "orbit-foo-bar", "", 0o755)
	script(t, a, "orbit-noexec", "", 0o644)
	script(t, a, "orbit-version", "", 0o755)
	script(t, a, "orbit-", "", 0o755)    // no name
	script(t, a, "other", "", 0o755)     // not a plugin
	script(t, b, "orbit-foo", "", 0o755) // behind a's
	script(t, b, "orbit-noexec", "", 0o755)
	if err := os.Mkdir(filepath.Join(b, "orbit-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := Finder{Path: strings.Join([]string{a, "", "relative/dir", b, a}, ":"), Builtin: builtin}

	got := map[string][]string{}
	for _, p := range f.All() {
		got[p.Path] = p.Warnings
	}
	want := map[string][]string{
		a + "/orbit-foo":     {},
		a + "/orbit-foo-bar": {},
		a + "/orbit-noexec":  {"is not executable (chmod +x " + a + "/orbit-noexec)"},
		a + "/orbit-version": {`is shadowed by the built-in command "version"`},
		b + "/orbit-foo":     {"is shadowed by " + a + "/orbit-foo, earlier in PATH"},
		b + "/orbit-noexec":  {}, // the first executable orbit-noexec: exec runs it
	}
	if len(got) != len(want) {
		t.Errorf("found %d files, want %d: %v", len(got), len(want), got)
	}
	for path, w := range want {
		if g, ok := got[path]; !ok || !slices.Equal(g, w) {
			t.Errorf("%s: warnings %q (found %v), want %q", path, g, ok, w)
		}
	}
	var names []string
	for _, p := range f.Runnable() {
		names = append(names, p.Name)
	}
	if !slices.Equal(names, []string{"foo", "foo-bar", "noexec"}) {
		t.Errorf("Runnable = %v", names)
	}
}

func TestMatchLongestFirst(t *testing.T) {
	a := t.TempDir()
	for _, n := range []string{"orbit-foo", "orbit-foo-bar", "orbit-foo-bar-baz-qux"} {
		script(t, a, n, "", 0o755)
	}
	f := Finder{Path: a, Builtin: builtin}
	tests := []struct {
		args []string
		name string
		n    int
	}{
		{[]string{"foo"}, "foo", 1},
		{[]string{"foo", "x"}, "foo", 1},
		{[]string{"foo", "bar"}, "foo-bar", 2},
		{[]string{"foo", "bar", "baz"}, "foo-bar", 2},
		{[]string{"foo", "bar", "baz", "qux", "1"}, "foo-bar-baz-qux", 4},
		{[]string{"foo-bar", "x"}, "foo-bar", 1},
		{[]string{"foo", "--flag", "bar"}, "foo", 1}, // a flag ends the name
		{[]string{"foo", "", "bar"}, "foo", 1},
	}
	for _, tt := range tests {
		p, n, ok := f.Match(tt.args)
		if !ok || p.Name != tt.name || n != tt.n {
			t.Errorf("Match(%q) = %q, %d, %v; want %q, %d", tt.args, p.Name, n, ok, tt.name, tt.n)
		}
	}
	if _, _, ok := f.Match([]string{"bar"}); ok {
		t.Error("Match(bar) found a plugin")
	}
}

func TestContextEnviron(t *testing.T) {
	c := Context{Name: "foo-bar", Version: "1.2.3", Executable: "/usr/bin/orbit", SettingsFile: "/etc/orbit/orbit.yaml", StdoutTTY: true, NoColor: true}
	env := c.Environ([]string{"PATH=/bin", "ORBIT_VERSION=old", "NO_COLOR=", "HOME=/root"})
	want := []string{"PATH=/bin", "HOME=/root", "ORBIT_PLUGIN_NAME=foo-bar", "ORBIT_VERSION=1.2.3", "ORBIT_EXECUTABLE=/usr/bin/orbit",
		"ORBIT_SETTINGS=/etc/orbit/orbit.yaml", "ORBIT_STDOUT_TTY=true", "NO_COLOR=1"}
	if !slices.Equal(env, want) {
		t.Errorf("Environ =\n%q\nwant\n%q", env, want)
	}
	// No settings file read: ORBIT_SETTINGS stays as the caller had it.
	env = Context{Name: "x"}.Environ([]string{"ORBIT_SETTINGS=/a.yaml"})
	if !slices.Contains(env, "ORBIT_SETTINGS=/a.yaml") || !slices.Contains(env, "ORBIT_STDOUT_TTY=false") || slices.ContainsFunc(env, func(s string) bool { return strings.HasPrefix(s, "NO_COLOR") }) {
		t.Errorf("Environ without settings file or NO_COLOR = %q", env)
	}
}

func TestRunChild(t *testing.T) {
	dir := t.TempDir()
	p := Plugin{Name: "echo", Path: script(t, dir, "orbit-echo", `printf '%s|' "$#" "$@"; echo "env=$ORBIT_PLUGIN_NAME"; cat; exit 7`+"\n", 0o755)}
	io, in, out, _ := iostreams.Test()
	in.WriteString("from stdin\n")
	args := []string{"a b", "--host", "-help", "", "--", "*"}
	err := Run(context.Background(), p, args, []string{"ORBIT_PLUGIN_NAME=echo"}, io)
	if code := exitcode.Of(err); code != 7 {
		t.Errorf("exit code %d (%v), want the plugin's 7", code, err)
	}
	if want := "6|a b|--host|-help||--|*|env=echo\nfrom stdin\n"; out.String() != want {
		t.Errorf("plugin saw %q, want %q", out.String(), want)
	}
}

func TestRunChildSignals(t *testing.T) {
	dir := t.TempDir()
	// Cancelling orbit's context (SIGINT or SIGTERM reached orbit) passes
	// SIGTERM on; the plugin decides what it means.
	trap := Plugin{Name: "trap", Path: script(t, dir, "orbit-trap", "trap 'echo got TERM; exit 42' TERM\necho ready\nwhile :; do sleep 0.05; done\n", 0o755)}
	io, _, _, _ := iostreams.Test()
	out := &lockedBuffer{}
	io.Out = out
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, trap, nil, nil, io) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "ready") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	err := <-done
	if code := exitcode.Of(err); code != 42 || !strings.Contains(out.String(), "got TERM") {
		t.Errorf("exit %d (%v), output %q; want 42 after the plugin's TERM trap", code, err, out.String())
	}

	// A plugin killed by a signal exits 128+N, as a shell reports it.
	kill := Plugin{Name: "kill", Path: script(t, dir, "orbit-kill", "kill -KILL $$\n", 0o755)}
	io, _, _, _ = iostreams.Test()
	if code := exitcode.Of(Run(context.Background(), kill, nil, nil, io)); code != exitcode.Code(128+int(syscall.SIGKILL)) {
		t.Errorf("killed plugin: exit %d, want %d", code, 128+int(syscall.SIGKILL))
	}
}

// lockedBuffer is written by exec's copying goroutine while the test polls.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestComplete(t *testing.T) {
	dir := t.TempDir()
	// A cobra program answers __complete ARGS... with candidates, then
	// :DIRECTIVE, and (for debugging) a line on stderr.
	script(t, dir, "orbit-kube", `if [ "$1" = __complete ]; then shift; echo "alpha	the first"; echo "args=$*"; echo ":4"; echo "Completion ended" >&2; exit 0; fi
echo "ran for real" >&2; exit 1
`, 0o755)
	script(t, dir, "orbit-kube-sub", "exit 1\n", 0o755)
	script(t, dir, "orbit-plain", "echo 'usage: orbit-plain FILE'; exit 2\n", 0o755)
	f := Finder{Path: dir, Builtin: builtin}
	tests := []struct {
		request    string
		words      []string
		toComplete string
		want       string
	}{
		{"__complete", []string{"kube"}, "", "sub\tplugin orbit-kube-sub\nalpha\tthe first\nargs=\n:4\n"},
		{"__complete", []string{"kube"}, "s", "sub\tplugin orbit-kube-sub\nalpha\tthe first\nargs=s\n:4\n"},
		{"__completeNoDesc", []string{"kube", "x"}, "y", "alpha\nargs=x y\n:4\n"},
		{"__complete", []string{"kube", "--flag"}, "", "alpha\tthe first\nargs=--flag \n:4\n"},
		// Not cobra's protocol: nothing offered, the shell completes files.
		{"__complete", []string{"plain"}, "", ":0\n"},
	}
	for _, tt := range tests {
		got, ok := f.Complete(context.Background(), tt.request, tt.words, tt.toComplete, nil)
		if !ok || got != tt.want {
			t.Errorf("Complete(%s %q %q) = %q, %v; want %q", tt.request, tt.words, tt.toComplete, got, ok, tt.want)
		}
	}
	if _, ok := f.Complete(context.Background(), "__complete", []string{"nothing"}, "", nil); ok {
		t.Error("Complete answered for a word no plugin starts with")
	}
}

func TestRunList(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	script(t, a, "orbit-foo", "", 0o755)
	script(t, a, "orbit-foo-bar", "", 0o755)
	script(t, b, "orbit-foo", "", 0o755)
	script(t, b, "orbit-version", "", 0o755)
	f := Finder{Path: a + ":" + b, Builtin: builtin}

	io, _, out, errOut := iostreams.Test()
	if err := RunList(context.Background(), &ListOptions{IO: io, Finder: f}); err != nil {
		t.Fatal(err)
	}
	wantOut := "orbit foo       " + a + "/orbit-foo\norbit foo bar   " + a + "/orbit-foo-bar\n"
	wantErr := "warning: " + b + "/orbit-foo is shadowed by " + a + "/orbit-foo, earlier in PATH\n" +
		"warning: " + b + `/orbit-version is shadowed by the built-in command "version"` + "\n"
	if out.String() != wantOut || errOut.String() != wantErr {
		t.Errorf("plugin list:\n%s---stderr:\n%s---want:\n%s---\n%s", out, errOut, wantOut, wantErr)
	}

	io, _, out, _ = iostreams.Test()
	if err := RunList(context.Background(), &ListOptions{IO: io, Finder: f, Format: output.JSON}); err != nil {
		t.Fatal(err)
	}
	var got []Plugin
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || len(got) != 4 || got[2].Name != "foo" || len(got[2].Warnings) != 1 {
		t.Errorf("plugin list --output json: %v %s", err, out)
	}

	io, _, out, errOut = iostreams.Test()
	if err := RunList(context.Background(), &ListOptions{IO: io, Finder: Finder{Path: t.TempDir()}}); err != nil || out.Len() != 0 || !strings.Contains(errOut.String(), "No plugins") {
		t.Errorf("no plugins: %v, %q, %q", err, out, errOut)
	}
}

// BenchmarkMatch is what `orbit NAME` pays to find its plugin: one scan of
// PATH. Here PATH is three directories holding 3,000 files in all (a
// typical /usr/bin has 1,000-2,000), two of them plugins.
func BenchmarkMatch(b *testing.B) {
	var dirs []string
	for d := 0; d < 3; d++ {
		dir := b.TempDir()
		for i := 0; i < 1000; i++ {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("tool%04d", i)), nil, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		dirs = append(dirs, dir)
	}
	for _, n := range []string{"orbit-foo", "orbit-foo-bar"} {
		if err := os.WriteFile(filepath.Join(dirs[2], n), []byte("#!/bin/sh\n"), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	f := Finder{Path: strings.Join(dirs, ":"), Builtin: builtin}
	b.ResetTimer()
	for b.Loop() {
		if _, _, ok := f.Match([]string{"foo", "bar", "x"}); !ok {
			b.Fatal("no match")
		}
	}
}
