package systemd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/renameio/v2"
)

// UnitDir is where Install puts unit files, below the root it is given.
const UnitDir = "/etc/systemd/system"

// SysusersDir is where EnsureUser puts its sysusers.d snippet.
const SysusersDir = "/etc/sysusers.d"

// UnitPath is the path of the unit file name below root ("" or "/" for
// the running system).
func UnitPath(root, name string) string {
	return filepath.Join(rootDir(root), UnitDir, name)
}

func rootDir(root string) string {
	if root == "" {
		return "/"
	}
	return root
}

// Install writes u to root/etc/systemd/system atomically and reports
// whether the file changed (the caller then needs Manager.DaemonReload).
// An identical file is left alone, so its timestamp does not suggest a
// change that never happened.
func Install(ctx context.Context, root string, u Unit) (changed bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if u.Name == "" || strings.ContainsAny(u.Name, "/\x00") {
		return false, fmt.Errorf("installing unit: name %q is not a file name", u.Name)
	}
	return writeIfChanged(UnitPath(root, u.Name), u.Bytes(), 0o644)
}

// Uninstall removes the unit file and reports whether there was one.
func Uninstall(ctx context.Context, root, name string) (removed bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	p := UnitPath(root, name)
	switch err := os.Remove(p); {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("removing unit file %s: %w", p, err)
	}
}

func writeIfChanged(path string, data []byte, perm fs.FileMode) (bool, error) {
	old, err := os.ReadFile(path)
	if err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("reading %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	// The mode is fixed, not inherited from an older file or the umask:
	// systemd warns about world-writable units and refuses none, so a
	// stray mode would go unnoticed.
	if err := renameio.WriteFile(path, data, perm, renameio.WithStaticPermissions(perm)); err != nil {
		return false, fmt.Errorf("writing %s: %w (are you root?)", path, err)
	}
	return true, nil
}

// SysusersPath is the snippet's path below root for the user.
func SysusersPath(root, userName string) string {
	return filepath.Join(rootDir(root), SysusersDir, "orbit-"+strings.TrimPrefix(userName, "orbit-")+".conf")
}

// EnsureUser makes sure svc's user exists: it writes the sysusers.d
// snippet (so the user is recreated if /etc/passwd is ever rebuilt) and
// runs systemd-sysusers on it. It reports whether the snippet changed.
// systemd-sysusers works without a running systemd.
func EnsureUser(ctx context.Context, root string, svc Service) (changed bool, err error) {
	userName := svc.User
	if !validUserName(userName) {
		return false, fmt.Errorf("service user %q is not a valid system user name", userName)
	}
	path := SysusersPath(root, userName)
	changed, err = writeIfChanged(path, []byte(svc.SysusersSnippet(userName, svc.StateDirectory)), 0o644)
	if err != nil {
		return false, err
	}
	bin, err := exec.LookPath("systemd-sysusers")
	if err != nil {
		return changed, fmt.Errorf("creating user %s: systemd-sysusers not found (install systemd, or create the user yourself: useradd --system --no-create-home --shell /usr/sbin/nologin %s): %w", userName, userName, err)
	}
	args := []string{}
	if r := rootDir(root); r != "/" {
		args = append(args, "--root="+r)
	}
	args = append(args, path)
	if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
		return changed, fmt.Errorf("creating user %s: %s %s: %w: %s", userName, bin, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return changed, nil
}

// GrantConfigAccess gives the service user what the unit allows it:
// ownership of the configuration file (mode 0600, it holds secrets) and of
// its directory (mode 0700, so atomic rewrites can rename into it). The
// user must exist (EnsureUser); it is looked up in root's /etc/passwd only
// when root is the running system.
func GrantConfigAccess(ctx context.Context, configFile, userName string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	u, err := user.Lookup(userName)
	if err != nil {
		return fmt.Errorf("granting %s access to %s: %w (create the user first)", userName, configFile, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("user %s has a non-numeric id: %w", userName, err)
	}
	dir := filepath.Dir(configFile)
	// Render ran first with the family's example; this is a backstop.
	if err := checkConfigDir(dir, ""); err != nil {
		return err
	}
	if err := openTheWay(dir, ServiceUser{Name: userName, UID: uid, GID: gid}); err != nil {
		return err
	}
	for _, step := range []struct {
		path string
		mode fs.FileMode
	}{{dir, 0o700}, {configFile, 0o600}} {
		if err := os.Chown(step.path, uid, gid); err != nil {
			return fmt.Errorf("giving %s to %s: %w", step.path, userName, err)
		}
		if err := os.Chmod(step.path, step.mode); err != nil {
			return fmt.Errorf("setting mode %v on %s: %w", step.mode, step.path, err)
		}
	}
	return nil
}

// openTheWay gives u the search bit on every directory above dir that u
// cannot pass: the unit's serve must reach its file, and /etc/orbit is
// made 0700 by the package and by the first write of the file. Only the
// search bit of u's class is added, so u may pass but not list (0700
// becomes 0701). Above a home directory systemd builds the path itself
// (ProtectHome=tmpfs with BindPaths=), and the real ones stay closed.
func openTheWay(dir string, u ServiceUser) error {
	if underHome(dir) {
		return nil
	}
	for p := filepath.Dir(filepath.Clean(dir)); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("checking that %s may pass %s: %w", u.Name, p, err)
		}
		if !traversable(st, u) {
			bit := fs.FileMode(0o001)
			if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) == u.UID {
				bit = 0o100
			} else if ok && int(sys.Gid) == u.GID {
				bit = 0o010
			}
			if err := os.Chmod(p, st.Mode().Perm()|bit); err != nil {
				return fmt.Errorf("letting %s pass %s (its configuration is below): %w", u.Name, p, err)
			}
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// RemoveSysusers removes the user's sysusers.d snippet (EnsureUser's) and
// reports whether there was one. The user itself stays in /etc/passwd, as
// with packages: its ID may still own files, and reusing it for someone
// else later would hand them over.
func RemoveSysusers(ctx context.Context, root, userName string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if !validUserName(userName) {
		return false, fmt.Errorf("service user %q is not a valid system user name", userName)
	}
	p := SysusersPath(root, userName)
	switch err := os.Remove(p); {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("removing %s: %w", p, err)
	}
}
