package oauth

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
)

// background_refresh (docs/background-refresh.md): a second copy of each
// account's tokens, sealed with a service key that systemd hands the engine
// as a credential (never on disk in the clear), so the keep-alive can renew
// them after a restart, before any mailer logs in. The token store and the
// fields the Python proxy reads are not touched: the copy lives in its own
// file, and a login whose password opens the store takes the newer tokens
// from the copy before it refreshes (and so re-seals them under its
// password at its next save).

// BackgroundCredential is the systemd credential's name: the engine reads
// $CREDENTIALS_DIRECTORY/orbit-background-refresh.
const BackgroundCredential = "orbit-background-refresh"

// backgroundAAD binds a sealed copy to its format and account, so a copy
// cannot be moved to another account's entry.
const backgroundAAD = "orbit background_refresh v1\x00"

// ReadBackgroundKey reads the service key from the credentials directory
// systemd gives the unit (LoadCredentialEncrypted=): ok is false when there
// is none. The key is the SHA-256 of the credential's content, so any 32 or
// more random bytes make a key.
func ReadBackgroundKey(credentialsDir string) (key []byte, ok bool, err error) {
	if credentialsDir == "" {
		return nil, false, nil
	}
	data, err := os.ReadFile(filepath.Join(credentialsDir, BackgroundCredential))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if len(data) < 32 {
		return nil, false, fmt.Errorf("the credential %s holds %d bytes; it needs at least 32 random bytes (create it with: head -c 32 /dev/urandom | systemd-creds encrypt --name=%s - /etc/credstore.encrypted/%s)",
			BackgroundCredential, len(data), BackgroundCredential, BackgroundCredential)
	}
	sum := sha256.Sum256(data)
	clear(data)
	return sum[:], true, nil
}

// bgRecord is one account's copy in the clear (memory only).
type bgRecord struct {
	RefreshToken string    `json:"refresh_token"`
	AccessToken  string    `json:"access_token,omitempty"`
	Expiry       time.Time `json:"access_token_expiry,omitzero"`
	Updated      time.Time `json:"updated"`
}

// bgFile is the sealed copies' file: account name -> base64(nonce|AES-GCM).
type bgFile struct {
	Version  int               `json:"version"`
	Accounts map[string]string `json:"accounts"`
}

type backgroundStore struct {
	path string
	aead cipher.AEAD
	log  *slog.Logger

	mu      sync.Mutex
	entries map[string]bgRecord
}

func newBackgroundStore(path string, key []byte, log *slog.Logger) (*backgroundStore, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	b := &backgroundStore{path: path, aead: aead, log: log, entries: map[string]bgRecord{}}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return b, nil
	case err != nil:
		return nil, err
	}
	var f bgFile
	if err := json.Unmarshal(data, &f); err != nil || f.Version != 1 {
		return nil, fmt.Errorf("%s is not a background_refresh file this orbit reads; delete it (the next login writes it again)", path)
	}
	for name, sealed := range f.Accounts {
		rec, err := b.open(name, sealed)
		if err != nil {
			// Another key (a new credential) or a damaged entry: the account
			// is renewed again after its next login.
			log.Warn("background_refresh: the sealed copy of "+name+" does not open with this engine's credential; it is dropped", "account", name)
			continue
		}
		b.entries[name] = rec
	}
	return b, nil
}

func (b *backgroundStore) open(account, sealed string) (bgRecord, error) {
	raw, err := base64.StdEncoding.DecodeString(sealed)
	n := b.aead.NonceSize()
	if err != nil || len(raw) < n {
		return bgRecord{}, errors.New("malformed")
	}
	plain, err := b.aead.Open(nil, raw[:n], raw[n:], []byte(backgroundAAD+account))
	if err != nil {
		return bgRecord{}, err
	}
	var rec bgRecord
	err = json.Unmarshal(plain, &rec)
	clear(plain)
	return rec, err
}

