package e2e

import (
	"encoding/base64"
	"os"
	"strings"
	"testing"
)

// TestE2EIMAPEdgeCases: the pre-login corners that hostile or merely
// unusual clients reach, against Dovecot with the protocol trace on.
//   - ID with a literal before login (Thunderbird, Apple Mail) reaches
//     Dovecot and the session still logs in;
//   - a LOGIN without a tag is answered by the proxy, never forwarded, and
//     its password is not in the --debug trace;
//   - AUTHENTICATE PLAIN asking to act as another user is refused;
//   - AUTHENTICATE LOGIN (curl's AUTH=LOGIN) works.
func TestE2EIMAPEdgeCases(t *testing.T) {
	e := newEnv(t)
	e.addClient(alice)
	e.register("--account", alice, "--oauth2-flow", "client_credentials")
	e.serve("--debug")

	c := mustDial(t, e.imapPort)
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	g, err := c.line()
	step("greeting", err)
	if !strings.Contains(g, "AUTH=PLAIN AUTH=LOGIN") {
		t.Errorf("greeting does not offer AUTH=PLAIN AUTH=LOGIN: %q", g)
	}
	step("ID", c.send(`i1 ID ("name" {11}`))
	cont, err := c.line()
	step("ID continuation", err)
	if !strings.HasPrefix(cont, "+") {
		t.Fatalf("ID literal: got %q, want a continuation", cont)
	}
	step("ID literal", c.send(`Thunderbird "version" "1.0")`))
	done, before, err := c.until("i1 ")
	step("ID reply", err)
	if !strings.HasPrefix(done, "i1 OK") || len(before) == 0 || !strings.HasPrefix(before[0], "* ID ") {
		t.Fatalf("ID with a literal: %q after %q", done, before)
	}

	step("tag-less LOGIN", c.send("LOGIN "+alice+" "+mailerPassword))
	bad, err := c.line()
	step("tag-less LOGIN reply", err)
	if !strings.HasPrefix(bad, "* BAD Email OAuth 2.0 Proxy: ") {
		t.Errorf("tag-less LOGIN: got %q, want the proxy's own BAD", bad)
	}

	other := base64.StdEncoding.EncodeToString([]byte(bob + "\x00" + alice + "\x00" + mailerPassword))
	done, _, err = c.imapCmd("z1", "AUTHENTICATE PLAIN "+other)
	step("authzid", err)
	if !strings.HasPrefix(done, "z1 NO [AUTHORIZATIONFAILED]") {
		t.Errorf("AUTHENTICATE PLAIN as bob with alice's login: %q", done)
	}

	done, _, err = c.imapCmd("L1", "LOGIN "+alice+" "+mailerPassword)
	step("LOGIN after all that", err)
	if !strings.HasPrefix(done, "L1 OK") {
		t.Fatalf("LOGIN after the edge cases: %q", done)
	}
	done, _, err = c.imapCmd("L2", "SELECT INBOX")
	step("SELECT", err)
	if !strings.HasPrefix(done, "L2 OK") {
		t.Fatalf("SELECT: %q", done)
	}

	out, err := e.curl(alice, mailerPassword, "--login-options", "AUTH=LOGIN", "imap://127.0.0.1:"+itoa(e.imapPort)+"/")
	if err != nil || !strings.Contains(out, "INBOX") {
		t.Errorf("curl with AUTH=LOGIN: %v\n%s", err, out)
	}
	if log := e.proc.Log(); !strings.Contains(log, "[redacted]") {
		t.Errorf("the --debug trace shows no redacted login; was it on?\n%s", log)
	}
	e.checkNoSecrets(other)
}

// TestE2ELocalTLSAndLimits: the orbit binary reads local_starttls,
// local_starttls_required and max_sessions from the file; imaplib and
// poplib are refused a login before STARTTLS/STLS (always: they run on
// loopback, which the default spares), upgrade and reach Dovecot's
// mailbox; a client over max_sessions is told so.
func TestE2ELocalTLSAndLimits(t *testing.T) {
	e := newEnv(t)
	e.addClient(alice)
	e.register("--account", alice, "--oauth2-flow", "client_credentials")
	data, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	tlsKeys := "local_certificate_path = " + e.tls.CertFile + "\nlocal_key_path = " + e.tls.KeyFile + "\nlocal_starttls = True\nlocal_starttls_required = always\n"
	cfg := strings.Replace(string(data), "[IMAP-"+itoa(e.imapPort)+"]\n", "[IMAP-"+itoa(e.imapPort)+"]\n"+tlsKeys+"max_sessions = 2\n", 1)
	cfg = strings.Replace(cfg, "[POP-"+itoa(e.popPort)+"]\n", "[POP-"+itoa(e.popPort)+"]\n"+tlsKeys, 1)
	if cfg == string(data) {
		t.Fatal("the server sections were not found in the registered file")
	}
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.serve()

	const pyStartTLS = `
import os, imaplib, poplib, ssl
ctx = ssl.create_default_context(cafile=os.environ["CA"])
m = imaplib.IMAP4("127.0.0.1", int(os.environ["IMAP"]), timeout=60)
assert "STARTTLS" in m.capabilities and "LOGINDISABLED" in m.capabilities, m.capabilities
try:
    m.login(os.environ["USER"], os.environ["PASS"])
    raise SystemExit("LOGIN before STARTTLS succeeded")
except imaplib.IMAP4.error as e:
    assert "PRIVACYREQUIRED" in str(e), e
m.starttls(ssl_context=ctx)
m.login(os.environ["USER"], os.environ["PASS"])
typ, _ = m.select("INBOX")
assert typ == "OK", typ
m.logout()
p = poplib.POP3("127.0.0.1", int(os.environ["POP"]), timeout=60)
try:
    p.user(os.environ["USER"])
    raise SystemExit("USER before STLS succeeded")
except poplib.error_proto as e:
    assert "STLS first" in str(e), e
p.stls(context=ctx)
p.user(os.environ["USER"])
p.pass_(os.environ["PASS"])
p.stat()
p.quit()
print("DONE")
`
	out, err := e.python(pyStartTLS, "IMAP="+itoa(e.imapPort), "POP="+itoa(e.popPort), "CA="+e.tls.CAFile,
		"USER="+alice, "PASS="+mailerPassword)
	if err != nil || !strings.Contains(out, "DONE") {
		t.Fatalf("imaplib/poplib with STARTTLS through the proxy: %v\n%s", err, out)
	}

	// Two sessions fill the IMAP listener's max_sessions; a third is sent
	// away with a reply, at once.
	for i := 0; i < 2; i++ {
		c := mustDial(t, e.imapPort)
		if g, err := c.line(); err != nil || !strings.HasPrefix(g, "* OK") {
			t.Fatalf("session %d: %q, %v", i+1, g, err)
		}
	}
	if g := e.greeting(e.imapPort); !strings.HasPrefix(g, "* BYE [UNAVAILABLE] Email OAuth 2.0 Proxy: ") || !strings.Contains(g, "max_sessions") {
		t.Errorf("over max_sessions: %q", g)
	}
	e.checkNoSecrets()
}
