package proxy

import (
	"net"
	"strings"
	"testing"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

// requiredTLSEnv is startTLSEnv with local_starttls_required = req.
func requiredTLSEnv(t *testing.T, proto config.Protocol, serve func(*fakeUpstream, net.Conn), req config.TLSRequirement, localAddress string) (*env, *fakeUpstream, string) {
	t.Helper()
	e := newEnv(t)
	up := startFake(t, e.ca, true, serve)
	sec := section("X-1", proto, up)
	sec.LocalStartTLS, sec.LocalCertificatePath, sec.LocalKeyPath = true, e.ca.certPath, e.ca.keyPath
	sec.LocalStartTLSRequired = req
	if localAddress != "" {
		sec.LocalAddress = localAddress
	}
	e.apply(sec)
	return e, up, e.addr("X-1")
}

// noCredentialsYet fails if a password reached the token layer or a login
// the upstream.
func noCredentialsYet(t *testing.T, e *env, up *fakeUpstream) {
	t.Helper()
	if n := e.auth.calls.Load(); n != 0 {
		t.Errorf("the token layer was asked %d times before TLS", n)
	}
	if n := up.loginCount(); n != 0 {
		t.Errorf("%d logins went upstream before TLS", n)
	}
}

// TestIMAPLoginNeedsSTARTTLS: a listener that requires TLS advertises
// LOGINDISABLED and no AUTH= before STARTTLS (RFC 3501 6.2.3, 7.2.1),
// answers LOGIN and AUTHENTICATE with NO [PRIVACYREQUIRED] (RFC 9051 7.1)
// without asking for the rest of the credentials, and takes the login
// after the upgrade.
func TestIMAPLoginNeedsSTARTTLS(t *testing.T) {
	e, up, addr := requiredTLSEnv(t, config.IMAP, serveIMAP, config.RequireTLSAlways, "")
	c := dialClient(t, addr)
	before := func(caps string) {
		t.Helper()
		if !strings.Contains(caps, " STARTTLS") || !strings.Contains(caps, " LOGINDISABLED") || strings.Contains(caps, "AUTH=") {
			t.Errorf("capabilities before TLS: %q; want STARTTLS and LOGINDISABLED, no AUTH=", caps)
		}
	}
	before(c.expect("* OK"))
	c.send("a1 CAPABILITY")
	before(c.until("a1 ")[0])
	const refusal = " NO [PRIVACYREQUIRED] "
	for i, cmd := range []string{
		"LOGIN alice@example.com alice-PASSWORD-1",
		"AUTHENTICATE PLAIN " + b64("\x00alice@example.com\x00alice-PASSWORD-1"),
		"AUTHENTICATE PLAIN", // no "+": the client must not send the response
		"AUTHENTICATE LOGIN",
		"LOGIN {17}", // synchronising literal: no "+" either
	} {
		tag := "b" + string(rune('1'+i))
		c.send(tag + " " + cmd)
		if got := c.line(); !strings.HasPrefix(got, tag+refusal) || !strings.Contains(got, "STARTTLS first") {
			t.Errorf("%s before TLS: got %q, want %q... STARTTLS first", cmd, got, tag+refusal)
		}
	}
	// The literal announced by the last LOGIN was never asked for, so the
	// next line is a command again.
	c.send("c1 NOOP")
	c.expect("c1 OK")
	noCredentialsYet(t, e, up)

	c.send("c2 STARTTLS")
	c.expect("c2 OK")
	tc := tlsClient(t, c, e.ca)
	tc.send("c3 CAPABILITY")
	if caps := tc.until("c3 ")[0]; strings.Contains(caps, "LOGINDISABLED") || !strings.Contains(caps, "AUTH=PLAIN") || strings.Contains(caps, "STARTTLS") {
		t.Errorf("capabilities after TLS: %q", caps)
	}
	tc.send("c4 LOGIN alice@example.com alice-PASSWORD-1")
	tc.expect("c4 OK")
	if up.loginCount() != 1 {
		t.Errorf("upstream logins = %d", up.loginCount())
	}
	if logs := e.logs.String(); !strings.Contains(logs, "refused a login before STARTTLS") {
		t.Errorf("the refusal was not logged:\n%s", logs)
	}
	e.assertNoSecrets()
}

// TestPOPLoginNeedsSTLS: before STLS, CAPA offers neither USER nor SASL,
// and USER, PASS, AUTH and APOP are refused with -ERR [AUTH] (RFC 3206:
// authentication in violation of policy), AUTH without asking for its
// response; after STLS USER/PASS logs in.
func TestPOPLoginNeedsSTLS(t *testing.T) {
	e, up, addr := requiredTLSEnv(t, config.POP, servePOP, config.RequireTLSAlways, "")
	c := dialClient(t, addr)
	c.expect("+OK")
	c.send("CAPA")
	capa := "\n" + strings.Join(c.until("."), "\n") + "\n"
	if !strings.Contains(capa, "\nSTLS\n") || strings.Contains(capa, "\nUSER") || strings.Contains(capa, "\nSASL") {
		t.Errorf("CAPA before STLS:%s", capa)
	}
	for _, cmd := range []string{
		"USER alice@example.com",
		"PASS alice-PASSWORD-1",
		"AUTH PLAIN " + b64("\x00alice@example.com\x00alice-PASSWORD-1"),
		"AUTH PLAIN", // no "+ ": the response must not be sent
		"APOP alice@example.com c4c9334bac560ecc979e58001b3e22fb",
	} {
		c.send(cmd)
		if got := c.line(); !strings.HasPrefix(got, "-ERR [AUTH] ") || !strings.Contains(got, "STLS first") {
			t.Errorf("%s before STLS: got %q, want -ERR [AUTH] ... STLS first", cmd, got)
		}
	}
	c.send("AUTH")
	if got := strings.Join(c.until("."), "|"); got != "+OK|." {
		t.Errorf("AUTH mechanism list before STLS: %q, want none", got)
	}
	noCredentialsYet(t, e, up)

	c.send("STLS")
	c.expect("+OK")
	tc := tlsClient(t, c, e.ca)
	tc.send("CAPA")
	capa = "\n" + strings.Join(tc.until("."), "\n") + "\n"
	if !strings.Contains(capa, "\nUSER\n") || !strings.Contains(capa, "\nSASL PLAIN\n") || strings.Contains(capa, "STLS") {
		t.Errorf("CAPA after STLS:%s", capa)
	}
	tc.send("USER alice@example.com")
	tc.expect("+OK")
	tc.send("PASS alice-PASSWORD-1")
	tc.expect("+OK Logged in.")
	if up.loginCount() != 1 {
		t.Errorf("upstream logins = %d", up.loginCount())
	}
	e.assertNoSecrets()
}

// TestSMTPAuthNeedsSTARTTLS: before STARTTLS the EHLO reply has no AUTH
// (RFC 3207 4.2 lets it differ after TLS) and AUTH, MAIL are answered
// "530 5.7.0 Must issue a STARTTLS command first" (RFC 3207 4), AUTH
// without a 334 prompt; after STARTTLS and a new EHLO, AUTH works.
func TestSMTPAuthNeedsSTARTTLS(t *testing.T) {
	e, up, addr := requiredTLSEnv(t, config.SMTP, serveSMTP, config.RequireTLSAlways, "")
	c := dialClient(t, addr)
	c.expect("220")
	c.send("EHLO client.example")
	ehlo := "\n" + strings.Join(c.until("250 "), "\n")
	if !strings.Contains(ehlo, "STARTTLS") || strings.Contains(ehlo, "AUTH") {
		t.Errorf("EHLO before STARTTLS:%s", ehlo)
	}
	for _, cmd := range []string{
		"AUTH PLAIN " + b64("\x00alice@example.com\x00alice-PASSWORD-1"),
		"AUTH PLAIN",
		"AUTH LOGIN",
		"AUTH LOGIN " + b64("alice@example.com"),
		"MAIL FROM:<alice@example.com>",
	} {
		c.send(cmd)
		if got := c.line(); !strings.HasPrefix(got, "530 5.7.0 ") || !strings.Contains(got, "Must issue a STARTTLS command first") {
			t.Errorf("%s before STARTTLS: got %q, want 530 5.7.0 ... Must issue a STARTTLS command first", cmd, got)
		}
	}
	noCredentialsYet(t, e, up)

	c.send("STARTTLS")
	c.expect("220")
	tc := tlsClient(t, c, e.ca)
	tc.send("EHLO client.example")
	ehlo = "\n" + strings.Join(tc.until("250 "), "\n")
	if strings.Contains(ehlo, "STARTTLS") || !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO after STARTTLS:%s", ehlo)
	}
	tc.send("AUTH PLAIN " + b64("\x00alice@example.com\x00alice-PASSWORD-1"))
	tc.expect("235")
	e.assertNoSecrets()
}

