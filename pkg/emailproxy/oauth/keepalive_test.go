package oauth

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
)

func keepAliveGlobal() config.Global {
	g := defaultGlobal()
	g.KeepAlive = true
	return g
}

// keepAliveHarness is storedHarness with keep_alive on and the keep-alive
// accepting accounts (its loop is driven by the test through
// keepAliveStep, under the fake clock).
func keepAliveHarness(t *testing.T, left time.Duration, opts ...harnessOpt) *harness {
	t.Helper()
	h := newHarness(t, keepAliveGlobal(), []config.Account{codeAccount(alice)}, opts...)
	h.store.set(alice, secretPassword, tokens.Record{
		AccessToken: "AT-stored", AccessTokenExpiry: h.clock.Now().Add(left), RefreshToken: "RT-stored",
	})
	h.m.keepAliveStart()
	return h
}

func (h *harness) login(password string) string {
	h.t.Helper()
	tok, err := h.m.AccessToken(context.Background(), alice, password)
	if err != nil {
		h.t.Fatalf("login: %v", err)
	}
	return tok
}

// TestKeepAliveRefreshesBeforeTheLoginPathWould: after one login, the
// access token is refreshed in the background a little more than the
// refresh margin before it expires (never earlier than margin*1.5), the
// answer is stored and cached, so the next login makes no request, and the
// status shows the new expiry. The password never reaches the log.
func TestKeepAliveRefreshesBeforeTheLoginPathWould(t *testing.T) {
	h := keepAliveHarness(t, time.Hour)
	ctx := context.Background()
	if tok := h.login(secretPassword); tok != "AT-stored" {
		t.Fatalf("first login got %q, want the stored token", tok)
	}
	expiry := h.clock.Now().Add(time.Hour)
	next := h.m.keepAliveStep(ctx)
	if h.prov.total() != 0 {
		t.Fatalf("a token request before anything was due")
	}
	if lead := expiry.Sub(next); lead < RefreshMargin || lead > RefreshMargin*3/2 {
		t.Fatalf("next refresh %v before expiry, want between the margin and 1.5 times it", lead)
	}
	h.clock.Advance(next.Sub(h.clock.Now()))
	h.m.keepAliveStep(ctx)
	if n := h.prov.count(GrantRefreshToken); n != 1 || h.prov.total() != 1 {
		t.Fatalf("refresh requests = %d (total %d), want 1", n, h.prov.total())
	}
	if f := h.prov.lastForm(GrantRefreshToken); f.Get("refresh_token") != "RT-stored" {
		t.Errorf("refreshed with %q", f.Get("refresh_token"))
	}
	e, _ := h.store.entry(alice)
	if e.rec.AccessToken != "AT-refresh_token-1" || e.rec.RefreshToken != "RT-refresh_token-1" || e.password != secretPassword {
		t.Errorf("store after the background refresh: %+v", e.rec)
	}
	if tok := h.login(secretPassword); tok != "AT-refresh_token-1" || h.prov.total() != 1 {
		t.Errorf("login after the background refresh got %q with %d requests, want the new token and no request", tok, h.prov.total())
	}
	st, _ := h.m.AccountStatus(alice)
	if st.State != StateAuthorised || !st.TokenExpiry.Equal(h.clock.Now().Add(time.Hour)) {
		t.Errorf("status after the refresh: %+v", st)
	}
	if strings.Contains(h.logs.String(), secretPassword) || strings.Contains(h.logs.String(), "RT-refresh") {
		t.Errorf("a secret reached the log:\n%s", h.logs.String())
	}
}

// TestKeepAliveDailyRefresh: tokens that live a week are still refreshed
// within KeepAliveMaxAge, so the refresh token is used every day.
func TestKeepAliveDailyRefresh(t *testing.T) {
	h := keepAliveHarness(t, 7*24*time.Hour)
	h.login(secretPassword)
	next := h.m.keepAliveStep(context.Background())
	if d := next.Sub(h.clock.Now()); d > KeepAliveMaxAge || d < KeepAliveMaxAge-time.Hour {
		t.Fatalf("next refresh in %v, want within a day (less up to an hour of jitter)", d)
	}
	h.clock.Advance(next.Sub(h.clock.Now()))
	h.m.keepAliveStep(context.Background())
	if n := h.prov.count(GrantRefreshToken); n != 1 {
		t.Fatalf("refresh requests = %d, want 1", n)
	}
}

// TestKeepAliveOff: with keep_alive = False a login leaves nothing behind
// and no request is ever made in the background; turning it off by a
// reload forgets the accounts.
func TestKeepAliveOff(t *testing.T) {
	h := keepAliveHarness(t, time.Hour)
	g := defaultGlobal() // KeepAlive false
	h.src.replace(g, codeAccount(alice))
	h.login(secretPassword)
	if got := h.m.KeepAliveAccounts(); len(got) != 0 {
		t.Fatalf("kept alive with keep_alive off: %v", got)
	}
	h.src.replace(keepAliveGlobal(), codeAccount(alice))
	h.m.forget(alice)
	h.login(secretPassword)
	if got := h.m.KeepAliveAccounts(); len(got) != 1 {
		t.Fatalf("not kept alive with keep_alive on: %v", got)
	}
	h.src.replace(g, codeAccount(alice))
	h.clock.Advance(2 * time.Hour)
	if next := h.m.keepAliveStep(context.Background()); !next.IsZero() || h.prov.total() != 0 || len(h.m.KeepAliveAccounts()) != 0 {
		t.Errorf("after keep_alive was turned off: next %v, %d requests, %v kept", next, h.prov.total(), h.m.KeepAliveAccounts())
	}
}

