package e2e

import (
	"bytes"
	"strings"
	"testing"

	"github.com/senhasegura/orbit/internal/testenv/fakeoauth"
	"github.com/senhasegura/orbit/internal/testenv/smtpsink"
)

// TestE2EClientCredentials: the mailer sends a notification through the SMTP
// listener and reads it back through IMAP and POP3, byte for byte, all
// upstream logins done with XOAUTH2 tokens from the client_credentials grant.
func TestE2EClientCredentials(t *testing.T) {
	e := newEnv(t)
	e.addClient(alice)
	e.register("--account", alice, "--oauth2-flow", "client_credentials")
	e.serve()

	msg := testMessage(alice, alice, "client credentials round trip")
	delivered := e.mailThrough("smtplib through the proxy", alice, mailerPassword, alice, alice, msg)
	if relayed := smtpsink.WithoutTrace(delivered.Data); !bytes.Equal(relayed, msg) {
		t.Fatalf("relayed message differs:\n%q\nwant\n%q", relayed, msg)
	}

	imapMsgs, out, err := e.imapFetchAll(alice, mailerPassword)
	if err != nil || len(imapMsgs) != 1 {
		t.Fatalf("imaplib through the proxy: %v, %d messages\n%s", err, len(imapMsgs), out)
	}
	popMsgs, out, err := e.popFetchAll(alice, mailerPassword)
	if err != nil || len(popMsgs) != 1 {
		t.Fatalf("poplib through the proxy: %v, %d messages\n%s", err, len(popMsgs), out)
	}
	// What IMAP and POP3 return is exactly what Dovecot stored.
	if !bytes.Equal(imapMsgs[0], delivered.Data) || !bytes.Equal(popMsgs[0], delivered.Data) {
		t.Errorf("read back differs from what was delivered:\nIMAP %q\nPOP  %q\nwant %q", imapMsgs[0], popMsgs[0], delivered.Data)
	}

	// Three logins, one token: the token is stored and reused.
	if n := e.prov.GrantCount(fakeoauth.GrantClientCredentials); n != 1 {
		t.Errorf("client_credentials token requests = %d, want 1", n)
	}
	// curl, a second real client, through the same listeners.
	out, err = e.curl(alice, mailerPassword, "imap://127.0.0.1:"+itoa(e.imapPort)+"/INBOX?ALL")
	if err != nil || !strings.Contains(out, "SEARCH 1") {
		t.Errorf("curl IMAP search: %v\n%s", err, out)
	}
	// Nothing secret in the proxy's log.
	for _, secret := range []string{clientSecret, mailerPassword} {
		if strings.Contains(e.proc.Log(), secret) {
			t.Errorf("serve logged a secret")
		}
	}
}
