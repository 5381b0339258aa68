package proxy

import (
	"bytes"
	"context"
	"errors"
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
// and an implicit-TLS IMAP listener, all in front of TLS fakes; and
// local_starttls listeners for each protocol, the "-required" ones asking
// STARTTLS of every client (local_starttls_required = always: the clients
// run on loopback, which the default spares).
func realEnv(t *testing.T) (*env, map[string]int, *fakeUpstream) {
	e := newEnv(t)
	imapUp := startFake(t, e.ca, true, serveIMAP)
	popUp := startFake(t, e.ca, true, servePOP)
	smtpUp := startFake(t, e.ca, false, serveSMTP)
	smtp := section("SMTP-1", config.SMTP, smtpUp)
	smtp.ServerStartTLS = true
	imapTLS := section("IMAP-tls", config.IMAP, imapUp)
	imapTLS.LocalCertificatePath, imapTLS.LocalKeyPath = e.ca.certPath, e.ca.keyPath
	imapStart := section("IMAP-starttls", config.IMAP, imapUp)
	imapStart.LocalStartTLS, imapStart.LocalCertificatePath, imapStart.LocalKeyPath = true, e.ca.certPath, e.ca.keyPath
	popStart := section("POP-starttls", config.POP, popUp)
	popStart.LocalStartTLS, popStart.LocalCertificatePath, popStart.LocalKeyPath = true, e.ca.certPath, e.ca.keyPath
	required := func(name string, proto config.Protocol, up *fakeUpstream) config.Server {
		sec := section(name, proto, up)
		sec.LocalStartTLS, sec.LocalCertificatePath, sec.LocalKeyPath = true, e.ca.certPath, e.ca.keyPath
		sec.LocalStartTLSRequired = config.RequireTLSAlways
		return sec
	}
	smtpReq := required("SMTP-required", config.SMTP, smtpUp)
	smtpReq.ServerStartTLS = true
	e.apply(section("IMAP-1", config.IMAP, imapUp), section("POP-1", config.POP, popUp), smtp, imapTLS, imapStart, popStart,
		required("IMAP-required", config.IMAP, imapUp), required("POP-required", config.POP, popUp), smtpReq)
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
if mode in ("imap-login", "imap-plain", "imap-saslogin", "imap-ssl", "imap-starttls"):
    if mode == "imap-ssl":
        m = imaplib.IMAP4_SSL(h, port("IMAP_TLS"), ssl_context=ssl.create_default_context(cafile=os.environ["CA"]))
    elif mode == "imap-starttls":
        m = imaplib.IMAP4(h, port("IMAP_STARTTLS"))
        assert "STARTTLS" in m.capabilities, m.capabilities
        m.starttls(ssl_context=ssl.create_default_context(cafile=os.environ["CA"]))
        assert "STARTTLS" not in m.capabilities, m.capabilities
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
elif mode == "imap-required":
    m = imaplib.IMAP4(h, port("IMAP_REQ"))
    assert "LOGINDISABLED" in m.capabilities and "STARTTLS" in m.capabilities, m.capabilities
    assert not [c for c in m.capabilities if c.startswith("AUTH=")], m.capabilities
    try:
        m.login(U, P)
        sys.exit("LOGIN before STARTTLS succeeded")
    except imaplib.IMAP4.error as e:
        print("refused:", e)
    m.starttls(ssl_context=ssl.create_default_context(cafile=os.environ["CA"]))
    assert "LOGINDISABLED" not in m.capabilities and "AUTH=PLAIN" in m.capabilities, m.capabilities
    m.login(U, P)
    typ, _ = m.select("INBOX")
    assert typ == "OK", typ
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
elif mode == "pop-stls":
    m = poplib.POP3(h, port("POP_STARTTLS"))
    assert "STLS" in m.capa(), m.capa()
    m.stls(context=ssl.create_default_context(cafile=os.environ["CA"]))
    assert "STLS" not in m.capa(), m.capa()
    m.user(U)
    m.pass_(P)
    resp, lines, octets = m.retr(1)
    assert b"hello through the proxy" in b"\n".join(lines), lines
    m.quit()
elif mode == "pop-required":
    m = poplib.POP3(h, port("POP_REQ"))
    caps = m.capa()
    assert "STLS" in caps and "USER" not in caps and "SASL" not in caps, caps
    try:
        m.user(U)
        sys.exit("USER before STLS succeeded")
    except poplib.error_proto as e:
        print("refused:", e)
    m.stls(context=ssl.create_default_context(cafile=os.environ["CA"]))
    caps = m.capa()
    assert "USER" in caps and "PLAIN" in caps.get("SASL", []), caps
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
elif mode == "smtp-required":
    import base64
    s = smtplib.SMTP(h, port("SMTP_REQ"))
    s.ehlo("client.example")
    assert s.has_extn("starttls") and not s.has_extn("auth"), s.esmtp_features
    try:
        s.login(U, P)
        sys.exit("login before STARTTLS succeeded")
    except smtplib.SMTPNotSupportedError as e:
        print("smtplib refuses:", e)
    code, msg = s.docmd("AUTH", "PLAIN " + base64.b64encode(("\0" + U + "\0" + P).encode()).decode())
    print("refused:", code, msg.decode())
    s.starttls(context=ssl.create_default_context(cafile=os.environ["CA"]))
    s.ehlo("client.example")
    assert s.has_extn("auth") and not s.has_extn("starttls"), s.esmtp_features
    s.login(U, P)
    s.sendmail(U, ["bob@example.com"], "Subject: py\r\n\r\nfrom python smtplib after STARTTLS\r\n")
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
		"POP="+strconv.Itoa(ports["POP-1"]), "SMTP="+strconv.Itoa(ports["SMTP-1"]),
		"IMAP_STARTTLS="+strconv.Itoa(ports["IMAP-starttls"]), "POP_STARTTLS="+strconv.Itoa(ports["POP-starttls"]),
		"IMAP_REQ="+strconv.Itoa(ports["IMAP-required"]), "POP_REQ="+strconv.Itoa(ports["POP-required"]), "SMTP_REQ="+strconv.Itoa(ports["SMTP-required"]))
	tests := []struct{ mode, want string }{
		{"imap-login", "done"},
		{"imap-plain", "done"},
		{"imap-saslogin", "done"},
		{"imap-ssl", "done"},
		{"imap-starttls", "done"},
		{"pop-stls", "done"},
		{"pop", "done"},
		{"smtp", "done"},
		// A listener that requires TLS: the login before the upgrade is
		// refused with the reason, the one after it works.
		{"imap-required", "refused: b'[PRIVACYREQUIRED] LOGIN Email OAuth 2.0 Proxy: this listener takes passwords only over TLS: send STARTTLS first"},
		{"pop-required", "refused: b'-ERR [AUTH] Email OAuth 2.0 Proxy: this listener takes passwords only over TLS: send STLS first"},
		{"smtp-required", "refused: 530 5.7.0 Must issue a STARTTLS command first."},
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
	if len(smtpUp.mails) != 2 || !strings.Contains(string(bytes.Join(smtpUp.mails, nil)), "from python smtplib after STARTTLS") {
		t.Errorf("smtplib's mails did not arrive upstream: %q", smtpUp.mails)
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
		{"imap STARTTLS", []string{"--ssl-reqd", "--cacert", e.ca.caPath, url("imap", "IMAP-starttls", "/INBOX;UID=1")}, "hello through the proxy"},
		{"pop3 STLS", []string{"--ssl-reqd", "--cacert", e.ca.caPath, url("pop3", "POP-starttls", "/1")}, "hello through the proxy"},
		{"pop3 AUTH PLAIN", []string{url("pop3", "POP-1", "/1")}, "hello through the proxy"},
		// Listeners that require TLS of every client: --ssl-reqd upgrades
		// and logs in; without TLS curl finds no way to log in.
		{"imap STARTTLS required", []string{"--ssl-reqd", "--cacert", e.ca.caPath, url("imap", "IMAP-required", "/INBOX;UID=1")}, "hello through the proxy"},
		{"pop3 STLS required", []string{"--ssl-reqd", "--cacert", e.ca.caPath, url("pop3", "POP-required", "/1")}, "hello through the proxy"},
		{"smtp STARTTLS required", []string{"--ssl-reqd", "--cacert", e.ca.caPath, "--mail-from", "alice@example.com", "--mail-rcpt", "bob@example.com", "--upload-file", msg, url("smtp", "SMTP-required", "")}, ""},
		{"imap without TLS refused", []string{url("imap", "IMAP-required", "/INBOX;UID=1")}, "!"},
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
			if tt.want == "!" {
				if err == nil || strings.Contains(string(out), "hello through the proxy") {
					t.Fatalf("curl %s: succeeded, want a failure\n%s", tt.name, out)
				}
				return
			}
			if err != nil || !strings.Contains(string(out), tt.want) {
				t.Fatalf("curl %s: %v\n%s", tt.name, err, out)
			}
		})
	}
	smtpUp.mu.Lock()
	defer smtpUp.mu.Unlock()
	if len(smtpUp.mails) != 3 || !strings.Contains(string(smtpUp.mails[2]), "sent by curl") {
		t.Errorf("curl's mails did not arrive upstream: %d", len(smtpUp.mails))
	}
	e.assertNoSecrets()
}

