package systemd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/senhasegura/orbit/internal/testenv"
)

// TestFixStateDirAfterForegroundRoot: what `serve` as root leaves (a 0700
// root /var/lib/orbit, a root-owned token store and lock) is found, named
// with its fix, and repaired so the service user can use it.
func TestFixStateDirAfterForegroundRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing owners needs root (CI runs the tests as root)")
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, StateRoot), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := StateDirPath(root, DefaultStateDirectory)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	parent := filepath.Dir(dir)
	if err := os.Chmod(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tokens.cache", "tokens.cache.lock", "status.json"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	u := ServiceUser{Name: "nobody", UID: 65534, GID: 65534}

	problems, err := CheckStateDir(dir, u, "orbit email-oauth2-proxy start")
	if err != nil {
		t.Fatal(err)
	}
	var text []string
	for _, p := range problems {
		text = append(text, p.String())
	}
	all := strings.Join(text, "\n")
	for _, want := range []string{parent + ": mode 0700", "200/CHDIR", filepath.Join(dir, "tokens.cache") + ": owned by uid 0", "chown -R nobody:nobody " + dir} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}

	changed, err := FixStateDir(context.Background(), dir, u)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 2 {
		t.Errorf("changes = %q, want the parent's mode and the files' owner", changed)
	}
	if problems, _ := CheckStateDir(dir, u, "orbit email-oauth2-proxy start"); len(problems) != 0 {
		t.Errorf("problems after the repair: %+v", problems)
	}
	st, _ := os.Stat(filepath.Join(dir, "tokens.cache"))
	if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 65534 || st.Mode().Perm() != 0o600 {
		t.Errorf("tokens.cache: uid %d mode %v, want nobody's and still 0600", sys.Uid, st.Mode().Perm())
	}
	if again, _ := FixStateDir(context.Background(), dir, u); len(again) != 0 {
		t.Errorf("a second repair changed %q", again)
	}

	if gone, err := PurgeStateDir(context.Background(), dir); err != nil || len(gone) != 1 {
		t.Fatalf("purge: %q, %v", gone, err)
	}
	if _, err := os.Stat(parent); !os.IsNotExist(err) {
		t.Errorf("the empty parent %s stayed after the purge: %v", parent, err)
	}
}

func TestStateDirMissingIsNoProblem(t *testing.T) {
	problems, err := CheckStateDir(filepath.Join(t.TempDir(), "var/lib/orbit/email-oauth2-proxy"), ServiceUser{Name: "nobody", UID: 65534, GID: 65534}, "orbit email-oauth2-proxy start")
	if err != nil || len(problems) != 0 {
		t.Errorf("a missing state directory: %+v, %v (systemd creates it)", problems, err)
	}
}

// TestGrantConfigAccessOpensTheWay: the configuration directory is the
// service user's, but every directory above it must let the user through,
// or serve cannot reach its file: /etc/orbit as the package (or register's
// first write) makes it, 0700 root, stopped the unit at every start. Only
// the search bit is added: the user may pass, not list.
func TestGrantConfigAccessOpensTheWay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing owners needs root (CI runs the tests as root)")
	}
	top := filepath.Join(testenv.SharedDir(t), "etc", "orbit")
	config := filepath.Join(top, "email-oauth2-proxy", "emailproxy.config")
	if err := os.MkdirAll(filepath.Dir(config), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(top, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(config, []byte("[emailproxy]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := GrantConfigAccess(context.Background(), config, "nobody"); err != nil {
		t.Fatal(err)
	}
	u := ServiceUser{Name: "nobody", UID: 65534, GID: 65534}
	for p := filepath.Dir(filepath.Dir(config)); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if !traversable(st, u) {
			t.Errorf("%s: mode %04o, the service user cannot pass", p, st.Mode().Perm())
		}
		if p == "/" {
			break
		}
	}
	if st, _ := os.Stat(top); st.Mode().Perm() != 0o701 {
		t.Errorf("%s: mode %04o, want 0701 (passable, not listable)", top, st.Mode().Perm())
	}
	if st, _ := os.Stat(filepath.Dir(config)); st.Mode().Perm() != 0o700 || st.Sys().(*syscall.Stat_t).Uid != 65534 {
		t.Errorf("the configuration directory: mode %04o uid %d, want 0700 and the service user's", st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Uid)
	}
}
