package serve

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/pkg/emailproxy/engine"
)

// TestRunRefusesBeforeListening: each way serve cannot start exits with its
// documented code and a message that names the file and the fix, without
// opening a listener.
func TestRunRefusesBeforeListening(t *testing.T) {
	dir := t.TempDir()
	invalid := filepath.Join(dir, "invalid.config")
	if err := os.WriteFile(invalid, []byte("[IMAP-2993]\nserver_port = 993\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.config")
	tests := []struct {
		name   string
		modify func(*Options)
		code   exitcode.Code
		want   []string
	}{
		{"missing file", func(o *Options) { o.ConfigPath = missing }, exitcode.Config,
			[]string{"cannot read " + missing + ": no such file or directory", "orbit email-oauth2-proxy register", "--config"}},
		{"invalid file", func(o *Options) { o.ConfigPath = invalid }, exitcode.Config,
			[]string{"config validate " + invalid}},
		{"negative auth timeout", func(o *Options) { o.AuthTimeout = -time.Second }, exitcode.Usage,
			[]string{"--auth-timeout -1s", "positive duration"}},
		{"zero drain timeout", func(o *Options) { o.DrainTimeout = 0 }, exitcode.Usage,
			[]string{"--drain-timeout 0s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			io, _, _, _ := iostreams.Test()
			o := &Options{IO: io, ConfigPath: invalid, TokenPath: filepath.Join(dir, "tokens"), StatusPath: "-",
				AuthTimeout: time.Minute, DrainTimeout: time.Second, LogFormat: "plain",
				Notify: func(string) error { return nil },
				Ready:  func(*engine.Engine) { t.Error("the engine started listening") }}
			tt.modify(o)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := Run(ctx, o)
			if got := exitcode.Of(err); got != tt.code {
				t.Fatalf("exit %d, want %d: %v", got, tt.code, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestStartErrorPermission: an unreadable file is a permission problem
// (exit 10, run as root), not an invalid file. Tested on the error the
// engine returns, since root (which runs the tests) reads any file.
func TestStartErrorPermission(t *testing.T) {
	pe := &fs.PathError{Op: "open", Path: "/etc/orbit/x.config", Err: fs.ErrPermission}
	err := startError("/etc/orbit/x.config", fmt.Errorf("%w: %w", engine.ErrInvalidConfig, fmt.Errorf("reading proxy config: %w", pe)))
	if exitcode.Of(err) != exitcode.Permission {
		t.Fatalf("exit %d, want %d: %v", exitcode.Of(err), exitcode.Permission, err)
	}
	for _, w := range []string{"cannot read /etc/orbit/x.config: permission denied", "run as root"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	if strings.Contains(err.Error(), "config validate") {
		t.Errorf("sends the admin to config validate for a permission problem: %v", err)
	}
}