// TestKeepAliveRefusal: a refused background refresh marks the account
// failing and tells the admin (a Refused event) before any mailer logs in,
// stops the keep-alive for it, and leaves the stored tokens to the next
// login's two-strike handling.
func TestKeepAliveRefusal(t *testing.T) {
	var mu sync.Mutex
	var events []Event
	h := keepAliveHarness(t, time.Hour, func(o *Options) {
		o.OnEvent = func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }
	})
	h.login(secretPassword)
	h.prov.script(GrantRefreshToken, jsonAnswer(http.StatusBadRequest, map[string]string{
		"error": "invalid_grant", "error_description": "AADSTS700082: The refresh token has expired due to inactivity."}))
	h.clock.Advance(time.Hour - RefreshMargin/2)
	if next := h.m.keepAliveStep(context.Background()); !next.IsZero() {
		t.Errorf("still scheduled after a refusal: %v", next)
	}
	st, _ := h.m.AccountStatus(alice)
	if st.State != StateFailing || !strings.Contains(st.Reason, "AADSTS700082") {
		t.Errorf("status after the refusal: %+v", st)
	}
	mu.Lock()
	refused := false
	for _, e := range events {
		refused = refused || e.Refused && e.Account == alice
	}
	mu.Unlock()
	if !refused {
		t.Errorf("no Refused event: %+v", events)
	}
	if e, _ := h.store.entry(alice); e.rec.RefreshToken != "RT-stored" {
		t.Errorf("the background refusal changed the store: %+v", e.rec)
	}
}

// TestKeepAliveRetriesTransientFailures: a 503 is retried after a back-off
// that grows, and the account stays kept.
func TestKeepAliveRetriesTransientFailures(t *testing.T) {
	h := keepAliveHarness(t, time.Hour)
	h.login(secretPassword)
	h.prov.script(GrantRefreshToken, answer{status: http.StatusServiceUnavailable}, answer{status: http.StatusServiceUnavailable})
	h.clock.Advance(time.Hour - RefreshMargin/2)
	var gaps []time.Duration
	for range 3 {
		next := h.m.keepAliveStep(context.Background())
		gaps = append(gaps, next.Sub(h.clock.Now()))
		h.clock.Advance(next.Sub(h.clock.Now()))
	}
	if h.prov.count(GrantRefreshToken) != 3 {
		t.Fatalf("requests = %d, want 3", h.prov.count(GrantRefreshToken))
	}
	if gaps[0] <= 0 || gaps[1] <= gaps[0] {
		t.Errorf("back-off does not grow: %v", gaps)
	}
	if tok := h.login(secretPassword); tok != "AT-refresh_token-3" || h.prov.total() != 3 {
		t.Errorf("login after the retries got %q", tok)
	}
}

// TestKeepAliveClientCredentials: an account without a refresh token is
// kept alive with the client credentials grant.
func TestKeepAliveClientCredentials(t *testing.T) {
	h := newHarness(t, keepAliveGlobal(), []config.Account{ccAccount(alice)})
	h.m.keepAliveStart()
	h.login(secretPassword)
	if h.prov.count(GrantClientCredentials) != 1 {
		t.Fatal("the first login made no client_credentials request")
	}
	next := h.m.keepAliveStep(context.Background())
	h.clock.Advance(next.Sub(h.clock.Now()))
	h.m.keepAliveStep(context.Background())
	if h.prov.count(GrantClientCredentials) != 2 || h.prov.total() != 2 {
		t.Fatalf("requests: %d client_credentials, %d in all; want 2", h.prov.count(GrantClientCredentials), h.prov.total())
	}
	if tok := h.login(secretPassword); tok != "AT-client_credentials-2" || h.prov.total() != 2 {
		t.Errorf("login got %q", tok)
	}
}

// TestKeepAliveForgetsRemovedAccounts: an account that left the
// configuration (a reload) or whose tokens now belong to another password
// is dropped without a request.
func TestKeepAliveForgetsRemovedAccounts(t *testing.T) {
	h := keepAliveHarness(t, time.Hour)
	h.login(secretPassword)
	h.store.set(alice, otherPassword, tokens.Record{RefreshToken: "RT-other"})
	h.clock.Advance(time.Hour)
	if next := h.m.keepAliveStep(context.Background()); !next.IsZero() || h.prov.total() != 0 {
		t.Errorf("tokens of another password: next %v, %d requests", next, h.prov.total())
	}

	h = keepAliveHarness(t, time.Hour)
	h.login(secretPassword)
	h.src.replace(keepAliveGlobal())
	h.clock.Advance(time.Hour)
	if next := h.m.keepAliveStep(context.Background()); !next.IsZero() || h.prov.total() != 0 {
		t.Errorf("removed account: next %v, %d requests", next, h.prov.total())
	}
}

// TestRunKeepAliveStops: the loop returns when its context ends and
// forgets the passwords it held.
func TestRunKeepAliveStops(t *testing.T) {
	h := newHarness(t, keepAliveGlobal(), []config.Account{ccAccount(alice)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.m.RunKeepAlive(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(h.m.KeepAliveAccounts()) == 0 {
		h.m.forget(alice)
		h.login(secretPassword)
		if time.Now().After(deadline) {
			t.Fatal("the running keep-alive never took the account")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunKeepAlive did not return after its context ended")
	}
	if got := h.m.KeepAliveAccounts(); len(got) != 0 {
		t.Errorf("still held after the stop: %v", got)
	}
}
