package proxy

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
)

func TestPOPSessions(t *testing.T) {
	plain := b64("\x00alice@example.com\x00alice-PASSWORD-1")
	tests := []struct {
		name  string
		login func(c *client)
	}{
		{"USER/PASS", func(c *client) {
			c.send("USER alice@example.com")
			c.expect("+OK")
			c.send("PASS alice-PASSWORD-1")
		}},
		{"AUTH PLAIN inline", func(c *client) { c.send("AUTH PLAIN " + plain) }},
		{"AUTH PLAIN on request", func(c *client) {
			c.send("AUTH PLAIN")
			c.expect("+ ")
			c.send(plain)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			up := startFake(t, e.ca, true, servePOP)
			e.apply(section("POP-1", config.POP, up))
			c := dialClient(t, e.addr("POP-1"))
			c.expect("+OK fake POP3 ready")
			c.send("CAPA")
			capa := strings.Join(c.until("."), "\n")
			for _, want := range []string{"SASL PLAIN", "USER", "TOP", "UIDL"} {
				if !strings.Contains(capa, want) {
					t.Errorf("CAPA lacks %q:\n%s", want, capa)
				}
			}
			if strings.Contains(capa, "XOAUTH2") || strings.Contains(capa, "STLS") {
				t.Errorf("CAPA not rewritten:\n%s", capa)
			}
			tt.login(c)
			c.expect("+OK Logged in.")
			c.send("RETR 1")
			c.expect("+OK")
			lines := c.until(".")
			if !strings.Contains(strings.Join(lines, "\n"), "hello through the proxy") {
				t.Errorf("RETR through the pipe: %q", lines)
			}
			c.send("QUIT")
			c.expect("+OK bye")
			if up.loginCount() != 1 {
				t.Errorf("upstream logins = %d", up.loginCount())
			}
			e.assertNoSecrets()
		})
	}
}

func TestPOPFailures(t *testing.T) {
	e := newEnv(t)
	up := startFake(t, e.ca, true, servePOP)
	e.auth.add("refused@example.com", "pw")
	up.refused["refused@example.com"] = true
	e.apply(section("POP-1", config.POP, up))
	c := dialClient(t, e.addr("POP-1"))
	c.expect("+OK")
	c.send("PASS x")
	c.expect("-ERR Email OAuth 2.0 Proxy: send USER first")
	c.send("USER alice@example.com")
	c.expect("+OK")
	c.send("PASS wrong")
	if got, want := c.line(), "-ERR Authentication failed. Email OAuth 2.0 Proxy: Login failed - the password for account alice@example.com is incorrect"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	c.send("USER refused@example.com")
	c.expect("+OK")
	c.send("PASS pw")
	got := c.expect("-ERR Authentication failed. Email OAuth 2.0 Proxy: Login failed for account refused@example.com - the upstream server")
	if !strings.Contains(got, "-ERR [AUTH] Authentication failed") {
		t.Errorf("upstream reason missing: %q", got)
	}
	c.send("AUTH CRAM-MD5")
	c.expect("-ERR Email OAuth 2.0 Proxy: only AUTH PLAIN")
	c.send("STLS")
	c.expect("-ERR Email OAuth 2.0 Proxy: STLS is not offered by this proxy listener")
	c.send("STAT")
	c.expect("-ERR Email OAuth 2.0 Proxy: log in first")
	c.send("AUTH")
	c.expect("+OK")
	c.expect("PLAIN")
	c.expect(".")
}

func smtpEnv(t testing.TB, upstreamStartTLS bool, mutate func(*config.Server)) (*env, *fakeUpstream, string) {
	e := newEnv(t)
	up := startFake(t, e.ca, !upstreamStartTLS, serveSMTP)
	sec := section("SMTP-1", config.SMTP, up)
	sec.ServerStartTLS = upstreamStartTLS
	if mutate != nil {
		mutate(&sec)
	}
	e.apply(sec)
	return e, up, e.addr("SMTP-1")
}

