package interactive

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
)

// memStore is a tokens.Store without encryption: the manager's behaviour,
// not the codec, is under test here.
type memStore struct {
	mu   sync.Mutex
	recs map[string]tokens.Record
}

func (m *memStore) Get(_ context.Context, account, _ string) (tokens.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.recs[account]
	if !ok {
		return tokens.Record{}, tokens.ErrNotFound
	}
	return r, nil
}

func (m *memStore) Put(_ context.Context, account, _ string, r tokens.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs[account] = r
	return nil
}

func (m *memStore) Delete(_ context.Context, account string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.recs, account)
	return nil
}

type oneAccount struct{ acct config.Account }

func (o oneAccount) Account(username string) (config.Account, bool) {
	if username != o.acct.Name {
		return config.Account{}, false
	}
	return o.acct, true
}

func (o oneAccount) Global() config.Global {
	return config.Global{DeleteAccountTokenOnPasswordError: true}
}

// The scenario through the real token manager: a mailer's login
// triggers the URL line, the "browser" completes it, the waiting login gets
// its token, and later logins need no one.
func TestWithTokenManager(t *testing.T) {
	p := newProvider(t)
	s, l := newServer(t, Options{})
	acct := codeAccount(p, "alice@example.com", "http://"+freeAddr(t)+redirectPath)
	store := &memStore{recs: map[string]tokens.Record{}}
	m, err := oauth.NewManager(oauth.Options{
		Accounts: oneAccount{acct}, Store: store, Interactive: s, Logger: newSlog(l),
	})
	if err != nil {
		t.Fatal(err)
	}
	s.SetReporter(m)

	type res struct {
		tok string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		tok, err := m.AccessToken(ctx, "alice@example.com", "mailer-password")
		ch <- res{tok, err}
	}()
	u := authURLOf(t, l, "alice@example.com", 1)
	st := m.Status().Accounts["alice@example.com"]
	if st.State != oauth.StateWaiting || st.AuthURL != u {
		t.Errorf("status while waiting = %+v, want waiting with the URL", st)
	}
	if v := login(t, u, nil); v.status != 200 || !strings.Contains(v.body, "Email OAuth 2.0 authentication succeeded") {
		t.Fatalf("page %d: %s", v.status, v.body)
	}
	var r res
	select {
	case r = <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting login did not return")
	}
	if r.err != nil || !strings.HasPrefix(r.tok, accessPrefix+"alice@example.com") {
		t.Fatalf("waiting login: %q, %v", r.tok, r.err)
	}
	if st := m.Status().Accounts["alice@example.com"]; st.State != oauth.StateAuthorised {
		t.Errorf("status after = %+v, want authorised", st)
	}
	// The next login works at once, with no new URL.
	tok, err := m.AccessToken(context.Background(), "alice@example.com", "mailer-password")
	if err != nil || tok != r.tok {
		t.Errorf("next login: %q, %v", tok, err)
	}
	if n := len(l.byID(events.AuthURL, "alice@example.com")); n != 1 {
		t.Errorf("%d URL lines, want 1", n)
	}
}
