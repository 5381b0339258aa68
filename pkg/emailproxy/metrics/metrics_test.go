package metrics

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
	"github.com/senhasegura/orbit/pkg/emailproxy/proxy"
)

func TestCheckAddress(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:9101": true, "[::1]:9101": true, "localhost:9101": true, "127.0.0.2:9101": true,
		"unix:/run/orbit/metrics.sock": true, "/run/orbit/metrics.sock": true,
		"0.0.0.0:9101": false, ":9101": false, "10.0.0.5:9101": false, "vault.example.com:9101": false,
		"unix:metrics.sock": false, "127.0.0.1": false,
	} {
		if err := CheckAddress(addr); (err == nil) != ok {
			t.Errorf("CheckAddress(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
}

// Labels stay bounded: accounts without their own section share _other,
// and every series comes from the sources.
func TestCollect(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	own := map[string]bool{"alice@example.com": true}
	m := New(Sources{
		Proxy: func() proxy.Stats {
			return proxy.Stats{
				Listeners: []proxy.ListenerStats{{Section: "IMAP-2993", Protocol: config.IMAP, Active: 3, MaxSessions: 100}},
				Logins:    []proxy.LoginCount{{Protocol: config.IMAP, Result: proxy.LoginOK, N: 7}},
				Bytes:     []proxy.ByteCount{{Protocol: config.IMAP, Direction: "client", N: 1 << 20}},
			}
		},
		Accounts: func() map[string]oauth.AccountStatus {
			return map[string]oauth.AccountStatus{
				"alice@example.com":    {State: oauth.StateAuthorised, TokenExpiry: now.Add(30 * time.Minute)},
				"invented@example.com": {State: oauth.StateAuthorised, TokenExpiry: now.Add(time.Hour)},
				"bob@example.com":      {State: oauth.StateWaiting},
			}
		},
		OwnSection: func(n string) bool { return own[n] },
		Requests: func() []oauth.TokenRequestCount {
			return []oauth.TokenRequestCount{{Grant: "refresh_token", Result: "ok", N: 2}}
		},
		Version: "1.2.3", Commit: "abc",
		Now: func() time.Time { return now },
	})
	m.RefreshFailed("alice@example.com", "AADSTS700082")
	m.RefreshFailed("invented@example.com", "invalid_grant")
	m.TokenRevoked("someone@example.com")

	want := `
# HELP orbit_emailproxy_refresh_failures_total Token requests the provider refused for good, by account (own section, else _other) and error class (the provider error catalogue's ID or the OAuth error code).
# TYPE orbit_emailproxy_refresh_failures_total counter
orbit_emailproxy_refresh_failures_total{account="_other",class="invalid_grant"} 1
orbit_emailproxy_refresh_failures_total{account="alice@example.com",class="AADSTS700082"} 1
# HELP orbit_emailproxy_tokens_revoked_total Access tokens the mail server refused before their expiry, by account (own section, else _other).
# TYPE orbit_emailproxy_tokens_revoked_total counter
orbit_emailproxy_tokens_revoked_total{account="_other"} 1
# HELP orbit_emailproxy_token_expiry_seconds Seconds until the account's access token expires (negative: expired), for authorised accounts with a section of their own.
# TYPE orbit_emailproxy_token_expiry_seconds gauge
orbit_emailproxy_token_expiry_seconds{account="alice@example.com"} 1800
# HELP orbit_emailproxy_pending_authorisations Interactive authorisations waiting for a person.
# TYPE orbit_emailproxy_pending_authorisations gauge
orbit_emailproxy_pending_authorisations 1
# HELP orbit_emailproxy_logins_total Mailer logins by protocol and result.
# TYPE orbit_emailproxy_logins_total counter
orbit_emailproxy_logins_total{protocol="IMAP",result="ok"} 7
# HELP orbit_emailproxy_sessions_open Client sessions open now, by listener section.
# TYPE orbit_emailproxy_sessions_open gauge
orbit_emailproxy_sessions_open{protocol="IMAP",section="IMAP-2993"} 3
# HELP orbit_emailproxy_token_requests_total Token requests sent to providers by grant type and result (ok, refused, unavailable).
# TYPE orbit_emailproxy_token_requests_total counter
orbit_emailproxy_token_requests_total{grant="refresh_token",result="ok"} 2
# HELP orbit_emailproxy_piped_bytes_total Bytes piped after login by protocol and direction (upstream: from mailers to the mail server; client: back).
# TYPE orbit_emailproxy_piped_bytes_total counter
orbit_emailproxy_piped_bytes_total{direction="client",protocol="IMAP"} 1.048576e+06
# HELP orbit_emailproxy_build_info orbit's version and commit; always 1.
# TYPE orbit_emailproxy_build_info gauge
orbit_emailproxy_build_info{commit="abc",version="1.2.3"} 1
`
	names := []string{"orbit_emailproxy_refresh_failures_total", "orbit_emailproxy_tokens_revoked_total", "orbit_emailproxy_token_expiry_seconds",
		"orbit_emailproxy_pending_authorisations", "orbit_emailproxy_logins_total", "orbit_emailproxy_sessions_open",
		"orbit_emailproxy_token_requests_total", "orbit_emailproxy_build_info", "orbit_emailproxy_piped_bytes_total"}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

func TestListenServes(t *testing.T) {
	m := New(Sources{})
	s, err := Listen("127.0.0.1:0", m, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	resp, err := http.Get("http://" + s.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "orbit_emailproxy_build_info") {
		t.Fatalf("%s\n%s", resp.Status, b)
	}
	// What a soak or an operator watches for leaks: goroutines, the live
	// heap after GC (not garbage), threads and descriptors.
	for _, series := range []string{"go_goroutines ", "go_gc_heap_live_bytes ", "go_threads ", "process_open_fds "} {
		if !strings.Contains(string(b), "\n"+series) {
			t.Errorf("no %s series in the scrape", strings.TrimSpace(series))
		}
	}
	if _, err := Listen("0.0.0.0:0", m, nil); err == nil {
		t.Error("Listen on all interfaces must be refused")
	}
}
