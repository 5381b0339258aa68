// Package oauth is the engine's token layer: the token endpoint client
// (PostToken), the non-interactive flows, and the Manager that turns a mail
// client's plain login into an access token (proxy.Authenticator).
//
// # What a login costs
//
// A login whose password matches the one that last opened the account's
// tokens, while the access token has RefreshMargin (600 s) or more left, is
// answered from memory: an HMAC of the password and a map lookup, about a
// microsecond, no key derivation, no file read, no request. Anything else is
// one flight per (account, password): one store read (one key derivation,
// which the tokens package caches per account and password), and at most
// one token request or interactive authorisation per account at a time,
// however many clients log in at once.
//
// # The login password
//
// As in the Python proxy, the stored tokens are encrypted under the login
// password, so the first password to get tokens for an account becomes its
// password. What a different password does then depends on what it means
// upstream:
//
//   - client_credentials and service_account: the provider never sees the
//     login password, so it is the only gate in front of the mailbox. A
//     different password is refused ("Login failed - the password for
//     account <a> is incorrect") whatever delete_account_token_on_password_error
//     says. Resetting such an account is an admin's act: delete its tokens.
//   - client_credentials with use_login_password_as_client_credentials_secret
//     (and no client_secret): the login password is the client secret and
//     the provider checks it, so with delete_account_token_on_password_error
//     a new password (a rotated secret) may fetch new tokens.
//   - password: the login password is the upstream password, and with
//     delete_account_token_on_password_error the new one is sent to the
//     provider, which decides.
//   - authorization_code and device: with delete_account_token_on_password_error
//     a new password starts a new authorisation, which a person must approve.
//
// Unlike the Python proxy, which deletes the old tokens first, the Manager
// replaces them only once the new password has won new tokens: a wrong
// password that the provider (or the person) rejects leaves a working
// account working.
//
// # Refresh
//
// A token with less than 600 s left is refreshed (client_id, client_secret,
// refresh_token, grant_type=refresh_token; the old refresh token is kept when
// the answer has none; a missing expires_in means 3600 s). expires_in may be
// a number or a numeric string; zero, negative or non-numeric values count as
// 3600 s and values beyond MaxExpiresIn (7 days) as 7 days, logged once per
// token_url. The first HTTP 400 drops the access token and retries; the next drops the refresh token
// and salt and runs the account's flow again, which for an interactive
// account means a new authorisation. Other refusals (401 invalid_client...)
// and unavailability leave the stored tokens alone.
//
// # encrypt_client_secret_on_first_use
//
// After a successful token request, a client_secret that came from the file
// is stored encrypted with the tokens (client_secret_encrypted) and used
// whenever the file no longer has client_secret. Removing client_secret
// from the file is left to Options.OnClientSecretEncrypted, which the engine
// may wire to a config rewrite; without it the plain secret stays and keeps
// winning, which is harmless.
//
// # Errors
//
// Every error AccessToken returns is written for the mail client (the proxy
// prefixes "Email OAuth 2.0 Proxy: ") and wraps one of ErrUnknownAccount,
// ErrBadPassword, ErrNeedsAuthorization, ErrProviderRefused (with the
// provider's error_description), ErrProviderUnavailable or
// ErrNoAssertionSigner. None carries a password, token, client secret or a
// URL's query.
//
// # Status
//
// The Manager keeps a per-account state (authorised until T, waiting with
// the URL, failing with the reason, last activity) and mirrors it to a JSON
// file that `orbit email-oauth2-proxy status` reads with ReadStatus; see
// Status for the schema.
package oauth
