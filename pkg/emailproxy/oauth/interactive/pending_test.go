package interactive

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
)

// TestPendingRequestsBounded: with catch-all accounts any name under a
// domain reaches the interactive flow, so logins with made-up names must
// not pile up requests (each a log announcement, a state and, for the
// device flow, a poller) without bound. A login joining a request that
// exists is still let in when the table is full.
func TestPendingRequestsBounded(t *testing.T) {
	p := newProvider(t)
	s, l := newServer(t, Options{MaxPending: 2})
	redirect := "http://" + freeAddr(t) + redirectPath
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 2 {
		name := fmt.Sprintf("u%d@example.com", i)
		authorize(ctx, s, codeAccount(p, name, redirect))
		l.waitFor(t, events.AuthURL, name, 1)
	}
	o := await(t, authorize(ctx, s, codeAccount(p, "u2@example.com", redirect)))
	if !errors.Is(o.err, ErrTooManyPending) || !errors.Is(o.err, oauth.ErrNeedsAuthorization) {
		t.Fatalf("third account: err = %v, want ErrTooManyPending (a temporary ErrNeedsAuthorization)", o.err)
	}
	if n := len(l.byID(events.AuthURL, "u2@example.com")); n != 0 {
		t.Errorf("a refused request was announced %d times", n)
	}
	authorize(ctx, s, codeAccount(p, "u0@example.com", redirect))
	l.waitFor(t, events.AuthURL, "u0@example.com", 2)
	if ps := s.Pending(); len(ps) != 2 {
		t.Errorf("Pending() = %+v, want the two first requests", ps)
	}
}
