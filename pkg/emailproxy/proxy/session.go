package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/errcatalog"
	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
	"github.com/senhasegura/orbit/pkg/emailproxy/untrusted"
)

// Limits that keep a hostile or broken peer from exhausting memory before
// login. After login the session is a pipe that buffers only while bytes
// flow (pipe.go).
const (
	maxLineLen     = 64 << 10 // one protocol line, client or upstream
	maxLiteralLen  = 64 << 10 // one IMAP literal in LOGIN
	maxReplyLines  = 1000     // lines in one multi-line reply (EHLO, CAPA)
	maxBadCommands = 20       // protocol errors before the proxy hangs up
	// lineBufSize is the login phase's line reader; longer lines are read
	// in pieces (readLine), so it only sets how many reads a line takes.
	lineBufSize = 4 << 10
)

// ReplyPrefix starts every failure text the proxy itself writes to a client,
// as the Python proxy does, so users can tell the proxy's words from the
// upstream server's.
const ReplyPrefix = "Email OAuth 2.0 Proxy: "

var errLineTooLong = errors.New("line too long")

// session is the state shared by the three protocol state machines.
type session struct {
	srv   *Server
	cfg   *listenerConfig
	ctx   context.Context
	stop  context.CancelFunc
	proto string
	peer  string
	// loopback: the client connects from 127.0.0.0/8 or ::1, which
	// local_starttls_required = remote (the default) spares.
	loopback bool
	// warnedCleartext: a login refused before STARTTLS was logged.
	warnedCleartext bool

	client net.Conn
	cr     *bufio.Reader
	up     net.Conn
	ur     *bufio.Reader

	loginDeadline time.Time
	// token is the access token of the current login attempt, handed back
	// to the Authenticator when the upstream refuses it.
	token string

	mu     sync.Mutex
	closed bool
	// slot is the listener's count of sessions, given back at the end.
	slot *atomic.Int64
	// piping: the pipe's goroutines own the session and end it.
	piping bool
	linger *time.Timer // the half-close wait, stopped when the session ends
}

func (s *Server) startSession(c net.Conn, lc *listenerConfig, slot *atomic.Int64) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		slot.Add(-1)
		c.Close()
		return
	}
	ctx, stop := context.WithCancel(s.baseCtx)
	sess := &session{
		srv: s, cfg: lc, ctx: ctx, stop: stop, slot: slot,
		proto: string(lc.srv.Protocol), peer: c.RemoteAddr().String(), loopback: isLoopbackAddr(c.RemoteAddr()),
		client:        c,
		loginDeadline: time.Now().Add(s.opts.LoginTimeout),
	}
	s.sessions[sess] = struct{}{}
	s.sessWG.Add(1)
	s.mu.Unlock()

	go func() {
		defer func() {
			// A bug in one session (or in the Authenticator it calls) ends
			// that session, not every session of the process.
			if r := recover(); r != nil {
				s.log.Error(fmt.Sprintf("session ended by an internal error (%s from %s): %v; please report it", sess.proto, sess.peer, r), "protocol", sess.proto,
					"client", sess.peer, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				if !sess.piping {
					sess.end()
				}
			}
		}()
		sess.run()
		if !sess.piping {
			sess.end()
		}
	}()
}

// end closes the session's connections and forgets it.
func (s *session) end() {
	s.closeAll()
	if s.slot != nil {
		s.slot.Add(-1)
	}
	s.srv.mu.Lock()
	delete(s.srv.sessions, s)
	s.srv.mu.Unlock()
	s.srv.sessWG.Done()
}

func (s *session) run() {
	// The pipe after login reads the socket non-blocking (pipe.go).
	s.mu.Lock()
	s.client = newNBConn(s.client)
	s.mu.Unlock()
	if s.cfg.implicitTLS() {
		tc := tls.Server(s.client, s.cfg.localTLS)
		hctx, cancel := context.WithDeadline(s.ctx, s.deadline())
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			s.debug("client TLS handshake failed", "reason", err.Error())
			return
		}
		s.setClient(tc)
	} else {
		s.setClient(s.client)
	}
	switch s.cfg.srv.Protocol {
	case config.IMAP:
		s.runIMAP()
	case config.POP:
		s.runPOP()
	case config.SMTP:
		s.runSMTP()
	}
}

