package interactive

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
)

// fakeClock is advanced only by the Server's Sleep, so device polling runs
// at full speed while the Server believes the announced intervals passed.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	c.mu.Unlock()
	// A real pause, however short, keeps a poller that is never answered
	// from spinning.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Millisecond):
		return nil
	}
}

func (c *fakeClock) slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

func deviceAccount(p *provider, name string) config.Account {
	return config.Account{
		Name: name, Section: name, Flow: config.FlowDevice,
		PermissionURL: p.srv.URL + "/devicecode", TokenURL: p.srv.URL + "/token",
		Scope:    "https://outlook.office365.com/IMAP.AccessAsUser.All offline_access",
		ClientID: "client-1", ClientSecret: testClientSecret,
	}
}

func TestDeviceFlow(t *testing.T) {
	p := newProvider(t)
	p.pollScript = []string{"authorization_pending", "slow_down", "authorization_pending", "ok"}
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	rep := &reporter{}
	s, l := newServer(t, Options{Sleep: clock.Sleep, Now: clock.Now, Reporter: rep})
	acct := deviceAccount(p, "dave@example.com")

	o := await(t, authorize(context.Background(), s, acct))
	if o.err != nil {
		t.Fatalf("Authorize: %v", o.err)
	}
	if o.tok.AccessToken == "" || o.tok.RefreshToken == "" {
		t.Errorf("tokens = %+v", o.tok)
	}
	// Announced interval 1 s; slow_down adds 5 s for every later poll.
	want := []time.Duration{time.Second, time.Second, 6 * time.Second, 6 * time.Second}
	if got := clock.slept(); !equalDurations(got, want) {
		t.Errorf("poll intervals %v, want %v", got, want)
	}

	rs := l.byID(events.DeviceCode, "dave@example.com")
	if len(rs) != 1 {
		t.Fatalf("%d device code records, want 1:\n%s", len(rs), l.text())
	}
	complete := p.srv.URL + "/device?code=ABCD-EFGH"
	if rs[0].Message != "Visit "+complete+" and use code ABCD-EFGH" {
		t.Errorf("device line = %q", rs[0].Message)
	}
	if a := attrs(rs[0]); a["auth_url"] != complete || a["user_code"] != "ABCD-EFGH" || a["account"] != "dave@example.com" {
		t.Errorf("device record attrs = %v", a)
	}
	if got := rep.list(); len(got) != 1 || got[0] != "dave@example.com "+complete+" ABCD-EFGH" {
		t.Errorf("Reporter heard %q", got)
	}

	p.mu.Lock()
	df := p.deviceForms
	p.mu.Unlock()
	if len(df) != 1 || df[0].Get("client_id") != "client-1" || df[0].Get("scope") != acct.Scope || df[0].Get("client_secret") != acct.ClientSecret {
		t.Errorf("device code requests = %v, want one with client_id, client_secret and scope (RFC 8628 3.1)", df)
	}
	forms := p.forms()
	if len(forms) != 4 {
		t.Fatalf("%d polls, want 4", len(forms))
	}
	for _, f := range forms {
		if f.Get("grant_type") != DeviceCodeGrant || f.Get("device_code") != "dev-code-1" || f.Get("client_id") != "client-1" {
			t.Errorf("poll form %v", f)
		}
	}
	if strings.Contains(l.text(), testClientSecret) || strings.Contains(l.text(), accessPrefix) {
		t.Error("a secret reached the log")
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDeviceFlowFailures(t *testing.T) {
	tests := []struct {
		name      string
		script    []string
		expiresIn int64
		is        error
		want      string
	}{
		{"expired_token", []string{"authorization_pending", "expired_token"}, 900, oauth.ErrNeedsAuthorization, "expired before anyone entered it"},
		{"access_denied", []string{"access_denied"}, 900, oauth.ErrNeedsAuthorization, "declined"},
		{"authorization_declined (Microsoft)", []string{"authorization_declined"}, 900, oauth.ErrNeedsAuthorization, "declined"},
		{"other error", []string{"invalid_grant"}, 900, oauth.ErrProviderRefused, "polling token_url"},
		{"code lifetime ends while pending", nil, 3, oauth.ErrNeedsAuthorization, "expired before anyone entered it"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newProvider(t)
			p.pollScript, p.deviceExp = tc.script, tc.expiresIn
			clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
			s, l := newServer(t, Options{Sleep: clock.Sleep, Now: clock.Now})
			o := await(t, authorize(context.Background(), s, deviceAccount(p, "dave@example.com")))
			if !errors.Is(o.err, tc.is) || !strings.Contains(o.err.Error(), tc.want) {
				t.Errorf("error = %v, want %v containing %q", o.err, tc.is, tc.want)
			}
			if len(l.byID(events.AuthFailed, "dave@example.com")) != 1 {
				t.Errorf("no AuthFailed record:\n%s", l.text())
			}
		})
	}
}

func TestDeviceFlowSharedAndWithdrawn(t *testing.T) {
	p := newProvider(t)
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	s, l := newServer(t, Options{Sleep: clock.Sleep, Now: clock.Now, Linger: -1})
	acct := deviceAccount(p, "dave@example.com")
	ctx1, cancel1 := context.WithCancel(context.Background())
	ch1 := authorize(ctx1, s, acct)
	l.waitFor(t, events.DeviceCode, "dave@example.com", 1)
	ctx2, cancel2 := context.WithCancel(context.Background())
	ch2 := authorize(ctx2, s, acct)
	rs := l.waitFor(t, events.DeviceCode, "dave@example.com", 2)
	if rs[0].Message != rs[1].Message {
		t.Errorf("second login announced %q, want the same code as %q", rs[1].Message, rs[0].Message)
	}
	p.mu.Lock()
	n := len(p.deviceForms)
	p.mu.Unlock()
	if n != 1 {
		t.Errorf("%d device code requests for two logins, want 1", n)
	}
	cancel1()
	cancel2()
	for _, ch := range []<-chan outcome{ch1, ch2} {
		if o := await(t, ch); !errors.Is(o.err, context.Canceled) || !errors.Is(o.err, oauth.ErrNeedsAuthorization) {
			t.Errorf("cancelled login got %v", o.err)
		}
	}
	// With no login waiting and no linger, the poller stops.
	deadline := time.Now().Add(5 * time.Second)
	for {
		polls := len(p.forms())
		time.Sleep(20 * time.Millisecond)
		if len(p.forms()) == polls {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the device poller kept polling after its request was withdrawn")
		}
	}
	if ps := s.Pending(); len(ps) != 0 {
		t.Errorf("Pending() = %+v after withdrawal", ps)
	}
}
