package proxy

import (
	"errors"
	"strings"
)

// POP3: the proxy dials upstream when the client connects, so that the
// client's greeting is the upstream's (or `-ERR [SYS/TEMP] ...` when the
// upstream cannot be reached, instead of a reset) and CAPA reflects the
// real server. USER/PASS and AUTH PLAIN are answered locally; only the
// XOAUTH2 login goes upstream.

func (s *session) runPOP() {
	if err := s.dial(true); err != nil {
		s.writeClient("-ERR [SYS/TEMP] " + ReplyPrefix + oneLine(err.Error()))
		return
	}
	greeting, err := s.readUp()
	if err != nil {
		s.writeClient("-ERR [SYS/TEMP] " + ReplyPrefix + oneLine(err.Error()))
		return
	}
	if s.writeClient(greeting) != nil || !strings.HasPrefix(greeting, "+OK") {
		return
	}
	s.popCommands()
}

// popCommands serves the client's commands until it has logged in (then
// the session is a pipe) or the session ends.
func (s *session) popCommands() {
	var user string
	bad := 0
	for bad < maxBadCommands {
		line, err := s.readClient(redactPOP)
		if err != nil {
			switch {
			case errors.Is(err, errLineTooLong):
				s.farewell("-ERR " + ReplyPrefix + "command line too long")
			case isTimeout(err):
				s.farewell("-ERR " + ReplyPrefix + "timed out waiting for the client to log in")
			}
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		uverb := strings.ToUpper(verb)
		if s.passwordNeedsTLS() {
			switch {
			case uverb == "AUTH" && arg == "":
				// RFC 1734's listing: no mechanism may be used yet.
				s.writeClient("+OK\r\n.")
				continue
			case uverb == "USER" || uverb == "PASS" || uverb == "AUTH" || uverb == "APOP":
				// -ERR [AUTH]: "an attempt to authenticate in violation of
				// policy" (RFC 3206). AUTH gets no "+ ", so its response
				// is never sent; USER refused keeps PASS from following.
				s.refusedCleartext(uverb)
				s.writeClient("-ERR [AUTH] " + ReplyPrefix + cleartextRefusal("STLS"))
				bad++
				continue
			}
		}
		switch uverb {
		case "CAPA":
			if err := s.popCapa(); err != nil {
				s.writeClient("-ERR [SYS/TEMP] " + ReplyPrefix + oneLine(err.Error()))
				return
			}
		case "USER":
			if arg == "" {
				s.writeClient("-ERR " + ReplyPrefix + "USER needs a user name")
				bad++
				continue
			}
			user = arg
			s.writeClient("+OK send PASS")
		case "PASS":
			if user == "" {
				s.writeClient("-ERR " + ReplyPrefix + "send USER first")
				bad++
				continue
			}
			done, err := popLogin.login(s, user, arg)
			if done || err != nil {
				return
			}
			user = ""
		case "AUTH":
			if arg == "" {
				// RFC 1734 clients list mechanisms with a bare AUTH.
				s.writeClient("+OK\r\nPLAIN\r\n.")
				continue
			}
			mech, ir, hasIR := strings.Cut(arg, " ")
			if !strings.EqualFold(mech, "PLAIN") {
				s.writeClient("-ERR " + ReplyPrefix + "only AUTH PLAIN (or USER/PASS) is supported; the proxy does XOAUTH2 upstream itself")
				bad++
				continue
			}
			if !hasIR {
				if err := s.writeClient("+ "); err != nil {
					return
				}
				if ir, err = s.readClient(func(string) string { return "[redacted]" }); err != nil {
					return
				}
				if ir == "*" {
					s.writeClient("-ERR AUTH cancelled")
					continue
				}
			}
			u, p, perr := decodePlain(ir)
			if errors.Is(perr, errAuthzid) {
				s.loginFailed(u, perr)
				s.writeClient("-ERR [AUTH] " + ReplyPrefix + oneLine(perr.Error()))
				bad++
				continue
			}
			if perr != nil {
				s.writeClient("-ERR " + ReplyPrefix + perr.Error())
				bad++
				continue
			}
			done, err := popLogin.login(s, u, p)
			if done || err != nil {
				return
			}
		case "STLS":
			if !s.offerStartTLS() {
				s.writeClient("-ERR " + ReplyPrefix + "STLS is not offered by this proxy listener (it needs local_starttls = True with local_certificate_path and local_key_path); connect without it, or with implicit TLS where the listener has a certificate")
				continue
			}
			if err := s.startTLSCheck(); err != nil {
				s.writeClient("-ERR " + ReplyPrefix + err.Error())
				return
			}
			// RFC 2595 4: the session stays in the AUTHORIZATION state;
			// USER given before is forgotten.
			if s.writeClient("+OK Begin TLS negotiation") != nil || s.upgradeClient() != nil {
				return
			}
			user = ""
		case "QUIT":
			if s.writeUp("QUIT", "") == nil {
				if reply, err := s.readUp(); err == nil {
					s.writeClient(reply)
					return
				}
			}
			s.writeClient("+OK bye")
			return
		default:
			if s.passwordNeedsTLS() {
				s.writeClient("-ERR " + ReplyPrefix + "send STLS, then log in with USER/PASS or AUTH PLAIN")
			} else {
				s.writeClient("-ERR " + ReplyPrefix + "log in first with USER/PASS or AUTH PLAIN")
			}
			bad++
		}
	}
	s.writeClient("-ERR " + ReplyPrefix + "too many bad commands")
}

// redactPOP hides passwords (PASS, APOP) and SASL initial responses; the
// words are found as the command parser cannot, past stray spaces.
func redactPOP(line string) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return line
	}
	switch strings.ToUpper(f[0]) {
	case "PASS", "APOP":
		return f[0] + " [redacted]"
	case "AUTH":
		if len(f) > 2 {
			return f[0] + " " + f[1] + " [redacted]"
		}
	}
	return line
}

