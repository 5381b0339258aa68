package engine

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/control"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth/interactive"
)

// subscribers fans the token manager's events out to control-socket
// exchanges waiting on an account.
type subscribers struct {
	mu   sync.Mutex
	subs map[string]map[chan oauth.Event]struct{}
}

func (s *subscribers) add(account string) chan oauth.Event {
	ch := make(chan oauth.Event, 16)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs == nil {
		s.subs = map[string]map[chan oauth.Event]struct{}{}
	}
	if s.subs[account] == nil {
		s.subs[account] = map[chan oauth.Event]struct{}{}
	}
	s.subs[account][ch] = struct{}{}
	return ch
}

func (s *subscribers) remove(account string, ch chan oauth.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.subs[account], ch)
	if len(s.subs[account]) == 0 {
		delete(s.subs, account)
	}
}

// publish never blocks the login that caused the event: a subscriber that
// does not keep up misses events, and only the newest URL matters to it.
func (s *subscribers) publish(ev oauth.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs[ev.Account] {
		select {
		case ch <- ev:
		default:
		}
	}
}

// handleControl answers the control socket's requests.
func (e *Engine) handleControl(ctx context.Context, req control.Request, send func(control.Reply) error) {
	fail := func(kind, msg string) { send(control.Reply{Type: control.TypeError, Kind: kind, Message: msg}) }
	if req.Op != "authorize" {
		fail(control.KindBadRequest, "unknown operation "+req.Op+"; this engine knows authorize")
		return
	}
	if req.Account == "" {
		fail(control.KindBadRequest, "no account given")
		return
	}
	name := req.Account
	if acct, ok := e.Config().Account(req.Account); ok && acct.Name != "" {
		name = acct.Name
	}
	events := e.subs.add(name)
	defer e.subs.remove(name, events)

	// The sign-in is a login without a mailer: the manager runs the
	// account's flow and stores the tokens under this password. It is
	// detached from the client, so `authorize --no-wait` (or a client that
	// gives up) leaves the authorisation open, like a mailer that hung up.
	type result struct{ err error }
	done := make(chan result, 1)
	go func() {
		actx, cancel := context.WithTimeout(context.Background(), loginTimeout(e.opts.AuthTimeout))
		defer cancel()
		// Through the gate: an account its file disables is refused
		// with the reason, as a mailer's login would be.
		_, err := gate{e}.AccessToken(actx, req.Account, req.Password)
		// Logged here, not by the exchange: after --no-wait nobody is
		// listening when the sign-in completes.
		if err == nil {
			e.log.Info("account " + name + " signed in through the control socket (orbit email-oauth2-proxy authorize)")
		} else {
			e.log.Warn("the sign-in of " + name + " through the control socket failed: " + err.Error())
		}
		done <- result{err}
	}()

	var lastURL, lastCode string
	announce := func(st oauth.AccountStatus) {
		if st.State == oauth.StateWaiting && st.AuthURL != "" && (st.AuthURL != lastURL || st.UserCode != lastCode) {
			lastURL, lastCode = st.AuthURL, st.UserCode
			send(control.Reply{Type: control.TypeWaiting, AuthURL: st.AuthURL, UserCode: st.UserCode})
		}
	}
	// A mailer's login may have started the authorisation already.
	if st, ok := e.manager.AccountStatus(name); ok {
		announce(st)
	}
	for {
		select {
		case ev := <-events:
			announce(ev.Status)
		case r := <-done:
			if r.err != nil {
				kind, msg := controlError(r.err)
				fail(kind, msg)
				return
			}
			st, _ := e.manager.AccountStatus(name)
			send(control.Reply{Type: control.TypeAuthorised, Flow: string(st.Flow), TokenExpiry: st.TokenExpiry})
			return
		case <-ctx.Done():
			return
		}
	}
}

// controlError classifies a sign-in failure for the CLI's exit code.
func controlError(err error) (kind, msg string) {
	var re *interactive.RedirectError
	switch {
	case errors.Is(err, oauth.ErrUnknownAccount):
		kind = control.KindUnknownAccount
	case errors.Is(err, oauth.ErrBadPassword):
		kind = control.KindBadPassword
	case errors.Is(err, ErrAccountDisabled):
		kind = control.KindBadRequest
	case errors.As(err, &re), errors.Is(err, oauth.ErrProviderRefused):
		kind = control.KindRefused
	case errors.Is(err, oauth.ErrNeedsAuthorization), errors.Is(err, context.DeadlineExceeded):
		kind = control.KindTimeout
	case errors.Is(err, oauth.ErrProviderUnavailable):
		kind = control.KindUnavailable
	default:
		kind = control.KindInternal
	}
	return kind, err.Error()
}

// controlPath is where the control socket goes: ControlPath, else beside
// the status file; "" when it is off.
func (o Options) controlPath() string {
	switch {
	case o.ControlPath == "-":
		return ""
	case o.ControlPath != "":
		return o.ControlPath
	case o.StatusPath == "-":
		return ""
	}
	return control.PathFor(o.StatusPath)
}

// openControl starts the control socket; failing to is logged, not fatal:
// the proxy serves mail without it, only `authorize` needs it.
func (e *Engine) openControl() {
	path := e.opts.controlPath()
	if path == "" {
		return
	}
	s, err := control.Listen(path, e.handleControl, e.log)
	if err != nil {
		e.log.Warn("no control socket, so `orbit email-oauth2-proxy authorize` cannot reach this engine: " + err.Error())
		return
	}
	e.control = s
}

func (e *Engine) closeControl() {
	if e.control != nil {
		done := make(chan struct{})
		go func() { e.control.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
}
