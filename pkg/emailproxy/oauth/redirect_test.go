package oauth

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// TestPostTokenDoesNotFollowRedirects: a token request carries the client
// secret and the refresh token in its body, and Go re-sends a body on 307
// and 308 wherever the Location points. A token endpoint that redirects
// (a moved tenant, a captive portal, a hostile network) must not receive
// the secrets a second time at an address nobody configured.
func TestPostTokenDoesNotFollowRedirects(t *testing.T) {
	for _, code := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect, http.StatusFound} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			var leaked atomic.Bool
			elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				if strings.Contains(string(b), "REFRESH-SECRET") || strings.Contains(string(b), "CLIENT-SECRET") {
					leaked.Store(true)
				}
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"access_token":"stolen","expires_in":3600}`)
			}))
			defer elsewhere.Close()
			endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, elsewhere.URL+"/token", code)
			}))
			defer endpoint.Close()

			form := url.Values{"client_secret": {"CLIENT-SECRET"}, "refresh_token": {"REFRESH-SECRET"}, "grant_type": {"refresh_token"}}
			_, err := PostToken(context.Background(), &http.Client{}, endpoint.URL+"/token", form)
			if leaked.Load() {
				t.Fatal("the token request's secrets were re-sent to the redirect target")
			}
			if err == nil {
				t.Fatal("a redirected token request succeeded")
			}
			if !errors.Is(err, ErrProviderRefused) || !strings.Contains(err.Error(), "redirect") || !strings.Contains(err.Error(), "token_url") {
				t.Errorf("error should say the token_url redirects and how to fix it: %v", err)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error carries a secret: %v", err)
			}
		})
	}
}
