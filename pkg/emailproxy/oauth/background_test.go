package oauth

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
)

func backgroundGlobal() config.Global {
	g := keepAliveGlobal()
	g.BackgroundRefresh = true
	return g
}

// TestBackgroundRefreshSurvivesARestart: with background_refresh and the
// service key, a renewal also writes a copy sealed with the key; a new
// Manager (the engine after a restart) renews from that copy before any
// login, without touching the password-sealed store the Python proxy
// reads, and the first login then takes the renewed tokens with no request
// and the next renewal continues from the newest refresh token.
func TestBackgroundRefreshSurvivesARestart(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	file := filepath.Join(t.TempDir(), "background-refresh.json")
	withBG := func(o *Options) { o.BackgroundKey, o.BackgroundFile = key, file }
	h := newHarness(t, backgroundGlobal(), []config.Account{codeAccount(alice)}, withBG)
	h.store.set(alice, secretPassword, tokens.Record{AccessToken: "AT-stored", AccessTokenExpiry: h.clock.Now().Add(time.Hour), RefreshToken: "RT-stored"})
	h.m.keepAliveStart()
	h.login(secretPassword)
	ctx := context.Background()
	h.clock.Advance(h.m.keepAliveStep(ctx).Sub(h.clock.Now()))
	h.m.keepAliveStep(ctx)
	if h.prov.count(GrantRefreshToken) != 1 {
		t.Fatalf("no renewal")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "RT-") || strings.Contains(string(data), "AT-") {
		t.Fatalf("the copy holds a token in the clear:\n%s", data)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("copy file mode %v", fi.Mode().Perm())
	}

	// The restart: a new Manager on the same store, file and key.
	stored, _ := h.store.entry(alice)
	m2, err := NewManager(Options{Accounts: h.src, Store: h.store, HTTPClient: h.prov.srv.Client(), Now: h.clock.Now,
		BackgroundKey: key, BackgroundFile: file})
	if err != nil {
		t.Fatal(err)
	}
	m2.keepAliveStart()
	m2.backgroundLoad()
	h.clock.Advance(2 * time.Hour) // every token issued so far has expired
	m2.keepAliveStep(ctx)
	if n := h.prov.count(GrantRefreshToken); n != 2 {
		t.Fatalf("renewals after the restart = %d, want 2 in all", n)
	}
	if f := h.prov.lastForm(GrantRefreshToken); f.Get("refresh_token") != "RT-refresh_token-1" {
		t.Errorf("the sealed renewal used %q, want the newest refresh token", f.Get("refresh_token"))
	}
	if now, _ := h.store.entry(alice); now.rec != stored.rec {
		t.Errorf("the sealed renewal changed the password-sealed store: %+v", now.rec)
	}
	if st, _ := m2.AccountStatus(alice); st.State != StateAuthorised || !st.TokenExpiry.Equal(h.clock.Now().Add(time.Hour)) {
		t.Errorf("status after the sealed renewal: %+v", st)
	}
	tok, err := m2.AccessToken(ctx, alice, secretPassword)
	if err != nil || tok != "AT-refresh_token-2" || h.prov.total() != 2 {
		t.Fatalf("first login after the restart: %q, %v, %d requests; want the renewed token and no request", tok, err, h.prov.total())
	}
	h.clock.Advance(time.Hour - RefreshMargin/2)
	m2.keepAliveStep(ctx)
	if f := h.prov.lastForm(GrantRefreshToken); h.prov.count(GrantRefreshToken) != 3 || f.Get("refresh_token") != "RT-refresh_token-2" {
		t.Errorf("the password renewal after the merge used %q", f.Get("refresh_token"))
	}
	if e, _ := h.store.entry(alice); e.rec.RefreshToken != "RT-refresh_token-3" {
		t.Errorf("the store was not brought up to date: %+v", e.rec)
	}

	// Another key opens nothing: the copies are dropped, not misread.
	m3, err := NewManager(Options{Accounts: h.src, Store: h.store, Now: h.clock.Now,
		BackgroundKey: bytes.Repeat([]byte{8}, 32), BackgroundFile: file})
	if err != nil || len(m3.bg.accounts()) != 0 {
		t.Errorf("another key: %v, %d copies", err, len(m3.bg.accounts()))
	}
}

