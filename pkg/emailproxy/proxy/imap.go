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
		if s.writeClient(rewriteIMAPLine(greeting, s.imapOffer())) != nil {
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
	s.imapCommands()
}

// imapCommands serves the client's commands until it has logged in (then
// the session is a pipe) or the session ends.
func (s *session) imapCommands() {
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
		if !validTag(tag) || !validTag(cmd) || isCredentialCommand(tag) || strings.ContainsAny(line, "\r\x00") {
			// Answered here and never forwarded: a line such as
			// "LOGIN user password" (no tag) carries a password.
			if s.rejectIMAP(line, "* BAD "+ReplyPrefix+"expected a tag and a command, e.g. a1 LOGIN user password") != nil {
				return
			}
			bad++
			continue
		}
		ucmd := strings.ToUpper(cmd)
		if _, _, lit := literalSuffix(line); lit && (ucmd == "AUTHENTICATE" || ucmd == "STARTTLS") {
			if s.rejectIMAP(line, tag+" BAD "+cmd+" "+ReplyPrefix+"unexpected literal") != nil {
				return
			}
			bad++
			continue
		}
		if (ucmd == "LOGIN" || ucmd == "AUTHENTICATE") && s.passwordNeedsTLS() {
			// Refused before any "+": the rest of the credentials (a
			// literal, a SASL response) is never asked for. Literals
			// already on their way are read and dropped by rejectIMAP.
			s.refusedCleartext(ucmd)
			if s.rejectIMAP(line, tag+" NO [PRIVACYREQUIRED] "+cmd+" "+ReplyPrefix+cleartextRefusal("STARTTLS")) != nil {
				return
			}
			bad++
			continue
		}
		switch ucmd {
		case "LOGIN":
			c, err := s.readIMAPCommand(tag, cmd, line)
			if err != nil {
				return
			}
			if c == nil {
				bad++
				continue
			}
			raw := c.wire()
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
			if !s.offerStartTLS() {
				s.writeClient(tag + " BAD STARTTLS " + ReplyPrefix + "STARTTLS is not offered by this proxy listener (it needs local_starttls = True with local_certificate_path and local_key_path); connect without it, or with implicit TLS where the listener has a certificate")
				continue
			}
			if err := s.startTLSCheck(); err != nil {
				s.writeClient("* BYE " + ReplyPrefix + err.Error())
				return
			}
			// RFC 3501 6.2.1: no new greeting; the client asks for the
			// capabilities again, now without STARTTLS.
			if s.writeClient(tag+" OK Begin TLS negotiation now") != nil || s.upgradeClient() != nil {
				return
			}
		case "LOGOUT":
			s.imapForward(tag, &imapCommand{lines: []string{line}})
			return
		default:
			// Other commands (CAPABILITY, ID, NOOP, ...) go upstream,
			// literals included: Thunderbird and Apple Mail send ID with
			// literals before they log in.
			c, err := s.readIMAPCommand(tag, cmd, line)
			if err != nil {
				return
			}
			if c == nil {
				bad++
				continue
			}
			if err := s.imapForward(tag, c); err != nil {
				s.writeClient("* BYE [UNAVAILABLE] " + ReplyPrefix + oneLine(err.Error()))
				return
			}
		}
	}
	s.writeClient("* BYE " + ReplyPrefix + "too many bad commands")
}

// imapOffer is what the capability lists advertise to this client now.
func (s *session) imapOffer() capOffer {
	switch {
	case s.passwordNeedsTLS():
		return offerStartTLSOnly
	case s.offerStartTLS():
		return offerLoginStartTLS
	}
	return offerLogin
}

