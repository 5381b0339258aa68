package oauth

import (
	"context"
	"testing"
	"time"
)

// TestTokenRejectedIsNotUsedAgain: an access token revoked at the provider
// is still unexpired in the store; once the proxy reports the upstream's
// refusal, the next login refreshes instead of presenting it again.
func TestTokenRejectedIsNotUsedAgain(t *testing.T) {
	h := storedHarness(t, "AT-revoked", time.Hour)
	h.prov.script(GrantRefreshToken, tokenAnswer("AT-new", "RT-new", 3600))
	ctx := context.Background()

	tok, err := h.m.AccessToken(ctx, alice, secretPassword)
	if err != nil || tok != "AT-revoked" {
		t.Fatalf("first login: %q, %v", tok, err)
	}
	// Served from memory while nobody complains.
	if tok, _ := h.m.AccessToken(ctx, alice, secretPassword); tok != "AT-revoked" || h.prov.count(GrantRefreshToken) != 0 {
		t.Fatalf("second login: %q, %d refreshes", tok, h.prov.count(GrantRefreshToken))
	}
	// A stale report (some other token) changes nothing.
	h.m.TokenRejected(alice, "AT-something-else")
	if tok, _ := h.m.AccessToken(ctx, alice, secretPassword); tok != "AT-revoked" {
		t.Fatalf("after an unrelated report: %q", tok)
	}
	h.m.TokenRejected(alice, "AT-revoked")
	tok, err = h.m.AccessToken(ctx, alice, secretPassword)
	if err != nil || tok != "AT-new" {
		t.Fatalf("after the refusal: %q, %v; want the refreshed token", tok, err)
	}
	if n := h.prov.count(GrantRefreshToken); n != 1 {
		t.Errorf("refresh requests = %d, want 1", n)
	}
}