func (b *backgroundStore) seal(account string, rec bgRecord) (string, error) {
	plain, err := json.Marshal(rec)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, b.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := b.aead.Seal(nonce, nonce, plain, []byte(backgroundAAD+account))
	clear(plain)
	return base64.StdEncoding.EncodeToString(out), nil
}

func (b *backgroundStore) get(account string) (bgRecord, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.entries[account]
	return r, ok
}

func (b *backgroundStore) accounts() map[string]bgRecord {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]bgRecord, len(b.entries))
	for n, r := range b.entries {
		out[n] = r
	}
	return out
}

// set replaces (or, with an empty refresh token, drops) the account's copy
// and rewrites the file atomically.
func (b *backgroundStore) set(account string, rec bgRecord) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	old, had := b.entries[account]
	if rec.RefreshToken == "" {
		if !had {
			return nil
		}
		delete(b.entries, account)
	} else {
		if had && old == rec {
			return nil
		}
		b.entries[account] = rec
	}
	return b.writeLocked()
}

// setIfNewer is set for tokens that may be older than the copy: it writes
// rec only when the account has no copy or an older one. The check and the
// write are one step, so a renewal that wrote a newer copy meanwhile is
// never overwritten.
func (b *backgroundStore) setIfNewer(account string, rec bgRecord) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if old, had := b.entries[account]; rec.RefreshToken == "" || had && !old.Updated.Before(rec.Updated) {
		return nil
	}
	b.entries[account] = rec
	return b.writeLocked()
}

// writeLocked rewrites the file from entries; b.mu is held.
func (b *backgroundStore) writeLocked() error {
	f := bgFile{Version: 1, Accounts: map[string]string{}}
	for name, r := range b.entries {
		s, err := b.seal(name, r)
		if err != nil {
			return err
		}
		f.Accounts[name] = s
	}
	// The copies are sealed with the service key, and still tokens: 0600.
	return writeStateFile(b.path, f, 0o600)
}

// backgroundOn reports whether background_refresh applies now: the engine
// has the credential and the file asks for it.
func (m *Manager) backgroundOn() bool {
	return m.bg != nil && m.src.Global().BackgroundRefresh
}

// backgroundSave keeps the copy in step with a save. With
// background_refresh off (a reload) the account's copy is dropped.
func (m *Manager) backgroundSave(log *slog.Logger, account string, rec tokens.Record) {
	if m.bg == nil {
		return
	}
	r := bgRecord{}
	if m.backgroundOn() && rec.RefreshToken != "" {
		r = bgRecord{RefreshToken: rec.RefreshToken, AccessToken: rec.AccessToken, Expiry: rec.AccessTokenExpiry, Updated: rec.LastActivity}
	}
	if err := m.bg.set(account, r); err != nil {
		log.Warn(fmt.Sprintf("background_refresh: cannot write the sealed copy of %s: %v; it is renewed only while the engine runs", printable(account), err), "reason", err.Error())
	}
}

// backgroundSeal gives an account its copy at a login that opened the
// stored tokens and found its access token still valid, so saved nothing:
// without it, the account would get a copy only at its first save after
// the opt-in, and a restart before then would lose it. The copy is written
// when there is none or the store's tokens are newer than it.
func (m *Manager) backgroundSeal(log *slog.Logger, account string, rec tokens.Record) {
	if !m.backgroundOn() {
		return
	}
	r := bgRecord{RefreshToken: rec.RefreshToken, AccessToken: rec.AccessToken, Expiry: rec.AccessTokenExpiry, Updated: rec.LastActivity}
	if err := m.bg.setIfNewer(account, r); err != nil {
		log.Warn(fmt.Sprintf("background_refresh: cannot write the sealed copy of %s: %v; it is renewed only while the engine runs", printable(account), err), "reason", err.Error())
	}
}