// clientTLS reports whether the client connection is encrypted.
func (s *session) clientTLS() bool {
	_, ok := s.client.(*tls.Conn)
	return ok
}

// offerStartTLS reports whether the client may upgrade to TLS now.
func (s *session) offerStartTLS() bool { return s.cfg.offerStartTLS() && !s.clientTLS() }

// passwordNeedsTLS reports whether the client must upgrade with STARTTLS
// (POP: STLS) before it may send credentials: the listener requires it of
// this client (local_starttls_required) and the upgrade has not happened.
func (s *session) passwordNeedsTLS() bool {
	return s.offerStartTLS() && s.cfg.srv.PasswordNeedsTLS(s.loopback)
}

// refusedCleartext logs, once per session, that a client tried to log in
// before the upgrade, so the admin of a mailer that never upgrades sees
// why its logins fail. Nothing the client sent is logged.
func (s *session) refusedCleartext(cmd string) {
	if s.warnedCleartext {
		return
	}
	s.warnedCleartext = true
	s.srv.log.Warn(fmt.Sprintf("refused a login before STARTTLS (%s %s from %s) on [%s]: this listener takes passwords only over TLS (local_starttls_required = %s); configure the client to use STARTTLS",
		s.proto, cmd, s.peer, s.cfg.srv.Section, s.tlsRequirement()),
		"protocol", s.proto, "client", s.peer, "section", s.cfg.srv.Section, "command", cmd)
}

func (s *session) tlsRequirement() config.TLSRequirement {
	if r := s.cfg.srv.LocalStartTLSRequired; r != "" {
		return r
	}
	return config.RequireTLSRemote
}

// isLoopbackAddr reports whether a client address is on 127.0.0.0/8 or
// ::1 (an IPv4-mapped ::ffff:127.x counts as IPv4).
func isLoopbackAddr(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// errPlaintextAfterStartTLS: bytes that came after STARTTLS in the clear
// would be taken as sent over TLS (the STARTTLS command injection attack,
// CVE-2011-0411 and kin), so the session ends instead.
var errPlaintextAfterStartTLS = errors.New("the client sent data after STARTTLS before the TLS handshake")

// startTLSCheck is called before the go-ahead reply to a STARTTLS (or
// STLS) command: nothing may be waiting behind it.
func (s *session) startTLSCheck() error {
	if s.cr.Buffered() > 0 {
		return errPlaintextAfterStartTLS
	}
	return nil
}

// upgradeClient runs the TLS handshake with the client after the
// protocol's go-ahead reply. Nothing read before it is kept.
func (s *session) upgradeClient() error {
	if err := s.startTLSCheck(); err != nil {
		return err
	}
	tc := tls.Server(s.client, s.cfg.localTLS)
	s.client.SetDeadline(s.deadline())
	hctx, cancel := context.WithDeadline(s.ctx, s.deadline())
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		s.debug("client STARTTLS handshake failed", "reason", err.Error())
		return err
	}
	s.setClient(tc)
	return nil
}

func (s *session) setClient(c net.Conn) {
	s.mu.Lock()
	s.client = c
	s.mu.Unlock()
	s.cr = bufio.NewReaderSize(c, lineBufSize)
}

func (s *session) setUpstream(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return false
	}
	s.up = c
	s.ur = bufio.NewReaderSize(c, lineBufSize)
	return true
}

// closeAll closes both connections; it is safe to call more than once and
// from Shutdown while the session runs.
func (s *session) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.stop()
	if s.client != nil {
		s.client.Close()
	}
	if s.up != nil {
		s.up.Close()
	}
}

// deadline is the next read/write deadline before login.
func (s *session) deadline() time.Time {
	d := time.Now().Add(s.srv.opts.IdleTimeout)
	if s.loginDeadline.Before(d) {
		return s.loginDeadline
	}
	return d
}

// readLine reads one line of at most max bytes (CRLF included) and returns
// it without the line ending. It stops reading at the limit, so a client
// sending an endless line costs at most max bytes of memory.
func readLine(r *bufio.Reader, max int) (string, error) {
	var buf []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(buf)+len(frag) > max {
			return "", errLineTooLong
		}
		buf = append(buf, frag...)
		if err == nil {
			break
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF && len(buf) > 0 {
			return "", io.ErrUnexpectedEOF
		}
		return "", err
	}
	return strings.TrimRight(string(buf), "\r\n"), nil
}

