package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

// Fuzz targets for every parser of untrusted bytes in this package: the
// client's pre-login command stream of each protocol (command lines, IMAP
// literals, SASL exchanges), and the SASL and IMAP pieces on their own.
// `make fuzz` runs each for a bounded time; the seeds below run in every
// `go test`. A crasher found later becomes a seed here (or a regular test).

// memConn is a net.Conn over memory: reads come from r (EOF at the end),
// writes go to onWrite. Deadlines are ignored: nothing here blocks.
type memConn struct {
	r       *bytes.Reader
	onWrite func([]byte)
}

func (c *memConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c *memConn) Write(b []byte) (int, error)      { c.onWrite(b); return len(b), nil }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) CloseWrite() error                { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// scriptUpstream answers whatever it is sent at once, as a permissive
// server of its protocol would; its replies wait in out for the proxy's
// next read, so a whole session runs in one goroutine. It notes every
// pre-login line that should never have left the proxy.
type scriptUpstream struct {
	proto    config.Protocol
	in       []byte
	out      bytes.Buffer
	lit      int    // IMAP literal bytes still to skip
	tag      string // IMAP tag of the command being received
	sawAuth  bool   // POP/SMTP: the next line is the SASL response
	loggedIn bool   // the XOAUTH2 login went through; the rest is the pipe
	leaked   []string
}

func (u *scriptUpstream) Read(b []byte) (int, error) { return u.out.Read(b) }

func (u *scriptUpstream) write(b []byte) {
	if u.loggedIn {
		return
	}
	u.in = append(u.in, b...)
	for !u.loggedIn {
		if u.lit > 0 {
			n := min(u.lit, len(u.in))
			u.in, u.lit = u.in[n:], u.lit-n
			if u.lit > 0 {
				return
			}
		}
		i := bytes.Index(u.in, []byte("\r\n"))
		if i < 0 {
			return
		}
		line := string(u.in[:i])
		u.in = u.in[i+2:]
		u.answer(line)
	}
}

func (u *scriptUpstream) answer(line string) {
	say := func(s string) { u.out.WriteString(s + "\r\n") }
	words := strings.Fields(line)
	word := func(i int) string {
		if i < len(words) {
			return strings.ToUpper(words[i])
		}
		return ""
	}
	switch u.proto {
	case config.IMAP:
		if u.tag == "" {
			// A command's first line: never a client's LOGIN or
			// AUTHENTICATE, with or without its tag.
			for i := 0; i < 2; i++ {
				if w := word(i); w == "LOGIN" || w == "AUTHENTICATE" && word(i+1) != "XOAUTH2" {
					u.leaked = append(u.leaked, line)
				}
			}
			u.tag, _, _ = strings.Cut(line, " ")
		}
		if n, sync, ok := literalSuffix(line); ok {
			u.lit = n
			if sync {
				say("+ go ahead")
			}
			return
		}
		say("* CAPABILITY IMAP4rev1 AUTH=XOAUTH2 {0}")
		say(u.tag + " OK done")
		u.loggedIn = word(1) == "AUTHENTICATE" && word(2) == "XOAUTH2"
		u.tag = ""
	case config.POP:
		switch {
		case u.sawAuth:
			u.sawAuth, u.loggedIn = false, true
			say("+OK Logged in.")
		case line == "AUTH XOAUTH2":
			u.sawAuth = true
			say("+ ")
		case line == "CAPA":
			say("+OK\r\nUSER\r\nSASL XOAUTH2\r\nSTLS\r\n.")
		case line == "QUIT":
			say("+OK bye")
		default:
			// USER, PASS, APOP, AUTH PLAIN... are the proxy's to answer.
			u.leaked = append(u.leaked, line)
			say("-ERR")
		}
	case config.SMTP:
		switch {
		case u.sawAuth:
			u.sawAuth, u.loggedIn = false, true
			say("235 2.7.0 ok")
		case line == "AUTH XOAUTH2":
			u.sawAuth = true
			say("334 ")
		case word(0) == "AUTH":
			u.leaked = append(u.leaked, line)
			say("504 no")
		case word(0) == "EHLO":
			say("250-fuzz\r\n250-AUTH XOAUTH2\r\n250-STARTTLS\r\n250 8BITMIME")
		default:
			say("250 ok")
		}
	}
}

// fuzzAuth accepts one password for any user name.
type fuzzAuth struct{}

func (fuzzAuth) AccessToken(_ context.Context, user, pass string) (string, error) {
	if pass != "fuzz-pw" {
		return "", errBadLoginArgs
	}
	return "ya29.fuzz-token", nil
}

// countingAuth is fuzzAuth counting the passwords it was given.
type countingAuth struct {
	fuzzAuth
	calls atomic.Int64
}

func (a *countingAuth) AccessToken(ctx context.Context, user, pass string) (string, error) {
	a.calls.Add(1)
	return a.fuzzAuth.AccessToken(ctx, user, pass)
}

// runScripted runs one protocol's pre-login state machine on input, in
// memory, and returns the upstream with what it saw.
func runScripted(t *testing.T, proto config.Protocol, input []byte) *scriptUpstream {
	up, _ := runScriptedOn(t, proto, input, config.Server{})
	return up
}

// runScriptedTLSRequired runs input on a local_starttls listener that
// requires TLS of every client (local_starttls_required = always) and
// returns how many passwords reached the token layer too. The in-memory
// client cannot complete a handshake, so a STARTTLS ends the session.
func runScriptedTLSRequired(t *testing.T, proto config.Protocol, input []byte) (*scriptUpstream, int64) {
	return runScriptedOn(t, proto, input, config.Server{LocalStartTLS: true, LocalStartTLSRequired: config.RequireTLSAlways,
		LocalCertificatePath: "cert.pem", LocalKeyPath: "key.pem"})
}

func runScriptedOn(t *testing.T, proto config.Protocol, input []byte, local config.Server) (*scriptUpstream, int64) {
	auth := &countingAuth{}
	srv := New(Options{Authenticator: auth})
	srv.halfCloseLinger = time.Millisecond
	up := &scriptUpstream{proto: proto}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	lc := &listenerConfig{srv: local}
	lc.srv.Section, lc.srv.Protocol, lc.srv.ServerAddress, lc.srv.ServerPort = string(proto)+"-1", proto, "upstream.test", 1
	if local.LocalStartTLS {
		lc.localTLS = &tls.Config{}
	}
	s := &session{
		srv: srv, ctx: ctx, stop: stop, proto: string(proto), peer: "fuzz",
		cfg:           lc,
		loginDeadline: time.Now().Add(time.Hour),
	}
	s.setClient(&memConn{r: bytes.NewReader(input), onWrite: func([]byte) {}})
	s.up = &upstreamConn{memConn: &memConn{onWrite: up.write}, up: up}
	s.ur = bufio.NewReader(s.up)
	srv.sessions[s] = struct{}{}
	srv.sessWG.Add(1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		switch proto {
		case config.IMAP:
			s.imapCommands()
		case config.POP:
			s.popCommands()
		case config.SMTP:
			s.smtpCommands(true)
		}
		if !s.piping {
			s.end()
		}
		srv.sessWG.Wait() // a pipe ends by itself at the end of the input
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s session on %q did not end at the end of its input", proto, input)
	}
	return up, auth.calls.Load()
}

// checkNoLoginBeforeTLS holds for every session on a listener that
// requires TLS, whatever the client sent: no password reached the token
// layer and no login line the upstream.
func checkNoLoginBeforeTLS(t *testing.T, up *scriptUpstream, calls int64) {
	checkUpstream(t, up)
	if calls != 0 || up.loggedIn {
		t.Fatalf("a login before STARTTLS was taken: %d passwords to the token layer, upstream logged in %v", calls, up.loggedIn)
	}
}

// upstreamConn reads the script's replies.
type upstreamConn struct {
	*memConn
	up *scriptUpstream
}

func (c *upstreamConn) Read(b []byte) (int, error) { return c.up.Read(b) }

var fuzzLoginB64 = base64.StdEncoding.EncodeToString([]byte("\x00alice@example.com\x00fuzz-pw"))

// checkUpstream holds for every session, whatever the client sent: no
// client login line went upstream before the proxy's own XOAUTH2 login.
func checkUpstream(t *testing.T, up *scriptUpstream) {
	if len(up.leaked) > 0 {
		t.Fatalf("client login lines reached the upstream server: %q", up.leaked)
	}
}

func FuzzIMAPSession(f *testing.F) {
	for _, seed := range []string{
		"a1 LOGIN alice@example.com fuzz-pw\r\na2 SELECT INBOX\r\n",
		"a1 CAPABILITY\r\na2 NOOP\r\na3 LOGOUT\r\n",
		"a1 ID (\"name\" {11}\r\nThunderbird)\r\na2 LOGIN {17}\r\nalice@example.com {7+}\r\nfuzz-pw\r\n",
		"a1 AUTHENTICATE PLAIN " + fuzzLoginB64 + "\r\n",
		"a1 AUTHENTICATE PLAIN\r\n" + fuzzLoginB64 + "\r\n",
		"a1 AUTHENTICATE LOGIN\r\nYWxpY2U=\r\nZnV6ei1wdw==\r\n",
		"a1 AUTHENTICATE LOGIN YWxpY2U=\r\n*\r\n",
		"LOGIN alice fuzz-pw\r\n a1 LOGIN alice fuzz-pw\r\n",
		"LOGIN {5+}\r\nalice {7+}\r\nfuzz-pw\r\na1 NOOP\r\n",
		"a1 ID {99999999}\r\na1 ID {99999999+}\r\n",
		"a1 STARTTLS {3+}\r\nabc\r\n",
		"a1 AUTHENTICATE XOAUTH2 abc\r\n\x00\xff\r\n",
		"* OK\r\n+ \r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkUpstream(t, runScripted(t, config.IMAP, in))
		up, calls := runScriptedTLSRequired(t, config.IMAP, in)
		checkNoLoginBeforeTLS(t, up, calls)
	})
}

