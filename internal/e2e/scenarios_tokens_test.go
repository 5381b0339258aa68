package e2e

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv/fakeoauth"
	"github.com/senhasegura/orbit/internal/testenv/smtpsink"
)

// The passwords newEnv registers at the fake provider: with the password
// flow the mailer logs in to the proxy with these.
const (
	alicePW = "alice-provider-pw"
	bobPW   = "bob-provider-pw"
)

// TestE2EPassword: oauth2_flow = password sends the mailer's login
// password to the provider as the user's password; the message sent through
// SMTP is read back through IMAP and POP3 with one token request, and the
// stored tokens carry over a restart of the proxy without a new request.
func TestE2EPassword(t *testing.T) {
	e := newEnv(t)
	e.addClient("")
	e.register("--account", alice, "--oauth2-flow", "password")
	e.serve()

	msg := testMessage(alice, alice, "password flow round trip")
	if out, err := e.smtpSend(alice, alicePW, alice, alice, msg); err != nil || !strings.Contains(out, "SENT") {
		t.Fatalf("smtplib through the proxy: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got, err := e.dc.Sink.Wait(ctx, 1)
	if err != nil {
		t.Fatalf("Dovecot relayed nothing: %v", err)
	}
	if relayed := smtpsink.WithoutTrace(got[0].Data); !bytes.Equal(relayed, msg) {
		t.Fatalf("relayed message differs:\n%q\nwant\n%q", relayed, msg)
	}
	imapMsgs, out, err := e.imapFetchAll(alice, alicePW)
	if err != nil || len(imapMsgs) != 1 || !bytes.Equal(imapMsgs[0], got[0].Data) {
		t.Fatalf("imaplib through the proxy: %v, %d messages\n%s", err, len(imapMsgs), out)
	}
	popMsgs, out, err := e.popFetchAll(alice, alicePW)
	if err != nil || len(popMsgs) != 1 || !bytes.Equal(popMsgs[0], got[0].Data) {
		t.Fatalf("poplib through the proxy: %v, %d messages\n%s", err, len(popMsgs), out)
	}

	reqs := e.prov.TokenRequests()
	if len(reqs) != 1 || reqs[0].GrantType != fakeoauth.GrantPassword {
		t.Fatalf("token requests = %+v, want one password grant", grants(reqs))
	}
	f := reqs[0].Form
	if f.Get("username") != alice || f.Get("password") != alicePW || f.Get("client_id") != clientID || f.Get("client_secret") != clientSecret {
		t.Errorf("password grant sent username=%q, the login password: %v, client_id=%q, client secret: %v",
			f.Get("username"), f.Get("password") == alicePW, f.Get("client_id"), f.Get("client_secret") == clientSecret)
	}
	if strings.Contains(e.proc.Log(), alicePW) || strings.Contains(readFile(t, e.tokens), alicePW) {
		t.Error("the login password is in serve's log or the token cache")
	}

	// A new process reads the stored tokens: no token request.
	e.restartServe()
	e.prov.ResetCounts()
	if msgs, out, err := e.imapFetchAll(alice, alicePW); err != nil || len(msgs) != 1 {
		t.Fatalf("after a restart: %v, %d messages\n%s", err, len(msgs), out)
	}
	if n := e.prov.Count(fakeoauth.EndpointToken); n != 0 {
		t.Errorf("after a restart the proxy made %d token requests (%v), want 0: the stored token is valid", n, grants(e.prov.TokenRequests()))
	}
}

// grants lists the grant types and outcomes of token requests, for failure
// messages.
func grants(reqs []fakeoauth.TokenRequest) []string {
	var out []string
	for _, r := range reqs {
		s := r.GrantType + ":" + itoa(r.Status)
		if r.Error != "" {
			s += ":" + r.Error
		}
		out = append(out, s)
	}
	return out
}
