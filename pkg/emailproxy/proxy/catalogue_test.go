package proxy

import (
	"strings"
	"testing"

	"github.com/senhasegura/orbit/pkg/emailproxy/errcatalog"
)

// TestUpstreamRefusalExplained: a mail server refusal the catalogue knows
// (the fake upstream answers 535 5.7.3, as Exchange Online does for a
// token without SMTP.Send) reaches the mailer with the catalogue's
// explanation and fix, and the log keeps the server's reply.
func TestUpstreamRefusalExplained(t *testing.T) {
	e, up, addr := smtpEnv(t, true, nil)
	e.auth.add("refused@example.com", "pw")
	up.refused["refused@example.com"] = true
	entry, ok := errcatalog.Lookup(errcatalog.MailServer, "", "535 5.7.3 Authentication unsuccessful")
	if !ok {
		t.Fatal("the catalogue has no entry for 5.7.3")
	}
	c := dialClient(t, addr)
	c.expect("220")
	c.send("EHLO client.example")
	c.until("250 ")
	c.send("AUTH PLAIN " + b64("\x00refused@example.com\x00pw"))
	got := c.expect("535 5.7.8  Authentication credentials invalid. Email OAuth 2.0 Proxy: Login failed for account refused@example.com - the upstream server")
	if !strings.Contains(got, entry.Hint()) {
		t.Errorf("reply %q\nwant %q", got, entry.Hint())
	}
	if len(got) > 510 {
		t.Errorf("reply is %d characters; SMTP allows 512 with CRLF", len(got))
	}
	if logs := e.logs.String(); !strings.Contains(logs, "535 5.7.3 Authentication unsuccessful") || !strings.Contains(logs, "5.7.3: Exchange Online rejected the token") {
		t.Errorf("log lacks the server's reply or the explanation:\n%s", logs)
	}
}
