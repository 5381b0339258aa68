package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// SharedRoot is where SharedDir makes directories when it can. It is outside
// /tmp and /var/tmp on purpose: the systemd sandbox mounts a fresh tmpfs over
// both, so files under them are invisible to commands run inside it.
const SharedRoot = "/var/lib/orbit-testenv"

// KeepEnv names the environment variable that, set to 1, keeps the
// directories of failed tests for a post-mortem (Dovecot's log, configs).
const KeepEnv = "ORBIT_TESTENV_KEEP"

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// SharedDir returns a new empty directory for t, mode 0755 all the way up,
// so that processes running as other users (Dovecot's dovecot, dovenull and
// nobody) can traverse it, and outside /tmp so that the systemd sandbox sees
// it too. Without root it falls back to t.TempDir() made traversable. It is
// removed when t ends (kept when t failed and ORBIT_TESTENV_KEEP=1).
func SharedDir(t testing.TB) string {
	t.Helper()
	base := SharedRoot
	if err := mkdirShared(base); err != nil {
		base = t.TempDir()
		if err := os.Chmod(base, 0o755); err != nil {
			t.Fatalf("making %s traversable: %v", base, err)
		}
	}
	name := unsafeName.ReplaceAllString(t.Name(), "_")
	// Short: Dovecot puts unix sockets under the directory, and a socket
	// path longer than 108 bytes cannot be bound.
	if len(name) > 24 {
		name = name[:24]
	}
	dir, err := os.MkdirTemp(base, name+"-")
	if err != nil {
		t.Fatalf("creating a test directory under %s: %v", base, err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("making %s traversable: %v", dir, err)
	}
	t.Cleanup(func() {
		if t.Failed() && os.Getenv(KeepEnv) == "1" {
			t.Logf("kept %s for inspection (%s=1)", dir, KeepEnv)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing test directory: %v", err)
		}
	})
	return dir
}

// mkdirShared creates dir and its parents and makes every component that it
// created, and dir itself, mode 0755.
func mkdirShared(dir string) error {
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	// MkdirAll honours the umask; be explicit about dir itself.
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("making %s traversable: %w", dir, err)
	}
	for p := filepath.Dir(dir); p != "/" && p != "."; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("checking %s: %w", p, err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s is not traversable by other users (mode %v): put test directories elsewhere", p, st.Mode().Perm())
		}
	}
	return nil
}
