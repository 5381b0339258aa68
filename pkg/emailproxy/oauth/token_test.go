package oauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

// TestTokenResponseAsProvidersSendIt: expires_in as a number or a numeric
// string, absurd values clamped, token_type optional, unknown and oddly
// typed extra fields ignored.
func TestTokenResponseAsProvidersSendIt(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	max := int64(MaxExpiresIn / time.Second)
	def := int64(DefaultExpiresIn / time.Second)
	tests := []struct {
		name      string
		expiresIn string // raw JSON; "" leaves it out
		extra     string
		wantSecs  int64 // expiry - now
		wantNote  bool
	}{
		{"number", `3599`, "", 3599, false},
		{"string (Entra v1.0)", `"3599"`, "", 3599, false},
		{"string with spaces", `" 3599 "`, "", 3599, false},
		{"float", `3599.0`, "", 3599, false},
		{"absent", ``, "", def, false},
		{"null", `null`, "", def, false},
		{"zero", `0`, "", def, true},
		{"zero string", `"0"`, "", def, true},
		{"negative", `-5`, "", def, true},
		{"int64 max (overflowed into the past)", `9223372036854775807`, "", max, true},
		{"beyond int64", `99999999999999999999999`, "", max, true},
		{"beyond float64", `1e400`, "", max, true},
		{"huge string", `"9223372036854775807"`, "", max, true},
		{"a year", `31536000`, "", max, true},
		{"not a number", `"soon"`, "", def, true},
		{"a bool", `true`, "", def, true},
		{"extra fields", `3599`, `,"ext_expires_in":"3599","id_token":"x.y.z","foo":{"bar":[1,2]},"scope":["a","b"]`, 3599, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"access_token":"AT","refresh_token":"RT"`
			if tt.expiresIn != "" {
				body += `,"expires_in":` + tt.expiresIn
			}
			body += tt.extra + `}`
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(body))
			}))
			defer srv.Close()
			tr, err := PostToken(context.Background(), srv.Client(), srv.URL, nil)
			if err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			if tr.AccessToken != "AT" || tr.RefreshToken != "RT" {
				t.Errorf("tokens = %q, %q", tr.AccessToken, tr.RefreshToken)
			}
			exp := tr.Expiry(now)
			if got := int64(exp.Sub(now) / time.Second); got != tt.wantSecs {
				t.Errorf("%s: expiry in %d s, want %d", body, got, tt.wantSecs)
			}
			if !exp.After(now) {
				t.Errorf("expiry %v is not after now", exp)
			}
			if note := tr.ExpiresInNote(); (note != "") != tt.wantNote {
				t.Errorf("note = %q, want one: %v", note, tt.wantNote)
			}
		})
	}
}

// TestSecondsReadsNumbersAndStrings: the device answer's counts.
func TestSecondsReadsNumbersAndStrings(t *testing.T) {
	for raw, want := range map[string]time.Duration{
		`5`: 5 * time.Second, `"5"`: 5 * time.Second, `"x"`: 0, `-1`: 0, `9223372036854775807`: time.Minute, `null`: 0,
	} {
		var v struct {
			S Seconds `json:"s"`
		}
		if err := json.Unmarshal([]byte(`{"s":`+raw+`}`), &v); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if got := v.S.Duration(time.Minute); got != want {
			t.Errorf("%s: %v, want %v", raw, got, want)
		}
	}
}

// TestManagerOddExpiresIn: a login works with a string or absurd
// expires_in, the stored expiry is in the sane range, and the oddity is
// logged once however many logins see it.
func TestManagerOddExpiresIn(t *testing.T) {
	h := newHarness(t, defaultGlobal(), []config.Account{ccAccount(alice)})
	odd := jsonAnswer(http.StatusOK, map[string]any{"access_token": "AT-1", "expires_in": json.Number("9223372036854775807")})
	h.prov.script(GrantClientCredentials, odd, odd, odd)
	ctx := context.Background()
	for i := range 3 {
		tok, err := h.m.AccessToken(ctx, alice, secretPassword)
		if err != nil || tok != "AT-1" {
			t.Fatalf("login %d: %q, %v", i, tok, err)
		}
		e, _ := h.store.entry(alice)
		if d := e.rec.AccessTokenExpiry.Sub(h.clock.Now()); d != MaxExpiresIn {
			t.Fatalf("stored expiry in %v, want the cap %v", d, MaxExpiresIn)
		}
		// Past the cap minus the margin: the next login asks again.
		h.clock.Advance(MaxExpiresIn)
	}
	if n := strings.Count(h.logs.String(), "expires_in = 9223372036854775807"); n != 1 {
		t.Errorf("the odd expires_in was logged %d times, want once:\n%s", n, h.logs)
	}

	h2 := newHarness(t, defaultGlobal(), []config.Account{ccAccount(alice)})
	h2.prov.script(GrantClientCredentials, jsonAnswer(http.StatusOK, map[string]any{"access_token": "AT-s", "expires_in": "3599"}))
	if tok, err := h2.m.AccessToken(ctx, alice, secretPassword); err != nil || tok != "AT-s" {
		t.Fatalf("string expires_in: %q, %v", tok, err)
	}
	if e, _ := h2.store.entry(alice); e.rec.AccessTokenExpiry.Sub(h2.clock.Now()) != 3599*time.Second {
		t.Errorf("string expires_in stored as %v", e.rec.AccessTokenExpiry.Sub(h2.clock.Now()))
	}
}
