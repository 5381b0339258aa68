package metrics

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
)

type oneAccount struct{ acct config.Account }

func (s oneAccount) Account(name string) (config.Account, bool) {
	if name != s.acct.Name {
		return config.Account{}, false
	}
	return s.acct, true
}

func (oneAccount) Global() config.Global { return config.Global{} }

// TestGuardMetricsAfterAStorm: after wrong passwords from one address,
// some of them refused at once by the guard's queue and one delayed, the
// guard's series are there with the counts a dashboard needs, bounded
// labels only: neither the client address nor a password appears.
func TestGuardMetricsAfterAStorm(t *testing.T) {
	const alice, right = "alice@example.com", "the-right-password"
	store := tokens.NewFileStore(filepath.Join(t.TempDir(), "tokens"),
		tokens.WithCodec(&tokens.Codec{Keys: tokens.NewKeyCache(0), Iterations: 2000, LegacyIterations: 500}))
	ctx := context.Background()
	if err := store.Put(ctx, alice, right, tokens.Record{AccessToken: "AT-secret-token", AccessTokenExpiry: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	mgr, err := oauth.NewManager(oauth.Options{
		Accounts: oneAccount{config.Account{Name: alice, Section: alice, Flow: config.FlowClientCredentials, ClientID: "c", ClientSecret: "client-secret-value", TokenURL: "http://127.0.0.1:1/token"}},
		Store:    store,
		Guard:    oauth.GuardOptions{FreeFailures: 3, MaxDelay: 10 * time.Second, Queue: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	guess := oauth.WithClientAddr(ctx, "192.0.2.77:4000")
	for i := range 3 {
		if _, err := mgr.AccessToken(guess, alice, "wrong-guess-"+string(rune('a'+i))); !errors.Is(err, oauth.ErrBadPassword) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	// The address is delayed now: of five at once, one waits its turn and
	// the rest are refused (the queue holds one).
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() { _, _ = mgr.AccessToken(guess, alice, "wrong-burst-"+string(rune('a'+i))) })
	}
	wg.Wait()

	m := New(Sources{Guard: mgr.GuardStats, OwnSection: mgr.HasOwnSection})
	want := `
# HELP orbit_emailproxy_failed_logins_last_hour Failed logins (wrong passwords and logins the guard refused) in the last hour, by account (own section, else _other), as status shows them.
# TYPE orbit_emailproxy_failed_logins_last_hour gauge
orbit_emailproxy_failed_logins_last_hour{account="_other"} 0
orbit_emailproxy_failed_logins_last_hour{account="alice@example.com"} 8
# HELP orbit_emailproxy_guard_delayed_addresses Client addresses whose next login waits out a back-off now.
# TYPE orbit_emailproxy_guard_delayed_addresses gauge
orbit_emailproxy_guard_delayed_addresses 1
# HELP orbit_emailproxy_guard_delayed_logins_total Logins that waited out a back-off after failed logins from their client address.
# TYPE orbit_emailproxy_guard_delayed_logins_total counter
orbit_emailproxy_guard_delayed_logins_total 1
# HELP orbit_emailproxy_guard_refused_total Logins the login guard refused without checking the password, by reason: queue (too many waiting from one client address), relay (a new password not sent to the provider, which had just refused one).
# TYPE orbit_emailproxy_guard_refused_total counter
orbit_emailproxy_guard_refused_total{reason="queue"} 4
orbit_emailproxy_guard_refused_total{reason="relay"} 0
`
	names := []string{"orbit_emailproxy_failed_logins_last_hour", "orbit_emailproxy_guard_delayed_addresses",
		"orbit_emailproxy_guard_delayed_logins_total", "orbit_emailproxy_guard_refused_total"}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	found := map[string]bool{}
	for _, mf := range mfs {
		found[mf.GetName()] = true
		all.WriteString(mf.String())
	}
	if !found["orbit_emailproxy_guard_paused_derivations_total"] {
		t.Error("orbit_emailproxy_guard_paused_derivations_total is missing")
	}
	for _, secret := range []string{"192.0.2.77", "wrong-guess", "wrong-burst", right, "AT-secret-token", "client-secret-value"} {
		if strings.Contains(all.String(), secret) {
			t.Errorf("the exposition holds %q", secret)
		}
	}
}