func FuzzPOPSession(f *testing.F) {
	for _, seed := range []string{
		"CAPA\r\nUSER alice@example.com\r\nPASS fuzz-pw\r\nRETR 1\r\n",
		"AUTH PLAIN " + fuzzLoginB64 + "\r\n",
		"AUTH PLAIN\r\n" + fuzzLoginB64 + "\r\n",
		"AUTH\r\nAUTH CRAM-MD5\r\nSTLS\r\nSTAT\r\nQUIT\r\n",
		"PASS x\r\nUSER\r\n pass fuzz-pw\r\nAPOP a b\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkUpstream(t, runScripted(t, config.POP, in))
		up, calls := runScriptedTLSRequired(t, config.POP, in)
		checkNoLoginBeforeTLS(t, up, calls)
	})
}

func FuzzSMTPSession(f *testing.F) {
	for _, seed := range []string{
		"EHLO x\r\nAUTH PLAIN " + fuzzLoginB64 + "\r\nMAIL FROM:<a@b>\r\n",
		"EHLO x\r\nAUTH LOGIN\r\nYWxpY2U=\r\nZnV6ei1wdw==\r\n",
		"EHLO x\r\nAUTH LOGIN YWxpY2U=\r\n*\r\n",
		"HELO x\r\nAUTH PLAIN\r\n" + fuzzLoginB64 + "\r\n",
		"AUTH PLAIN x\r\nMAIL FROM:<a@b>\r\nSTARTTLS\r\n AUTH PLAIN x\r\n\r\nNOOP\r\nQUIT\r\n",
		"00000\nAUTH\r00\n", // found by the fuzzer: a bare CR inside the verb
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkUpstream(t, runScripted(t, config.SMTP, in))
		up, calls := runScriptedTLSRequired(t, config.SMTP, in)
		checkNoLoginBeforeTLS(t, up, calls)
	})
}

