package e2e

import (
	"encoding/base64"
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
