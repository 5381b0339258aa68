package proxy

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

// loginVia starts a session on a fresh listener of proto and sends one
// SASL PLAIN login with response plain, returning the proxy's reply.
func loginVia(t *testing.T, e *env, proto config.Protocol, plain string) string {
	t.Helper()
	var up *fakeUpstream
	switch proto {
	case config.IMAP:
		up = startFake(t, e.ca, true, serveIMAP)
	case config.POP:
		up = startFake(t, e.ca, true, servePOP)
	case config.SMTP:
		up = startFake(t, e.ca, true, serveSMTP)
	}
	name := string(proto) + "-x"
	e.apply(section(name, proto, up))
	c := dialClient(t, e.addr(name))
	switch proto {
	case config.IMAP:
		c.expect("* OK")
		c.send("a1 AUTHENTICATE PLAIN " + plain)
		return c.line()
	case config.POP:
		c.expect("+OK")
		c.send("AUTH PLAIN " + plain)
		return c.line()
	default:
		c.expect("220")
		c.send("EHLO x")
		c.until("250 ")
		c.send("AUTH PLAIN " + plain)
		return c.line()
	}
}

// TestPlainAuthzidMustBeTheLogin: RFC 4616 lets a server act on an
// authorisation identity only when it may; the proxy has one identity per
// login, so "bob NUL alice NUL alice's password" must not log in as alice
// (nor ask for alice's token), while an authzid equal to the login is fine.
func TestPlainAuthzidMustBeTheLogin(t *testing.T) {
	other := b64("bob@example.com\x00alice@example.com\x00alice-PASSWORD-1")
	same := b64("alice@example.com\x00alice@example.com\x00alice-PASSWORD-1")
	tests := []struct {
		proto       config.Protocol
		refusal, ok string
	}{
		{config.IMAP, "a1 NO [AUTHORIZATIONFAILED] AUTHENTICATE Email OAuth 2.0 Proxy: the SASL PLAIN authorisation identity", "a1 OK"},
		{config.POP, "-ERR [AUTH] Email OAuth 2.0 Proxy: the SASL PLAIN authorisation identity", "+OK Logged in."},
		{config.SMTP, "535 5.7.8 Email OAuth 2.0 Proxy: the SASL PLAIN authorisation identity", "235 "},
	}
	for _, tt := range tests {
		t.Run(string(tt.proto), func(t *testing.T) {
			e := newEnv(t)
			if got := loginVia(t, e, tt.proto, other); !strings.HasPrefix(got, tt.refusal) {
				t.Fatalf("authzid bob, login alice: got %q, want prefix %q", got, tt.refusal)
			}
			if n := e.auth.calls.Load(); n != 0 {
				t.Fatalf("the token layer was asked %d time(s) for a login that must be refused first", n)
			}
			if got := loginVia(t, e, tt.proto, same); !strings.HasPrefix(got, tt.ok) {
				t.Fatalf("authzid equal to the login: got %q, want prefix %q", got, tt.ok)
			}
			e.assertNoSecrets(other)
		})
	}
}

