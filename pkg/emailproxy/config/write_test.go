package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc", "orbit")
	path := filepath.Join(dir, "emailproxy.config")
	ctx := context.Background()

	if err := WriteFile(ctx, path, []byte("first\n")); err != nil {
		t.Fatal(err)
	}
	mode := func(p string) os.FileMode {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Mode().Perm()
	}
	if m := mode(dir); m != 0o700 {
		t.Errorf("created directory mode %o, want 700", m)
	}
	if m := mode(path); m != 0o600 {
		t.Errorf("file mode %o, want 600", m)
	}
	if _, err := os.Stat(path + ".bak"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a backup appeared for a new file: %v", err)
	}

	// A world-readable existing file is tightened, and the old content is
	// kept as the backup.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(ctx, path, []byte("second\n")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "second\n" {
		t.Errorf("content = %q", b)
	}
	if b, _ := os.ReadFile(path + ".bak"); string(b) != "first\n" {
		t.Errorf("backup = %q", b)
	}
	if m := mode(path); m != 0o600 {
		t.Errorf("file mode after rewrite %o, want 600", m)
	}
	if m := mode(path + ".bak"); m != 0o600 {
		t.Errorf("backup mode %o, want 600", m)
	}
}

func TestWriteFileFailureLeavesOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "emailproxy.config")
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The backup cannot be written (a directory stands in its way), so
	// the write must stop before touching the file.
	if err := os.Mkdir(path+".bak", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path+".bak", "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(context.Background(), path, []byte("new\n")); err == nil {
		t.Fatal("WriteFile succeeded although the backup could not be written")
	}
	if b, _ := os.ReadFile(path); string(b) != "old\n" {
		t.Errorf("old file changed to %q", b)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "emailproxy.config" && e.Name() != "emailproxy.config.bak" && e.Name() != "emailproxy.config.lock" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func TestLockExcludesOtherWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "emailproxy.config")
	unlock, err := Lock(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := WriteFile(ctx, path, []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WriteFile while locked: err = %v, want a deadline error", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Error("the file was written without the lock")
	}
	done := make(chan error, 1)
	go func() { done <- WriteFile(context.Background(), path, []byte("after\n")) }()
	select {
	case err := <-done:
		t.Fatalf("WriteFile did not wait for the lock (err %v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "after\n" {
		t.Errorf("content = %q", b)
	}
}