// popCapa relays the upstream's CAPA, rewritten: SASL becomes SASL PLAIN,
// USER is added, the upstream's STLS removed (the proxy's own added when
// the listener offers it). A client that must use STLS first sees neither
// USER nor SASL before it (RFC 2595 4 lets the list change after STLS).
// If the upstream has no CAPA the proxy answers with its own list.
func (s *session) popCapa() error {
	if err := s.writeUp("CAPA", ""); err != nil {
		return err
	}
	first, err := s.readUp()
	if err != nil {
		return err
	}
	var caps []string
	if strings.HasPrefix(first, "+OK") {
		for i := 0; ; i++ {
			if i > maxReplyLines {
				return upstreamLost(s.cfg.srv, errors.New("CAPA reply too long"))
			}
			l, err := s.readUp()
			if err != nil {
				return err
			}
			if l == "." {
				break
			}
			caps = append(caps, l)
		}
	} else {
		first = "+OK Capability list follows"
	}
	out := []string{first}
	login := !s.passwordNeedsTLS()
	sasl, userCap := false, false
	for _, c := range caps {
		word, _, _ := strings.Cut(c, " ")
		switch strings.ToUpper(word) {
		case "SASL":
			if !sasl && login {
				out = append(out, "SASL PLAIN")
			}
			sasl = true
		case "STLS":
		case "USER":
			if login {
				out = append(out, c)
			}
			userCap = true
		default:
			out = append(out, c)
		}
	}
	if !userCap && login {
		out = append(out, "USER")
	}
	if !sasl && login {
		out = append(out, "SASL PLAIN")
	}
	if s.offerStartTLS() {
		out = append(out, "STLS")
	}
	out = append(out, ".")
	return s.writeClient(strings.Join(out, "\r\n"))
}

// popLogin logs in upstream with AUTH XOAUTH2: "+" is the continuation,
// +OK the success, anything else a refusal.
var popLogin = saslLogin{
	temporary: "-ERR [SYS/TEMP] ",
	permanent: "-ERR Authentication failed. ",
	read: func(s *session) (saslReply, error) {
		l, err := s.readUp()
		return saslReply{
			challenge: isContinuation(l),
			ok:        strings.HasPrefix(l, "+OK"),
			payload:   strings.TrimSpace(strings.TrimPrefix(l, "+")),
			text:      l,
			relay:     l,
		}, err
	},
}

// isContinuation matches a SASL continuation "+" or "+ data", not "+OK".
func isContinuation(line string) bool {
	return line == "+" || strings.HasPrefix(line, "+ ")
}