// TestReadBackgroundKey: no directory or no credential is "off"; a short
// credential is an error naming the fix.
func TestReadBackgroundKey(t *testing.T) {
	dir := t.TempDir()
	if _, ok, err := ReadBackgroundKey(""); ok || err != nil {
		t.Errorf("no directory: %v %v", ok, err)
	}
	if _, ok, err := ReadBackgroundKey(dir); ok || err != nil {
		t.Errorf("no credential: %v %v", ok, err)
	}
	os.WriteFile(filepath.Join(dir, BackgroundCredential), []byte("short"), 0o400)
	if _, _, err := ReadBackgroundKey(dir); err == nil || !strings.Contains(err.Error(), "systemd-creds encrypt") {
		t.Errorf("short credential: %v", err)
	}
	os.WriteFile(filepath.Join(dir, BackgroundCredential), bytes.Repeat([]byte{1}, 32), 0o400)
	if k, ok, err := ReadBackgroundKey(dir); !ok || err != nil || len(k) != 32 {
		t.Errorf("good credential: %d bytes, %v %v", len(k), ok, err)
	}
}

// TestBackgroundSealAtLogin: an account whose stored access token is still
// valid gets its sealed copy at its first login after the opt-in, with no
// token request (before, only a save wrote it, so such an account had no
// copy until its token expired: a restart in between lost it). The copy is
// rewritten only when the store holds newer tokens than it, never over a
// newer copy (one the keep-alive renewed), and a login with
// background_refresh off writes none.
func TestBackgroundSealAtLogin(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	tests := []struct {
		name string
		off  bool
		// copyAt is the copy's Updated before the login relative to the
		// store's last activity; nil: no copy.
		copyAt *time.Duration
		// wantRT is the copy's refresh token after the login ("" none).
		wantRT string
	}{
		{name: "no copy yet", wantRT: "RT-stored"},
		{name: "older copy", copyAt: ptr(-time.Hour), wantRT: "RT-stored"},
		{name: "newer copy is kept", copyAt: ptr(time.Minute), wantRT: "RT-copy"},
		{name: "background_refresh off", off: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "background-refresh.json")
			g := backgroundGlobal()
			g.BackgroundRefresh = !tt.off
			h := newHarness(t, g, []config.Account{codeAccount(alice)}, func(o *Options) { o.BackgroundKey, o.BackgroundFile = key, file })
			last := h.clock.Now().Add(-10 * time.Minute)
			h.store.set(alice, secretPassword, tokens.Record{AccessToken: "AT-stored", AccessTokenExpiry: h.clock.Now().Add(time.Hour),
				RefreshToken: "RT-stored", LastActivity: last})
			if tt.copyAt != nil {
				if err := h.m.bg.set(alice, bgRecord{RefreshToken: "RT-copy", AccessToken: "AT-copy", Expiry: last.Add(*tt.copyAt + time.Hour), Updated: last.Add(*tt.copyAt)}); err != nil {
					t.Fatal(err)
				}
			}
			if tok := h.login(secretPassword); tok != "AT-stored" || h.prov.total() != 0 {
				t.Fatalf("login: %q with %d token requests; want the stored token and none", tok, h.prov.total())
			}
			// What is on disk, as the engine after a restart reads it.
			m2, err := NewManager(Options{Accounts: h.src, Store: h.store, Now: h.clock.Now, BackgroundKey: key, BackgroundFile: file})
			if err != nil {
				t.Fatal(err)
			}
			c, ok := m2.bg.get(alice)
			switch {
			case tt.wantRT == "" && ok:
				t.Errorf("a copy was written with background_refresh off: %+v", c)
			case tt.wantRT != "" && (!ok || c.RefreshToken != tt.wantRT):
				t.Errorf("the copy after the login: %+v (found %v), want refresh token %s", c, ok, tt.wantRT)
			case tt.wantRT == "RT-stored" && (c.AccessToken != "AT-stored" || !c.Updated.Equal(last)):
				t.Errorf("the copy does not hold the store's tokens: %+v", c)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestBackgroundFileTightensMode: the sealed copies are 0600 after every
// write, whatever mode the file had (a restore from a backup, a hand
// chmod): renameio.WriteFile would have kept the old, looser mode.
func TestBackgroundFileTightensMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "background-refresh.json")
	if err := os.WriteFile(path, []byte(`{"version":1,"accounts":{}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := newBackgroundStore(path, bytes.Repeat([]byte{7}, 32), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.set("alice@example.com", bgRecord{RefreshToken: "RT", Updated: time.Now()}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("background-refresh.json is %v after a write, want 0600", got)
	}
}
