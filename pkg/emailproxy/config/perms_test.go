package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckPermissions(t *testing.T) {
	const withSecret = "[a@x]\nclient_id = id\nclient_secret = s3cr3t\n"
	const noSecret = "[a@x]\nclient_id = id\n"
	tests := []struct {
		name       string
		content    string
		configMode os.FileMode
		tokenMode  os.FileMode // 0: no token store
		want       []string    // "error: ..." / "warning: ..." fragments, in order
	}{
		{"private files", withSecret, 0o600, 0o600, nil},
		{"no token store yet", withSecret, 0o600, 0, nil},
		{"config group-readable is fine", withSecret, 0o640, 0o600, nil},
		{"config readable by others, no secret", noSecret, 0o644, 0o600, nil},
		{"config readable by others with a secret", withSecret, 0o644, 0o600, []string{"warning: the configuration file", "holds a client_secret"}},
		{"config writable by group", noSecret, 0o660, 0o600, []string{"error: the configuration file", "writable by its group", "fix: chmod 600 "}},
		{"config writable by all", noSecret, 0o666, 0o600, []string{"error: the configuration file", "its group and all other users"}},
		{"token store readable by others", noSecret, 0o600, 0o644, []string{"error: the token store", "all other users", "mode 0644", "fix: chmod 600 "}},
		{"token store readable by group", noSecret, 0o600, 0o640, []string{"error: the token store", "its group"}},
		{"token store writable by others", noSecret, 0o600, 0o602, []string{"error: the token store"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfgPath := filepath.Join(dir, "emailproxy.config")
			if err := os.WriteFile(cfgPath, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(cfgPath, tt.configMode); err != nil {
				t.Fatal(err)
			}
			tokPath := filepath.Join(dir, "tokens.cache")
			if tt.tokenMode != 0 {
				if err := os.WriteFile(tokPath, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(tokPath, tt.tokenMode); err != nil {
					t.Fatal(err)
				}
			}
			c, err := Parse([]byte(tt.content), cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range CheckPermissions(cfgPath, c, tokPath) {
				got = append(got, d.String())
			}
			all := strings.Join(got, "\n")
			if len(tt.want) == 0 && len(got) != 0 {
				t.Fatalf("diagnostics for private enough files:\n%s", all)
			}
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("diagnostics lack %q:\n%s", w, all)
				}
			}
			if strings.Contains(all, "s3cr3t") {
				t.Errorf("a diagnostic shows the secret:\n%s", all)
			}
			if HasErrors(CheckPermissions(cfgPath, c, tokPath)) != strings.Contains(all, "error:") {
				t.Errorf("HasErrors disagrees with %s", all)
			}
		})
	}
}
