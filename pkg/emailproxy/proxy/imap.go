package proxy

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// IMAP: the proxy dials upstream as soon as the client connects, because
// the greeting and its [CAPABILITY] code come from the upstream server and
// must be rewritten before the client decides how to log in. If the
// upstream cannot be reached the client gets `* BYE [UNAVAILABLE] ...` as
// its greeting instead of a reset.

func (s *session) runIMAP() {
	if err := s.dial(true); err != nil {
		s.writeClient("* BYE [UNAVAILABLE] " + ReplyPrefix + oneLine(err.Error()))
		return
	}
	greeting, err := s.readUp()
	if err != nil {
		s.writeClient("* BYE [UNAVAILABLE] " + ReplyPrefix + oneLine(err.Error()))
		return
	}
	switch {
	case hasPrefixFold(greeting, "* OK"):
		if s.writeClient(rewriteIMAPLine(greeting)) != nil {
			return
		}
	case hasPrefixFold(greeting, "* PREAUTH"):
		// Nothing to intercept: the upstream already considers us logged in.
		if s.writeClient(greeting) == nil {
			s.pipe()
		}
		return
	default:
		s.writeClient(greeting)
		return
	}

	bad := 0
	for bad < maxBadCommands {
		line, err := s.readClient(redactIMAP)
		if err != nil {
			switch {
			case errors.Is(err, errLineTooLong):
				s.farewell("* BYE " + ReplyPrefix + "command line too long")
			case isTimeout(err):
				s.farewell("* BYE " + ReplyPrefix + "timed out waiting for the client to log in")
			}
			return
		}
		tag, cmd, rest := splitIMAP(line)
		if !validTag(tag) || cmd == "" {
			s.writeClient("* BAD " + ReplyPrefix + "expected a tag and a command")
			bad++
			continue
		}
		switch strings.ToUpper(cmd) {
		case "LOGIN":
			raw, err := s.readIMAPLiterals(tag, line)
			if err != nil {
				return
			}
			if raw == nil {
				bad++
				continue
			}
			user, pass, perr := parseLoginArgs(raw[len(tag)+1+len(cmd)+1:])
			if perr != nil || rest == "" {
				if perr == nil {
					perr = errBadLoginArgs
				}
				s.writeClient(tag + " BAD LOGIN " + ReplyPrefix + oneLine(perr.Error()))
				bad++
				continue
			}
			done, err := s.imapLogin(tag, "LOGIN", user, pass)
			if done || err != nil {
				return
			}
		case "AUTHENTICATE":
			done, err := s.imapAuthenticate(tag, rest)
			if done || err != nil {
				return
			}
		case "STARTTLS":
			s.writeClient(tag + " BAD STARTTLS " + ReplyPrefix + "STARTTLS is not available here; connect to the proxy without it (or use a local certificate for implicit TLS)")
		case "LOGOUT":
			s.imapForward(tag, line)
			return
		default:
			if _, _, lit := literalSuffix(line); lit {
				// Only LOGIN may carry literals before login. The client may
				// already be sending a {n+} literal, so hang up rather than
				// parse its bytes as commands.
				s.writeClient("* BYE " + ReplyPrefix + "literals before login are accepted only in LOGIN")
				return
			}
			if err := s.imapForward(tag, line); err != nil {
				s.writeClient("* BYE [UNAVAILABLE] " + ReplyPrefix + oneLine(err.Error()))
				return
			}
		}
	}
	s.writeClient("* BYE " + ReplyPrefix + "too many bad commands")
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// redactIMAP hides LOGIN arguments and AUTHENTICATE initial responses.
func redactIMAP(line string) string {
	tag, cmd, rest := splitIMAP(line)
	switch strings.ToUpper(cmd) {
	case "LOGIN":
		return tag + " " + cmd + " [redacted]"
	case "AUTHENTICATE":
		mech, ir, _ := strings.Cut(rest, " ")
		if ir != "" {
			return tag + " " + cmd + " " + mech + " [redacted]"
		}
	}
	return line
}

// readIMAPLiterals reads the rest of a LOGIN command whose first line is
// line, taking in literals (sending "+" continuations for synchronising
// ones). It returns the command's wire form, or nil after replying BAD to a
// recoverable problem; an error means hang up.
func (s *session) readIMAPLiterals(tag, line string) ([]byte, error) {
	raw := []byte(line + "\r\n")
	cur := line
	for {
		n, sync, ok := literalSuffix(cur)
		if !ok {
			return raw, nil
		}
		if n > maxLiteralLen || len(raw)+n > maxLineLen+2*maxLiteralLen {
			if sync {
				// The client waits for "+", so nothing more arrives.
				return nil, s.writeClient(tag + " BAD LOGIN " + ReplyPrefix + "literal too large")
			}
			s.writeClient("* BYE " + ReplyPrefix + "literal too large")
			return nil, errLineTooLong
		}
		if sync {
			if err := s.writeClient("+ Ready for literal data"); err != nil {
				return nil, err
			}
		}
		s.client.SetReadDeadline(s.deadline())
		buf := make([]byte, n)
		if _, err := io.ReadFull(s.cr, buf); err != nil {
			return nil, err
		}
		raw = append(raw, buf...)
		next, err := readLine(s.cr, maxLineLen)
		if err != nil {
			return nil, err
		}
		s.trace("C>P", "[literal redacted]")
		raw = append(raw, next+"\r\n"...)
		cur = next
	}
}

// imapAuthenticate handles AUTHENTICATE PLAIN, with the response inline
// (SASL-IR) or after a "+" continuation.
func (s *session) imapAuthenticate(tag, rest string) (done bool, err error) {
	mech, ir, hasIR := strings.Cut(rest, " ")
	if !strings.EqualFold(mech, "PLAIN") {
		return false, s.writeClient(tag + " NO AUTHENTICATE " + ReplyPrefix + "only the PLAIN mechanism (or LOGIN) is supported; the proxy does XOAUTH2 upstream itself")
	}
	if !hasIR {
		if err := s.writeClient("+ "); err != nil {
			return true, err
		}
		ir, err = s.readClient(func(string) string { return "[redacted]" })
		if err != nil {
			return true, err
		}
		if ir == "*" {
			return false, s.writeClient(tag + " BAD AUTHENTICATE cancelled")
		}
	}
	user, pass, perr := decodePlain(ir)
	if perr != nil {
		return false, s.writeClient(tag + " BAD AUTHENTICATE " + ReplyPrefix + perr.Error())
	}
	return s.imapLogin(tag, "AUTHENTICATE", user, pass)
}

// imapLogin gets a token and logs in upstream with the client's tag. On
// success it relays the upstream's tagged OK, becomes a pipe and returns
// done. A refused login leaves both sides in the not-authenticated state so
// the client may try again.
func (s *session) imapLogin(tag, cmd, user, pass string) (done bool, err error) {
	no := func(err error) error {
		f := describe(user, err)
		code := ""
		if f.temporary {
			code = "[UNAVAILABLE] "
		}
		return s.writeClient(fmt.Sprintf("%s NO %s%s %s", tag, code, cmd, f.text))
	}
	token, err := s.accessToken(user, pass)
	if err != nil {
		return false, no(err)
	}
	if err := s.writeUp(tag+" AUTHENTICATE XOAUTH2 "+xoauth2(user, token), tag+" AUTHENTICATE XOAUTH2 [redacted]"); err != nil {
		s.loginFailed(user, err)
		no(err)
		return true, err
	}
	var challenge string
	for {
		line, err := s.readUp()
		if err != nil {
			s.loginFailed(user, err)
			no(err)
			return true, err
		}
		switch {
		case line == "+" || strings.HasPrefix(line, "+ "):
			// An error challenge (RFC 7628 style): answer with an empty
			// response to get the tagged NO.
			challenge = saslErrorDetail(strings.TrimSpace(strings.TrimPrefix(line, "+")))
			if err := s.writeUp("", ""); err != nil {
				s.loginFailed(user, err)
				no(err)
				return true, err
			}
		case strings.HasPrefix(line, tag+" "):
			_, status, text := splitIMAP(line)
			if strings.EqualFold(status, "OK") {
				if err := s.writeClient(line); err != nil {
					return true, err
				}
				s.loginOK(user)
				s.pipe()
				return true, nil
			}
			if challenge != "" {
				text += " " + challenge
			}
			rerr := &authRefusedError{server: hostPort(s.cfg.srv), reply: strings.TrimSpace(status + " " + text)}
			s.loginFailed(user, rerr)
			return false, no(rerr)
		case strings.HasPrefix(line, "* "):
			// Untagged data before the completion (e.g. CAPABILITY): the
			// client is entitled to see it.
			if err := s.writeClient(line); err != nil {
				return true, err
			}
		default:
			s.debug("ignoring unexpected upstream line during login")
		}
	}
}

// saslErrorDetail decodes a base64 JSON error challenge for display.
func saslErrorDetail(b64 string) string {
	if b64 == "" {
		return ""
	}
	raw, err := decodeB64(b64)
	if err != nil || len(raw) == 0 {
		return ""
	}
	return "(" + oneLine(string(raw)) + ")"
}

// imapForward sends a pre-login command upstream and relays the answer up
// to and including the tagged completion, rewriting capabilities.
func (s *session) imapForward(tag, line string) error {
	if err := s.writeUp(line, ""); err != nil {
		return err
	}
	for {
		resp, err := s.readUp()
		if err != nil {
			return err
		}
		if err := s.writeClient(rewriteIMAPLine(resp)); err != nil {
			return err
		}
		if n, _, ok := literalSuffix(resp); ok {
			// A literal in the response (ID may send one): copy it verbatim.
			if n > maxLiteralLen {
				return upstreamLost(s.cfg.srv, errors.New("oversized literal in a pre-login response"))
			}
			s.up.SetReadDeadline(s.deadline())
			if _, err := io.CopyN(s.client, s.ur, int64(n)); err != nil {
				return upstreamLost(s.cfg.srv, err)
			}
			continue
		}
		if strings.HasPrefix(resp, tag+" ") {
			return nil
		}
	}
}