func TestSMTPSessions(t *testing.T) {
	plain := b64("\x00alice@example.com\x00alice-PASSWORD-1")
	logins := []struct {
		name  string
		login func(c *client)
	}{
		{"AUTH PLAIN inline", func(c *client) { c.send("AUTH PLAIN " + plain) }},
		{"AUTH PLAIN on request", func(c *client) {
			c.send("AUTH PLAIN")
			c.expect("334 ")
			c.send(plain)
		}},
		{"AUTH LOGIN", func(c *client) {
			c.send("AUTH LOGIN")
			c.expect("334 VXNlcm5hbWU6")
			c.send(b64("alice@example.com"))
			c.expect("334 UGFzc3dvcmQ6")
			c.send(b64("alice-PASSWORD-1"))
		}},
		{"AUTH LOGIN with user", func(c *client) {
			c.send("AUTH LOGIN " + b64("alice@example.com"))
			c.expect("334 UGFzc3dvcmQ6")
			c.send(b64("alice-PASSWORD-1"))
		}},
	}
	for _, starttls := range []bool{false, true} {
		for _, tt := range logins {
			t.Run(fmt.Sprintf("%s/server_starttls=%v", tt.name, starttls), func(t *testing.T) {
				e, up, addr := smtpEnv(t, starttls, nil)
				c := dialClient(t, addr)
				c.expect("220 fake.test ESMTP ready")
				c.send("MAIL FROM:<alice@example.com>")
				c.expect("530 5.7.0 Email OAuth 2.0 Proxy: authentication required")
				c.send("EHLO client.example")
				ehlo := c.until("250 ")
				joined := strings.Join(ehlo, "\n")
				if !strings.Contains(joined, "250-AUTH PLAIN LOGIN") && !strings.HasSuffix(joined, "250 AUTH PLAIN LOGIN") {
					t.Errorf("EHLO lacks AUTH PLAIN LOGIN:\n%s", joined)
				}
				if strings.Contains(joined, "XOAUTH2") || strings.Contains(joined, "STARTTLS") {
					t.Errorf("EHLO not rewritten:\n%s", joined)
				}
				if !strings.Contains(joined, "PIPELINING") {
					t.Errorf("EHLO lost upstream extensions:\n%s", joined)
				}
				c.send("STARTTLS")
				c.expect("454 4.7.0 Email OAuth 2.0 Proxy: STARTTLS is not offered")
				tt.login(c)
				c.expect("235 2.7.0 Authentication successful")
				c.send("MAIL FROM:<alice@example.com>")
				c.expect("250")
				c.send("RCPT TO:<bob@example.com>")
				c.expect("250")
				c.send("DATA")
				c.expect("354")
				c.send("Subject: test\r\n\r\nbody line\r\n.")
				c.expect("250 2.0.0 queued")
				c.send("QUIT")
				c.expect("221")
				up.mu.Lock()
				defer up.mu.Unlock()
				if len(up.mails) != 1 || !strings.Contains(string(up.mails[0]), "body line") {
					t.Errorf("mail not delivered upstream: %q", up.mails)
				}
				wantEHLO := []string{"tls:client.example"}
				if starttls {
					wantEHLO = []string{"client.example", "tls:client.example"}
				}
				if fmt.Sprint(up.ehlos) != fmt.Sprint(wantEHLO) {
					t.Errorf("upstream EHLOs = %q, want %q", up.ehlos, wantEHLO)
				}
				if len(up.authTLS) != 1 || !up.authTLS[0] {
					t.Errorf("AUTH must happen over TLS upstream: %v", up.authTLS)
				}
				e.assertNoSecrets()
			})
		}
	}
}

