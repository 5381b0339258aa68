// Package proxy is the listening half of the engine: one listener per server
// section, one session state machine per protocol (IMAP, POP3, SMTP) that
// intercepts the client's plain login, logs in upstream with SASL XOAUTH2,
// and then becomes a byte pipe.
package proxy

import "context"

// Authenticator turns a client's plain login into an OAuth 2.0 access token.
// The oauth package's Manager implements it. Errors it returns are shown to
// the mail client (after the "Email OAuth 2.0 Proxy: " prefix), so they never
// carry secrets; errors.Is against the oauth package's sentinels decides the
// reply kind (temporary vs. permanent).
type Authenticator interface {
	AccessToken(ctx context.Context, username, password string) (string, error)
}
