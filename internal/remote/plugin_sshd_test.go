package remote_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/senhasegura/orbit/internal/testenv"
)

// TestPluginOverRealSSHD: `orbit --host H NAME ...` runs the plugin
// orbit-NAME on the far side, where it is installed, though the local
// machine has no such plugin; its arguments (orbit's flag names included)
// arrive untouched and its exit status comes back.
func TestPluginOverRealSSHD(t *testing.T) {
	s := startSSHD(t, sshdConfig{})
	dir := filepath.Join(s.dir, "plugins")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	plugin := "#!/bin/sh\nprintf '%s|' far \"$@\"; echo; exit 7\n"
	if err := os.WriteFile(filepath.Join(dir, "orbit-farside"), []byte(plugin), 0o755); err != nil {
		t.Fatal(err)
	}
	// The remote orbit: the built binary with the plugin directory on its
	// PATH, as an appliance with the plugin installed would have.
	wrapper := filepath.Join(s.dir, "orbit-with-plugins")
	script := "#!/bin/sh\nPATH=" + dir + ":$PATH exec " + testenv.BuildOrbit(t) + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	args := append(s.remoteArgs(t, s.knownHosts), "--remote-orbit", wrapper,
		"farside", "a b", "--settings", "x", "--host", "y", "-help", "--", "$HOME")
	r := s.orbit(t, "", args...)
	if want := "far|a b|--settings|x|--host|y|-help|--|$HOME|\n"; r.code != 7 || r.stdout != want {
		t.Errorf("orbit --host ... farside: exit %d, stdout %q, stderr %q; want exit 7 and %q", r.code, r.stdout, r.stderr, want)
	}
	// Without --host the local orbit has no such command.
	if r := s.orbit(t, "", "farside"); r.code != 2 {
		t.Errorf("local orbit farside: exit %d, %q; want the usage error 2", r.code, r.stderr)
	}
}