// TestFetchmail: fetchmail's default (since 6.4: TLS required, STARTTLS
// tried whether offered or not) works against a local_starttls listener;
// against the plain loopback listener it needs `sslproto ”`, as
// docs/clients.md says.
func TestFetchmail(t *testing.T) {
	fm := need(t, "fetchmail")
	e, ports, _ := realEnv(t)
	home := t.TempDir()
	run := func(name string, port int, opts string) (string, error) {
		rc := filepath.Join(home, name+".rc")
		body := fmt.Sprintf("set no bouncemail\npoll 127.0.0.1 service %d protocol %s auth password user \"alice@example.com\" password \"alice-PASSWORD-1\" %s\n",
			port, map[bool]string{true: "POP3", false: "IMAP"}[strings.HasPrefix(name, "pop")], opts)
		if err := os.WriteFile(rc, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, fm, "--check", "--nosyslog", "-f", rc, "-i", filepath.Join(home, name+".ids"))
		cmd.Env = append(os.Environ(), "HOME="+home, "FETCHMAILHOME="+home, "LC_ALL=C")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// fetchmail matches the certificate against DNS names only, so the
	// loopback certificate's "localhost".
	tls := "sslcertck sslcommonname localhost sslcertfile " + e.ca.caPath
	tests := []struct {
		name string
		port int
		opts string
		ok   bool
	}{
		{"imap-starttls-default", ports["IMAP-starttls"], tls, true},
		{"pop-starttls-default", ports["POP-starttls"], tls, true},
		{"imap-plain-sslproto-empty", ports["IMAP-1"], "sslproto ''", true},
		{"pop-plain-sslproto-empty", ports["POP-1"], "sslproto ''", true},
		{"imap-plain-default", ports["IMAP-1"], "", false},
		// A listener that requires TLS first: the default upgrades; with
		// TLS turned off no password is taken.
		{"imap-required-default", ports["IMAP-required"], tls, true},
		{"pop-required-default", ports["POP-required"], tls, true},
		{"imap-required-sslproto-empty", ports["IMAP-required"], "sslproto ''", false},
		{"pop-required-sslproto-empty", ports["POP-required"], "sslproto ''", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(tt.name, tt.port, tt.opts)
			// --check exits 0 when there is new mail, 1 when there is
			// none (the message is "seen" after the first run).
			var ee *exec.ExitError
			ok := (err == nil || errors.As(err, &ee) && ee.ExitCode() == 1) && strings.Contains(out, "1 message")
			if ok != tt.ok {
				t.Fatalf("fetchmail %s: %v, want success %v\n%s", tt.name, err, tt.ok, out)
			}
		})
	}
	e.assertNoSecrets()
}