// FuzzDecodePlain: any PLAIN response either decodes to a user that is
// its authcid (or authzid alone) and whose authzid is empty or the same,
// or is refused; responses built from NUL-free parts decode exactly.
func FuzzDecodePlain(f *testing.F) {
	f.Add("", "alice@example.com", "pw", false)
	f.Add("bob", "alice", "pw", true)
	f.Add("alice", "", "pw", false)
	f.Add("a\x01b", "a\x01b", "", true)
	f.Fuzz(func(t *testing.T, authzid, authcid, pass string, raw bool) {
		msg := authzid + "\x00" + authcid + "\x00" + pass
		enc := base64.StdEncoding.EncodeToString([]byte(msg))
		if raw {
			enc = base64.RawStdEncoding.EncodeToString([]byte(msg))
		}
		decodePlain(authzid) // arbitrary text as the response: must not panic
		u, p, err := decodePlain(enc)
		if strings.Contains(authzid+authcid+pass, "\x00") {
			return
		}
		want := authcid
		if want == "" {
			want = authzid
		}
		switch {
		case want == "":
			if err == nil {
				t.Fatalf("no user name accepted: %q", msg)
			}
		case authzid != "" && authzid != want:
			if err == nil {
				t.Fatalf("authzid %q accepted for login %q", authzid, want)
			}
		default:
			if err != nil || u != want || p != pass {
				t.Fatalf("decodePlain(%q) = %q, %q, %v", msg, u, p, err)
			}
		}
	})
}