// nonLoopbackAddress is an address of this host outside 127.0.0.0/8 and
// ::1, to connect from "another host" without one.
func nonLoopbackAddress(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skipf("listing this host's addresses: %v", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	t.Skip("this host has no IPv4 address outside loopback; the client-address cases need one")
	return ""
}

// TestSTARTTLSRequirementByClientAddress: which clients may log in before
// STARTTLS, per local_starttls_required and the client's address. The
// default spares loopback clients only.
func TestSTARTTLSRequirementByClientAddress(t *testing.T) {
	other := nonLoopbackAddress(t)
	tests := []struct {
		req      config.TLSRequirement
		addr     string
		mustTLS  bool
		loopback bool
	}{
		{"", "127.0.0.1", false, true},
		{"", other, true, false},
		{config.RequireTLSRemote, other, true, false},
		{config.RequireTLSAlways, "127.0.0.1", true, true},
		{config.RequireTLSNever, other, false, false},
		{config.RequireTLSNever, "127.0.0.1", false, true},
	}
	for _, tt := range tests {
		name := string(tt.req)
		if name == "" {
			name = "default"
		}
		if tt.loopback {
			name += " loopback"
		} else {
			name += " other address"
		}
		t.Run(name, func(t *testing.T) {
			e, up, addr := requiredTLSEnv(t, config.IMAP, serveIMAP, tt.req, tt.addr)
			c := dialClient(t, addr)
			if g := c.expect("* OK"); strings.Contains(g, "LOGINDISABLED") != tt.mustTLS {
				t.Errorf("greeting %q: LOGINDISABLED should be there: %v", g, tt.mustTLS)
			}
			c.send("a1 LOGIN alice@example.com alice-PASSWORD-1")
			got := c.line()
			if tt.mustTLS {
				if !strings.HasPrefix(got, "a1 NO [PRIVACYREQUIRED]") {
					t.Fatalf("login before STARTTLS: %q, want NO [PRIVACYREQUIRED]", got)
				}
				noCredentialsYet(t, e, up)
			} else if !strings.HasPrefix(got, "a1 OK") {
				t.Fatalf("login before STARTTLS: %q, want OK", got)
			}
		})
	}
}

// TestIsLoopbackAddr: the addresses local_starttls_required = remote
// spares, IPv4-mapped loopback included (a dual-stack listener on ::
// sees 127.0.0.1 clients that way).
func TestIsLoopbackAddr(t *testing.T) {
	tests := []struct {
		ip   string
		want bool
	}{
		{"127.0.0.1", true},
		{"127.1.2.3", true},
		{"::1", true},
		{"::ffff:127.0.0.1", true},
		{"192.0.2.7", false},
		{"::ffff:192.0.2.7", false},
		{"fd00::2", false},
		{"0.0.0.0", false},
	}
	for _, tt := range tests {
		if got := isLoopbackAddr(&net.TCPAddr{IP: net.ParseIP(tt.ip), Port: 1}); got != tt.want {
			t.Errorf("isLoopbackAddr(%s) = %v, want %v", tt.ip, got, tt.want)
		}
	}
	if isLoopbackAddr(&net.UnixAddr{Name: "/run/x.sock", Net: "unix"}) {
		t.Error("a non-TCP address counts as loopback")
	}
}

// TestSTARTTLSRequirementFollowsReload: a reload that changes
// local_starttls_required applies to the next client, without closing the
// listener.
func TestSTARTTLSRequirementFollowsReload(t *testing.T) {
	e, up, addr := requiredTLSEnv(t, config.IMAP, serveIMAP, config.RequireTLSAlways, "")
	login := func() string {
		c := dialClient(t, addr)
		c.expect("* OK")
		c.send("a1 LOGIN alice@example.com alice-PASSWORD-1")
		return c.line()
	}
	if got := login(); !strings.HasPrefix(got, "a1 NO [PRIVACYREQUIRED]") {
		t.Fatalf("always: %q", got)
	}
	sec := section("X-1", config.IMAP, up)
	sec.LocalStartTLS, sec.LocalCertificatePath, sec.LocalKeyPath = true, e.ca.certPath, e.ca.keyPath
	sec.LocalStartTLSRequired = config.RequireTLSNever
	e.apply(sec)
	if e.addr("X-1") != addr {
		t.Fatalf("the listener moved from %s to %s", addr, e.addr("X-1"))
	}
	if got := login(); !strings.HasPrefix(got, "a1 OK") {
		t.Fatalf("never, after the reload: %q", got)
	}
}
