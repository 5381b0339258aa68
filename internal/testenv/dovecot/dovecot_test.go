package dovecot

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv"
	"github.com/senhasegura/orbit/internal/testenv/fakeoauth"
	"github.com/senhasegura/orbit/internal/testenv/smtpsink"
)

const (
	alice = "alice@example.test"
	bob   = "bob@example.test"
)

type env struct {
	p  *fakeoauth.Provider
	dc *Server
}

func setup(t *testing.T) env {
	t.Helper()
	p := fakeoauth.Start(t)
	p.AddUser(alice, "alice-pw")
	p.AddUser(bob, "bob-pw")
	p.AddClient(fakeoauth.Client{ID: "app", Secret: "app-secret", ServiceUser: alice})
	dc := Start(t, Options{IntrospectURL: p.IntrospectURL()})
	t.Logf("Dovecot started in %v", dc.StartTook)
	return env{p: p, dc: dc}
}

// clientCredentialsToken gets alice's token the way the proxy would.
func clientCredentialsToken(t *testing.T, p *fakeoauth.Provider) string {
	t.Helper()
	resp, err := http.PostForm(p.TokenURL(), url.Values{"grant_type": {fakeoauth.GrantClientCredentials},
		"client_id": {"app"}, "client_secret": {"app-secret"}, "scope": {"https://outlook.office365.com/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := jsonDecode(resp, &tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("token request: HTTP %d, %v", resp.StatusCode, err)
	}
	return tr.AccessToken
}

// curl runs real curl with user and token in a config file (mode 0600), not
// in argv, where every process on the machine could read them.
func curl(t *testing.T, e env, user, token string, args ...string) (string, int) {
	t.Helper()
	testenv.RequireCommand(t, "curl")
	cfg := filepath.Join(t.TempDir(), "curl.cfg")
	body := fmt.Sprintf("user = %q\noauth2-bearer = %q\n", user, token)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"--silent", "--show-error", "--ssl-reqd", "--cacert", e.dc.TLS.CAFile, "-K", cfg}, args...)
	cmd := exec.CommandContext(ctx, "curl", full...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			t.Fatalf("running curl: %v", err)
		}
	}
	return string(out), code
}

func TestCurlXOAUTH2(t *testing.T) {
	e := setup(t)
	token := clientCredentialsToken(t, e.p)
	msg := filepath.Join(t.TempDir(), "msg.eml")
	body := "From: alice@example.test\r\nTo: alice@example.test\r\nSubject: via curl\r\n\r\nhello from curl\r\n"
	if err := os.WriteFile(msg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	imaps := "imaps://" + e.dc.IMAPAddr() + "/"
	pop3s := "pop3s://" + e.dc.POP3Addr() + "/"
	smtp := "smtp://" + e.dc.SubmissionAddr()
	tests := []struct {
		name, user, token string
		args              []string
		wantCode          int
		wantOut           string
	}{
		{"IMAP XOAUTH2", alice, token, []string{"--login-options", "AUTH=XOAUTH2", imaps}, 0, "INBOX"},
		{"IMAP OAUTHBEARER", alice, token, []string{"--login-options", "AUTH=OAUTHBEARER", imaps}, 0, "INBOX"},
		{"POP3 XOAUTH2", alice, token, []string{"--login-options", "AUTH=XOAUTH2", pop3s}, 0, ""},
		{"SMTP STARTTLS XOAUTH2", alice, token, []string{"--login-options", "AUTH=XOAUTH2", "--mail-from", alice, "--mail-rcpt", alice, "--upload-file", msg, smtp}, 0, ""},
		// curl exits 67 when the server refuses the login.
		{"IMAP wrong token", alice, token + "x", []string{"--login-options", "AUTH=XOAUTH2", imaps}, 67, ""},
		{"IMAP alice's token as bob", bob, token, []string{"--login-options", "AUTH=XOAUTH2", imaps}, 67, ""},
		{"POP3 wrong token", alice, "not-a-token", []string{"--login-options", "AUTH=XOAUTH2", pop3s}, 67, ""},
		{"SMTP wrong token", alice, "not-a-token", []string{"--login-options", "AUTH=XOAUTH2", "--mail-from", alice, "--mail-rcpt", alice, "--upload-file", msg, smtp}, 67, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := curl(t, e, tt.user, tt.token, tt.args...)
			if code != tt.wantCode {
				t.Fatalf("curl exit %d, want %d; output:\n%s", code, tt.wantCode, out)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Fatalf("output %q lacks %q", out, tt.wantOut)
			}
		})
	}

	// The message curl submitted went through the relay into alice's
	// Maildir: curl reads it back over POP3, byte for byte.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.dc.Sink.Wait(ctx, 1); err != nil {
		t.Fatal(err)
	}
	out, code := curl(t, e, alice, token, "--login-options", "AUTH=XOAUTH2", pop3s+"1")
	if code != 0 || string(smtpsink.WithoutTrace([]byte(out))) != body {
		t.Fatalf("POP3 RETR 1 via curl: exit %d\n got %q\nwant %q", code, out, body)
	}

	// An expired or revoked token is refused even though it was good.
	e.p.ExpireTokens(alice)
	if out, code := curl(t, e, alice, token, "--login-options", "AUTH=XOAUTH2", imaps); code != 67 {
		t.Fatalf("expired token: curl exit %d, want 67: %s", code, out)
	}
}