// FuzzLoginXOAUTH2: whatever the user name and token, an XOAUTH2 string
// that is built has exactly the two fields, with the values given.
func FuzzLoginXOAUTH2(f *testing.F) {
	f.Add("alice@example.com", "ya29.a0AfH6SM")
	f.Add("alice\x01auth=Bearer x", "t")
	f.Add("alice", "t\x01\x01")
	f.Add("alice", "t\r\na1 LOGOUT")
	f.Fuzz(func(t *testing.T, user, token string) {
		ir, err := loginXOAUTH2(user, token)
		if err != nil {
			return
		}
		raw, derr := base64.StdEncoding.DecodeString(ir)
		if derr != nil {
			t.Fatal(derr)
		}
		fields := strings.Split(string(raw), "\x01")
		if len(fields) != 4 || fields[0] != "user="+user || fields[1] != "auth=Bearer "+token || fields[2] != "" || fields[3] != "" {
			t.Fatalf("XOAUTH2 for %q, %q has fields %q", user, token, fields)
		}
		if strings.ContainsAny(string(raw), "\r\n\x00") {
			t.Fatalf("XOAUTH2 for %q, %q holds CR, LF or NUL", user, token)
		}
	})
}

// FuzzLiteralSuffix: a literal marker is reported exactly when the line
// ends with {digits} or {digits+}, with the number written there.
func FuzzLiteralSuffix(f *testing.F) {
	for _, s := range []string{"a1 LOGIN {5}", "{0+}", "x {99999999999}", "{}", "{+}", "{-1}", "a {1a}", "}", "{12"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		n, sync, ok := literalSuffix(line)
		if !ok {
			return
		}
		want := "{" + strconv.Itoa(n) + "}"
		if !sync {
			want = "{" + strconv.Itoa(n) + "+}"
		}
		if n < 0 || !strings.HasSuffix(strings.TrimLeft(line, ""), want) && !hasZeroPaddedSuffix(line, n, sync) {
			t.Fatalf("literalSuffix(%q) = %d, %v", line, n, sync)
		}
	})
}

// hasZeroPaddedSuffix accepts "{007}" for 7: RFC 3501's number allows
// leading zeros.
func hasZeroPaddedSuffix(line string, n int, sync bool) bool {
	end := "}"
	if !sync {
		end = "+}"
	}
	i := strings.LastIndexByte(line, '{')
	if i < 0 || !strings.HasSuffix(line, end) {
		return false
	}
	v, err := strconv.Atoi(line[i+1 : len(line)-len(end)])
	return err == nil && v == n
}

