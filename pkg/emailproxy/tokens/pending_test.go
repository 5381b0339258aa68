package tokens

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestFileStoreKeepsUnsavedEntries: a Put whose write fails keeps the new
// entry in memory (Get returns it, not the older one on disk), retries
// until a write succeeds, and then the file holds it.
func TestFileStoreKeepsUnsavedEntries(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tokens.cache")
	s := newTestStore(t, path, nil)
	s.retryMin, s.retryMax = 20*time.Millisecond, 40*time.Millisecond
	old := Record{RefreshToken: "RT-old", LastActivity: time.Unix(1, 0)}
	if err := s.Put(ctx, "a@x", "pw", old); err != nil {
		t.Fatal(err)
	}

	failing := true
	var writes int
	s.mu.Lock()
	s.writeFile = func(p string, data []byte) error {
		writes++
		if failing {
			return errors.New("no space left on device")
		}
		return writeAtomic(p, data)
	}
	s.mu.Unlock()
	newer := Record{RefreshToken: "RT-rotated", LastActivity: time.Unix(2, 0)}
	err := s.Put(ctx, "a@x", "pw", newer)
	if !errors.Is(err, ErrSaveDeferred) {
		t.Fatalf("Put on a full disk = %v, want ErrSaveDeferred", err)
	}
	if got, err := s.Get(ctx, "a@x", "pw"); err != nil || got.RefreshToken != "RT-rotated" {
		t.Fatalf("Get after the failed save = %+v, %v; want the newest tokens from memory", got, err)
	}
	if u := s.Unsaved(); !slices.Equal(u, []string{"a@x"}) {
		t.Errorf("Unsaved = %v", u)
	}
	// On disk the old entry is intact meanwhile.
	if got, err := newTestStore(t, path, s.codec).Get(ctx, "a@x", "pw"); err != nil || got.RefreshToken != "RT-old" {
		t.Fatalf("disk after the failed save: %+v, %v", got, err)
	}
	// The retries keep failing while the disk is full...
	waitUntil(t, "a retry", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return writes >= 3 })

	// ...and the first one after space comes back writes the entry.
	s.mu.Lock()
	failing = false
	s.mu.Unlock()
	waitUntil(t, "the retry to save", func() bool { return len(s.Unsaved()) == 0 })
	if got, err := newTestStore(t, path, s.codec).Get(ctx, "a@x", "pw"); err != nil || got.RefreshToken != "RT-rotated" {
		t.Fatalf("disk after the retry: %+v, %v", got, err)
	}
}

// TestFileStoreUnsavedWrittenByNextWrite: another account's save writes the
// entries kept from earlier failures too; Delete drops a kept entry.
func TestFileStoreUnsavedWrittenByNextWrite(t *testing.T) {
	ctx := context.Background()
	// The state directory cannot be created while a file sits at its path,
	// as with a read-only or broken state directory.
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "tokens.cache")
	s := NewFileStore(path, WithCodec(fastCodec()), WithLockPath(filepath.Join(t.TempDir(), "lock")))
	s.retryMin, s.retryMax = time.Hour, time.Hour // only the next write may save it
	for _, a := range []string{"a@x", "gone@x"} {
		if err := s.Put(ctx, a, "pw", Record{RefreshToken: "RT-" + a}); !errors.Is(err, ErrSaveDeferred) {
			t.Fatalf("Put %s into a broken directory = %v", a, err)
		}
	}
	if err := s.Delete(ctx, "gone@x"); err == nil {
		t.Fatal("Delete into a broken directory succeeded")
	}
	if got, err := s.Get(ctx, "gone@x", "pw"); err == nil {
		t.Errorf("a deleted unsaved entry is still returned: %+v", got)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "b@x", "pw", Record{RefreshToken: "RT-b@x"}); err != nil {
		t.Fatal(err)
	}
	fresh := newTestStore(t, path, s.codec)
	for _, a := range []string{"a@x", "b@x"} {
		if got, err := fresh.Get(ctx, a, "pw"); err != nil || got.RefreshToken != "RT-"+a {
			t.Errorf("%s on disk: %+v, %v", a, got, err)
		}
	}
	if len(s.Unsaved()) != 0 {
		t.Errorf("still unsaved: %v", s.Unsaved())
	}
}

// TestFileStoreReplaceIsOneWrite: replacing an account's tokens with
// another password's is one write of the whole entry, new salt included.
func TestFileStoreReplaceIsOneWrite(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tokens.cache")
	s := newTestStore(t, path, nil)
	if err := s.Put(ctx, "a@x", "old-pw", Record{RefreshToken: "RT-old"}); err != nil {
		t.Fatal(err)
	}
	writes := 0
	s.writeFile = func(p string, d []byte) error { writes++; return writeAtomic(p, d) }
	if err := s.Put(ctx, "a@x", "new-pw", Record{RefreshToken: "RT-new"}); err != nil {
		t.Fatal(err)
	}
	if writes != 1 {
		t.Errorf("%d writes, want 1", writes)
	}
	if _, err := s.Get(ctx, "a@x", "old-pw"); !errors.Is(err, ErrBadPassword) {
		t.Errorf("old password after the replacement: %v", err)
	}
	if got, err := s.Get(ctx, "a@x", "new-pw"); err != nil || got.RefreshToken != "RT-new" {
		t.Errorf("new password: %+v, %v", got, err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
