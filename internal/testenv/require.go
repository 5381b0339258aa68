package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RequireRoot skips t when the test does not run as root, naming what needs
// it.
func RequireRoot(t testing.TB, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("%s needs root (running as uid %d); run the tests as root, as CI does", what, os.Geteuid())
	}
}

// RequireCommand skips t when name is not on PATH (or at an absolute path)
// and returns its resolved path otherwise.
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (%v); run .ci/install-deps.sh, as CI does", name, err)
	}
	return p
}
