package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

func imapEnv(t testing.TB) (*env, *fakeUpstream, string) {
	e := newEnv(t)
	up := startFake(t, e.ca, true, serveIMAP)
	e.apply(section("IMAP-1", config.IMAP, up))
	return e, up, e.addr("IMAP-1")
}

func TestIMAPCapabilitiesRewritten(t *testing.T) {
	_, _, addr := imapEnv(t)
	c := dialClient(t, addr)
	check := func(where, line string) {
		t.Helper()
		for _, gone := range []string{"AUTH=XOAUTH2", "AUTH=OAUTHBEARER", "LOGINDISABLED", "STARTTLS"} {
			if strings.Contains(line, gone) {
				t.Errorf("%s still offers %s: %q", where, gone, line)
			}
		}
		for _, want := range []string{"AUTH=PLAIN", "AUTH=LOGIN", "SASL-IR", "IMAP4rev1", "ID", "LITERAL+"} {
			if !strings.Contains(line, want) {
				t.Errorf("%s lacks %s: %q", where, want, line)
			}
		}
		if strings.Count(line, "AUTH=") != 2 {
			t.Errorf("%s should offer exactly AUTH=PLAIN and AUTH=LOGIN: %q", where, line)
		}
	}
	check("greeting", c.expect("* OK [CAPABILITY "))
	c.send("c1 CAPABILITY")
	lines := c.until("c1 ")
	check("CAPABILITY", lines[0])
	if lines[1] != "c1 OK CAPABILITY completed" {
		t.Errorf("completion %q", lines[1])
	}
	c.send("c2 NOOP")
	c.expect("c2 OK NOOP")
	c.send(`c3 ID ("name" "test")`)
	c.expect(`* ID ("name" "fake")`)
	c.expect("c3 OK")
	c.send("c4 STARTTLS")
	c.expect("c4 BAD STARTTLS Email OAuth 2.0 Proxy: STARTTLS is not offered by this proxy listener")
	c.send("c5 AUTHENTICATE XOAUTH2 abc")
	c.expect("c5 NO AUTHENTICATE Email OAuth 2.0 Proxy: only the PLAIN and LOGIN")
	c.send("c6 LOGOUT")
	c.expect("* BYE")
	c.expect("c6 OK")
}

func TestIMAPLoginForms(t *testing.T) {
	plain := b64("\x00alice@example.com\x00alice-PASSWORD-1")
	tests := []struct {
		name string
		// steps alternate: a string to send, then (when it ends with a
		// synchronising literal) the "+" the proxy must answer.
		send []string
	}{
		{"quoted", []string{`a1 LOGIN "alice@example.com" "alice-PASSWORD-1"`}},
		{"atoms", []string{`a1 LOGIN alice@example.com alice-PASSWORD-1`}},
		{"quoted with escapes", nil}, // filled below: password with " and \
		{"sync literals", []string{"a1 LOGIN {17}", "+", `alice@example.com {16}`, "+", "alice-PASSWORD-1"}},
		{"non-sync literals", []string{"a1 LOGIN {17+}\r\nalice@example.com {16+}\r\nalice-PASSWORD-1"}},
		{"quoted user, literal password", []string{`a1 LOGIN "alice@example.com" {16}`, "+", "alice-PASSWORD-1"}},
		{"AUTHENTICATE PLAIN inline", []string{"a1 AUTHENTICATE PLAIN " + plain}},
		{"AUTHENTICATE PLAIN two-step", []string{"a1 AUTHENTICATE PLAIN", "+", plain}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, up, addr := imapEnv(t)
			send := tt.send
			if tt.name == "quoted with escapes" {
				e.auth.add("bob@example.com", `p"w\d x`)
				send = []string{`a1 LOGIN "bob@example.com" "p\"w\\d x"`}
			}
			c := dialClient(t, addr)
			c.expect("* OK")
			for _, s := range send {
				if s == "+" {
					c.expect("+ ")
					continue
				}
				c.send(s)
			}
			c.expect("a1 OK")
			// The session is now a pipe to an authenticated upstream.
			c.send("a2 SELECT INBOX")
			lines := c.until("a2 ")
			if !strings.HasPrefix(lines[len(lines)-1], "a2 OK") {
				t.Fatalf("SELECT after login: %q", lines)
			}
			if up.loginCount() != 1 {
				t.Fatalf("upstream logins = %d", up.loginCount())
			}
			e.assertNoSecrets(`p"w\d x`)
		})
	}
}