// cleartextRefusal is the text of the proxy's answer to credentials sent
// before the upgrade; upgrade names the protocol's command.
func cleartextRefusal(upgrade string) string {
	return "this listener takes passwords only over TLS: send " + upgrade + " first, then log in (local_starttls_required)"
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// isCredentialCommand reports whether word names a command that carries
// credentials. As a tag it means the client left the tag out.
func isCredentialCommand(word string) bool {
	return strings.EqualFold(word, "LOGIN") || strings.EqualFold(word, "AUTHENTICATE")
}

// redactIMAP hides LOGIN arguments and AUTHENTICATE initial responses,
// wherever in the first words the command stands (a client that left the
// tag out, or put a space before it, still sent a password).
func redactIMAP(line string) string {
	f := strings.Fields(line)
	for i := 0; i < len(f) && i < 2; i++ {
		switch strings.ToUpper(f[i]) {
		case "LOGIN":
			return strings.Join(f[:i+1], " ") + " [redacted]"
		case "AUTHENTICATE":
			if len(f) > i+2 {
				return strings.Join(f[:i+2], " ") + " [redacted]"
			}
			return line
		}
	}
	return line
}

// imapCommand is one client command in its wire form: lines[0] CRLF
// literals[0] lines[1] CRLF ... Each line but the last ends with the
// literal marker of the literal that follows it.
type imapCommand struct {
	lines    []string
	literals [][]byte
}

func (c *imapCommand) wire() []byte {
	var b []byte
	for i, l := range c.lines {
		b = append(b, l...)
		b = append(b, "\r\n"...)
		if i < len(c.literals) {
			b = append(b, c.literals[i]...)
		}
	}
	return b
}

// maxCommandLen bounds one pre-login command, literals included.
const maxCommandLen = maxLineLen + 2*maxLiteralLen

// readIMAPCommand reads the rest of a command whose first line is line,
// taking in literals (sending "+" continuations for synchronising ones).
// It returns the command, or nil after replying BAD to a recoverable
// problem; an error means hang up.
func (s *session) readIMAPCommand(tag, cmd, line string) (*imapCommand, error) {
	c := &imapCommand{lines: []string{line}}
	size := len(line) + 2
	cur := line
	for {
		n, sync, ok := literalSuffix(cur)
		if !ok {
			return c, nil
		}
		if n > maxLiteralLen || size+n > maxCommandLen {
			if sync {
				// The client waits for "+", so nothing more arrives.
				return nil, s.writeClient(tag + " BAD " + cmd + " " + ReplyPrefix + "literal too large")
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
		next, err := readLine(s.cr, maxLineLen)
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				s.farewell("* BYE " + ReplyPrefix + "command line too long")
			}
			return nil, err
		}
		s.trace("C>P", "[literal redacted]")
		if strings.ContainsAny(next, "\r\x00") {
			// CR and NUL belong in literals only (RFC 3501 4.3).
			return nil, s.writeClient(tag + " BAD " + cmd + " " + ReplyPrefix + "CR or NUL outside a literal")
		}
		c.literals = append(c.literals, buf)
		c.lines = append(c.lines, next)
		size += n + len(next) + 2
		cur = next
	}
}

// rejectIMAP answers a command line the proxy refuses. A non-synchronising
// literal announced by the line is coming anyway: it is read and dropped
// (bounded), so that its bytes are not taken for commands.
func (s *session) rejectIMAP(line, reply string) error {
	cur, size := line, len(line)+2
	for {
		n, sync, ok := literalSuffix(cur)
		if !ok || sync {
			break
		}
		if n > maxLiteralLen || size+n > maxCommandLen {
			s.farewell("* BYE " + ReplyPrefix + "literal too large")
			return errLineTooLong
		}
		s.client.SetReadDeadline(s.deadline())
		if _, err := s.cr.Discard(n); err != nil {
			return err
		}
		next, err := readLine(s.cr, maxLineLen)
		if err != nil {
			return err
		}
		s.trace("C>P", "[literal redacted]")
		size += n + len(next) + 2
		cur = next
	}
	return s.writeClient(reply)
}

// imapAuthenticate handles AUTHENTICATE PLAIN and AUTHENTICATE LOGIN, with
// the first response inline (SASL-IR) or after a "+" continuation.
func (s *session) imapAuthenticate(tag, rest string) (done bool, err error) {
	mech, ir, hasIR := strings.Cut(rest, " ")
	// ask sends a continuation and reads the client's response; ok is
	// false when the client cancelled (already answered) or broke off.
	ask := func(prompt string) (resp string, ok bool, err error) {
		if err := s.writeClient("+ " + prompt); err != nil {
			return "", false, err
		}
		resp, err = s.readClient(func(string) string { return "[redacted]" })
		if err != nil {
			return "", false, err
		}
		if resp == "*" {
			return "", false, s.writeClient(tag + " BAD AUTHENTICATE cancelled")
		}
		return resp, true, nil
	}
	bad := func(msg string) (bool, error) {
		return false, s.writeClient(tag + " BAD AUTHENTICATE " + ReplyPrefix + oneLine(msg))
	}
	var user, pass string
	switch strings.ToUpper(mech) {
	case "PLAIN":
		if !hasIR {
			r, ok, err := ask("")
			if !ok {
				return err != nil, err
			}
			ir = r
		}
		var perr error
		user, pass, perr = decodePlain(ir)
		if errors.Is(perr, errAuthzid) {
			s.loginFailed(user, perr)
			return false, s.writeClient(tag + " NO [AUTHORIZATIONFAILED] AUTHENTICATE " + ReplyPrefix + oneLine(perr.Error()))
		}
		if perr != nil {
			return bad(perr.Error())
		}
	case "LOGIN":
		if !hasIR {
			r, ok, err := ask(b64Username)
			if !ok {
				return err != nil, err
			}
			ir = r
		}
		u, derr := decodeB64(ir)
		if derr != nil {
			return bad("the user name is not valid base64")
		}
		r, ok, err := ask(b64Password)
		if !ok {
			return err != nil, err
		}
		p, derr := decodeB64(r)
		if derr != nil {
			return bad("the password is not valid base64")
		}
		user, pass = string(u), string(p)
		if user == "" {
			return bad("empty user name")
		}
	default:
		return false, s.writeClient(tag + " NO AUTHENTICATE " + ReplyPrefix + "only the PLAIN and LOGIN mechanisms are supported (or the LOGIN command); the proxy does XOAUTH2 upstream itself")
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
	ir, err := loginXOAUTH2(user, token)
	if err != nil {
		s.loginFailed(user, err)
		return false, no(err)
	}
	if err := s.writeUp(tag+" AUTHENTICATE XOAUTH2 "+ir, tag+" AUTHENTICATE XOAUTH2 [redacted]"); err != nil {
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
// to and including the tagged completion, rewriting capabilities. A
// synchronising literal waits for the upstream's "+"; a completion instead
// (the upstream refused the command early) ends the command there.
func (s *session) imapForward(tag string, c *imapCommand) error {
	for i, line := range c.lines {
		if err := s.writeUp(line, ""); err != nil {
			return err
		}
		if i == len(c.literals) {
			break
		}
		if _, sync, _ := literalSuffix(line); sync {
			done, err := s.imapRelay(tag, true)
			if err != nil || done {
				return err
			}
		}
		s.up.SetWriteDeadline(s.deadline())
		s.trace("P>S", "[literal]")
		if _, err := s.up.Write(c.literals[i]); err != nil {
			return upstreamLost(s.cfg.srv, err)
		}
	}
	_, err := s.imapRelay(tag, false)
	return err
}

// imapRelay copies upstream responses to the client up to the tagged
// completion (done) or, when cont, up to a continuation request, which is
// the proxy's to answer and not relayed.
func (s *session) imapRelay(tag string, cont bool) (done bool, err error) {
	for {
		resp, err := s.readUp()
		if err != nil {
			return true, err
		}
		if cont && (resp == "+" || strings.HasPrefix(resp, "+ ")) {
			return false, nil
		}
		if err := s.writeClient(rewriteIMAPLine(resp, s.imapOffer())); err != nil {
			return true, err
		}
		if n, _, ok := literalSuffix(resp); ok {
			// A literal in the response (ID may send one): copy it verbatim.
			if n > maxLiteralLen {
				return true, upstreamLost(s.cfg.srv, errors.New("oversized literal in a pre-login response"))
			}
			s.up.SetReadDeadline(s.deadline())
			if _, err := io.CopyN(s.client, s.ur, int64(n)); err != nil {
				return true, upstreamLost(s.cfg.srv, err)
			}
			continue
		}
		if strings.HasPrefix(resp, tag+" ") {
			return true, nil
		}
	}
}
