// Package tokens is the proxy's token store: the PBKDF2-HMAC-SHA256 + Fernet
// scheme of the Python proxy (interoperable both ways), and the cache file
// that holds each account's encrypted tokens.
package tokens

import (
	"context"
	"errors"
	"time"
)

// Record is one account's tokens in the clear, as the engine uses them.
// It lives only in memory; on disk every secret field is encrypted with a
// key derived from the account's login password.
type Record struct {
	AccessToken       string
	AccessTokenExpiry time.Time // zero when unknown
	RefreshToken      string
	LastActivity      time.Time
	// ClientSecret is the decrypted client_secret_encrypted, if the store
	// holds one for this account (encrypt_client_secret_on_first_use).
	ClientSecret string
}

var (
	// ErrNotFound: the store has no tokens for the account.
	ErrNotFound = errors.New("no stored tokens")
	// ErrBadPassword: tokens exist but the password does not decrypt them.
	ErrBadPassword = errors.New("the password does not decrypt the stored tokens")
)

// Store is what the token layer needs from a token store. *FileStore
// implements it; tests may use a map.
type Store interface {
	// Get decrypts the account's tokens with password. ErrNotFound when
	// there are none, ErrBadPassword when password does not open them.
	Get(ctx context.Context, account, password string) (Record, error)
	// Put encrypts rec with password and saves it atomically, merging with
	// whatever other accounts' entries the file holds at that moment. It
	// replaces the account's whole entry (salt included), so replacing
	// another password's tokens needs no Delete first.
	Put(ctx context.Context, account, password string, rec Record) error
	// Delete drops the account's tokens (and salt), e.g. after a wrong
	// password with delete_account_token_on_password_error.
	Delete(ctx context.Context, account string) error
}
