package oauth

import "errors"

// Errors the token layer returns to the proxy. The proxy turns them into each
// protocol's failure reply; their messages (err.Error()) are shown to mail
// clients, so they must never contain a password, token or secret.
var (
	// ErrUnknownAccount: no section matches the login name.
	ErrUnknownAccount = errors.New("unknown account")
	// ErrBadPassword: the login password does not decrypt the stored tokens.
	ErrBadPassword = errors.New("the password is incorrect")
	// ErrNeedsAuthorization: an admin must complete an interactive
	// authorisation (browser URL or device code) before this account works.
	ErrNeedsAuthorization = errors.New("authorisation required")
	// ErrProviderUnavailable: the token endpoint could not be reached or
	// answered 5xx; worth retrying later (SMTP 454, IMAP NO [UNAVAILABLE]).
	ErrProviderUnavailable = errors.New("token endpoint unavailable")
	// ErrProviderRefused: the token endpoint refused the request (4xx);
	// the wrapped message carries the provider's error_description.
	ErrProviderRefused = errors.New("token request refused")
)
