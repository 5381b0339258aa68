package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/events"
)

// TestRefusedLoginOneWarning: a mail client's login that the provider
// refuses is one event, which the proxy logs as its warning ("login failed
// for ...", LoginFailed, with the token layer's reason); the token layer's
// own line for it is a debug line that keeps AuthFailed's MESSAGE_ID and
// fields. A failure with no mail client behind it (the control socket's
// sign-in) is still the token layer's warning.
func TestRefusedLoginOneWarning(t *testing.T) {
	tests := []struct {
		name      string
		ctx       context.Context
		wantLevel string
	}{
		{"a mail client's login", WithClientAddr(context.Background(), "203.0.113.7:1234"), "DEBUG"},
		{"no mail client", context.Background(), "WARN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, config.Global{}, []config.Account{passwordAccount(alice)})
			h.prov.script(GrantPassword, jsonAnswer(http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "AADSTS50126: invalid username or password."}))
			if _, err := h.m.AccessToken(tt.ctx, alice, "refused-password"); !errors.Is(err, ErrProviderRefused) {
				t.Fatalf("AccessToken: %v, want the provider's refusal", err)
			}
			var warns, authFailed []map[string]any
			for line := range strings.SplitSeq(h.logs.String(), "\n") {
				var r map[string]any
				if json.Unmarshal([]byte(line), &r) != nil {
					continue
				}
				if r["level"] == "WARN" {
					warns = append(warns, r)
				}
				if r["message_id"] == events.AuthFailed {
					authFailed = append(authFailed, r)
				}
			}
			if len(authFailed) != 1 {
				t.Fatalf("%d AuthFailed lines, want 1:\n%s", len(authFailed), h.logs.String())
			}
			a := authFailed[0]
			if a["level"] != tt.wantLevel || a["account"] != alice || !strings.Contains(a["reason"].(string), "invalid_grant") {
				t.Errorf("the token layer's line: %v, want level %s with account and reason", a, tt.wantLevel)
			}
			if want := map[string]int{"DEBUG": 0, "WARN": 1}[tt.wantLevel]; len(warns) != want {
				t.Errorf("%d warnings from the token layer, want %d: %v", len(warns), want, warns)
			}
		})
	}
}
