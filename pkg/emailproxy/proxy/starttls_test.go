package proxy

import (
	"io"
	"net"
	"strings"
	"testing"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

// startTLSEnv runs one listener of proto with local_starttls and the test
// certificate.
func startTLSEnv(t *testing.T, proto config.Protocol, serve func(*fakeUpstream, net.Conn)) (*env, *fakeUpstream, string) {
	t.Helper()
	e := newEnv(t)
	up := startFake(t, e.ca, true, serve)
	sec := section("X-1", proto, up)
	sec.LocalStartTLS, sec.LocalCertificatePath, sec.LocalKeyPath = true, e.ca.certPath, e.ca.keyPath
	e.apply(sec)
	if l := e.srv.Listeners()[0]; !l.StartTLS || l.TLS {
		t.Errorf("listener info %+v: want StartTLS and not implicit TLS", l)
	}
	return e, up, e.addr("X-1")
}

// TestIMAPLocalSTARTTLS: with local_starttls an IMAP listener offers
// STARTTLS, upgrades the client, no longer offers it, and the login runs
// over TLS.
func TestIMAPLocalSTARTTLS(t *testing.T) {
	e, up, addr := startTLSEnv(t, config.IMAP, serveIMAP)
	c := dialClient(t, addr)
	if g := c.expect("* OK"); !strings.Contains(g, " STARTTLS") {
		t.Fatalf("greeting does not offer STARTTLS: %q", g)
	}
	c.send("a1 CAPABILITY")
	if l := c.until("a1 "); !strings.Contains(l[0], " STARTTLS") || strings.Contains(l[0], "LOGINDISABLED") {
		t.Fatalf("CAPABILITY before TLS: %q", l)
	}
	c.send("a2 STARTTLS")
	c.expect("a2 OK")
	tc := tlsClient(t, c, e.ca)
	tc.send("a3 CAPABILITY")
	if l := tc.until("a3 "); strings.Contains(l[0], "STARTTLS") || !strings.Contains(l[0], "AUTH=PLAIN") {
		t.Errorf("CAPABILITY after TLS: %q", l)
	}
	tc.send("a4 STARTTLS")
	tc.expect("a4 BAD STARTTLS")
	tc.send("a5 LOGIN alice@example.com alice-PASSWORD-1")
	tc.expect("a5 OK")
	tc.send("a6 SELECT INBOX")
	tc.until("a6 OK")
	if up.loginCount() != 1 {
		t.Errorf("upstream logins = %d", up.loginCount())
	}
	e.assertNoSecrets()
}

// TestPOPLocalSTLS: the same for POP3's STLS (RFC 2595).
func TestPOPLocalSTLS(t *testing.T) {
	e, up, addr := startTLSEnv(t, config.POP, servePOP)
	c := dialClient(t, addr)
	c.expect("+OK")
	c.send("CAPA")
	if capa := strings.Join(c.until("."), "\n"); !strings.Contains(capa, "\nSTLS") {
		t.Fatalf("CAPA does not offer STLS:\n%s", capa)
	}
	c.send("USER alice@example.com")
	c.expect("+OK")
	c.send("STLS")
	c.expect("+OK Begin TLS")
	tc := tlsClient(t, c, e.ca)
	tc.send("CAPA")
	if capa := strings.Join(tc.until("."), "\n"); strings.Contains(capa, "STLS") {
		t.Errorf("CAPA after TLS still offers STLS:\n%s", capa)
	}
	tc.send("STLS")
	tc.expect("-ERR Email OAuth 2.0 Proxy: STLS is not offered")
	// USER from before the upgrade is forgotten (RFC 2595 4).
	tc.send("PASS alice-PASSWORD-1")
	tc.expect("-ERR Email OAuth 2.0 Proxy: send USER first")
	tc.send("USER alice@example.com")
	tc.expect("+OK")
	tc.send("PASS alice-PASSWORD-1")
	tc.expect("+OK Logged in.")
	if up.loginCount() != 1 {
		t.Errorf("upstream logins = %d", up.loginCount())
	}
	e.assertNoSecrets()
}

// TestSTARTTLSInjection: commands sent in the clear right behind STARTTLS
// would be taken as sent over TLS; the proxy ends the session instead of
// upgrading (CVE-2011-0411 and its kin).
func TestSTARTTLSInjection(t *testing.T) {
	tests := []struct {
		proto    config.Protocol
		serve    func(*fakeUpstream, net.Conn)
		before   []string
		inject   string
		reply    string
		greeting string
	}{
		{config.IMAP, serveIMAP, nil, "a1 STARTTLS\r\na2 LOGIN alice@example.com alice-PASSWORD-1\r\n", "* BYE Email OAuth 2.0 Proxy: the client sent data after STARTTLS", "* OK"},
		{config.POP, servePOP, nil, "STLS\r\nUSER alice@example.com\r\n", "-ERR Email OAuth 2.0 Proxy: the client sent data after STARTTLS", "+OK"},
		{config.SMTP, serveSMTP, []string{"EHLO x"}, "STARTTLS\r\nAUTH PLAIN " + b64("\x00alice@example.com\x00alice-PASSWORD-1") + "\r\n", "501 5.5.4 Email OAuth 2.0 Proxy: the client sent data after STARTTLS", "220"},
	}
	for _, tt := range tests {
		t.Run(string(tt.proto), func(t *testing.T) {
			_, up, addr := startTLSEnv(t, tt.proto, tt.serve)
			c := dialClient(t, addr)
			c.expect(tt.greeting)
			for _, b := range tt.before {
				c.send(b)
				c.until("250 ")
			}
			io.WriteString(c.c, tt.inject)
			c.expect(tt.reply)
			if up.loginCount() != 0 {
				t.Error("the injected login went upstream")
			}
		})
	}
}