func TestIMAPAuthenticateLogin(t *testing.T) {
	user, pass := b64("alice@example.com"), b64("alice-PASSWORD-1")
	tests := []struct {
		name string
		run  func(c *client)
	}{
		{"challenges", func(c *client) {
			c.send("a1 AUTHENTICATE LOGIN")
			c.expect("+ " + b64Username)
			c.send(user)
			c.expect("+ " + b64Password)
			c.send(pass)
		}},
		{"initial response", func(c *client) {
			c.send("a1 authenticate login " + user)
			c.expect("+ " + b64Password)
			c.send(pass)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, up, addr := imapEnv(t)
			c := dialClient(t, addr)
			if greeting := c.expect("* OK"); !strings.Contains(greeting, "AUTH=LOGIN") {
				t.Errorf("AUTH=LOGIN not advertised: %q", greeting)
			}
			tt.run(c)
			c.expect("a1 OK")
			if up.loginCount() != 1 {
				t.Fatalf("upstream logins = %d", up.loginCount())
			}
			e.assertNoSecrets(pass)
		})
	}
	t.Run("cancel and bad base64", func(t *testing.T) {
		_, _, addr := imapEnv(t)
		c := dialClient(t, addr)
		c.expect("* OK")
		c.send("a1 AUTHENTICATE LOGIN")
		c.expect("+ ")
		c.send("*")
		c.expect("a1 BAD AUTHENTICATE cancelled")
		c.send("a2 AUTHENTICATE LOGIN !!!")
		c.expect("a2 BAD AUTHENTICATE Email OAuth 2.0 Proxy: the user name is not valid base64")
		c.send("a3 AUTHENTICATE LOGIN " + user)
		c.expect("+ ")
		c.send(b64("wrong"))
		c.expect("a3 NO AUTHENTICATE Email OAuth 2.0 Proxy: Login failed - the password for account alice@example.com is incorrect")
	})
}

// TestIMAPLiteralsBeforeLogin: Thunderbird and Apple Mail send ID, with
// literals, before they log in; the command reaches the upstream intact
// and the session goes on to log in.
func TestIMAPLiteralsBeforeLogin(t *testing.T) {
	for _, sync := range []bool{true, false} {
		name := map[bool]string{true: "synchronising", false: "non-synchronising"}[sync]
		t.Run(name, func(t *testing.T) {
			e, up, addr := imapEnv(t)
			c := dialClient(t, addr)
			c.expect("* OK")
			if sync {
				c.send(`a1 ID ("name" {11}`)
				c.expect("+ ")
				c.send(`Thunderbird "version" {4}`)
				c.expect("+ ")
				c.send(`1.0a)`)
			} else {
				c.send("a1 ID (\"name\" {11+}\r\nThunderbird \"version\" {4+}\r\n1.0a)")
			}
			c.expect(`* ID ("name" "fake")`)
			c.expect("a1 OK ID completed")
			c.send("a2 LOGIN alice@example.com alice-PASSWORD-1")
			c.expect("a2 OK")
			up.mu.Lock()
			defer up.mu.Unlock()
			want := "(\"name\" {11}\r\nThunderbird \"version\" {4}\r\n1.0a)"
			if !sync {
				want = "(\"name\" {11+}\r\nThunderbird \"version\" {4+}\r\n1.0a)"
			}
			if len(up.ids) != 1 || up.ids[0] != want {
				t.Fatalf("upstream got ID %q, want %q", up.ids, want)
			}
			e.assertNoSecrets()
		})
	}
	t.Run("too large", func(t *testing.T) {
		_, _, addr := imapEnv(t)
		c := dialClient(t, addr)
		c.expect("* OK")
		c.send(`a1 ID ("name" {99999999}`)
		c.expect("a1 BAD ID Email OAuth 2.0 Proxy: literal too large")
		c.send("a2 NOOP")
		c.expect("a2 OK")
	})
}

// TestIMAPTaglessLoginStaysLocal: a LOGIN without a tag is a client bug
// that carries a password; it is answered by the proxy, never sent to the
// upstream server, and never shown in the debug trace.
func TestIMAPTaglessLoginStaysLocal(t *testing.T) {
	lines := []string{
		"LOGIN alice@example.com alice-PASSWORD-1",
		"login alice@example.com alice-PASSWORD-1",
		" a1 LOGIN alice@example.com alice-PASSWORD-1",
		"a1  LOGIN alice@example.com alice-PASSWORD-1",
		"AUTHENTICATE PLAIN " + b64("\x00alice@example.com\x00alice-PASSWORD-1"),
		"LOGIN {17+}\r\nalice@example.com {16+}\r\nalice-PASSWORD-1",
	}
	for _, line := range lines {
		e, up, addr := imapEnv(t)
		c := dialClient(t, addr)
		c.expect("* OK")
		c.send(line)
		c.expect("* BAD Email OAuth 2.0 Proxy: expected a tag and a command")
		// The session goes on, in step: the next command is answered.
		c.send("a9 NOOP")
		c.expect("a9 OK NOOP")
		if up.loginCount() != 0 {
			t.Errorf("%q logged in upstream", line)
		}
		e.assertNoSecrets()
	}
}

