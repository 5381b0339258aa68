package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv/fakeoauth"
)

// authorizeCmd prepares `orbit email-oauth2-proxy authorize` against this
// world's engine, the password on standard input.
func (e *env) authorizeCmd(ctx context.Context, account, password string, extra ...string) *exec.Cmd {
	args := append([]string{"email-oauth2-proxy", "authorize", "--account", account, "--password-file", "-",
		"--socket", filepath.Join(e.dir, "control.sock")}, extra...)
	cmd := exec.CommandContext(ctx, e.orbit, args...)
	cmd.Env = append(os.Environ(), e.tls.Env(), "ORBIT_SETTINGS="+os.DevNull, "NO_COLOR=1")
	cmd.Stdin = strings.NewReader(password + "\n")
	return cmd
}

// TestE2EAuthorizeAhead: an admin signs accounts in before any mailer
// login, through the running engine's control socket: the authorisation
// URL is printed, the browser completes it, authorize exits 0, and the
// mailer's first login then needs no token request; a client_credentials
// account is signed in at once; --no-wait --output json hands a script the
// URL of a new sign-in with a new password; an unknown account, an engine
// that is not running and a user other than root each get their exit code.
func TestE2EAuthorizeAhead(t *testing.T) {
	e := newEnv(t)
	e.addClient(bob)
	e.registerCode(alice)
	e.register("--account", bob, "--oauth2-flow", "client_credentials")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := e.authorizeCmd(ctx, alice, mailerPassword).CombinedOutput(); exitCode(err) != 3 || !strings.Contains(string(out), "not running") {
		t.Errorf("authorize without an engine: exit %d, want 3 (not running):\n%s", exitCode(err), out)
	}
	e.serve()

	// alice: authorization_code, waited for.
	cmd := e.authorizeCmd(ctx, alice, mailerPassword)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var authURL string
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), urlLinePrefix(alice)); ok {
			authURL = rest
			break
		}
	}
	if authURL == "" {
		t.Fatalf("authorize printed no URL; stderr:\n%s", stderr.String())
	}
	if logged := e.waitAuthURL(alice, 1); logged != authURL {
		t.Errorf("authorize printed %s, the journal has %s", authURL, logged)
	}
	e.authorize(alice, authURL)
	rest := ""
	for sc.Scan() {
		rest += sc.Text() + "\n"
	}
	if err := cmd.Wait(); err != nil || !strings.Contains(rest, alice+" is signed in (authorization_code)") {
		t.Fatalf("authorize after the browser: %v\n%s\nstderr:\n%s", err, rest, stderr.String())
	}

	// bob: client_credentials, signed in at once; JSON for scripts.
	out, err := e.authorizeCmd(ctx, bob, mailerPassword, "--output", "json").Output()
	var res struct{ Account, State, Flow string }
	if err != nil || json.Unmarshal(out, &res) != nil || res.State != "authorised" || res.Flow != "client_credentials" {
		t.Fatalf("authorize bob: %v\n%s", err, out)
	}

	// The mailer's first logins need no token request.
	e.prov.ResetCounts()
	for _, who := range []string{alice, bob} {
		if r := e.imapLoginReply(who, mailerPassword); r != "L1 OK" {
			t.Errorf("%s's first mailer login: %q", who, r)
		}
	}
	if n := e.prov.Count(fakeoauth.EndpointToken); n != 0 {
		t.Errorf("%d token requests on the mailer's first logins, want 0: %v", n, grants(e.prov.TokenRequests()))
	}

	// An unknown account.
	out, err = e.authorizeCmd(ctx, "carol@example.test", mailerPassword).CombinedOutput()
	if exitCode(err) != 4 || !strings.Contains(string(out), "not configured") {
		t.Errorf("unknown account: exit %d, want 4:\n%s", exitCode(err), out)
	}

	// Another password is a mailer login with another password: with
	// delete_account_token_on_password_error (the default) it starts a new
	// sign-in, which is how the mailer's password is changed. --no-wait
	// --output json hands a script the URL; the proxy keeps it open.
	const newPassword = "new-mailer-pass-K3"
	out, err = e.authorizeCmd(ctx, alice, newPassword, "--no-wait", "--output", "json").Output()
	var waiting struct {
		State   string `json:"state"`
		AuthURL string `json:"auth_url"`
	}
	if err != nil || json.Unmarshal(out, &waiting) != nil || waiting.State != "waiting" || !strings.HasPrefix(waiting.AuthURL, e.prov.AuthorizeURL()) {
		t.Fatalf("--no-wait: %v\n%s", err, out)
	}
	e.authorize(alice, waiting.AuthURL)
	waitFor(t, "the detached sign-in to be stored", 30*time.Second, func() bool {
		return strings.Count(e.proc.Log(), "account "+alice+" signed in through the control socket") == 2
	})
	e.prov.ResetCounts()
	if r := e.imapLoginReply(alice, newPassword); r != "L1 OK" {
		t.Errorf("login with the new password: %q", r)
	}
	if n := e.prov.Count(fakeoauth.EndpointToken); n != 0 {
		t.Errorf("%d token requests after the new sign-in, want 0", n)
	}

	// Only root and the engine's user may use the socket.
	nobody := e.authorizeCmd(ctx, alice, mailerPassword)
	nobody.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err = nobody.CombinedOutput()
	if code := exitCode(err); code != 10 {
		t.Errorf("as nobody: exit %d, want 10 (permission):\n%s", code, out)
	}
	e.checkNoSecrets()
}
