package systemd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// StateRoot is where systemd puts StateDirectory= (%S for system units).
const StateRoot = "/var/lib"

// StateDirPath is the unit's state directory below root ("" is the
// running system).
func StateDirPath(root, stateDirectory string) string {
	return filepath.Join(rootDir(root), StateRoot, stateDirectory)
}

// StateProblem is one thing in the state directory that keeps the service
// user from using it, with the command that cures it.
type StateProblem struct {
	Path string `json:"path"`
	What string `json:"problem"`
	Fix  string `json:"fix"`
}

func (p StateProblem) String() string { return p.Path + ": " + p.What + "; fix: " + p.Fix }

// ServiceUser is a looked-up service user.
type ServiceUser struct {
	Name     string
	UID, GID int
}

// LookupServiceUser finds userName in the running system's user database;
// the error wraps user.UnknownUserError when the user does not exist yet.
func LookupServiceUser(userName string) (ServiceUser, error) {
	if userName == "" {
		return ServiceUser{}, errors.New("no service user named")
	}
	u, err := user.Lookup(userName)
	if err != nil {
		return ServiceUser{}, err
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return ServiceUser{}, fmt.Errorf("user %s has a non-numeric id: %w", userName, err)
	}
	return ServiceUser{Name: userName, UID: uid, GID: gid}, nil
}

// CheckStateDir lists what keeps u from using dir (StateDirPath) the way
// the unit does: every directory above it, up to /var/lib, must let u
// through (systemd makes the unit's working directory there, and a
// 0700 root-owned /var/lib/orbit fails the start with 200/CHDIR), and dir
// and everything in it must belong to u (a token store that root wrote
// while running serve in the foreground is unreadable to the service). A
// missing dir is no problem: systemd creates it. The fix named is the one
// that FixStateDir applies, after start (the family's StartCommand, ""
// when there is none to name), which applies it too.
func CheckStateDir(dir string, u ServiceUser, start string) ([]StateProblem, error) {
	var out []StateProblem
	repair := ""
	if start != "" {
		repair = start + " (it repairs this), or: "
	}
	fix := fmt.Sprintf("%schown -R %s:%s %s", repair, u.Name, u.Name, dir)
	for _, p := range parentsBelowStateRoot(dir) {
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if !st.IsDir() {
			out = append(out, StateProblem{Path: p, What: "is not a directory", Fix: "remove it: systemd creates the state directory"})
			return out, nil
		}
		if !traversable(st, u) {
			out = append(out, StateProblem{Path: p,
				What: fmt.Sprintf("mode %04o, owner uid %d: the service user %s cannot enter it (systemd fails the start with 200/CHDIR)", st.Mode().Perm(), ownerOf(st), u.Name),
				Fix:  repair + "chmod 0755 " + p})
		}
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == dir {
				return filepath.SkipAll
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && (int(st.Uid) != u.UID || int(st.Gid) != u.GID) {
			out = append(out, StateProblem{Path: p,
				What: fmt.Sprintf("owned by uid %d gid %d, not by the service user %s (%d): written by another user, e.g. by `serve` run as root", st.Uid, st.Gid, u.Name, u.UID),
				Fix:  fix})
		}
		return nil
	})
	return out, err
}

// FixStateDir makes dir usable by u: directories above it (up to
// /var/lib) get mode 0755 where u cannot pass, dir is created when
// missing (mode 0700, as StateDirectoryMode says), and dir with all it
// holds is given to u. Symbolic links are changed, never followed. It
// returns what it changed, one line each.
func FixStateDir(ctx context.Context, dir string, u ServiceUser) ([]string, error) {
	var changed []string
	for _, p := range parentsBelowStateRoot(dir) {
		if err := ctx.Err(); err != nil {
			return changed, err
		}
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return changed, fmt.Errorf("creating %s: %w", p, err)
			}
			// Mkdir is subject to the umask; say exactly what it is.
			if err := os.Chmod(p, 0o755); err != nil {
				return changed, fmt.Errorf("setting mode 0755 on %s: %w", p, err)
			}
			continue
		}
		if err != nil {
			return changed, err
		}
		if !traversable(st, u) {
			if err := os.Chmod(p, st.Mode().Perm()|0o055); err != nil {
				return changed, fmt.Errorf("letting %s through %s: %w", u.Name, p, err)
			}
			changed = append(changed, fmt.Sprintf("%s: mode %04o -> %04o", p, st.Mode().Perm(), st.Mode().Perm()|0o055))
		}
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return changed, fmt.Errorf("creating %s: %w", dir, err)
		}
	}
	if st, err := os.Stat(dir); err == nil && st.Mode().Perm()&0o700 != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return changed, err
		}
	}
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) == u.UID && int(st.Gid) == u.GID {
			return nil
		}
		if err := os.Lchown(p, u.UID, u.GID); err != nil {
			return fmt.Errorf("giving %s to %s: %w", p, u.Name, err)
		}
		n++
		return nil
	})
	if n > 0 {
		changed = append(changed, fmt.Sprintf("%s: %d file(s) given to %s", dir, n, u.Name))
	}
	return changed, err
}

// parentsBelowStateRoot lists the directories between /var/lib (excluded)
// and dir (excluded), outermost first: for /var/lib/orbit/email-oauth2-proxy
// that is /var/lib/orbit. A dir outside /var/lib (a test's root) yields its
// parent only.
func parentsBelowStateRoot(dir string) []string {
	dir = filepath.Clean(dir)
	i := strings.Index(dir, StateRoot+"/")
	if i < 0 {
		return []string{filepath.Dir(dir)}
	}
	base := dir[:i+len(StateRoot)]
	var out []string
	for p := filepath.Dir(dir); len(p) > len(base); p = filepath.Dir(p) {
		out = append([]string{p}, out...)
	}
	return out
}

// traversable says whether u may enter the directory st describes.
func traversable(st fs.FileInfo, u ServiceUser) bool {
	m := st.Mode().Perm()
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return m&0o001 != 0
	}
	switch {
	case int(sys.Uid) == u.UID:
		return m&0o100 != 0
	case int(sys.Gid) == u.GID:
		return m&0o010 != 0
	}
	return m&0o001 != 0
}

func ownerOf(st fs.FileInfo) int {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(sys.Uid)
	}
	return -1
}

// PurgeStateDir removes dir and everything in it (the token store, its
// lock, the status file) and returns dir when it existed. Directories
// above it that are left empty (/var/lib/orbit) go too.
func PurgeStateDir(ctx context.Context, dir string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if filepath.Base(filepath.Dir(filepath.Clean(dir))) == "var" && filepath.Base(dir) == "lib" {
		// StateDirPath of "": never the whole of /var/lib.
		return nil, fmt.Errorf("refusing to remove %s: it is the state root, not a service's state directory", dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("removing %s: %w", dir, err)
	}
	parents := parentsBelowStateRoot(dir)
	for i := len(parents) - 1; i >= 0; i-- {
		// Remove fails on a directory that is not empty, which is the
		// point: only what nothing else uses goes.
		if os.Remove(parents[i]) != nil {
			break
		}
	}
	return []string{dir}, nil
}