// readClient reads one client line before login; redact returns the form
// safe to trace.
func (s *session) readClient(redact func(string) string) (string, error) {
	s.client.SetReadDeadline(s.deadline())
	line, err := readLine(s.cr, maxLineLen)
	if err != nil {
		return "", err
	}
	if s.srv.opts.Debug {
		t := line
		if redact != nil {
			t = redact(line)
		}
		s.trace("C>P", t)
	}
	return line, nil
}

func (s *session) writeClient(line string) error {
	s.client.SetWriteDeadline(s.writeDeadline())
	s.trace("P>C", line)
	_, err := io.WriteString(s.client, line+"\r\n")
	return err
}

// replyGrace is how long a reply may take to leave once the login deadline
// has passed: the reply saying why a login ended is due even then.
const replyGrace = 5 * time.Second

// writeDeadline is deadline, but never less than replyGrace from now.
func (s *session) writeDeadline() time.Time {
	d, grace := s.deadline(), time.Now().Add(replyGrace)
	if d.Before(grace) {
		return grace
	}
	return d
}

// farewell sends a last line when the session is ending, with its own short
// deadline because the login deadline may be what ended it.
func (s *session) farewell(line string) {
	s.client.SetWriteDeadline(time.Now().Add(replyGrace))
	s.trace("P>C", line)
	io.WriteString(s.client, line+"\r\n")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (s *session) readUp() (string, error) {
	s.up.SetReadDeadline(s.deadline())
	line, err := readLine(s.ur, maxLineLen)
	if err != nil {
		return "", upstreamLost(s.cfg.srv, err)
	}
	s.trace("S>P", line)
	return line, nil
}

// writeUp sends one line upstream; shown is what the trace prints instead
// when the line carries a credential.
func (s *session) writeUp(line, shown string) error {
	s.up.SetWriteDeadline(s.deadline())
	if shown == "" {
		shown = line
	}
	s.trace("P>S", shown)
	if _, err := io.WriteString(s.up, line+"\r\n"); err != nil {
		return upstreamLost(s.cfg.srv, err)
	}
	return nil
}

func (s *session) trace(dir, line string) {
	if !s.srv.opts.Debug {
		return
	}
	s.srv.log.Debug(fmt.Sprintf("%s %s %s: %s", s.proto, s.peer, dir, line), "protocol", s.proto, "client", s.peer, "dir", dir, "line", line)
}

// debug logs msg with where it happened in the text, "(IMAP from
// 127.0.0.1:52388)", and as fields.
func (s *session) debug(msg string, args ...any) {
	s.srv.log.Debug(fmt.Sprintf("%s (%s from %s)", msg, s.proto, s.peer), append([]any{"protocol", s.proto, "client", s.peer}, args...)...)
}

// dial connects upstream and records the connection so Shutdown can close it.
func (s *session) dial(implicitTLS bool) error {
	c, err := s.srv.dialUpstream(s.ctx, s.cfg.srv, implicitTLS)
	if err != nil {
		s.srv.log.Warn(fmt.Sprintf("cannot reach the upstream server of [%s] for a client (%s from %s): %v", s.cfg.srv.Section, s.proto, s.peer, err),
			"protocol", s.proto, "client", s.peer, "section", s.cfg.srv.Section, "reason", err.Error())
		return err
	}
	if !s.setUpstream(c) {
		return upstreamLost(s.cfg.srv, net.ErrClosed)
	}
	return nil
}

// accessToken asks the Authenticator, logging the outcome on failure. The
// wait is part of the login and ends at the login deadline: a token that
// came later would find the deadline past and the upstream write failing.
func (s *session) accessToken(user, pass string) (string, error) {
	if err := checkUserName(user); err != nil {
		s.loginFailed(user, err)
		return "", err
	}
	// The token layer may wait for an administrator to authorise the
	// account (AuthorizationTimeout); only such a wait may outlast the
	// pre-login deadline, so a client that merely idles before logging in
	// cannot hold its upstream connection that long.
	wait := s.loginDeadline
	if d := time.Now().Add(s.srv.opts.AuthorizationTimeout); d.After(wait) {
		wait = d
	}
	ctx, cancel := context.WithDeadline(s.ctx, wait)
	defer cancel()
	// Failed logins back off per client address in the token layer.
	ctx = oauth.WithClientAddr(ctx, s.peer)
	stopWatch := s.watchClientGone(cancel, wait)
	tok, err := s.srv.opts.Authenticator.AccessToken(ctx, user, pass)
	stopWatch()
	if now := time.Now(); now.After(s.loginDeadline) {
		// The wait outlasted the pre-login deadline: the reply, and the
		// upstream login with a token that did come, still get their time.
		s.loginDeadline = now.Add(s.srv.opts.IdleTimeout)
	}
	if err == nil && tok == "" {
		err = errors.New("the token layer returned an empty access token")
	}
	if err != nil {
		s.loginFailed(user, err)
		return "", &tokenError{err}
	}
	if err := checkToken(tok); err != nil {
		// Handed back so the next login asks the provider again instead
		// of reusing the same unusable token from the cache.
		if r, ok := s.srv.opts.Authenticator.(TokenRejecter); ok {
			r.TokenRejected(user, tok)
		}
		s.loginFailed(user, err)
		return "", err
	}
	s.token = tok
	return tok, nil
}

// watchClientGone cancels a token wait when the client hangs up. Nothing
// reads from the client while the token layer works, which can take minutes
// for an interactive authorisation, so without it a mailer that gives up and
// reconnects would leave a session and an upstream connection per attempt.
// Bytes the client sends meanwhile stay buffered for the next read. stop
// ends the watch before the session reads from the client again.
func (s *session) watchClientGone(cancel context.CancelFunc, until time.Time) (stop func()) {
	s.client.SetReadDeadline(until)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := s.cr.Peek(1); err != nil && !isTimeout(err) {
			cancel()
		}
	}()
	return func() {
		// A read deadline in the past wakes the Peek; a time-out leaves
		// the connection (TLS too) usable, and every read sets its own
		// deadline again.
		s.client.SetReadDeadline(time.Now())
		<-done
	}
}

