package proxy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

// realEnv runs IMAP, POP, SMTP (upstream STARTTLS, like Office 365 on 587)
// and an implicit-TLS IMAP listener, all in front of TLS fakes.
func realEnv(t *testing.T) (*env, map[string]int, *fakeUpstream) {
	e := newEnv(t)
	imapUp := startFake(t, e.ca, true, serveIMAP)
	popUp := startFake(t, e.ca, true, servePOP)
	smtpUp := startFake(t, e.ca, false, serveSMTP)
	smtp := section("SMTP-1", config.SMTP, smtpUp)
	smtp.ServerStartTLS = true
	imapTLS := section("IMAP-tls", config.IMAP, imapUp)
	imapTLS.LocalCertificatePath, imapTLS.LocalKeyPath = e.ca.certPath, e.ca.keyPath
	e.apply(section("IMAP-1", config.IMAP, imapUp), section("POP-1", config.POP, popUp), smtp, imapTLS)
	ports := map[string]int{}
	for _, l := range e.srv.Listeners() {
		ports[l.Section] = e.port(l.Section)
	}
	return e, ports, smtpUp
}

func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("%s is not installed; the real-client tests need it (CI has it)", tool)
	}
	return p
}

// Python's standard mail clients. Credentials travel in the environment,
// never in argv.
const pyClients = `
import imaplib, poplib, smtplib, ssl, os, sys
h = "127.0.0.1"
U, P = os.environ["U"], os.environ["P"]
port = lambda name: int(os.environ[name])
mode = sys.argv[1]
if mode in ("imap-login", "imap-plain", "imap-saslogin", "imap-ssl"):
    if mode == "imap-ssl":
        m = imaplib.IMAP4_SSL(h, port("IMAP_TLS"), ssl_context=ssl.create_default_context(cafile=os.environ["CA"]))
    else:
        m = imaplib.IMAP4(h, port("IMAP"))
    assert "AUTH=PLAIN" in m.capabilities and "LOGINDISABLED" not in m.capabilities, m.capabilities
    if mode == "imap-plain":
        m.authenticate("PLAIN", lambda _: ("\0" + U + "\0" + P).encode())
    elif mode == "imap-saslogin":
        assert "AUTH=LOGIN" in m.capabilities, m.capabilities
        m.authenticate("LOGIN", lambda c: (U if c == b"Username:" else P).encode())
    else:
        m.login(U, P)
    typ, _ = m.select("INBOX")
    assert typ == "OK", typ
    typ, data = m.fetch("1", "(BODY[])")
    assert b"hello through the proxy" in data[0][1], data
    m.logout()
elif mode == "imap-bad":
    m = imaplib.IMAP4(h, port("IMAP"))
    try:
        m.login(U, "wrong")
    except imaplib.IMAP4.error as e:
        print(e)
        sys.exit(0)
    sys.exit("login with a wrong password succeeded")
elif mode == "pop":
    m = poplib.POP3(h, port("POP"))
    caps = m.capa()
    assert "PLAIN" in caps.get("SASL", []) and "USER" in caps and "STLS" not in caps, caps
    m.user(U)
    m.pass_(P)
    resp, lines, octets = m.retr(1)
    assert b"hello through the proxy" in b"\n".join(lines), lines
    m.quit()
elif mode == "pop-bad":
    m = poplib.POP3(h, port("POP"))
    m.user(U)
    try:
        m.pass_("wrong")
    except poplib.error_proto as e:
        print(e)
        sys.exit(0)
    sys.exit("login with a wrong password succeeded")
elif mode == "smtp":
    s = smtplib.SMTP(h, port("SMTP"))
    s.ehlo("client.example")
    assert s.has_extn("auth") and not s.has_extn("starttls"), s.esmtp_features
    s.login(U, P)
    s.sendmail(U, ["bob@example.com"], "Subject: py\r\n\r\nfrom python smtplib\r\n")
    s.quit()
elif mode == "smtp-bad":
    s = smtplib.SMTP(h, port("SMTP"))
    s.ehlo("client.example")
    try:
        s.login(U, "wrong")
    except smtplib.SMTPAuthenticationError as e:
        print(e.smtp_code, e.smtp_error.decode())
        sys.exit(0)
    sys.exit("login with a wrong password succeeded")
print("done")
`

