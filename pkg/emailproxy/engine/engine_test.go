package engine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/oauth/interactive"
)

// TestAuthorizationWaitCoversAuthTimeout: the proxy ends a login's token
// wait at AuthorizationTimeout, so it must leave room for the whole wait for
// an administrator that --auth-timeout promises; the pre-login deadline of
// clients that are not waiting for a token stays the proxy's default.
func TestAuthorizationWaitCoversAuthTimeout(t *testing.T) {
	for _, auth := range []time.Duration{0, -1, time.Second, interactive.DefaultTimeout, 30 * time.Minute} {
		got := authorizationWait(auth)
		want := auth
		if auth == 0 {
			want = interactive.DefaultTimeout
		}
		if want > 0 && got <= want {
			t.Errorf("AuthTimeout %v: authorisation wait %v would end the wait for an administrator early", auth, got)
		}
	}
}

// TestNewRefusesOpenFiles: the engine does not start on a configuration
// others may change or a token store others may read.
func TestNewRefusesOpenFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "emailproxy.config")
	tok := filepath.Join(dir, "tokens.cache")
	const file = "[IMAP-1993]\nserver_address = 127.0.0.1\nserver_port = 993\nlocal_address = 127.0.0.1\n"
	if err := os.WriteFile(cfg, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tok, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	opts := Options{ConfigPath: cfg, TokenPath: tok, StatusPath: "-"}
	if _, err := New(opts); err != nil {
		t.Fatalf("private files: %v", err)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{tok, 0o644}, {cfg, 0o620}} {
		if err := os.Chmod(c.path, c.mode); err != nil {
			t.Fatal(err)
		}
		_, err := New(opts)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "chmod 600 "+c.path) {
			t.Errorf("%s at %v: %v", c.path, c.mode, err)
		}
		if err := os.Chmod(c.path, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