const pythonClient = `
import base64, imaplib, os, poplib, smtplib, ssl, sys

host = "127.0.0.1"
user, token, ca = os.environ["T_USER"], os.environ["T_TOKEN"], os.environ["T_CA"]
imap_port, pop_port, smtp_port = (int(os.environ[k]) for k in ("T_IMAP", "T_POP3", "T_SMTP"))
ctx = ssl.create_default_context(cafile=ca)
sasl = "user=%s\x01auth=Bearer %s\x01\x01" % (user, token)
b64 = base64.b64encode(sasl.encode()).decode()
message = open(os.environ["T_MSG"], "rb").read()
step = sys.argv[1]

if step == "send":
    s = smtplib.SMTP(host, smtp_port, timeout=20)
    s.ehlo("client.example.test")
    s.starttls(context=ctx)
    s.ehlo("client.example.test")
    code, resp = s.docmd("AUTH", "XOAUTH2 " + b64)
    if code != 235:
        print("SMTP AUTH refused:", code, resp.decode()); sys.exit(3)
    s.sendmail(user, [user], message)
    s.quit()
elif step == "imap":
    m = imaplib.IMAP4_SSL(host, imap_port, ssl_context=ctx)
    try:
        m.authenticate("XOAUTH2", lambda _: sasl.encode())
    except imaplib.IMAP4.error as e:
        print("IMAP AUTHENTICATE refused:", e); sys.exit(3)
    m.select("INBOX")
    typ, data = m.search(None, "ALL")
    ids = data[0].split()
    typ, data = m.fetch(ids[-1], "(BODY.PEEK[])")
    got = data[0][1]
    m.logout()
    if got != message:
        print("IMAP message differs:", repr(got)); sys.exit(4)
elif step == "pop3":
    p = poplib.POP3_SSL(host, pop_port, context=ctx)
    try:
        resp = p._shortcmd("AUTH XOAUTH2 " + b64)
        if not resp.startswith(b"+OK"):
            # A "+ <base64 JSON>" error challenge: answer it empty, as
            # RFC 7628 says, and the server then sends -ERR.
            p._shortcmd("")
    except poplib.error_proto as e:
        print("POP3 AUTH refused:", e); sys.exit(3)
    count, _ = p.stat()
    resp, lines, _ = p.retr(count)
    p.quit()
    got = b"\r\n".join(lines) + b"\r\n"
    if got != message:
        print("POP3 message differs:", repr(got)); sys.exit(4)
print("ok")
`

