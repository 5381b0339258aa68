package config

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/gofrs/flock"
	"github.com/google/renameio/v2"
)

// lockRetry is how often a waiting Lock retries; writers hold the lock
// for milliseconds, so a short delay keeps waits short without spinning.
const lockRetry = 20 * time.Millisecond

// Lock takes the exclusive lock that guards path (on path+".lock") and
// waits for it until ctx is done. Every writer of the file (register,
// the engine's token writer) takes it, so no update is lost between a
// read and the following write. The parent directory is created (0700)
// when missing.
func Lock(ctx context.Context, path string) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the directory of %s: %w", path, err)
	}
	l := flock.New(path+".lock", flock.SetPermissions(0o600))
	ok, err := l.TryLockContext(ctx, lockRetry)
	if err != nil {
		return nil, fmt.Errorf("locking %s.lock: %w", path, err)
	}
	if !ok {
		return nil, fmt.Errorf("locking %s.lock: %w", path, ctx.Err())
	}
	return func() { _ = l.Unlock() }, nil
}

// WriteFile replaces the file at path with data: under Lock, keeping the
// previous version as path+".bak", atomically (temp file, fsync, rename)
// and with mode 0600, since the file holds client secrets and tokens. On
// any failure the old file is untouched.
func WriteFile(ctx context.Context, path string, data []byte) error {
	unlock, err := Lock(ctx, path)
	if err != nil {
		return err
	}
	defer unlock()
	return writeLocked(path, data)
}

// WriteFileLocked is WriteFile for a caller that already holds Lock (a
// read-modify-write under one lock).
func WriteFileLocked(path string, data []byte) error { return writeLocked(path, data) }

func writeLocked(path string, data []byte) error {
	old, err := os.ReadFile(path)
	var st fs.FileInfo
	switch {
	case err == nil:
		st, _ = os.Stat(path)
		if err := atomicWrite(path+".bak", old, st); err != nil {
			return fmt.Errorf("keeping the previous version of %s: %w", path, err)
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return fmt.Errorf("reading the current %s: %w", path, err)
	}
	if err := atomicWrite(path, data, st); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// atomicWrite writes data to path with mode 0600; like owns the file's
// owner (root writing a file a service user owns keeps that owner).
func atomicWrite(path string, data []byte, like fs.FileInfo) error {
	// Not renameio.WriteFile, which keeps an existing file's looser mode;
	// the temporary file holds the secrets too, so it stays beside the
	// file rather than in a shared $TMPDIR.
	pf, err := renameio.NewPendingFile(path, renameio.WithPermissions(0o600), renameio.WithStaticPermissions(0o600),
		renameio.WithTempDir(filepath.Dir(path)))
	if err != nil {
		return err
	}
	defer pf.Cleanup()
	if _, err := pf.Write(data); err != nil {
		return err
	}
	if like != nil {
		if sys, ok := like.Sys().(*syscall.Stat_t); ok && (int(sys.Uid) != os.Geteuid() || int(sys.Gid) != os.Getegid()) {
			// Best effort: only root may give a file away, and a
			// non-root writer already is the owner.
			_ = pf.Chown(int(sys.Uid), int(sys.Gid))
		}
	}
	return pf.CloseAtomicallyReplace()
}