// tokenError marks an Authenticator's error: its text is already written
// for the mail client (auth.go), so replies use it as it is.
type tokenError struct{ err error }

func (e *tokenError) Error() string { return e.err.Error() }
func (e *tokenError) Unwrap() error { return e.err }

// TokenRejecter is implemented by an Authenticator that wants to know when
// the upstream server refused an access token it returned (revoked before
// its expiry), so that the next login gets a new one instead of the same.
type TokenRejecter interface {
	TokenRejected(username, token string)
}

func (s *session) loginOK(user string) {
	s.srv.logins.add(config.Protocol(s.proto), LoginOK)
	s.srv.log.Info(fmt.Sprintf("login succeeded for %s (%s from %s)", logName(user), s.proto, s.peer),
		"message_id", events.Login, "account", user, "protocol", s.proto, "client", s.peer)
}

func (s *session) loginFailed(user string, err error) {
	s.srv.logins.add(config.Protocol(s.proto), loginResultOf(err))
	var refused *authRefusedError
	if errors.As(err, &refused) && s.token != "" {
		if r, ok := s.srv.opts.Authenticator.(TokenRejecter); ok {
			r.TokenRejected(user, s.token)
		}
	}
	reason := err.Error()
	if errors.As(err, &refused) {
		reason = refused.reason()
	}
	// A wrong password in a storm of them: the token layer sums the run up
	// in one line a minute (Quiet), so each guess is only a debug line.
	level := slog.LevelWarn
	var q interface{ Quiet() bool }
	if errors.As(err, &q) && q.Quiet() {
		level = slog.LevelDebug
	}
	s.srv.log.Log(context.Background(), level, fmt.Sprintf("login failed for %s (%s from %s): %s", logName(user), s.proto, s.peer, failureReason(user, reason)),
		"message_id", events.LoginFailed, "account", user,
		"protocol", s.proto, "client", s.peer, "reason", reason)
}