func TestSMTPLeadingSpaceStaysLocal(t *testing.T) {
	e, _, addr := smtpEnv(t, false, nil)
	c := dialClient(t, addr)
	c.expect("220")
	c.send("EHLO x")
	c.until("250 ")
	c.send(" AUTH PLAIN " + b64("\x00alice@example.com\x00alice-PASSWORD-1"))
	c.expect("500 5.5.2 Email OAuth 2.0 Proxy: ")
	c.send("NOOP")
	c.expect("250")
	e.assertNoSecrets()
}

func TestRedactCredentials(t *testing.T) {
	tests := []struct {
		redact func(string) string
		in     string
	}{
		{redactIMAP, "a1 LOGIN alice secret"},
		{redactIMAP, "LOGIN alice secret"},
		{redactIMAP, "  a1   login alice secret"},
		{redactIMAP, "a1 AUTHENTICATE PLAIN secret"},
		{redactIMAP, "authenticate plain secret"},
		{redactPOP, "PASS secret"},
		{redactPOP, " pass secret"},
		{redactPOP, "APOP alice secret"},
		{redactPOP, "AUTH PLAIN secret"},
		{redactSMTP, "AUTH PLAIN secret"},
		{redactSMTP, "  auth login secret"},
	}
	for _, tt := range tests {
		if got := tt.redact(tt.in); strings.Contains(got, "secret") || !strings.Contains(got, "[redacted]") {
			t.Errorf("redacted %q as %q", tt.in, got)
		}
	}
}

// tokenAuth returns a fixed token for every login and records tokens
// handed back as rejected.
type tokenAuth struct {
	token    string
	mu       sync.Mutex
	calls    int
	rejected []string
}

func (a *tokenAuth) AccessToken(ctx context.Context, user, pass string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	return a.token, nil
}

func (a *tokenAuth) TokenRejected(user, token string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rejected = append(a.rejected, token)
}

// TestControlCharactersNeverReachXOAUTH2: ^A separates XOAUTH2's fields,
// so a login name or token holding one (or CR, LF, NUL) could smuggle a
// second auth= or cut the string; such logins are refused before anything
// is sent upstream.
func TestControlCharactersNeverReachXOAUTH2(t *testing.T) {
	users := []string{
		"alice@example.com\x01auth=Bearer forged\x01\x01",
		"alice@example.com\r\na2 LOGOUT",
		"alice@example.com\n",
	}
	for _, proto := range []config.Protocol{config.IMAP, config.POP, config.SMTP} {
		t.Run(string(proto)+" user name", func(t *testing.T) {
			e := newEnv(t)
			for _, u := range users {
				got := loginVia(t, e, proto, b64("\x00"+u+"\x00alice-PASSWORD-1"))
				if !strings.Contains(got, "control character") {
					t.Errorf("user %q: got %q, want a refusal naming the control character", u, got)
				}
			}
			if n := e.auth.calls.Load(); n != 0 {
				t.Errorf("the token layer was asked %d time(s) for impossible user names", n)
			}
		})
	}
	t.Run("IMAP LOGIN literal", func(t *testing.T) {
		e, up, addr := imapEnv(t)
		c := dialClient(t, addr)
		c.expect("* OK")
		for _, u := range []string{"alice@example.com\x01auth=Bearer x", "alice@example.com\x00", "alice\r\n@example.com"} {
			c.send("a1 LOGIN {" + strconv.Itoa(len(u)) + "+}\r\n" + u + " alice-PASSWORD-1")
			if got := c.expect("a1 NO LOGIN Email OAuth 2.0 Proxy: "); !strings.Contains(got, "control character") {
				t.Errorf("user %q: got %q", u, got)
			}
		}
		if up.loginCount() != 0 || e.auth.calls.Load() != 0 {
			t.Error("a login name with a control character went on")
		}
	})
	for _, tok := range []string{"ya29.good\x01auth=Bearer other", "eyJ0\r\nA1 LOGOUT", "tok\x00", "tok with space"} {
		for _, proto := range []config.Protocol{config.IMAP, config.POP, config.SMTP} {
			ta := &tokenAuth{token: tok}
			e := newEnv(t, func(o *Options) { o.Authenticator = ta })
			got := loginVia(t, e, proto, b64("\x00alice@example.com\x00alice-PASSWORD-1"))
			if !strings.Contains(got, "the OAuth 2.0 provider returned an access token containing a control character") {
				t.Errorf("%s, token %q: got %q", proto, tok, got)
			}
			if len(ta.rejected) != 1 || ta.rejected[0] != tok {
				t.Errorf("%s: the unusable token was not handed back as rejected: %q", proto, ta.rejected)
			}
		}
	}
}

