package proxy

import (
	"errors"
	"sort"
	"sync/atomic"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
)

// LoginResult classifies a login for metrics; the set is fixed so that a
// label built from it has bounded cardinality.
type LoginResult string

const (
	LoginOK                 LoginResult = "ok"
	LoginBadPassword        LoginResult = "bad_password"
	LoginUnknownAccount     LoginResult = "unknown_account"
	LoginNeedsAuthorization LoginResult = "needs_authorization"
	LoginProviderRefused    LoginResult = "provider_refused"
	LoginProviderError      LoginResult = "provider_unavailable"
	LoginUpstreamRefused    LoginResult = "upstream_refused"
	// LoginTooManyAttempts: the login guard refused the login before
	// checking its password (too many failures lately).
	LoginTooManyAttempts LoginResult = "too_many_attempts"
	LoginOther           LoginResult = "other"
)

var loginResults = []LoginResult{LoginOK, LoginBadPassword, LoginUnknownAccount, LoginNeedsAuthorization,
	LoginProviderRefused, LoginProviderError, LoginUpstreamRefused, LoginTooManyAttempts, LoginOther}

var statProtocols = []config.Protocol{config.IMAP, config.POP, config.SMTP}

// loginCounters count logins by protocol and result with atomics only: the
// map is filled once and only read afterwards.
type loginCounters map[config.Protocol]map[LoginResult]*atomic.Uint64

func newLoginCounters() loginCounters {
	c := loginCounters{}
	for _, p := range statProtocols {
		c[p] = map[LoginResult]*atomic.Uint64{}
		for _, r := range loginResults {
			c[p][r] = new(atomic.Uint64)
		}
	}
	return c
}

func (c loginCounters) add(p config.Protocol, r LoginResult) {
	if m, ok := c[p]; ok {
		m[r].Add(1)
	}
}

// loginResultOf classifies a failed login's error.
func loginResultOf(err error) LoginResult {
	var refused *authRefusedError
	switch {
	case errors.As(err, &refused):
		return LoginUpstreamRefused
	case errors.Is(err, oauth.ErrBadPassword):
		return LoginBadPassword
	case errors.Is(err, oauth.ErrTooManyAttempts):
		return LoginTooManyAttempts
	case errors.Is(err, oauth.ErrUnknownAccount):
		return LoginUnknownAccount
	case errors.Is(err, oauth.ErrNeedsAuthorization):
		return LoginNeedsAuthorization
	case errors.Is(err, oauth.ErrProviderRefused):
		return LoginProviderRefused
	case errors.Is(err, oauth.ErrProviderUnavailable):
		return LoginProviderError
	}
	return LoginOther
}

// byteCounters count bytes piped after login, per protocol and direction.
type byteCounters map[config.Protocol]*[2]atomic.Uint64

func newByteCounters() byteCounters {
	c := byteCounters{}
	for _, p := range statProtocols {
		c[p] = new([2]atomic.Uint64)
	}
	return c
}

// of returns the counters towards the upstream and towards the client; a
// protocol without counters gets throwaway ones.
func (c byteCounters) of(p config.Protocol) (toUpstream, toClient *atomic.Uint64) {
	b, ok := c[p]
	if !ok {
		b = new([2]atomic.Uint64)
	}
	return &b[0], &b[1]
}

// Stats is a snapshot of the server's counters, for metrics.
type Stats struct {
	Listeners []ListenerStats
	Logins    []LoginCount
	Bytes     []ByteCount
}

// ByteCount is how many bytes were piped for one protocol in one direction
// ("upstream": from clients to the mail server; "client": back).
type ByteCount struct {
	Protocol  config.Protocol
	Direction string
	N         uint64
}

// ListenerStats is one listener's sessions.
type ListenerStats struct {
	Section     string
	Protocol    config.Protocol
	Active      int64 // sessions open now
	MaxSessions int64
}

// LoginCount is how many logins of one protocol ended with one result.
type LoginCount struct {
	Protocol config.Protocol
	Result   LoginResult
	N        uint64
}

// Stats reads the counters; it takes the listener lock only to list them.
func (s *Server) Stats() Stats {
	var st Stats
	s.mu.Lock()
	for _, l := range s.listeners {
		lc := l.cur.Load()
		st.Listeners = append(st.Listeners, ListenerStats{Section: l.section, Protocol: lc.srv.Protocol,
			Active: l.active.Load(), MaxSessions: lc.maxSessions()})
	}
	s.mu.Unlock()
	sort.Slice(st.Listeners, func(i, j int) bool { return st.Listeners[i].Section < st.Listeners[j].Section })
	for _, p := range statProtocols {
		for _, r := range loginResults {
			st.Logins = append(st.Logins, LoginCount{Protocol: p, Result: r, N: s.logins[p][r].Load()})
		}
		up, down := s.bytes.of(p)
		st.Bytes = append(st.Bytes, ByteCount{Protocol: p, Direction: "upstream", N: up.Load()},
			ByteCount{Protocol: p, Direction: "client", N: down.Load()})
	}
	return st
}
