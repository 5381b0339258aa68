package servicetest

import (
	"os"
	"path/filepath"
	"testing"
)

// ConfigDir makes a directory for a proxy configuration file that the unit
// renderer accepts: not under /tmp or /var/tmp, which the service's private
// mounts hide (t.TempDir() is there). It is removed when the test ends.
func ConfigDir(t testing.TB) string {
	t.Helper()
	for _, parent := range []string{"/var/lib", os.Getenv("HOME")} {
		if parent == "" {
			continue
		}
		dir, err := os.MkdirTemp(parent, "orbit-cli-test-")
		if err != nil {
			continue
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	t.Skip("no writable directory outside /tmp for a configuration file (run as root, or set HOME)")
	return ""
}

// WriteConfig writes a proxy configuration file with content into a fresh
// ConfigDir and returns its path.
func WriteConfig(t testing.TB, content string) string {
	t.Helper()
	p := filepath.Join(ConfigDir(t), "emailproxy.config")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// MinimalConfig is a valid file with an IMAP and an SMTP listener and a
// client-credentials catch-all account.
const MinimalConfig = `[emailproxy]
allow_catch_all_accounts = True

[IMAP-2993]
server_address = outlook.office365.com
server_port = 993
local_address = 127.0.0.1

[SMTP-2465]
server_address = smtp.office365.com
server_port = 587
server_starttls = True
local_address = 127.0.0.1

[@]
token_url = https://login.microsoftonline.com/t/oauth2/v2.0/token
oauth2_scope = https://outlook.office365.com/.default
oauth2_flow = client_credentials
client_id = 6731de76-14a6-49ae-97bc-6eba6914391e
client_secret = not-a-real-secret
`