// TestMsmtp: the msmtp account docs/clients.md gives for the plain
// loopback listener sends mail, and so does its STARTTLS account against a
// listener that requires TLS; with TLS off that listener takes no password.
func TestMsmtp(t *testing.T) {
	msmtp := need(t, "msmtp")
	e, ports, smtpUp := realEnv(t)
	dir := t.TempDir()
	pw := filepath.Join(dir, "mailer-password")
	os.WriteFile(pw, []byte("alice-PASSWORD-1\n"), 0o600)
	tests := []struct {
		name    string
		port    int
		tls     string
		ok      bool
		message string // in msmtp's output when it fails
	}{
		{"plain listener", ports["SMTP-1"], "tls off", true, ""},
		{"required STARTTLS", ports["SMTP-required"], "tls on\ntls_starttls on\ntls_trust_file " + e.ca.caPath, true, ""},
		{"required without TLS", ports["SMTP-required"], "tls off", false, "authentication"},
	}
	sent := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := filepath.Join(dir, "msmtprc")
			rc := fmt.Sprintf("account proxy\nhost 127.0.0.1\nport %d\nauth plain\nuser alice@example.com\npasswordeval \"cat %s\"\nfrom alice@example.com\n%s\n\naccount default : proxy\n",
				tt.port, pw, tt.tls)
			if err := os.WriteFile(conf, []byte(rc), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, msmtp, "-C", conf, "bob@example.com")
			cmd.Stdin = strings.NewReader("Subject: msmtp\r\n\r\nsent by msmtp: " + tt.name + "\r\n")
			out, err := cmd.CombinedOutput()
			if (err == nil) != tt.ok || !strings.Contains(string(out), tt.message) {
				t.Fatalf("msmtp: %v, want success %v\n%s", err, tt.ok, out)
			}
			if tt.ok {
				sent++
			}
		})
	}
	smtpUp.mu.Lock()
	defer smtpUp.mu.Unlock()
	if len(smtpUp.mails) != sent || sent != 2 || !strings.Contains(string(bytes.Join(smtpUp.mails, nil)), "sent by msmtp: required STARTTLS") {
		t.Errorf("msmtp's mails did not arrive upstream: %q", smtpUp.mails)
	}
	e.assertNoSecrets()
}
