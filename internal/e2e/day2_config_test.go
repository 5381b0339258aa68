package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv"
	"github.com/senhasegura/orbit/internal/testenv/sandbox"
	"github.com/senhasegura/orbit/pkg/emailproxy/events"
)

// Issue 9's configuration journeys: an admin off the documented path.

// registerOnly runs register with exactly the flags given (plus the file,
// the account and a password flow against the fake provider), without the
// harness's full set of server and redirect flags.
func (e *env) registerOnly(flags ...string) (string, error) {
	e.t.Helper()
	secretFile := filepath.Join(e.dir, "client-secret")
	if err := os.WriteFile(secretFile, []byte(clientSecret+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
	args := []string{"email-oauth2-proxy", "register", "--no-service", "--force", "--config", e.config,
		"--account", alice, "--oauth2-flow", "password",
		"--oauth2-token-url", e.prov.TokenURL(), "--oauth2-scope", "https://mail.example.test/.default",
		"--oauth2-client-id", clientID, "--oauth2-client-secret-file", secretFile}
	return e.run(append(args, flags...)...)
}

// TestE2ERegisterIMAPOnly: register with IMAP flags and no SMTP flag writes
// an IMAP listener and nothing else (it used to fail with "SMTP server
// details were given but no --smtp-server-address": the default SMTP port
// counted as given), and the mailer reads mail through it from Dovecot.
func TestE2ERegisterIMAPOnly(t *testing.T) {
	e := newEnv(t)
	e.addClient("")
	out, err := e.registerOnly("--imap-server-address", "127.0.0.1", "--imap-server-port", itoa(e.dc.IMAPPort), "--imap-local-port", itoa(e.imapPort))
	if err != nil {
		t.Fatalf("register with IMAP flags only: %v\n%s", err, out)
	}
	file := readFile(t, e.config)
	if !strings.Contains(file, "[IMAP-"+itoa(e.imapPort)+"]") || strings.Contains(file, "[SMTP-") || strings.Contains(file, "[POP-") {
		t.Fatalf("register wrote other protocols than IMAP:\n%s", file)
	}
	if strings.Contains(out, "SMTP") {
		t.Errorf("register's report mentions SMTP although none was registered:\n%s", out)
	}
	e.serveOn([]int{e.imapPort})
	msg := testMessage(alice, alice, "imap only")
	if err := e.dc.Deliver(alice, msg); err != nil {
		t.Fatal(err)
	}
	msgs, pyOut, err := e.imapFetchAll(alice, alicePW)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("imaplib through the IMAP-only proxy: %v, %d messages\n%s", err, len(msgs), pyOut)
	}
}

// TestE2ERegisterSMTPOnly: the same for a mailer that only sends.
func TestE2ERegisterSMTPOnly(t *testing.T) {
	e := newEnv(t)
	e.addClient("")
	out, err := e.registerOnly("--smtp-server-address", "127.0.0.1", "--smtp-server-port", itoa(e.dc.SubmissionPort),
		"--smtp-server-starttls", "--smtp-local-port", itoa(e.smtpPort))
	if err != nil {
		t.Fatalf("register with SMTP flags only: %v\n%s", err, out)
	}
	file := readFile(t, e.config)
	if !strings.Contains(file, "[SMTP-"+itoa(e.smtpPort)+"]") || strings.Contains(file, "[IMAP-") || strings.Contains(file, "[POP-") {
		t.Fatalf("register wrote other protocols than SMTP:\n%s", file)
	}
	e.serveOn([]int{e.smtpPort})
	e.mailThrough("smtplib through the SMTP-only proxy", alice, alicePW, alice, alice, testMessage(alice, alice, "smtp only"))
}

// TestE2ENoRedirectForBrowserlessFlows: for flows that open no browser
// (password here; client_credentials and service_account alike), register
// writes no redirect_uri or redirect_listen_address and warns about no
// plain-http redirect, and validate stays quiet about redirect settings
// such an account carries from before; the password flow then works
// through the proxy.
func TestE2ENoRedirectForBrowserlessFlows(t *testing.T) {
	e := newEnv(t)
	e.addClient("")
	out, err := e.registerOnly("--imap-server-address", "127.0.0.1", "--imap-server-port", itoa(e.dc.IMAPPort), "--imap-local-port", itoa(e.imapPort))
	if err != nil {
		t.Fatalf("register: %v\n%s", err, out)
	}
	if strings.Contains(out, "redirect") || strings.Contains(out, "plain http") || strings.Contains(out, "warning") {
		t.Errorf("register of a password-flow account talks about redirects:\n%s", out)
	}
	if file := readFile(t, e.config); strings.Contains(file, "redirect") {
		t.Errorf("register wrote redirect settings for the password flow:\n%s", file)
	}
	if out, err := e.run("email-oauth2-proxy", "config", "validate", e.config); err != nil || strings.Contains(out, "warning") {
		t.Errorf("config validate: %v\n%s", err, out)
	}

	// A client_credentials account left with the plain-http redirect an
	// older register wrote: nothing to warn about, it is never used.
	f, err := os.OpenFile(e.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("\n[bob@example.test]\ntoken_url = " + e.prov.TokenURL() + "\noauth2_scope = https://mail.example.test/.default\n" +
		"oauth2_flow = client_credentials\nclient_id = " + clientID + "\nclient_secret = " + clientSecret + "\n" +
		"redirect_uri = http://vault.example.test/email-oauth2-proxy-authorize/\nredirect_listen_address = http://127.0.0.1:8801/\n")
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	out, err = e.run("email-oauth2-proxy", "config", "validate", e.config)
	if err != nil || strings.Contains(out, "plain http") || strings.Contains(out, "warning") {
		t.Errorf("config validate warns about an unused redirect: %v\n%s", err, out)
	}
	if out, _ := e.run("email-oauth2-proxy", "config", "validate", "--strict", e.config); !strings.Contains(out, "redirect_uri is not used: the client_credentials flow opens no browser") {
		t.Errorf("config validate --strict does not note the unused redirect:\n%s", out)
	}

	e.serveOn([]int{e.imapPort})
	if got, err := e.imapLogin(alice, alicePW); err != nil || got != "LOGGED-IN" {
		t.Fatalf("password flow through the proxy: %q %v", got, err)
	}
}

const pythonSample = "../../pkg/emailproxy/config/testdata/python-sample/emailproxy.config"

// adaptPythonSample points the sample file's six server sections at this
// world (free local ports, Dovecot upstream: the Outlook trio on the env's
// ports) and adds an account for alice on the fake provider; every
// documentation key, heading section and example account stays as shipped.
func (e *env) adaptPythonSample() string {
	e.t.Helper()
	extra := testenv.FreePorts(e.t, 3)
	local := map[string]int{"IMAP-1993": e.imapPort, "POP-1995": e.popPort, "SMTP-1587": e.smtpPort,
		"IMAP-2993": extra[0], "POP-2995": extra[1], "SMTP-2465": extra[2]}
	upstream := map[string]int{"IMAP": e.dc.IMAPPort, "POP": e.dc.POP3Port, "SMTP": e.dc.SubmissionPort}
	var out []string
	section := ""
	for _, line := range strings.Split(readFile(e.t, pythonSample), "\n") {
		if strings.HasPrefix(line, "[") {
			section = strings.Trim(line, "[]")
			if p, ok := local[section]; ok {
				line = "[" + strings.Split(section, "-")[0] + "-" + itoa(p) + "]"
			}
		} else if _, ok := local[section]; ok {
			proto := strings.Split(section, "-")[0]
			switch {
			case strings.HasPrefix(line, "server_address"):
				line = "server_address = 127.0.0.1"
			case strings.HasPrefix(line, "server_port"):
				line = "server_port = " + itoa(upstream[proto])
			}
		}
		out = append(out, line)
	}
	out = append(out, "", "["+alice+"]", "token_url = "+e.prov.TokenURL(), "oauth2_scope = https://mail.example.test/.default",
		"oauth2_flow = password", "client_id = "+clientID, "client_secret = "+clientSecret, "")
	return strings.Join(out, "\n")
}

// TestE2EPythonSampleConfig: the sample file the Python proxy ships runs.
// Its Fastmail example lacks redirect_uri, which used to make serve refuse
// the whole file; now that account alone is disabled (said at start, and
// in the reply to its logins) while the other accounts log in through
// Dovecot. validate lists no documentation key or heading section (the
// format's comments) unless --strict, and warns about the stand-ins.
func TestE2EPythonSampleConfig(t *testing.T) {
	e := newEnv(t)
	e.addClient("")

	out, err := e.run("email-oauth2-proxy", "config", "validate", pythonSample)
	if code := exitCode(err); code != 4 {
		t.Errorf("config validate of the sample: exit %d, want 4 (an account has an error)\n%s", code, out)
	}
	for _, want := range []string{
		"serve runs it with 1 account(s) disabled: [your.email@fastmail.com]",
		`client_id still holds the sample file's placeholder "*** your client id here ***"`,
		"redirect_uri is missing",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("config validate of the sample does not say %q:\n%s", want, out)
		}
	}
	for _, noise := range []string{"documentation", "[Server setup]", "[Account setup]", "your client secret here"} {
		if strings.Contains(out, noise) {
			t.Errorf("config validate of the sample shows %q without --strict:\n%s", noise, out)
		}
	}

	if err := os.WriteFile(e.config, []byte(e.adaptPythonSample()), 0o600); err != nil {
		t.Fatal(err)
	}
	p := e.serve()
	e.waitLog("account [your.email@fastmail.com] disabled: redirect_uri is missing", 5*time.Second)
	if strings.Contains(p.Log(), "disabled: ") && strings.Count(p.Log(), " disabled: ") != 1 {
		t.Errorf("more than the Fastmail example disabled:\n%s", p.Log())
	}

	reply := e.imapLoginReply("your.email@fastmail.com", "any-password")
	if !strings.Contains(reply, " NO ") || !strings.Contains(reply, "[your.email@fastmail.com] is disabled: redirect_uri is missing") {
		t.Errorf("the disabled account's login got %q, want a NO naming the section and the problem", reply)
	}
	if got, err := e.imapLogin(alice, alicePW); err != nil || got != "LOGGED-IN" {
		t.Fatalf("alice's login through the sample-based file: %q %v", got, err)
	}
	e.mailThrough("smtplib through the sample's [SMTP-1587] (STARTTLS upstream)", alice, alicePW, alice, alice, testMessage(alice, alice, "python sample"))

	// status names the disabled account and why; --check makes it critical.
	out, err = e.run("email-oauth2-proxy", "status", "--config", e.config, "--status-file", e.status, "--token-cache", e.tokens, "--output", "json")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	var rep struct {
		Accounts []struct{ Name, State, Reason string } `json:"accounts"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status --output json: %v\n%s", err, out)
	}
	states := map[string]string{}
	for _, a := range rep.Accounts {
		states[a.Name] = a.State
		if a.Name == "your.email@fastmail.com" && !strings.Contains(a.Reason, "redirect_uri is missing") {
			t.Errorf("status gives the disabled account the reason %q, want its problem", a.Reason)
		}
	}
	if states["your.email@fastmail.com"] != "disabled" || states[alice] != "authorised" {
		t.Errorf("status states %v, want the Fastmail example disabled and alice authorised", states)
	}
	if out, code := e.checkCLI(); code != 2 || !strings.Contains(out, "your.email@fastmail.com disabled by errors in the configuration file") {
		t.Errorf("status --check with a disabled account: exit %d %q, want 2 CRITICAL naming it", code, out)
	}
}

// TestE2EConfigFollowsTheUnit: after `start --config FILE` installed the
// unit, `config show` and `config validate` without a file act on FILE,
// as start, stop, status and logs do (they used to read the default path
// and report it missing); `config show FILE` works like validate's.
func TestE2EConfigFollowsTheUnit(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a systemd sandbox (-short)")
	}
	sandbox.Require(t)
	e := newEnv(t)
	e.addClient("")
	e.config = filepath.Join(e.dir, "site", "mail-proxy.config")
	if err := os.MkdirAll(filepath.Dir(e.config), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := e.registerOnly("--imap-server-address", "127.0.0.1", "--imap-server-port", itoa(e.dc.IMAPPort), "--imap-local-port", itoa(e.imapPort)); err != nil {
		t.Fatalf("register: %v\n%s", err, out)
	}
	box := sandbox.BootWith(t, sandbox.Options{Tmpfs: []string{"/var/lib/orbit"}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w := &unitWorld{env: e, box: box, ctx: ctx}
	w.inside(0, "start", "--config", e.config, "--no-enable")

	r := w.inside(0, "config", "validate")
	if !strings.Contains(r.Stdout, e.config+": valid") {
		t.Errorf("config validate without a file did not check the unit's file %s:\n%s%s", e.config, r.Stdout, r.Stderr)
	}
	shown := w.inside(0, "config", "show")
	named := w.inside(0, "config", "show", e.config)
	if !strings.Contains(shown.Stdout, "[IMAP-"+itoa(e.imapPort)+"]") || shown.Stdout != named.Stdout {
		t.Errorf("config show (the unit's file) and config show FILE differ:\n%s\n---\n%s", shown.Stdout, named.Stdout)
	}
	if strings.Contains(shown.Stdout, clientSecret) {
		t.Error("config show reveals the client secret")
	}
	// A file named explicitly still wins over the unit's.
	other := filepath.Join(e.dir, "other.config")
	if err := os.WriteFile(other, []byte("not INI\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := w.inside(4, "config", "validate", "--config", other); !strings.Contains(r.Stdout, other) {
		t.Errorf("config validate --config %s checked another file:\n%s", other, r.Stdout)
	}
	w.inside(0, "stop")
}

// TestE2EJournalText: the unit's journal, as journalctl and `orbit ...
// logs` print it, says in words which account logged in or failed, over
// which protocol, from which client and why, and where each listener
// listens; the structured ORBIT_* fields and MESSAGE_IDs are still there,
// and no secret is in either.
func TestE2EJournalText(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a systemd sandbox and Dovecot (-short)")
	}
	sandbox.Require(t)
	e := newEnv(t)
	e.addClient("")
	e.config = filepath.Join(e.dir, "proxy", "emailproxy.config")
	if err := os.MkdirAll(filepath.Dir(e.config), 0o755); err != nil {
		t.Fatal(err)
	}
	e.register("--account", alice, "--oauth2-flow", "password")
	box := sandbox.BootWith(t, sandbox.Options{Tmpfs: []string{"/var/lib/orbit"}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w := &unitWorld{env: e, box: box, ctx: ctx}
	if err := box.InstallDropIn(ctx, unitName, "ca.conf", "[Service]\nEnvironment=SSL_CERT_FILE="+e.tls.CAFile+"\n"); err != nil {
		t.Fatal(err)
	}
	w.inside(0, "start", "--config", e.config)

	const wrongPW = "not-alices-provider-pw"
	if reply := e.imapLoginReply(alice, wrongPW); !strings.Contains(reply, " NO ") {
		t.Fatalf("login with a password the provider refuses: %q", reply)
	}
	// The next password is not relayed to the provider for a second after
	// a refusal (the wrong-password guard): the mailer retries, as it
	// would on the temporary reply.
	var got string
	waitFor(t, "the right password to be accepted after the guard's delay", 30*time.Second, func() bool {
		got, _ = e.imapLogin(alice, alicePW)
		return got == "LOGGED-IN"
	})
	w.inside(0, "stop")

	imap := "[IMAP-" + itoa(e.imapPort) + "]"
	wants := []string{
		"listening on 127.0.0.1:" + itoa(e.imapPort) + " for " + imap + " -> 127.0.0.1:" + itoa(e.dc.IMAPPort),
		"login failed for " + alice + " (IMAP from 127.0.0.1:",
		"login succeeded for " + alice + " (IMAP from 127.0.0.1:",
		"stopped listening on 127.0.0.1:" + itoa(e.imapPort) + " for " + imap + ": the proxy is stopping",
	}
	journal := box.Exec(ctx, nil, "journalctl", "--no-pager", "-o", "cat", "-u", unitName)
	logs := w.inside(0, "logs", "-n", "0")
	for _, src := range []struct{ name, text string }{{"journalctl -o cat", journal.Stdout}, {"orbit logs", logs.Stdout}} {
		for _, want := range wants {
			if !strings.Contains(src.text, want) {
				t.Errorf("%s lacks %q:\n%s", src.name, want, src.text)
			}
		}
		// The reason follows the client address: what the provider said.
		failed := lineWith(src.text, "login failed for "+alice)
		if !strings.Contains(failed, "): the token endpoint refused the request") || !strings.Contains(failed, "invalid_grant") {
			t.Errorf("%s: the failed login's line does not say why: %q", src.name, failed)
		}
	}

	// The fields are still there for scripts.
	js := w.inside(0, "logs", "-n", "0", "--output", "json")
	found := false
	for _, line := range strings.Split(strings.TrimSpace(js.Stdout), "\n") {
		var entry struct {
			MessageID string            `json:"message_id"`
			Message   string            `json:"message"`
			Orbit     map[string]string `json:"orbit"`
		}
		if json.Unmarshal([]byte(line), &entry) != nil || entry.MessageID != events.LoginFailed {
			continue
		}
		o := entry.Orbit
		// Besides the provider's refusal, the retries during the guard's
		// delay fail too; each names its account, protocol and client.
		found = found || strings.Contains(o["reason"], "invalid_grant")
		if o["account"] != alice || o["protocol"] != "IMAP" || !strings.HasPrefix(o["client"], "127.0.0.1:") || o["reason"] == "" {
			t.Errorf("the failed login's fields: %v", o)
		}
		if !strings.Contains(entry.Message, o["client"]) {
			t.Errorf("the failed login's text %q does not name the client %s", entry.Message, o["client"])
		}
	}
	if !found {
		t.Errorf("no entry with MESSAGE_ID=%s and the provider's invalid_grant in logs --output json:\n%s", events.LoginFailed, js.Stdout)
	}
	w.journalSecretFree(map[string]string{"client secret": clientSecret, "mailer password": alicePW, "refused password": wrongPW})
}

// lineWith is the first line of text containing s.
func lineWith(text, s string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
