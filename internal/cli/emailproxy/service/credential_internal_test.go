package service

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCreateExclusive: the credential is written whole, 0600, and never
// over a file that appeared meanwhile (another start made it: every
// sealed copy may already be made with that one).
func TestCreateExclusive(t *testing.T) {
	store := filepath.Join(t.TempDir(), "credstore.encrypted")
	path := filepath.Join(store, "orbit-background-refresh")
	made, err := createExclusive(path, []byte("first"))
	if err != nil || !made {
		t.Fatalf("createExclusive = %v, %v", made, err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the credential's mode: %v %v, want 0600", st.Mode(), err)
	}
	if st, err := os.Stat(store); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("the store's mode: %v %v, want 0700", st.Mode(), err)
	}
	made, err = createExclusive(path, []byte("second"))
	if err != nil || made {
		t.Fatalf("createExclusive over an existing file = %v, %v; want false, nil", made, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "first" {
		t.Errorf("the existing credential was replaced: %q", b)
	}
	if entries, _ := os.ReadDir(store); len(entries) != 1 {
		t.Errorf("left in the store: %v", entries)
	}
}