func TestIMAPFailureReplies(t *testing.T) {
	e, up, addr := imapEnv(t)
	e.auth.add("refused@example.com", "pw")
	up.refused["refused@example.com"] = true
	c := dialClient(t, addr)
	c.expect("* OK")

	c.send(`a2 LOGIN alice@example.com "wrong"`)
	if got, want := c.line(), "a2 NO LOGIN Email OAuth 2.0 Proxy: Login failed - the password for account alice@example.com is incorrect"; got != want {
		t.Errorf("bad password reply\n got %q\nwant %q", got, want)
	}
	c.send(`a3 LOGIN nobody@example.com "x"`)
	// The Authenticator's text is written for the client: shown as it is.
	c.expect("a3 NO LOGIN Email OAuth 2.0 Proxy: no section for nobody@example.com: unknown account")
	c.send(`a4 LOGIN refused@example.com pw`)
	got := c.expect("a4 NO LOGIN Email OAuth 2.0 Proxy: Login failed for account refused@example.com - the upstream server ")
	if !strings.Contains(got, "NO [AUTHENTICATIONFAILED] Invalid credentials") || !strings.Contains(got, `"status":"401"`) {
		t.Errorf("upstream refusal should carry the upstream's reason and decoded challenge: %q", got)
	}
	c.send("a5 AUTHENTICATE PLAIN")
	c.expect("+ ")
	c.send("*")
	c.expect("a5 BAD AUTHENTICATE cancelled")
	c.send("a6 AUTHENTICATE PLAIN !!!notbase64")
	c.expect("a6 BAD AUTHENTICATE Email OAuth 2.0 Proxy: ")
	c.send("a7 LOGIN onlyuser")
	c.expect("a7 BAD LOGIN Email OAuth 2.0 Proxy: ")
	// After all that the same connection still logs in.
	c.send(`a8 LOGIN alice@example.com alice-PASSWORD-1`)
	c.expect("a8 OK")
	if !strings.Contains(e.logs.String(), `"message_id":"3d733e0968fa4ba3aa5bb8d5390190da"`) {
		t.Error("no LoginFailed event logged")
	}
	// The text says who, how, from where and why, without the frame
	// written for the mail client.
	for _, want := range []string{
		`"msg":"login failed for alice@example.com (IMAP from 127.0.0.1:`,
		`the password is incorrect","message_id":"3d733e0968fa4ba3aa5bb8d5390190da"`,
		`"msg":"login failed for refused@example.com (IMAP from 127.0.0.1:`,
	} {
		if !strings.Contains(e.logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, e.logs.String())
		}
	}
	e.assertNoSecrets("wrong")
}

func TestIMAPHugeInput(t *testing.T) {
	_, _, addr := imapEnv(t)
	t.Run("endless line", func(t *testing.T) {
		c := dialClient(t, addr)
		c.expect("* OK")
		// Write up to 1 GiB in the background while reading, so the BYE is
		// read before the proxy's close can reset the connection.
		werr := make(chan error, 1)
		go func() {
			chunk := bytes.Repeat([]byte("A"), 64<<10)
			for i := 0; i < 16<<10; i++ {
				if _, err := c.c.Write(chunk); err != nil {
					werr <- err
					return
				}
			}
			werr <- nil
		}()
		rest, _ := io.ReadAll(c.r)
		if !strings.Contains(string(rest), "* BYE Email OAuth 2.0 Proxy: command line too long") {
			t.Fatalf("expected a BYE for the long line, got %q", rest)
		}
		c.c.Close()
		if err := <-werr; err == nil {
			t.Fatal("the proxy read a 1 GiB line instead of hanging up")
		}
	})
	t.Run("huge sync literal", func(t *testing.T) {
		c := dialClient(t, addr)
		c.expect("* OK")
		c.send("a1 LOGIN {999999999}")
		c.expect("a1 BAD LOGIN Email OAuth 2.0 Proxy: literal too large")
	})
	t.Run("huge non-sync literal", func(t *testing.T) {
		c := dialClient(t, addr)
		c.expect("* OK")
		c.send("a1 LOGIN {999999999+}")
		c.expect("* BYE Email OAuth 2.0 Proxy: literal too large")
	})
}

// TestIMAPPipeFidelity sends 10 MB of random bytes up (APPEND) and reads
// them back (FETCH) through an authenticated session.
func TestIMAPPipeFidelity(t *testing.T) {
	_, up, addr := imapEnv(t)
	c := dialClient(t, addr)
	c.c.SetDeadline(time.Now().Add(2 * time.Minute))
	c.expect("* OK")
	c.send(`a1 LOGIN alice@example.com alice-PASSWORD-1`)
	c.expect("a1 OK")
	payload := make([]byte, 10<<20)
	rand.Read(payload)
	c.send(fmt.Sprintf("a2 APPEND INBOX {%d}", len(payload)))
	c.expect("+ ")
	if _, err := c.c.Write(payload); err != nil {
		t.Fatal(err)
	}
	c.send("")
	c.expect("a2 OK")
	up.mu.Lock()
	got := up.appended[0]
	up.mu.Unlock()
	if sha256.Sum256(got) != sha256.Sum256(payload) {
		t.Fatal("APPEND payload changed on its way upstream")
	}
	c.send("a3 FETCH 1 BODY[]")
	head := c.line()
	if head != fmt.Sprintf("* 1 FETCH (UID 1 BODY[] {%d}", len(payload)) {
		t.Fatalf("FETCH header %q", head)
	}
	back := make([]byte, len(payload))
	if _, err := io.ReadFull(c.r, back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, payload) {
		t.Fatal("FETCH payload changed on its way down")
	}
	c.expect(")")
	c.expect("a3 OK")
	// IDLE passes untouched.
	c.send("a4 IDLE")
	c.expect("+ idling")
	c.expect("* 2 EXISTS")
	c.send("DONE")
	c.expect("a4 OK IDLE")
	c.send("a5 LOGOUT")
	c.expect("* BYE")
	c.expect("a5 OK")
	// The upstream closed: the proxy must close the client too.
	if _, err := c.r.ReadByte(); err != io.EOF {
		t.Fatalf("expected EOF after LOGOUT, got %v", err)
	}
}

