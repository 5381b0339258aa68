package oauth

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
)

// benchManager returns a Manager whose account already holds a valid token
// in memory, with the status file on, as `serve` runs it.
func benchManager(b *testing.B, src AccountSource) *Manager {
	b.Helper()
	prov := newProvider(&testing.T{})
	b.Cleanup(prov.srv.Close)
	store := tokens.NewFileStore(filepath.Join(b.TempDir(), "tokens.config"),
		tokens.WithCodec(&tokens.Codec{Keys: tokens.NewKeyCache(4), Iterations: 1000, LegacyIterations: 1000}),
		tokens.WithLogger(slog.New(slog.DiscardHandler)))
	m, err := NewManager(Options{
		Accounts: src, Store: store, HTTPClient: prov.srv.Client(),
		StatusFile: filepath.Join(b.TempDir(), "status.json"),
	})
	if err != nil {
		b.Fatal(err)
	}
	if _, ok := src.Account(alice); !ok {
		b.Fatal("no account")
	}
	// The fake provider's URL goes into the source's account.
	if s, ok := src.(*source); ok {
		a, _ := s.Account(alice)
		a.TokenURL = prov.url()
		s.replace(s.Global(), a)
	}
	if _, err := m.AccessToken(context.Background(), alice, secretPassword); err != nil {
		b.Fatal(err)
	}
	return m
}

func BenchmarkAccessTokenCached(b *testing.B) {
	loopAccessToken(b, benchManager(b, newSource(defaultGlobal(), ccAccount(alice))))
}

// loopAccessToken measures alice's logins through m, whose token is cached.
func loopAccessToken(b *testing.B, m *Manager) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.AccessToken(ctx, alice, secretPassword); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAccessTokenCachedParallel(b *testing.B) {
	m := benchManager(b, newSource(defaultGlobal(), ccAccount(alice)))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.AccessToken(ctx, alice, secretPassword); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkAccessTokenCachedRealConfig resolves the account through a
// parsed configuration file on every login, as `serve` does.
func BenchmarkAccessTokenCachedRealConfig(b *testing.B) {
	prov := newProvider(&testing.T{})
	b.Cleanup(prov.srv.Close)
	cfg, err := config.Parse([]byte("[emailproxy]\nallow_catch_all_accounts = True\n[@]\ntoken_url = "+prov.url()+
		"\noauth2_flow = client_credentials\noauth2_scope = https://outlook.office365.com/.default\nclient_id = cid\nclient_secret = s\n"), "bench.config")
	if err != nil {
		b.Fatal(err)
	}
	loopAccessToken(b, benchManager(b, ConfigSource(func() *config.Config { return cfg })))
}
