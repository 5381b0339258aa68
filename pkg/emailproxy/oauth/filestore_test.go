package oauth

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
)

// TestWithFileStore runs the Manager on the real cache-file store (with a
// cheap iteration count): tokens land encrypted on disk, a restarted engine
// uses them without a request, and the key derivation is paid once.
func TestWithFileStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.config")
	keys := tokens.NewKeyCache(16)
	newStore := func() *tokens.FileStore {
		return tokens.NewFileStore(path, tokens.WithCodec(&tokens.Codec{Keys: keys, Iterations: 1000, LegacyIterations: 1000}),
			tokens.WithLogger(slog.New(slog.DiscardHandler)))
	}
	prov := newProvider(t)
	acct := ccAccount(alice)
	acct.Flow = config.FlowPassword
	acct.TokenURL = prov.url()
	src := newSource(defaultGlobal(), acct)
	clock := newClock()
	// Real clock for the file's own timestamps; fake one for expiry maths,
	// set near the present so both agree.
	clock.t = time.Now().Truncate(time.Second)
	newManager := func() *Manager {
		m, err := NewManager(Options{Accounts: src, Store: newStore(), HTTPClient: prov.srv.Client(), Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	ctx := context.Background()

	m := newManager()
	tok, err := m.AccessToken(ctx, alice, secretPassword)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecrets(t, "token file", string(raw), tok, "RT-password-1")
	if !strings.Contains(string(raw), "["+alice+"]") || !strings.Contains(string(raw), "gAAAAA") {
		t.Errorf("token file does not hold alice's Fernet tokens:\n%s", raw)
	}
	derivations := keys.Derivations()

	// A restart: new Manager, same file. The stored token is used as is.
	m = newManager()
	if got, err := m.AccessToken(ctx, alice, secretPassword); err != nil || got != tok {
		t.Fatalf("after restart: %q, %v; want the stored token", got, err)
	}
	if prov.total() != 1 {
		t.Errorf("token requests = %d, want 1", prov.total())
	}
	// Logins from memory: no derivation at all.
	for range 5 {
		if _, err := m.AccessToken(ctx, alice, secretPassword); err != nil {
			t.Fatal(err)
		}
	}
	if d := keys.Derivations(); d != derivations {
		t.Errorf("key derivations grew from %d to %d for logins with a valid token", derivations, d)
	}

	// Refresh through the file.
	clock.Advance(time.Hour)
	tok2, err := m.AccessToken(ctx, alice, secretPassword)
	if err != nil || tok2 != "AT-refresh_token-1" {
		t.Fatalf("refresh: %q, %v", tok2, err)
	}
	if f := prov.lastForm(GrantRefreshToken); f.Get("refresh_token") != "RT-password-1" {
		t.Errorf("refresh used %q", f.Get("refresh_token"))
	}

	// Delete off: the real store's wrong-password answer becomes the spec's message.
	src.replace(config.Global{}, acct)
	_, err = m.AccessToken(ctx, alice, otherPassword)
	if !errors.Is(err, ErrBadPassword) || err.Error() != "Login failed - the password for account "+alice+" is incorrect" {
		t.Fatalf("wrong password: %v", err)
	}
}