func TestPythonClients(t *testing.T) {
	py := need(t, "python3")
	e, ports, smtpUp := realEnv(t)
	envv := append(os.Environ(),
		"U=alice@example.com", "P=alice-PASSWORD-1", "CA="+e.ca.caPath,
		"IMAP="+strconv.Itoa(ports["IMAP-1"]), "IMAP_TLS="+strconv.Itoa(ports["IMAP-tls"]),
		"POP="+strconv.Itoa(ports["POP-1"]), "SMTP="+strconv.Itoa(ports["SMTP-1"]))
	tests := []struct{ mode, want string }{
		{"imap-login", "done"},
		{"imap-plain", "done"},
		{"imap-saslogin", "done"},
		{"imap-ssl", "done"},
		{"pop", "done"},
		{"smtp", "done"},
		{"imap-bad", "LOGIN Email OAuth 2.0 Proxy: Login failed - the password for account alice@example.com is incorrect"},
		{"pop-bad", "-ERR Authentication failed. Email OAuth 2.0 Proxy: Login failed - the password for account alice@example.com is incorrect"},
		{"smtp-bad", "535 5.7.8  Authentication credentials invalid. Email OAuth 2.0 Proxy: Login failed - the password for account alice@example.com is incorrect"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, py, "-c", pyClients, tt.mode)
			cmd.Env = envv
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), tt.want) {
				t.Fatalf("python %s: %v\n%s\nwant output containing %q", tt.mode, err, out, tt.want)
			}
		})
	}
	smtpUp.mu.Lock()
	defer smtpUp.mu.Unlock()
	if len(smtpUp.mails) != 1 || !strings.Contains(string(smtpUp.mails[0]), "from python smtplib") {
		t.Errorf("smtplib's mail did not arrive upstream: %q", smtpUp.mails)
	}
	e.assertNoSecrets()
}

func TestCurlClients(t *testing.T) {
	curl := need(t, "curl")
	e, ports, smtpUp := realEnv(t)
	dir := t.TempDir()
	netrc := filepath.Join(dir, "netrc") // keeps the password out of argv
	if err := os.WriteFile(netrc, []byte("machine 127.0.0.1 login alice@example.com password alice-PASSWORD-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	msg := filepath.Join(dir, "msg.txt")
	os.WriteFile(msg, []byte("From: alice@example.com\r\nTo: bob@example.com\r\nSubject: curl\r\n\r\nsent by curl\r\n"), 0o600)
	url := func(scheme, section, path string) string {
		return scheme + "://127.0.0.1:" + strconv.Itoa(ports[section]) + path
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"imap AUTHENTICATE PLAIN", []string{url("imap", "IMAP-1", "/INBOX;UID=1")}, "hello through the proxy"},
		{"imap LOGIN", []string{"--login-options", "AUTH=+LOGIN", url("imap", "IMAP-1", "/INBOX;UID=1")}, "hello through the proxy"},
		{"imap AUTHENTICATE LOGIN", []string{"--login-options", "AUTH=LOGIN", url("imap", "IMAP-1", "/INBOX;UID=1")}, "hello through the proxy"},
		{"imaps", []string{"--cacert", e.ca.caPath, url("imaps", "IMAP-tls", "/INBOX;UID=1")}, "hello through the proxy"},
		{"pop3 AUTH PLAIN", []string{url("pop3", "POP-1", "/1")}, "hello through the proxy"},
		{"smtp AUTH PLAIN", []string{"--mail-from", "alice@example.com", "--mail-rcpt", "bob@example.com", "--upload-file", msg, url("smtp", "SMTP-1", "")}, ""},
		{"smtp AUTH LOGIN", []string{"--login-options", "AUTH=LOGIN", "--mail-from", "alice@example.com", "--mail-rcpt", "bob@example.com", "--upload-file", msg, url("smtp", "SMTP-1", "")}, ""},
	}
	verOut, _ := exec.Command(curl, "--version").Output()
	var major, minor int
	fmt.Sscanf(string(verOut), "curl %d.%d", &major, &minor)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "imap LOGIN" && major*100+minor < 802 {
				t.Skipf("curl %d.%d has no AUTH=+LOGIN (8.2.0 added it); LOGIN is covered by imaplib", major, minor)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			args := append([]string{"-sS", "--max-time", "30", "--netrc-file", netrc}, tt.args...)
			out, err := exec.CommandContext(ctx, curl, args...).CombinedOutput()
			if err != nil || !strings.Contains(string(out), tt.want) {
				t.Fatalf("curl %s: %v\n%s", tt.name, err, out)
			}
		})
	}
	smtpUp.mu.Lock()
	defer smtpUp.mu.Unlock()
	if len(smtpUp.mails) != 2 || !strings.Contains(string(smtpUp.mails[1]), "sent by curl") {
		t.Errorf("curl's mails did not arrive upstream: %d", len(smtpUp.mails))
	}
	e.assertNoSecrets()
}