func python(t *testing.T, e env, step, user, token, msgFile string) (string, int) {
	t.Helper()
	py := testenv.RequireCommand(t, "python3")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", pythonClient, step)
	cmd.Env = append(os.Environ(), "T_USER="+user, "T_TOKEN="+token, "T_CA="+e.dc.TLS.CAFile, "T_MSG="+msgFile,
		fmt.Sprintf("T_IMAP=%d", e.dc.IMAPPort), fmt.Sprintf("T_POP3=%d", e.dc.POP3Port), fmt.Sprintf("T_SMTP=%d", e.dc.SubmissionPort))
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		t.Fatalf("running python3: %v", err)
	}
	return string(out), 0
}

// TestPythonSendThenRead submits over SMTP with smtplib and reads the same
// bytes back with imaplib and poplib.
func TestPythonSendThenRead(t *testing.T) {
	e := setup(t)
	token := clientCredentialsToken(t, e.p)
	msgFile := filepath.Join(t.TempDir(), "msg.eml")
	msg := "From: Alice <alice@example.test>\r\nTo: alice@example.test\r\nSubject: round trip\r\nMessage-ID: <rt-1@example.test>\r\n\r\nline one\r\n.line starting with a dot\r\n\r\nlast line\r\n"
	if err := os.WriteFile(msgFile, []byte(msg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := python(t, e, "send", alice, token, msgFile); code != 0 {
		t.Fatalf("smtplib: exit %d: %s", code, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := e.dc.Sink.Wait(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Dovecot's submission prepends a Received: field and changes nothing
	// else; what IMAP and POP3 return must be exactly what was relayed.
	if !bytes.Equal(smtpsink.WithoutTrace(got[0].Data), []byte(msg)) || got[0].From != alice {
		t.Fatalf("the sink got from=%q data=%q", got[0].From, got[0].Data)
	}
	relayed := filepath.Join(t.TempDir(), "relayed.eml")
	if err := os.WriteFile(relayed, got[0].Data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"imap", "pop3"} {
		t.Run(step, func(t *testing.T) {
			if out, code := python(t, e, step, alice, token, relayed); code != 0 {
				t.Fatalf("exit %d: %s", code, out)
			}
		})
	}
	t.Run("refused with a revoked token", func(t *testing.T) {
		e.p.Revoke(alice)
		for _, step := range []string{"imap", "pop3", "send"} {
			if out, code := python(t, e, step, alice, token, msgFile); code != 3 {
				t.Errorf("%s with a revoked token: exit %d, want 3 (refused): %s", step, code, out)
			}
		}
	})
}

// imapLogin opens an implicit-TLS IMAP session and authenticates with
// XOAUTH2, returning the connection or the server's refusal.
func imapLogin(ctx context.Context, e env, user, token string) (*tls.Conn, *bufio.Reader, error) {
	d := tls.Dialer{Config: e.dc.TLS.ClientConfig()}
	c, err := d.DialContext(ctx, "tcp", e.dc.IMAPAddr())
	if err != nil {
		return nil, nil, err
	}
	conn := c.(*tls.Conn)
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("greeting: %w", err)
	}
	ir := base64.StdEncoding.EncodeToString([]byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01"))
	fmt.Fprintf(conn, "a1 AUTHENTICATE XOAUTH2 %s\r\n", ir)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("authenticate: %w", err)
		}
		if strings.HasPrefix(line, "+") { // error challenge: finish the exchange
			fmt.Fprintf(conn, "\r\n")
			continue
		}
		if strings.HasPrefix(line, "a1 ") {
			if !strings.HasPrefix(line, "a1 OK") {
				conn.Close()
				return nil, nil, fmt.Errorf("refused: %s", strings.TrimSpace(line))
			}
			conn.SetDeadline(time.Time{})
			return conn, r, nil
		}
	}
}

// TestManyConcurrentSessions holds 150 authenticated IMAP sessions of one
// account at once, past Dovecot's default of 10 per user and IP.
func TestManyConcurrentSessions(t *testing.T) {
	e := setup(t)
	token := clientCredentialsToken(t, e.p)
	const n = 150
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	conns := make(chan *tls.Conn, n)
	for i := range n {
		wg.Go(func() {
			c, _, err := imapLogin(ctx, e, alice, token)
			if err != nil {
				errs <- fmt.Errorf("session %d: %w", i, err)
				return
			}
			conns <- c
		})
	}
	wg.Wait()
	close(errs)
	close(conns)
	for err := range errs {
		t.Error(err)
	}
	held := 0
	for c := range conns {
		held++
		c.Close()
	}
	if held != n {
		t.Fatalf("held %d sessions at once, want %d", held, n)
	}
	if got := e.p.Count(fakeoauth.EndpointIntrospect); got < n {
		t.Errorf("introspection was asked %d times for %d logins: Dovecot is not checking every token", got, n)
	}
}

// TestStopAndStartAgain is the "upstream down" building block.
func TestStopAndStartAgain(t *testing.T) {
	e := setup(t)
	token := clientCredentialsToken(t, e.p)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	begin := time.Now()
	if err := e.dc.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("Dovecot stopped in %v", time.Since(begin))
	for _, addr := range []string{e.dc.IMAPAddr(), e.dc.POP3Addr(), e.dc.SubmissionAddr()} {
		if err := testenv.WaitPortClosed(ctx, addr); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := imapLogin(ctx, e, alice, token); err == nil {
		t.Fatal("logged in to a stopped Dovecot")
	}
	if err := e.dc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c, _, err := imapLogin(ctx, e, alice, token)
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	c.Close()
}

// TestDeliverIsSeenByIDLE is the building block of the IDLE scenario: a
// message Deliver writes appears in an IDLE session.
func TestDeliverIsSeenByIDLE(t *testing.T) {
	e := setup(t)
	token := clientCredentialsToken(t, e.p)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, r, err := imapLogin(ctx, e, alice, token)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	cmd := func(tag, line string) string {
		fmt.Fprintf(conn, "%s %s\r\n", tag, line)
		var all strings.Builder
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v (so far %q)", line, err, all.String())
			}
			all.WriteString(l)
			if strings.HasPrefix(l, tag+" ") || (tag == "i1" && strings.HasPrefix(l, "+ ")) {
				return all.String()
			}
		}
	}
	if out := cmd("s1", "SELECT INBOX"); !strings.Contains(out, "s1 OK") || !strings.Contains(out, "* 0 EXISTS") {
		t.Fatalf("SELECT: %q", out)
	}
	cmd("i1", "IDLE")
	if err := e.dc.Deliver(alice, []byte("Subject: pushed\r\n\r\nnew mail\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := r.ReadString('\n')
	if err != nil || !strings.Contains(line, "* 1 EXISTS") {
		t.Fatalf("IDLE saw %q (%v), want * 1 EXISTS", line, err)
	}
	fmt.Fprintf(conn, "DONE\r\n")
}

func BenchmarkStart(b *testing.B) {
	p := fakeoauth.Start(b)
	dc := Start(b, Options{IntrospectURL: p.IntrospectURL()})
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if err := dc.Stop(ctx); err != nil {
			b.Fatal(err)
		}
		if err := dc.Start(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// TestIntrospectionOverTLS has Dovecot check tokens at an https provider,
// as with a real identity provider, trusting the test CA.
func TestIntrospectionOverTLS(t *testing.T) {
	files := testenv.NewTLS(t)
	cfg, err := files.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	p := fakeoauth.Start(t, fakeoauth.WithTLS(cfg))
	p.AddUser(alice, "alice-pw")
	dc := Start(t, Options{IntrospectURL: p.IntrospectURL(), IntrospectCAFile: files.CAFile, TLS: files})
	e := env{p: p, dc: dc}
	token, _ := p.IssueToken("app", alice, "s")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := imapLogin(ctx, e, alice, token)
	if err != nil {
		t.Fatalf("login with introspection over https: %v", err)
	}
	c.Close()
	if !strings.HasPrefix(p.IntrospectURL(), "https://") || p.Count(fakeoauth.EndpointIntrospect) != 1 {
		t.Fatalf("introspection at %s was asked %d times, want once over https", p.IntrospectURL(), p.Count(fakeoauth.EndpointIntrospect))
	}
}
