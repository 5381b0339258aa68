package service

import (
	"os"
	"path/filepath"

	"github.com/senhasegura/orbit/internal/systemd"
	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
)

// CredentialStore is where systemd-creds encrypted credentials live.
const CredentialStore = "/etc/credstore.encrypted"

// BackgroundCredentials is the credential the unit loads for
// background_refresh (docs/background-refresh.md): when the file sets
// background_refresh = True and the admin has made
// credstore/orbit-background-refresh with systemd-creds encrypt. Without
// the file the unit does not ask for it (a missing credential would stop
// the unit from starting); the engine then warns that background_refresh
// lasts only while it runs.
func BackgroundCredentials(configPath, credstore string) []systemd.Credential {
	c, err := config.Load(configPath)
	if err != nil || !c.Global.BackgroundRefresh {
		return nil
	}
	path := filepath.Join(credstore, oauth.BackgroundCredential)
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	return []systemd.Credential{{Name: oauth.BackgroundCredential, Path: path}}
}

// ConfiguredSessions is how many sessions the file's listeners allow
// together (their max_sessions), for the unit's resource limits; 0 (the
// unit's default) when the file cannot be read, which start reports anyway.
func ConfiguredSessions(path string) int {
	c, err := config.Load(path)
	if err != nil {
		return 0
	}
	n := 0
	for _, srv := range c.Servers {
		n += srv.MaxSessions
	}
	return n
}
