package proxy

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
)

// waitingAuth blocks every login until its context ends, as the token
// manager does while an administrator has not yet opened the
// authorisation URL; it reports each ended wait on ended.
type waitingAuth struct {
	started chan struct{}
	ended   chan error
}

func (a *waitingAuth) AccessToken(ctx context.Context, user, pass string) (string, error) {
	a.started <- struct{}{}
	<-ctx.Done()
	a.ended <- ctx.Err()
	return "", fmt.Errorf("account %s is still waiting for an administrator: %w: %w", user, oauth.ErrNeedsAuthorization, ctx.Err())
}

func newWaitingEnv(t *testing.T, loginTimeout time.Duration) (*env, *waitingAuth, string) {
	t.Helper()
	wa := &waitingAuth{started: make(chan struct{}, 4), ended: make(chan error, 4)}
	e := newEnv(t, func(o *Options) {
		o.Authenticator = wa
		o.LoginTimeout = loginTimeout
	})
	up := startFake(t, e.ca, true, serveIMAP)
	e.apply(section("IMAP-1", config.IMAP, up))
	return e, wa, e.addr("IMAP-1")
}

// TestTokenWaitEndsAtLoginDeadline: LoginTimeout bounds the whole
// pre-authentication phase, the wait for a token included, and the client
// is told to retry instead of being left hanging (or, once a late token
// arrives, being refused with an upstream "i/o timeout").
func TestTokenWaitEndsAtLoginDeadline(t *testing.T) {
	_, wa, addr := newWaitingEnv(t, 700*time.Millisecond)
	c := dialClient(t, addr)
	c.c.SetDeadline(time.Now().Add(5 * time.Second))
	c.expect("* OK")
	c.send("a1 LOGIN alice@example.com alice-PASSWORD-1")
	<-wa.started
	c.expect("a1 NO [UNAVAILABLE] LOGIN Email OAuth 2.0 Proxy: account alice@example.com is still waiting")
	select {
	case <-wa.ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the token wait did not end at the login deadline")
	}
}

// TestTokenWaitEndsWhenClientLeaves: a mailer that gives up while the token
// layer waits (for a person, for a slow provider) ends its session at once,
// rather than leaving a goroutine and an upstream connection behind per
// attempt until the authorisation times out.
func TestTokenWaitEndsWhenClientLeaves(t *testing.T) {
	for _, proto := range []string{"IMAP", "POP", "SMTP"} {
		t.Run(proto, func(t *testing.T) {
			wa := &waitingAuth{started: make(chan struct{}, 4), ended: make(chan error, 4)}
			e := newEnv(t, func(o *Options) { o.Authenticator = wa; o.LoginTimeout = time.Minute })
			var c *client
			switch proto {
			case "IMAP":
				e.apply(section("X-1", config.IMAP, startFake(t, e.ca, true, serveIMAP)))
				c = dialClient(t, e.addr("X-1"))
				c.expect("* OK")
				c.send("a1 LOGIN alice@example.com alice-PASSWORD-1")
			case "POP":
				e.apply(section("X-1", config.POP, startFake(t, e.ca, true, servePOP)))
				c = dialClient(t, e.addr("X-1"))
				c.expect("+OK")
				c.send("USER alice@example.com")
				c.expect("+OK")
				c.send("PASS alice-PASSWORD-1")
			case "SMTP":
				e.apply(section("X-1", config.SMTP, startFake(t, e.ca, true, serveSMTP)))
				c = dialClient(t, e.addr("X-1"))
				c.expect("220")
				c.send("EHLO x")
				c.until("250 ")
				c.send("AUTH PLAIN " + b64("\x00alice@example.com\x00alice-PASSWORD-1"))
			}
			<-wa.started
			c.c.Close()
			select {
			case err := <-wa.ended:
				if err != context.Canceled {
					t.Errorf("token wait ended with %v, want context.Canceled", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the token wait goes on after the client hung up")
			}
			for i := 0; e.srv.ActiveSessions() != 0; i++ {
				if i > 200 {
					t.Fatal("session still open after the client hung up")
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