// failureReason is a login error's text without the "Login failed for
// account <user> - " frame the token layer writes for mail clients, which
// the log line already says.
func failureReason(user, msg string) string {
	for _, frame := range []string{"Login failed for account " + user + " - ", "Login failed - "} {
		if r, ok := strings.CutPrefix(msg, frame); ok {
			return r
		}
	}
	return msg
}

// logName keeps a client-supplied login name from writing control
// characters (terminal escapes, line breaks) into log text, and bounds it.
func logName(s string) string { return untrusted.Printable(s) }

// authRefusedError is the upstream server refusing the XOAUTH2 login.
type authRefusedError struct {
	server string
	reply  string
}

func (e *authRefusedError) Error() string {
	if h := e.hint(); h != "" {
		// A reply line has room for the catalogue's explanation or the
		// server's whole reply, not both: the mailer gets the explanation,
		// the log both (reason).
		return fmt.Sprintf("the upstream server %s refused the XOAUTH2 login - %s", e.server, h)
	}
	return e.reason()
}

// reason is the text for the log: the server's reply and, when the
// catalogue knows it, the explanation.
func (e *authRefusedError) reason() string {
	msg := fmt.Sprintf("the upstream server %s refused the XOAUTH2 login: %s", e.server, e.reply)
	if h := e.hint(); h != "" {
		msg += " - " + h
	}
	return msg
}

func (e *authRefusedError) hint() string {
	if entry, ok := errcatalog.Lookup(errcatalog.MailServer, "", e.reply); ok {
		return entry.Hint()
	}
	return ""
}

// clip shortens s to at most n bytes on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// upstreamError is a failure to reach or talk to the upstream server; it
// is temporary from the client's point of view.
type upstreamError struct {
	server string
	what   string
	err    error
	hint   string
}

func (e *upstreamError) Error() string {
	msg := fmt.Sprintf("%s upstream server %s: %v", e.what, e.server, e.err)
	if e.hint != "" {
		msg += " (" + e.hint + ")"
	}
	return msg
}

func (e *upstreamError) Unwrap() error { return e.err }

func upstreamLost(srv config.Server, err error) error {
	var ue *upstreamError
	if errors.As(err, &ue) {
		return err
	}
	return &upstreamError{server: hostPort(srv), what: "lost the connection to the", err: err}
}

// failure is how a login error is shown to a client.
type failure struct {
	temporary bool
	text      string // with ReplyPrefix, one line
}

// describe turns a login error into the reply text. The oauth sentinels
// decide temporary vs. permanent; the text never carries secrets because
// neither the Authenticator's errors nor upstream replies do.
func describe(user string, err error) failure {
	var f failure
	var ue *upstreamError
	switch {
	case errors.Is(err, oauth.ErrBadPassword):
		f.text = fmt.Sprintf("Login failed - the password for account %s is incorrect", user)
	case errors.Is(err, oauth.ErrProviderUnavailable),
		errors.Is(err, oauth.ErrNeedsAuthorization),
		errors.Is(err, oauth.ErrTooManyAttempts),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled),
		errors.As(err, &ue):
		// ErrNeedsAuthorization is temporary on purpose: it clears once an
		// admin completes the authorisation, so mailers should queue and
		// retry rather than report the credentials as wrong.
		f.temporary = true
		f.text = loginFailedText(user, err)
	default:
		f.text = loginFailedText(user, err)
	}
	f.text = ReplyPrefix + oneLine(f.text)
	return f
}

// oneLine keeps a reply to one printable line of bounded length.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	// POP3 and SMTP allow 512 characters in a reply line: CRLF, the
	// longest status prefix ("535 5.7.8  Authentication credentials
	// invalid. ") and ReplyPrefix leave 440.
	s = clip(s, 437)
	return s
}

func hostPort(srv config.Server) string {
	return net.JoinHostPort(srv.ServerAddress, fmt.Sprint(srv.ServerPort))
}

type closeWriter interface{ CloseWrite() error }

// loginFailedText: the token layer's errors are already written for the
// client ("Login failed for account ..."); the proxy's own get that frame.
func loginFailedText(user string, err error) string {
	var te *tokenError
	if errors.As(err, &te) {
		return te.Error()
	}
	return fmt.Sprintf("Login failed for account %s - %v", user, err)
}