// FuzzRewriteIMAPLine: capability rewriting never panics, keeps lines
// without capabilities as they are, and never lets an upstream AUTH= other
// than PLAIN and LOGIN through a CAPABILITY response.
func FuzzRewriteIMAPLine(f *testing.F) {
	for _, s := range []string{
		"* CAPABILITY IMAP4rev1 AUTH=XOAUTH2 LOGINDISABLED STARTTLS",
		"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=OAUTHBEARER] ready",
		"a OK [capability", "* CAPABILITY ", "* OK [CAPABILITY ]]", "* 1 EXISTS",
		"\xdf[CAPABILITY ]", // found by the fuzzer: a panic on invalid UTF-8
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		out := rewriteIMAPLine(line, offerLogin)
		if !strings.Contains(strings.ToUpper(line), "CAPABILITY") && out != line {
			t.Fatalf("rewrote %q to %q", line, out)
		}
		if len(line) > 13 && strings.EqualFold(line[:13], "* CAPABILITY ") {
			for _, c := range strings.Fields(out[13:]) {
				u := strings.ToUpper(c)
				if strings.HasPrefix(u, "AUTH=") && u != "AUTH=PLAIN" && u != "AUTH=LOGIN" || u == "LOGINDISABLED" || u == "STARTTLS" {
					t.Fatalf("%q survived in %q", c, out)
				}
			}
			// A client that must upgrade first is offered no mechanism
			// at all, and told LOGIN is disabled.
			only := strings.Fields(rewriteIMAPLine(line, offerStartTLSOnly)[13:])
			if !slices.Contains(only, "LOGINDISABLED") || !slices.Contains(only, "STARTTLS") {
				t.Fatalf("no LOGINDISABLED STARTTLS in %q", only)
			}
			for _, c := range only {
				if u := strings.ToUpper(c); strings.HasPrefix(u, "AUTH=") {
					t.Fatalf("%q offered before STARTTLS in %q", c, only)
				}
			}
		}
	})
}

// FuzzSplitIMAP: the tag, command and arguments put back together are the
// line.
func FuzzSplitIMAP(f *testing.F) {
	for _, s := range []string{"a1 LOGIN a b", "a1", "a1 NOOP", " a1  x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		tag, cmd, rest := splitIMAP(line)
		got := tag
		if cmd != "" || rest != "" || strings.HasPrefix(line, tag+" ") {
			got += " " + cmd
			if rest != "" || strings.HasPrefix(line, tag+" "+cmd+" ") {
				got += " " + rest
			}
		}
		if got != line {
			t.Fatalf("splitIMAP(%q) = %q, %q, %q", line, tag, cmd, rest)
		}
		if validTag(tag) && strings.ContainsAny(tag, " (){%*\"\\+") {
			t.Fatalf("validTag(%q)", tag)
		}
	})
}

// TestScriptedSessions: the fuzz harness really logs in, so the fuzzers
// reach the pipe, and it notices a login line sent upstream.
func TestScriptedSessions(t *testing.T) {
	for proto, in := range map[config.Protocol]string{
		config.IMAP: "a0 ID (\"x\" {1}\r\ny)\r\na1 LOGIN alice@example.com fuzz-pw\r\n",
		config.POP:  "USER alice@example.com\r\nPASS fuzz-pw\r\n",
		config.SMTP: "EHLO x\r\nAUTH PLAIN " + fuzzLoginB64 + "\r\n",
	} {
		if up := runScripted(t, proto, []byte(in)); !up.loggedIn || len(up.leaked) > 0 {
			t.Errorf("%s: logged in %v, leaked %q", proto, up.loggedIn, up.leaked)
		}
		// The same login on a listener that requires TLS first is refused.
		if up, calls := runScriptedTLSRequired(t, proto, []byte(in)); up.loggedIn || calls != 0 || len(up.leaked) > 0 {
			t.Errorf("%s before STARTTLS: logged in %v, %d passwords to the token layer, leaked %q", proto, up.loggedIn, calls, up.leaked)
		}
	}
	up := &scriptUpstream{proto: config.IMAP}
	up.write([]byte("LOGIN alice fuzz-pw\r\n"))
	if len(up.leaked) != 1 {
		t.Error("the harness does not notice a forwarded LOGIN")
	}
}