func TestSMTPFailures(t *testing.T) {
	e, up, addr := smtpEnv(t, true, nil)
	e.auth.add("refused@example.com", "pw")
	up.refused["refused@example.com"] = true
	c := dialClient(t, addr)
	c.expect("220")
	c.send("AUTH PLAIN " + b64("\x00alice@example.com\x00alice-PASSWORD-1"))
	c.expect("503 5.5.1 Email OAuth 2.0 Proxy: send EHLO first")
	c.send("EHLO client.example")
	c.until("250 ")
	c.send("AUTH PLAIN " + b64("\x00alice@example.com\x00wrong"))
	if got, want := c.line(), "535 5.7.8  Authentication credentials invalid. Email OAuth 2.0 Proxy: Login failed - the password for account alice@example.com is incorrect"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	c.send("AUTH PLAIN " + b64("\x00refused@example.com\x00pw"))
	got := c.expect("535 5.7.8  Authentication credentials invalid. Email OAuth 2.0 Proxy: Login failed for account refused@example.com - the upstream server")
	// 5.7.3 is in the provider error catalogue: the reply explains it,
	// the log keeps the server's reply and the challenge's detail.
	if !strings.Contains(got, "refused the XOAUTH2 login - 5.7.3: ") {
		t.Errorf("upstream reason missing: %q", got)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "535 5.7.3 Authentication unsuccessful") || !strings.Contains(logs, `\"status\":\"401\"`) {
		t.Errorf("the log lacks the server's reply:\n%s", logs)
	}
	c.send("AUTH CRAM-MD5")
	c.expect("504 5.5.4 Email OAuth 2.0 Proxy: only AUTH PLAIN and AUTH LOGIN")
	c.send("AUTH LOGIN")
	c.expect("334 ")
	c.send("*")
	c.expect("501 5.7.0 Authentication cancelled")
	c.send("NOOP")
	c.expect("250")
	c.send("AUTH LOGIN " + b64("alice@example.com"))
	c.expect("334 ")
	c.send(b64("alice-PASSWORD-1"))
	c.expect("235")
}

