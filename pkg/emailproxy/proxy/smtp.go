package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// SMTP: the proxy dials upstream when the client connects and relays the
// upstream's 220 greeting, so an unreachable upstream is a `421` greeting
// rather than a reset. With server_starttls the upgrade happens when the
// client says EHLO/HELO: the proxy sends the client's EHLO, STARTTLS, does
// the handshake, and re-sends the client's command over TLS, so the reply
// the client sees is the one from the encrypted session.

type smtpReply struct {
	code  int
	lines []string // texts without the "250-" / "250 " prefix
}

func (r smtpReply) format() string {
	var b strings.Builder
	for i, l := range r.lines {
		if i > 0 {
			b.WriteString("\r\n")
		}
		sep := "-"
		if i == len(r.lines)-1 {
			sep = " "
		}
		fmt.Fprintf(&b, "%03d%s%s", r.code, sep, l)
	}
	return b.String()
}

func (r smtpReply) text() string { return fmt.Sprintf("%03d %s", r.code, strings.Join(r.lines, " ")) }

func (s *session) readSMTPReply() (smtpReply, error) {
	var r smtpReply
	for i := 0; ; i++ {
		if i > maxReplyLines {
			return r, upstreamLost(s.cfg.srv, errors.New("reply has too many lines"))
		}
		line, err := s.readUp()
		if err != nil {
			return r, err
		}
		if len(line) < 3 {
			return r, upstreamLost(s.cfg.srv, fmt.Errorf("malformed reply %q", line))
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || (r.code != 0 && code != r.code) {
			return r, upstreamLost(s.cfg.srv, fmt.Errorf("malformed reply %q", line))
		}
		r.code = code
		more := len(line) > 3 && line[3] == '-'
		if len(line) > 4 {
			r.lines = append(r.lines, line[4:])
		} else {
			r.lines = append(r.lines, "")
		}
		if !more {
			return r, nil
		}
	}
}

func (s *session) runSMTP() {
	if err := s.dial(!s.cfg.srv.ServerStartTLS); err != nil {
		s.writeClient("421 4.3.2 " + ReplyPrefix + oneLine(err.Error()))
		return
	}
	upTLS := !s.cfg.srv.ServerStartTLS
	greeting, err := s.readSMTPReply()
	if err != nil {
		s.writeClient("421 4.3.2 " + ReplyPrefix + oneLine(err.Error()))
		return
	}
	if s.writeClient(greeting.format()) != nil || greeting.code != 220 {
		return
	}
	s.smtpCommands(upTLS)
}

// smtpCommands serves the client's commands until it has logged in (then
// the session is a pipe) or the session ends. upTLS says whether the
// upstream connection is already encrypted.
func (s *session) smtpCommands(upTLS bool) {
	_, clientTLS := s.client.(*tls.Conn)
	helloDone := false
	bad := 0
	for bad < maxBadCommands {
		line, err := s.readClient(redactSMTP)
		if err != nil {
			switch {
			case errors.Is(err, errLineTooLong):
				s.farewell("500 5.5.2 " + ReplyPrefix + "line too long")
			case isTimeout(err):
				s.farewell("421 4.4.2 " + ReplyPrefix + "timed out waiting for the client to log in")
			}
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		if !smtpVerb(verb) || strings.ContainsAny(line, "\r\x00") {
			// Not sent on: a line that does not start with a verb, or that
			// holds a bare CR (RFC 5321 2.3.8), may be an AUTH with
			// credentials that a lenient server would still read as one.
			s.writeClient("500 5.5.2 " + ReplyPrefix + "syntax error: a command is a verb (letters) and its arguments, without CR or NUL")
			bad++
			continue
		}
		switch v := strings.ToUpper(verb); v {
		case "EHLO", "HELO":
			if s.cfg.srv.ServerStartTLS && !upTLS {
				if err := s.smtpUpstreamStartTLS(arg); err != nil {
					s.srv.log.Warn(fmt.Sprintf("STARTTLS with the upstream server of [%s] failed for a client (%s from %s): %v", s.cfg.srv.Section, s.proto, s.peer, err),
						"protocol", s.proto, "client", s.peer, "section", s.cfg.srv.Section, "reason", err.Error())
					s.writeClient("421 4.7.0 " + ReplyPrefix + oneLine(err.Error()))
					return
				}
				upTLS = true
			}
			if err := s.writeUp(line, ""); err != nil {
				s.writeClient("421 4.4.2 " + ReplyPrefix + oneLine(err.Error()))
				return
			}
			reply, err := s.readSMTPReply()
			if err != nil {
				s.writeClient("421 4.4.2 " + ReplyPrefix + oneLine(err.Error()))
				return
			}
			if v == "EHLO" && reply.code == 250 {
				reply = rewriteEHLO(reply, s.cfg.offerStartTLS() && !clientTLS, !s.passwordNeedsTLS())
			}
			helloDone = reply.code == 250
			if s.writeClient(reply.format()) != nil {
				return
			}
		case "STARTTLS":
			if !s.cfg.offerStartTLS() || clientTLS {
				s.writeClient("454 4.7.0 " + ReplyPrefix + "STARTTLS is not offered by this proxy listener (it needs local_starttls = True with local_certificate_path and local_key_path)")
				continue
			}
			if err := s.startTLSCheck(); err != nil {
				s.writeClient("501 5.5.4 " + ReplyPrefix + err.Error())
				return
			}
			if s.writeClient("220 2.0.0 Ready to start TLS") != nil || s.upgradeClient() != nil {
				return
			}
			clientTLS, helloDone = true, false
		case "AUTH":
			if s.passwordNeedsTLS() {
				// RFC 3207 4's reply for a server that requires TLS; no
				// 334, so a response not sent yet never is.
				s.refusedCleartext(v)
				s.writeClient("530 5.7.0 Must issue a STARTTLS command first. " + ReplyPrefix + "this listener takes passwords only over TLS (local_starttls_required)")
				bad++
				continue
			}
			if !helloDone {
				s.writeClient("503 5.5.1 " + ReplyPrefix + "send EHLO first")
				bad++
				continue
			}
			done, err := s.smtpAuth(arg)
			if done || err != nil {
				return
			}
		case "MAIL", "RCPT", "DATA", "BDAT":
			if s.passwordNeedsTLS() {
				s.writeClient("530 5.7.0 Must issue a STARTTLS command first. " + ReplyPrefix + "then log in with AUTH PLAIN or AUTH LOGIN")
			} else {
				s.writeClient("530 5.7.0 " + ReplyPrefix + "authentication required; log in with AUTH PLAIN or AUTH LOGIN first")
			}
			bad++
		case "QUIT":
			if s.writeUp(line, "") == nil {
				if r, err := s.readSMTPReply(); err == nil {
					s.writeClient(r.format())
					return
				}
			}
			s.writeClient("221 2.0.0 Bye")
			return
		default:
			// NOOP, RSET, HELP, VRFY...: the upstream answers.
			if err := s.writeUp(line, ""); err != nil {
				s.writeClient("421 4.4.2 " + ReplyPrefix + oneLine(err.Error()))
				return
			}
			r, err := s.readSMTPReply()
			if err != nil {
				s.writeClient("421 4.4.2 " + ReplyPrefix + oneLine(err.Error()))
				return
			}
			if s.writeClient(r.format()) != nil {
				return
			}
		}
	}
	s.writeClient("421 4.7.0 " + ReplyPrefix + "too many bad commands")
}

// redactSMTP hides SASL initial responses; the words are found past
// stray spaces, which the command parser refuses.
func redactSMTP(line string) string {
	f := strings.Fields(line)
	if len(f) > 2 && strings.EqualFold(f[0], "AUTH") {
		return f[0] + " " + f[1] + " [redacted]"
	}
	return line
}

// smtpUpstreamStartTLS upgrades the upstream connection: EHLO, STARTTLS,
// handshake. The client's own EHLO/HELO is sent again afterwards.
func (s *session) smtpUpstreamStartTLS(domain string) error {
	if domain == "" {
		domain = "localhost"
	}
	if err := s.writeUp("EHLO "+domain, ""); err != nil {
		return err
	}
	r, err := s.readSMTPReply()
	if err != nil {
		return err
	}
	if r.code != 250 {
		return &upstreamError{server: hostPort(s.cfg.srv), what: "EHLO refused by the", err: errors.New(r.text())}
	}
	offered := false
	for _, l := range r.lines[1:] {
		if strings.EqualFold(strings.TrimSpace(l), "STARTTLS") {
			offered = true
		}
	}
	if !offered {
		return &upstreamError{server: hostPort(s.cfg.srv), what: "STARTTLS is not offered by the", err: errors.New("no STARTTLS in the EHLO reply"),
			hint: "server_starttls is set; use the server's implicit TLS port with server_starttls = False, or fix server_port"}
	}
	if err := s.writeUp("STARTTLS", ""); err != nil {
		return err
	}
	if r, err = s.readSMTPReply(); err != nil {
		return err
	}
	if r.code != 220 {
		return &upstreamError{server: hostPort(s.cfg.srv), what: "STARTTLS refused by the", err: errors.New(r.text())}
	}
	s.up.SetDeadline(s.deadline())
	tc, err := s.srv.clientTLS(s.ctx, s.up, s.cfg.srv)
	if err != nil {
		return err
	}
	if !s.setUpstream(tc) {
		return upstreamLost(s.cfg.srv, errors.New("session closed"))
	}
	return nil
}

// rewriteEHLO advertises AUTH PLAIN LOGIN in place of the upstream's AUTH
// (whatever it offered, the proxy logs in upstream itself) and drops the
// upstream's STARTTLS, adding the proxy's own when the listener has one.
// Without login (the client must upgrade first) no AUTH is advertised:
// RFC 3207 4.2 lets the list after STARTTLS differ.
func rewriteEHLO(r smtpReply, startTLS, login bool) smtpReply {
	out := smtpReply{code: r.code, lines: []string{r.lines[0]}}
	auth := false
	for _, l := range r.lines[1:] {
		word, _, _ := strings.Cut(strings.TrimSpace(l), " ")
		u := strings.ToUpper(word)
		switch {
		case u == "AUTH" || strings.HasPrefix(u, "AUTH="):
			if !auth && login {
				out.lines = append(out.lines, "AUTH PLAIN LOGIN")
			}
			auth = true
		case u == "STARTTLS":
		default:
			out.lines = append(out.lines, l)
		}
	}
	if !auth && login {
		out.lines = append(out.lines, "AUTH PLAIN LOGIN")
	}
	if startTLS {
		out.lines = append(out.lines, "STARTTLS")
	}
	return out
}

// smtpAuth intercepts AUTH PLAIN and AUTH LOGIN, inline or on request.
func (s *session) smtpAuth(arg string) (done bool, err error) {
	mech, ir, hasIR := strings.Cut(arg, " ")
	ask := func(prompt string) (string, bool, error) {
		if err := s.writeClient("334 " + prompt); err != nil {
			return "", false, err
		}
		l, err := s.readClient(func(string) string { return "[redacted]" })
		if err != nil {
			return "", false, err
		}
		if l == "*" {
			return "", false, s.writeClient("501 5.7.0 Authentication cancelled")
		}
		return l, true, nil
	}
	var user, pass string
	switch strings.ToUpper(mech) {
	case "PLAIN":
		if !hasIR {
			l, ok, err := ask("")
			if !ok {
				return err != nil, err
			}
			ir = l
		}
		var perr error
		user, pass, perr = decodePlain(ir)
		if errors.Is(perr, errAuthzid) {
			s.loginFailed(user, perr)
			return false, s.writeClient("535 5.7.8 " + ReplyPrefix + oneLine(perr.Error()))
		}
		if perr != nil {
			return false, s.writeClient("501 5.5.2 " + ReplyPrefix + perr.Error())
		}
	case "LOGIN":
		if !hasIR {
			l, ok, err := ask(b64Username)
			if !ok {
				return err != nil, err
			}
			ir = l
		}
		u, err := decodeB64(ir)
		if err != nil {
			return false, s.writeClient("501 5.5.2 " + ReplyPrefix + "the user name is not valid base64")
		}
		l, ok, err := ask(b64Password)
		if !ok {
			return err != nil, err
		}
		p, err := decodeB64(l)
		if err != nil {
			return false, s.writeClient("501 5.5.2 " + ReplyPrefix + "the password is not valid base64")
		}
		user, pass = string(u), string(p)
	default:
		return false, s.writeClient("504 5.5.4 " + ReplyPrefix + "only AUTH PLAIN and AUTH LOGIN are supported; the proxy does XOAUTH2 upstream itself")
	}
	if user == "" {
		return false, s.writeClient("501 5.5.2 " + ReplyPrefix + "empty user name")
	}
	return smtpLogin.login(s, user, pass)
}

// smtpLogin logs in upstream with AUTH XOAUTH2: 334 is the continuation,
// 235 the success, anything else a refusal.
var smtpLogin = saslLogin{
	temporary: "454 4.7.0 Temporary authentication failure. ",
	permanent: "535 5.7.8  Authentication credentials invalid. ",
	read: func(s *session) (saslReply, error) {
		r, err := s.readSMTPReply()
		return saslReply{
			challenge: r.code == 334,
			ok:        r.code == 235,
			payload:   strings.Join(r.lines, ""),
			text:      r.text(),
			relay:     r.format(),
		}, err
	},
}

// smtpVerb reports whether w can be an SMTP command verb: ASCII letters.
func smtpVerb(w string) bool {
	if w == "" {
		return false
	}
	for i := 0; i < len(w); i++ {
		if c := w[i] | 0x20; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}
