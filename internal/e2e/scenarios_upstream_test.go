package e2e

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv/fakeoauth"
)

// TestE2EDovecotDown: while the upstream server is down every protocol
// greets the mailer with a reply that says so (never a bare reset), and
// once it is back logins work again without restarting the proxy, on the
// token already held.
func TestE2EDovecotDown(t *testing.T) {
	e := newEnv(t)
	e.addClient(alice)
	e.register("--account", alice, "--oauth2-flow", "client_credentials")
	e.serve()
	if r := e.imapLoginReply(alice, mailerPassword); r != "L1 OK" {
		t.Fatalf("login before the outage: %q", r)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := e.dc.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for _, g := range []struct {
		proto  string
		port   int
		prefix string
	}{
		{"IMAP", e.imapPort, "* BYE [UNAVAILABLE] Email OAuth 2.0 Proxy: "},
		{"POP3", e.popPort, "-ERR [SYS/TEMP] Email OAuth 2.0 Proxy: "},
		{"SMTP", e.smtpPort, "421 4.3.2 Email OAuth 2.0 Proxy: "},
	} {
		got := e.greeting(g.port)
		if !strings.HasPrefix(got, g.prefix) || !strings.Contains(got, "127.0.0.1:") {
			t.Errorf("%s greeting with the upstream down: %q\nwant %q... naming the upstream", g.proto, got, g.prefix)
		}
	}
	// Python's imaplib, as a mailer would, gets an error it can show.
	if out, err := e.imapLogin(alice, mailerPassword); err == nil || !strings.Contains(out, "Email OAuth 2.0 Proxy") {
		t.Errorf("imaplib with the upstream down: %v\n%s", err, out)
	}

	if err := e.dc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	msg := testMessage(alice, alice, "after the outage")
	if out, err := e.smtpSend(alice, mailerPassword, alice, alice, msg); err != nil || !strings.Contains(out, "SENT") {
		t.Fatalf("smtplib after the upstream came back: %v\n%s", err, out)
	}
	if _, err := e.dc.Sink.Wait(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if msgs, out, err := e.imapFetchAll(alice, mailerPassword); err != nil || len(msgs) != 1 {
		t.Fatalf("imaplib after the upstream came back: %v, %d messages\n%s", err, len(msgs), out)
	}
	if msgs, out, err := e.popFetchAll(alice, mailerPassword); err != nil || len(msgs) != 1 {
		t.Fatalf("poplib after the upstream came back: %v, %d messages\n%s", err, len(msgs), out)
	}
	if n := e.prov.Count(fakeoauth.EndpointToken); n != 1 {
		t.Errorf("token requests = %d, want 1: an upstream outage is no reason for a new token", n)
	}
}

// TestE2ECatchAllAccounts: one [@] section (allow_catch_all_accounts) with
// the password flow serves alice and bob, each with their own tokens, and
// each reads only their own mailbox.
func TestE2ECatchAllAccounts(t *testing.T) {
	e := newEnv(t)
	e.addClient("")
	e.register("--account", "@", "--oauth2-flow", "password", "--allow-catch-all-accounts")
	e.serve()
	msgA := testMessage(bob, alice, "for alice only")
	msgB := testMessage(alice, bob, "for bob only")
	if err := e.dc.Deliver(alice, msgA); err != nil {
		t.Fatal(err)
	}
	if err := e.dc.Deliver(bob, msgB); err != nil {
		t.Fatal(err)
	}

	for _, u := range []struct {
		user, pw string
		want     []byte
	}{{alice, alicePW, msgA}, {bob, bobPW, msgB}} {
		msgs, out, err := e.imapFetchAll(u.user, u.pw)
		if err != nil || len(msgs) != 1 || !bytes.Equal(msgs[0], u.want) {
			t.Errorf("%s over IMAP: %v, %d messages, want only their own\n%s", u.user, err, len(msgs), out)
		}
		msgs, out, err = e.popFetchAll(u.user, u.pw)
		if err != nil || len(msgs) != 1 || !bytes.Equal(msgs[0], u.want) {
			t.Errorf("%s over POP3: %v, %d messages, want only their own\n%s", u.user, err, len(msgs), out)
		}
	}
	reqs := e.prov.TokenRequests()
	var users []string
	for _, r := range reqs {
		users = append(users, r.GrantType+":"+r.Form.Get("username"))
	}
	if strings.Join(users, " ") != "password:"+alice+" password:"+bob {
		t.Errorf("token requests %v, want one password grant each for alice and bob", users)
	}
	// Tokens are per account, under each account's own section.
	cache := readFile(t, e.tokens)
	for _, s := range []string{"[" + alice + "]", "[" + bob + "]"} {
		if !strings.Contains(cache, s) {
			t.Errorf("token cache has no %s section:\n%s", s, cache)
		}
	}
	if strings.Contains(cache, "[@]") {
		t.Errorf("token cache holds tokens under the catch-all section:\n%s", cache)
	}

	// bob mails alice through the proxy; she sees it, he does not.
	msg := testMessage(bob, alice, "bob to alice through the proxy")
	e.mailThrough("bob's smtplib", bob, bobPW, bob, alice, msg)
	if msgs, _, _ := e.imapFetchAll(alice, alicePW); len(msgs) != 2 {
		t.Errorf("alice has %d messages, want 2", len(msgs))
	}
	if msgs, _, _ := e.imapFetchAll(bob, bobPW); len(msgs) != 1 {
		t.Errorf("bob has %d messages, want 1", len(msgs))
	}
	// An address the provider does not know gets the provider's refusal.
	if r := e.imapLoginReply("carol@example.test", "carol-pw"); !strings.HasPrefix(r, "L1 NO LOGIN Email OAuth 2.0 Proxy: ") ||
		!strings.Contains(r, "invalid username or password") {
		t.Errorf("unknown user through the catch-all: %q", r)
	}
	// bob's password does not open alice's tokens, and the provider
	// refuses it for alice.
	if r := e.imapLoginReply(alice, bobPW); r == "L1 OK" {
		t.Error("alice's mailbox opened with bob's password")
	}
}

// TestE2EIMAPIdle: after the proxy's login the session is a byte pipe, so
// an IDLE sees a message that arrives (sent through the proxy's own SMTP
// listener) and the message is fetched byte for byte.
func TestE2EIMAPIdle(t *testing.T) {
	e := newEnv(t)
	e.addClient(alice)
	e.register("--account", alice, "--oauth2-flow", "client_credentials")
	e.serve()

	c, err := imapSession(e.imapPort, alice, mailerPassword)
	if err != nil {
		t.Fatal(err)
	}
	defer c.c.Close()
	done, before, err := c.imapCmd("S1", "SELECT INBOX")
	if err != nil || !strings.HasPrefix(done, "S1 OK") || !contains(before, "* 0 EXISTS") {
		t.Fatalf("SELECT: %q %q %v", done, before, err)
	}
	if err := c.send("I1 IDLE"); err != nil {
		t.Fatal(err)
	}
	if l, err := c.line(); err != nil || !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE continuation: %q %v", l, err)
	}

	msg := testMessage(alice, alice, "arrives during IDLE")
	if out, err := e.smtpSend(alice, mailerPassword, alice, alice, msg); err != nil || !strings.Contains(out, "SENT") {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	if _, _, err := c.until("* 1 EXISTS"); err != nil {
		t.Fatalf("IDLE never reported the new message: %v", err)
	}
	if err := c.send("DONE"); err != nil {
		t.Fatal(err)
	}
	if l, _, err := c.until("I1 "); err != nil || !strings.HasPrefix(l, "I1 OK") {
		t.Fatalf("IDLE completion: %q %v", l, err)
	}

	// FETCH the literal and compare with what Dovecot stored.
	if err := c.send("F1 FETCH 1 BODY.PEEK[]"); err != nil {
		t.Fatal(err)
	}
	head, _, err := c.until("* 1 FETCH")
	if err != nil {
		t.Fatal(err)
	}
	open := strings.LastIndexByte(head, '{')
	n, err := strconv.Atoi(strings.TrimSuffix(head[open+1:], "}"))
	if open < 0 || err != nil {
		t.Fatalf("FETCH response without a literal: %q", head)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		t.Fatal(err)
	}
	stored := e.dc.Sink.Messages()
	if len(stored) != 1 || !bytes.Equal(body, stored[0].Data) {
		t.Errorf("fetched %q\nwant what was delivered", body)
	}
	if l, _, err := c.until("F1 "); err != nil || !strings.HasPrefix(l, "F1 OK") {
		t.Fatalf("FETCH completion: %q %v", l, err)
	}
	if l, _, err := c.imapCmd("O1", "LOGOUT"); err != nil || !strings.HasPrefix(l, "O1 OK") {
		t.Errorf("LOGOUT: %q %v", l, err)
	}
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if l == s {
			return true
		}
	}
	return false
}