// TestSMTPLocalSTARTTLS: with local_starttls the proxy offers STARTTLS,
// upgrades the client and drops the offer after the upgrade.
func TestSMTPLocalSTARTTLS(t *testing.T) {
	e := newEnv(t)
	ca := e.ca
	up := startFake(t, ca, true, serveSMTP)
	sec := section("SMTP-1", config.SMTP, up)
	sec.LocalStartTLS, sec.LocalCertificatePath, sec.LocalKeyPath = true, ca.certPath, ca.keyPath
	e.apply(sec)
	addr := e.addr("SMTP-1")
	if l := e.srv.Listeners()[0]; !l.StartTLS || l.TLS {
		t.Errorf("listener info %+v: want StartTLS and not implicit TLS", l)
	}
	c := dialClient(t, addr)
	c.expect("220")
	c.send("EHLO client.example")
	if got := strings.Join(c.until("250 "), "\n"); !strings.Contains(got, "STARTTLS") {
		t.Fatalf("STARTTLS not offered:\n%s", got)
	}
	c.send("STARTTLS")
	c.expect("220 2.0.0 Ready to start TLS")
	tc := tls.Client(c.c, &tls.Config{RootCAs: ca.pool, ServerName: "127.0.0.1"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c2 := &client{t: t, c: tc, r: newFakeConn(tc).r}
	c2.send("EHLO client.example")
	if got := strings.Join(c2.until("250 "), "\n"); strings.Contains(got, "STARTTLS") {
		t.Errorf("STARTTLS offered again after the upgrade:\n%s", got)
	}
	c2.send("STARTTLS")
	c2.expect("454 4.7.0")
	c2.send("AUTH PLAIN " + b64("\x00alice@example.com\x00alice-PASSWORD-1"))
	c2.expect("235")
}

// TestTemporaryFailures: provider outage and pending authorisation give
// each protocol's temporary reply, not a credentials failure.
func TestTemporaryFailures(t *testing.T) {
	for _, cause := range []error{
		fmt.Errorf("token endpoint https://login.example/token: HTTP 503: %w", oauth.ErrProviderUnavailable),
		fmt.Errorf("account alice@example.com: an admin must visit the authorisation URL: %w", oauth.ErrNeedsAuthorization),
	} {
		t.Run(cause.Error()[:20], func(t *testing.T) {
			e := newEnv(t)
			e.auth.fail("alice@example.com", cause)
			imapUp := startFake(t, e.ca, true, serveIMAP)
			popUp := startFake(t, e.ca, true, servePOP)
			smtpUp := startFake(t, e.ca, true, serveSMTP)
			e.apply(section("IMAP-1", config.IMAP, imapUp), section("POP-1", config.POP, popUp), section("SMTP-1", config.SMTP, smtpUp))
			// The Authenticator's text is written for the client (auth.go).
			msg := "Email OAuth 2.0 Proxy: " + cause.Error()

			c := dialClient(t, e.addr("IMAP-1"))
			c.expect("* OK")
			c.send("a LOGIN alice@example.com alice-PASSWORD-1")
			if got, want := c.line(), "a NO [UNAVAILABLE] LOGIN "+msg; got != want {
				t.Errorf("IMAP\n got %q\nwant %q", got, want)
			}
			c = dialClient(t, e.addr("POP-1"))
			c.expect("+OK")
			c.send("USER alice@example.com")
			c.expect("+OK")
			c.send("PASS alice-PASSWORD-1")
			if got, want := c.line(), "-ERR [SYS/TEMP] "+msg; got != want {
				t.Errorf("POP\n got %q\nwant %q", got, want)
			}
			c = dialClient(t, e.addr("SMTP-1"))
			c.expect("220")
			c.send("EHLO x")
			c.until("250 ")
			c.send("AUTH PLAIN " + b64("\x00alice@example.com\x00alice-PASSWORD-1"))
			if got, want := c.line(), "454 4.7.0 Temporary authentication failure. "+msg; got != want {
				t.Errorf("SMTP\n got %q\nwant %q", got, want)
			}
		})
	}
}

// TestUpstreamUnreachable: a dead upstream or an untrusted certificate gives
// every protocol a proper greeting-time reply, never a bare reset.
func TestUpstreamUnreachable(t *testing.T) {
	e := newEnv(t)
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadPort := dead.Addr().(*net.TCPAddr).Port
	dead.Close()
	other := newTestCA(t) // the upstream's certificate is signed by a CA the proxy does not trust
	untrusted := startFake(t, other, true, serveIMAP)
	_, untrustedPort := untrusted.addr()

	secs := []config.Server{}
	for _, p := range []config.Protocol{config.IMAP, config.POP, config.SMTP} {
		secs = append(secs,
			config.Server{Section: string(p) + "-dead", Protocol: p, LocalAddress: "127.0.0.1", ServerAddress: "127.0.0.1", ServerPort: deadPort},
			config.Server{Section: string(p) + "-tls", Protocol: p, LocalAddress: "127.0.0.1", ServerAddress: "127.0.0.1", ServerPort: untrustedPort})
	}
	e.apply(secs...)
	want := map[config.Protocol]string{
		config.IMAP: "* BYE [UNAVAILABLE] Email OAuth 2.0 Proxy: ",
		config.POP:  "-ERR [SYS/TEMP] Email OAuth 2.0 Proxy: ",
		config.SMTP: "421 4.3.2 Email OAuth 2.0 Proxy: ",
	}
	for _, p := range []config.Protocol{config.IMAP, config.POP, config.SMTP} {
		c := dialClient(t, e.addr(string(p)+"-dead"))
		got := c.expect(want[p])
		if !strings.Contains(got, "cannot connect to the upstream server 127.0.0.1:") || !strings.Contains(got, "connection refused") {
			t.Errorf("%s dead upstream: %q", p, got)
		}
		c = dialClient(t, e.addr(string(p)+"-tls"))
		got = c.expect(want[p])
		if !strings.Contains(got, "TLS handshake failed") || !strings.Contains(got, "SSL_CERT_FILE") {
			t.Errorf("%s untrusted upstream: %q", p, got)
		}
	}
}