// TestBareCRStaysLocal: a bare CR (or NUL) inside a command line is not
// sent upstream, where a lenient server might split the line there and
// read an AUTH or LOGIN the proxy never saw (found by FuzzSMTPSession).
func TestBareCRStaysLocal(t *testing.T) {
	e, _, addr := smtpEnv(t, false, nil)
	c := dialClient(t, addr)
	c.expect("220")
	c.send("EHLO x")
	c.until("250 ")
	for _, l := range []string{"AUTH\r00", "NOOP x\rAUTH PLAIN y", "AUTH\tPLAIN y", "NO\x00OP"} {
		c.send(l)
		c.expect("500 5.5.2 Email OAuth 2.0 Proxy: syntax error")
	}
	c.send("NOOP")
	c.expect("250")

	_, up, iaddr := imapEnv(t)
	ic := dialClient(t, iaddr)
	ic.expect("* OK")
	for _, l := range []string{"a1 NOOP x\rLOGIN alice pw", "a1 LOGIN\talice pw", "a1 NO\x00OP"} {
		ic.send(l)
		ic.expect("* BAD Email OAuth 2.0 Proxy: ")
	}
	ic.send("a2 NOOP")
	ic.expect("a2 OK")
	if up.loginCount() != 0 {
		t.Error("a login went upstream")
	}
	e.assertNoSecrets()
}

// panicAuth panics for one user, as a bug would.
type panicAuth struct{ *fakeAuth }

func (a panicAuth) AccessToken(ctx context.Context, user, pass string) (string, error) {
	if user == "boom@example.com" {
		panic("boom")
	}
	return a.fakeAuth.AccessToken(ctx, user, pass)
}

// TestSessionPanicEndsOnlyThatSession: a panic during one login closes
// that client and is logged; the process and its other sessions go on.
func TestSessionPanicEndsOnlyThatSession(t *testing.T) {
	e := newEnv(t)
	e.srv.opts.Authenticator = panicAuth{e.auth}
	up := startFake(t, e.ca, true, serveIMAP)
	e.apply(section("IMAP-1", config.IMAP, up))
	c := dialClient(t, e.addr("IMAP-1"))
	c.expect("* OK")
	c.send("a1 LOGIN boom@example.com pw")
	if l, err := c.r.ReadString('\n'); err == nil {
		t.Fatalf("the panicking session answered %q instead of closing", l)
	}
	if err := imapRoundTrip(e.addr("IMAP-1")); err != nil {
		t.Fatalf("a login after another session's panic: %v", err)
	}
	if !strings.Contains(e.logs.String(), "session ended by an internal error") {
		t.Error("the panic was not logged")
	}
	for i := 0; e.srv.ActiveSessions() != 0; i++ {
		if i > 200 {
			t.Fatal("the panicking session was not forgotten")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