func TestParseLoginArgs(t *testing.T) {
	tests := []struct {
		in         string
		user, pass string
		ok         bool
	}{
		{`alice secret`, "alice", "secret", true},
		{`"alice" "sec ret"`, "alice", "sec ret", true},
		{`"a\\b" "q\"q"` + "\r\n", `a\b`, `q"q`, true},
		{"{5}\r\nalice {3+}\r\nx y\r\n", "alice", "x y", true},
		{`alice "unterminated`, "", "", false},
		{`alice`, "", "", false},
		{`alice secret extra`, "", "", false},
		{"{9}\r\nshort", "", "", false},
		{`"bad\escape" x`, "", "", false},
		{`"" ""`, "", "", true},
	}
	for _, tt := range tests {
		u, p, err := parseLoginArgs([]byte(tt.in))
		if (err == nil) != tt.ok || u != tt.user || p != tt.pass {
			t.Errorf("parseLoginArgs(%q) = %q, %q, %v; want %q, %q, ok=%v", tt.in, u, p, err, tt.user, tt.pass, tt.ok)
		}
	}
}

// FuzzParseLoginArgs checks that the parser never panics and that any
// user/password encoded as quoted strings or literals parse back exactly.
func FuzzParseLoginArgs(f *testing.F) {
	f.Add([]byte("alice"), []byte("secret"), false)
	f.Add([]byte(`q"uo\te`), []byte("a b"), true)
	f.Add([]byte("{5}\r\n"), []byte("\r\n"), true)
	f.Fuzz(func(t *testing.T, user, pass []byte, literal bool) {
		parseLoginArgs(append(append([]byte{}, user...), pass...)) // must not panic
		enc := func(b []byte) string {
			if literal || bytes.ContainsAny(b, "\r\n\x00") {
				return fmt.Sprintf("{%d}\r\n%s", len(b), b)
			}
			return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(string(b)) + `"`
		}
		wire := enc(user) + " " + enc(pass) + "\r\n"
		u, p, err := parseLoginArgs([]byte(wire))
		if err != nil || u != string(user) || p != string(pass) {
			t.Fatalf("round trip of %q, %q via %q = %q, %q, %v", user, pass, wire, u, p, err)
		}
	})
}

func TestRewriteIMAPLine(t *testing.T) {
	tests := []struct {
		in, want string
		offer    capOffer
	}{
		{"* CAPABILITY IMAP4rev1 AUTH=XOAUTH2 AUTH=OAUTHBEARER LOGINDISABLED", "* CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=LOGIN SASL-IR", offerLogin},
		{"* CAPABILITY IMAP4rev1 STARTTLS AUTH=XOAUTH2", "* CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=LOGIN SASL-IR STARTTLS", offerLoginStartTLS},
		// A client that must upgrade first is offered no mechanism
		// (RFC 3501 6.2.3: LOGINDISABLED until STARTTLS).
		{"* CAPABILITY IMAP4rev1 STARTTLS AUTH=XOAUTH2 AUTH=OAUTHBEARER ID", "* CAPABILITY IMAP4rev1 ID STARTTLS LOGINDISABLED", offerStartTLSOnly},
		{"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 LOGINDISABLED] hi", "* OK [CAPABILITY IMAP4rev1 SASL-IR STARTTLS LOGINDISABLED] hi", offerStartTLSOnly},
		{"* OK [CAPABILITY IMAP4rev1 STARTTLS SASL-IR] hi", "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN AUTH=LOGIN] hi", offerLogin},
		{"a OK [capability IMAP4rev1 auth=plain auth=login] done", "a OK [capability IMAP4rev1 AUTH=PLAIN AUTH=LOGIN SASL-IR] done", offerLogin},
		{"* OK ready", "* OK ready", offerLogin},
		{"* 1 EXISTS", "* 1 EXISTS", offerLogin},
		// Found by FuzzRewriteIMAPLine: invalid UTF-8 before the code
		// shifted the indexes and panicked the proxy.
		{"\xdf[CAPABILITY ]", "\xdf[CAPABILITY AUTH=PLAIN AUTH=LOGIN SASL-IR]", offerLogin},
		{"* OK \xff\xfe[capability IMAP4rev1] x", "* OK \xff\xfe[capability IMAP4rev1 AUTH=PLAIN AUTH=LOGIN SASL-IR] x", offerLogin},
	}
	for _, tt := range tests {
		if got := rewriteIMAPLine(tt.in, tt.offer); got != tt.want {
			t.Errorf("rewriteIMAPLine(%q, %d) = %q, want %q", tt.in, tt.offer, got, tt.want)
		}
	}
}