// backgroundMerge gives a login whose password opened rec the copy's
// tokens when the copy is newer (renewed while no mailer logged in), so
// the login neither refreshes nor uses a refresh token the provider has
// rotated away. The next save seals them under the password.
func (m *Manager) backgroundMerge(account string, rec tokens.Record) tokens.Record {
	if !m.backgroundOn() {
		return rec
	}
	c, ok := m.bg.get(account)
	if !ok || !c.Updated.After(rec.LastActivity) {
		return rec
	}
	rec.RefreshToken, rec.AccessToken, rec.AccessTokenExpiry = c.RefreshToken, c.AccessToken, c.Expiry
	return rec
}

// backgroundLoad puts every account with a sealed copy on the keep-alive
// schedule, spread at random over the first minutes (at most the margin,
// and ten minutes) so a restart makes no burst of requests.
func (m *Manager) backgroundLoad() {
	if !m.backgroundOn() {
		return
	}
	now := m.now()
	spread := min(m.margin, 10*time.Minute)
	m.ka.mu.Lock()
	defer m.ka.mu.Unlock()
	for name, c := range m.bg.accounts() {
		if _, ok := m.ka.entries[name]; ok || len(m.ka.entries) >= maxKeepAlive {
			continue
		}
		next := maxTime(now.Add(randDuration(spread)), m.keepAliveNext(now, c.Expiry, c.Updated))
		if !c.Expiry.After(now.Add(m.margin)) {
			next = now.Add(randDuration(spread))
		}
		m.ka.entries[name] = &keepAliveEntry{sealed: true, next: next, last: c.Updated, used: c.Updated}
	}
}

// renewSealed is renew for an account known only by its sealed copy (no
// mailer logged in since the engine started): the refresh token comes from
// the copy, the client secret from the file (a client_secret that only
// client_secret_encrypted holds needs a login), and the answer goes to the
// copy and the status file.
func (m *Manager) renewSealed(ctx context.Context, account string) (time.Time, error) {
	acct, ok := m.src.Account(account)
	if !ok || !m.backgroundOn() {
		return time.Time{}, errKeepAliveStop
	}
	if acct.Name == "" {
		acct.Name = account
	}
	unlock := m.lockAccount(acct.Name)
	defer unlock()
	flow := acct.EffectiveFlow()
	log := m.log.With("account", acct.Name)
	c, ok := m.bg.get(acct.Name)
	if !ok {
		return time.Time{}, errKeepAliveStop
	}
	form, err := refreshForm(acct, c.RefreshToken, m.signer)
	if err != nil {
		return time.Time{}, m.keepAliveRefused(log, acct.Name, flow, err.Error(), m.requestError(acct.Name, err))
	}
	tr, err := m.post(ctx, acct, form)
	if err != nil {
		e := m.requestError(acct.Name, err)
		if errors.Is(err, ErrProviderRefused) {
			return time.Time{}, m.keepAliveRefused(log, acct.Name, flow, e.reason(), e)
		}
		log.Warn(fmt.Sprintf("keep-alive: the background token request for %s failed; retrying later", printable(acct.Name)), "reason", e.reason())
		return time.Time{}, err
	}
	now := m.now()
	c.AccessToken, c.Expiry, c.Updated = tr.AccessToken, tr.Expiry(now), now
	if tr.RefreshToken != "" {
		c.RefreshToken = tr.RefreshToken
	}
	if err := m.bg.set(acct.Name, c); err != nil {
		log.Error(fmt.Sprintf("background_refresh: cannot write the renewed tokens of %s: %v; with a provider that rotates refresh tokens it may need a new authorisation", printable(acct.Name), err), "reason", err.Error())
	}
	m.status.authorised(acct.Name, flow, c.Expiry)
	log.Debug(fmt.Sprintf("keep-alive: the tokens of %s were refreshed in the background from the sealed copy", printable(acct.Name)))
	return c.Expiry, nil
}

func randDuration(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return mrand.N(d)
}
