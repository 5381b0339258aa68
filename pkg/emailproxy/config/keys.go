package config

import (
	"slices"

	"github.com/agnivade/levenshtein"
)

// The keys each kind of section understands. Anything else is ignored by
// both engines, which is why Validate points it out.
var (
	globalKeys = []string{
		"delete_account_token_on_password_error",
		"encrypt_client_secret_on_first_use",
		"use_login_password_as_client_credentials_secret",
		"allow_catch_all_accounts",
		// orbit's own (the Python proxy ignores them): notify.go, and the
		// listeners' default session cap
		"notify_command", "notify_url", "notify_reminder", "notify_timeout", "metrics_listen",
		"max_sessions",
		// orbit's own: failed-login back-off, loginguard.go
		"failed_login_free_attempts", "failed_login_max_delay", "failed_login_queue",
		// keepalive (pkg/emailproxy/oauth/keepalive.go)
		"keep_alive", "background_refresh",
	}
	serverKeys = []string{
		"server_address", "server_port", "local_address",
		"server_starttls", "starttls", "local_starttls",
		"local_certificate_path", "local_key_path",
		// orbit's own (the Python proxy ignores them)
		"max_sessions", "local_starttls_required",
	}
	accountKeys = []string{
		"permission_url", "token_url", "oauth2_scope", "oauth2_resource", "oauth2_flow",
		"redirect_uri", "redirect_listen_address", "client_id", "client_secret",
		"client_secret_encrypted", "use_pkce", "jwt_certificate_path", "jwt_key_path",
		"token_salt", "token_iterations", "access_token", "access_token_expiry",
		"refresh_token", "last_activity",
	}
	// TokenKeys are the keys a proxy writes back into an account section.
	// Re-registering never removes them.
	TokenKeys = []string{
		"token_salt", "token_iterations", "access_token", "access_token_expiry",
		"refresh_token", "last_activity", "client_secret_encrypted",
	}
	// SecretKeys hold secrets: shown only masked.
	SecretKeys = []string{"client_secret", "client_secret_encrypted", "access_token", "refresh_token"}
)

// Mask replaces a secret value wherever orbit shows a configuration.
const Mask = "********"

func isSecretKey(k string) bool { return slices.Contains(SecretKeys, k) }

// hiddenFromShow are keys that are not secret but have no business in
// `config show` output either (the salt only matters together with a
// password, yet there is no reason to hand it out).
func hiddenFromShow(k string) bool { return k == "token_salt" }

// misspellings are wrong key names known to circulate, each with the
// explanation a user needs to trust the correction.
var misspellings = map[string]struct{ want, why string }{
	"redirect_list_address": {"redirect_listen_address",
		"the senhasegura documentation misspells this key; the proxy ignores the misspelt name, so the redirect listener would bind to redirect_uri's host and port instead of the local address"},
}

// closest returns the candidate nearest to s when it is close enough to be
// a plausible typo (a third of the length, at least 1, at most 4 edits).
func closest(s string, candidates []string) (string, bool) {
	best, bestD := "", -1
	for _, c := range candidates {
		d := levenshtein.ComputeDistance(s, c)
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	limit := min(max(len(s)/3, 1), 4)
	if bestD <= 0 || bestD > limit {
		return "", false
	}
	return best, true
}

// knownScopeNames are the scope names that providers define for mail; a
// scope token within a few edits of one of them is almost surely a typo.
var knownScopeNames = []string{
	"IMAP.AccessAsUser.All", "POP.AccessAsUser.All", "SMTP.Send", "SMTP.SendAsApp",
	"IMAP.AccessAsApp", "POP.AccessAsApp", "offline_access", ".default", "openid", "profile", "email",
	"Mail.Read", "Mail.Send", "mail.google.com",
}
