package e2e

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv/fakeoauth"
)

// serveRefused runs serve on env's files and expects it to exit at once
// with code; it returns what serve printed.
func (e *env) serveRefused(code int) string {
	e.t.Helper()
	out, err := e.run("email-oauth2-proxy", "serve", "--config", e.config, "--token-cache", e.tokens,
		"--status-file", e.status, "--log-format", "text")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != code {
		e.t.Fatalf("serve: %v, want exit %d\n%s", err, code, out)
	}
	return out
}

// TestE2EFileModes: a token store left readable by others is tightened by
// the next write; serve and `config validate` refuse a token store others
// can read and a configuration others can change, saying which chmod fixes
// it; a client secret in a world-readable file is only a warning.
func TestE2EFileModes(t *testing.T) {
	e := newEnv(t)
	e.addClient(alice)
	e.register("--account", alice, "--oauth2-flow", "client_credentials")
	mode := func(p string) os.FileMode {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}
	if m := mode(e.config); m != 0o600 {
		t.Errorf("register wrote the configuration %v, want 0600", m)
	}

	// Five minutes is inside the refresh margin, so every login fetches
	// and saves a token.
	e.prov.SetAccessTokenLifetime(5 * time.Minute)
	e.serve()
	if r := e.imapLoginReply(alice, mailerPassword); r != "L1 OK" {
		t.Fatalf("login: %q", r)
	}
	if m := mode(e.tokens); m != 0o600 {
		t.Errorf("token store %v after the first save, want 0600", m)
	}
	e.stop(e.proc)

	// A world-readable store: refused, by serve and by validate.
	if err := os.Chmod(e.tokens, 0o644); err != nil {
		t.Fatal(err)
	}
	out := e.serveRefused(4)
	for _, want := range []string{"the token store " + e.tokens, "chmod 600 " + e.tokens} {
		if !strings.Contains(out, want) {
			t.Errorf("serve's refusal lacks %q:\n%s", want, out)
		}
	}
	out, err := e.run("email-oauth2-proxy", "config", "validate", "--config", e.config, "--token-cache", e.tokens)
	if code := exitCode(err); code != 4 || !strings.Contains(out, "chmod 600 "+e.tokens) {
		t.Errorf("config validate on a readable token store: exit %d\n%s", code, out)
	}
	if err := os.Chmod(e.tokens, 0o600); err != nil {
		t.Fatal(err)
	}

	// A group-writable configuration: refused.
	if err := os.Chmod(e.config, 0o660); err != nil {
		t.Fatal(err)
	}
	out = e.serveRefused(4)
	if !strings.Contains(out, "is writable by its group") || !strings.Contains(out, "chmod 600 "+e.config) {
		t.Errorf("serve's refusal of a group-writable configuration:\n%s", out)
	}

	// World-readable with the client secret: a warning, serve runs.
	if err := os.Chmod(e.config, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = e.run("email-oauth2-proxy", "config", "validate", "--config", e.config, "--token-cache", e.tokens)
	if code := exitCode(err); code != 0 || !strings.Contains(out, "holds a client_secret") {
		t.Errorf("config validate on a world-readable secret: exit %d\n%s", code, out)
	}
	e.serve()
	e.waitLog("holds a client_secret", 5*time.Second)

	// A store made readable while serve runs is private again after the
	// next save (tokens inside the refresh margin: every login saves).
	if err := os.Chmod(e.tokens, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := e.imapLoginReply(alice, mailerPassword); r != "L1 OK" {
		t.Fatalf("login: %q", r)
	}
	if m := mode(e.tokens); m != 0o600 {
		t.Errorf("token store %v after a save, want 0600", m)
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestE2EOddTokenAnswers: token answers as real providers and gateways
// send them (expires_in as a string, no token_type, extra fields; an
// absurd expires_in) log in through Dovecot, and an absurd expires_in is
// clamped (so the token is reused, not refreshed on every login) and
// logged once.
func TestE2EOddTokenAnswers(t *testing.T) {
	e := newEnv(t)
	e.addClient("")
	e.register("--account", alice, "--oauth2-flow", "password")
	e.register("--account", bob, "--oauth2-flow", "password")
	e.serve()

	e.prov.SetAnswerQuirks(fakeoauth.AnswerQuirks{ExpiresIn: `"3599"`, OmitTokenType: true,
		Extra: map[string]any{"ext_expires_in": "3599", "id_token": "a.b.c", "foo": map[string]any{"bar": []int{1}}}})
	if r := e.imapLoginReply(alice, alicePW); r != "L1 OK" {
		t.Fatalf("login with expires_in as a string: %q", r)
	}

	e.prov.SetAnswerQuirks(fakeoauth.AnswerQuirks{ExpiresIn: `9223372036854775807`})
	for i := range 3 {
		if r := e.imapLoginReply(bob, bobPW); r != "L1 OK" {
			t.Fatalf("login %d with expires_in = 2^63-1: %q", i, r)
		}
	}
	if got := grants(e.prov.TokenRequests()); strings.Join(got, " ") != "password:200 password:200" {
		t.Errorf("token requests = %v, want one per account: a clamped expiry is still in the future", got)
	}
	log := e.waitLog("expires_in = 9223372036854775807", 5*time.Second)
	if n := strings.Count(log, "expires_in = 9223372036854775807"); n != 1 {
		t.Errorf("the odd expires_in was logged %d times, want once", n)
	}
}
