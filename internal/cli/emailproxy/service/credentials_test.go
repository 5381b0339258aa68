package service

import (
	"os"
	"path/filepath"
	"testing"
)

// TestBackgroundCredentials: the unit loads background_refresh's credential
// only when the file asks for it and the credential exists (a unit naming a
// missing credential would not start).
func TestBackgroundCredentials(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "credstore.encrypted")
	os.MkdirAll(store, 0o700)
	on := filepath.Join(dir, "on.config")
	os.WriteFile(on, []byte("[emailproxy]\nbackground_refresh = True\n"), 0o600)
	off := filepath.Join(dir, "off.config")
	os.WriteFile(off, []byte("[emailproxy]\n"), 0o600)

	if got := BackgroundCredentials(on, store); got != nil {
		t.Errorf("no credential made yet: %v", got)
	}
	cred := filepath.Join(store, "orbit-background-refresh")
	os.WriteFile(cred, []byte("sealed"), 0o600)
	if got := BackgroundCredentials(on, store); len(got) != 1 || got[0].Name != "orbit-background-refresh" || got[0].Path != cred {
		t.Errorf("with the credential: %v", got)
	}
	if got := BackgroundCredentials(off, store); got != nil {
		t.Errorf("background_refresh off: %v", got)
	}
	if got := BackgroundCredentials(filepath.Join(dir, "missing"), store); got != nil {
		t.Errorf("no file: %v", got)
	}
}
