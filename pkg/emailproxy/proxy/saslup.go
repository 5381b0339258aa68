package proxy

import "strings"

// saslReply is one upstream answer during a POP3 or SMTP AUTH XOAUTH2
// exchange, seen through that protocol's framing.
type saslReply struct {
	challenge bool   // a SASL continuation (POP3 "+", SMTP 334)
	ok        bool   // the login was accepted (POP3 +OK, SMTP 235)
	payload   string // a challenge's base64 data
	text      string // the reply as quoted in a refusal
	relay     string // the reply as sent on to the client on success
}

// saslLogin is what differs between POP3 and SMTP in an upstream
// AUTH XOAUTH2 login; the exchange itself is the same.
type saslLogin struct {
	temporary string // client reply prefix for a failure worth retrying
	permanent string // client reply prefix for a refusal
	read      func(s *session) (saslReply, error)
}

// login sends AUTH XOAUTH2, waits for the continuation, sends the
// response and expects success. An error challenge is answered with an
// empty line to get the final refusal, whose text then carries the
// challenge's decoded detail.
func (l saslLogin) login(s *session, user, pass string) (done bool, err error) {
	fail := func(err error) error {
		f := describe(user, err)
		if f.temporary {
			return s.writeClient(l.temporary + f.text)
		}
		return s.writeClient(l.permanent + f.text)
	}
	token, err := s.accessToken(user, pass)
	if err != nil {
		return false, fail(err)
	}
	ir, err := loginXOAUTH2(user, token)
	if err != nil {
		s.loginFailed(user, err)
		return false, fail(err)
	}
	lost := func(err error) (bool, error) {
		s.loginFailed(user, err)
		fail(err)
		return true, err
	}
	refused := func(reply string) (bool, error) {
		rerr := &authRefusedError{server: hostPort(s.cfg.srv), reply: reply}
		s.loginFailed(user, rerr)
		return false, fail(rerr)
	}
	if err := s.writeUp("AUTH XOAUTH2", ""); err != nil {
		return lost(err)
	}
	r, err := l.read(s)
	if err != nil {
		return lost(err)
	}
	if !r.challenge {
		return refused(r.text)
	}
	if err := s.writeUp(ir, "[redacted]"); err != nil {
		return lost(err)
	}
	if r, err = l.read(s); err != nil {
		return lost(err)
	}
	if r.challenge {
		detail := saslErrorDetail(r.payload)
		if err := s.writeUp("", ""); err != nil {
			return lost(err)
		}
		if r, err = l.read(s); err != nil {
			return lost(err)
		}
		return refused(strings.TrimSpace(r.text + " " + detail))
	}
	if !r.ok {
		return refused(r.text)
	}
	if err := s.writeClient(r.relay); err != nil {
		return true, err
	}
	s.loginOK(user)
	s.pipe()
	return true, nil
}
