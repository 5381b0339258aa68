package oauth

import (
	"context"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

// AccountSource answers which settings apply to a login name right now. The
// Manager asks it on every login instead of keeping a copy, so a SIGHUP
// reload (a new *config.Config) applies to the very next login.
type AccountSource interface {
	// Account resolves a login name ([user@domain], then [@domain], then
	// [@] with allow_catch_all_accounts); false when nothing matches.
	Account(username string) (config.Account, bool)
	// Global is the [emailproxy] section.
	Global() config.Global
}

// ConfigSource adapts the engine's "current configuration" getter (swapped
// atomically on reload) to an AccountSource. A nil *config.Config knows no
// accounts and has default globals.
func ConfigSource(current func() *config.Config) AccountSource {
	return configSource(current)
}

type configSource func() *config.Config

func (f configSource) Account(username string) (config.Account, bool) {
	c := f()
	if c == nil {
		return config.Account{}, false
	}
	return c.Account(username)
}

func (f configSource) Global() config.Global {
	c := f()
	if c == nil {
		// The spec's defaults for a file without [emailproxy].
		return config.Global{DeleteAccountTokenOnPasswordError: true}
	}
	return c.Global
}

// Authorizer runs an interactive flow (authorization_code or device) for one
// account: it announces the URL or code, blocks until a person completes the
// step in a browser (or ctx ends, or its own time-out passes), exchanges the
// code and returns the provider's token answer. The Manager stores the
// answer; the Authorizer stores nothing.
//
// acct carries the effective client secret in ClientSecret (the decrypted
// client_secret_encrypted when the file no longer holds client_secret), so
// the code exchange can authenticate the client without reading the store.
//
// While it waits, the Authorizer should report the URL through
// Manager.SetPending (or SetPendingDevice) so `status` can show it. The
// Manager calls Authorize at most once at a time per account.
type Authorizer interface {
	Authorize(ctx context.Context, acct config.Account, username string) (TokenResponse, error)
}

// AssertionSigner makes the signed JWTs some token requests carry instead of
// a client secret. The assertion package implements it.
type AssertionSigner interface {
	// ClientAssertion returns a client_assertion (RFC 7523 2.2) for an
	// account with jwt_certificate_path and jwt_key_path: RS256, audience
	// acct.TokenURL, x5t#S256 of the certificate.
	ClientAssertion(acct config.Account) (string, error)
	// ServiceAccountAssertion returns the assertion of a JWT bearer grant
	// (RFC 7523 2.1) for a service_account flow, with username as subject.
	ServiceAccountAssertion(acct config.Account, username string) (string, error)
}

// PendingReporter is what an Authorizer needs from the Manager to surface a
// waiting authorisation in `status`. *Manager implements it.
type PendingReporter interface {
	SetPending(account, authURL string)
	SetPendingDevice(account, verificationURI, userCode string)
}
