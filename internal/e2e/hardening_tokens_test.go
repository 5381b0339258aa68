package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv"

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
	out := e.serveRefused(78)
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
	out = e.serveRefused(78)
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

// stormIMAP runs n clients from source address from, each logging in as
// user with a new wrong password as soon as its previous reply came,
// until stop is closed. It returns how many replies each kind got.
func (e *env) stormIMAP(from string, n int, user string, stop <-chan struct{}) func() map[string]int {
	var mu sync.Mutex
	replies := map[string]int{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := d.Dial("tcp", testenv.Addr(e.imapPort))
				if err != nil {
					continue
				}
				lc := &lineConn{c: c, r: bufio.NewReader(c)}
				kind := "error"
				if _, err := lc.line(); err == nil {
					if done, _, err := lc.imapCmd("S1", fmt.Sprintf("LOGIN %s guess-%d-%d", imapQuote(user), i, k)); err == nil {
						kind = done
						if j := strings.Index(done, " - "); j > 0 {
							kind = done[:j]
						}
					}
				}
				c.Close()
				mu.Lock()
				replies[kind]++
				mu.Unlock()
			}
		})
	}
	return func() map[string]int {
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return replies
	}
}

// TestE2EWrongPasswordStorm: 30 clients on another address send random
// passwords for alice through the proxy just after a restart (no key
// cached). The mailer's login with the right password still goes through
// Dovecot, the storm is answered with refusals, and for a password-flow
// account a burst of guesses reaches the provider as a handful of
// requests, not one each.
func TestE2EWrongPasswordStorm(t *testing.T) {
	e := newEnv(t)
	e.addClient(alice)
	e.register("--account", alice, "--oauth2-flow", "client_credentials")
	e.register("--account", bob, "--oauth2-flow", "password")
	e.serve()
	if r := e.imapLoginReply(alice, mailerPassword); r != "L1 OK" {
		t.Fatalf("first login: %q", r)
	}
	// The success is remembered across the restart, beside the status
	// file, readable by the service only.
	trustFile := filepath.Join(filepath.Dir(e.status), "trusted-clients.json")
	if st, err := os.Stat(trustFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("trust file after the first login: %v, %v; want mode 0600", st, err)
	}
	if data, _ := os.ReadFile(trustFile); !strings.Contains(string(data), `"account": "`+alice+`"`) || !strings.Contains(string(data), `"address": "127.0.0.1"`) {
		t.Errorf("trust file lacks the mailer's address:\n%s", data)
	}
	e.restartServe()

	stop := make(chan struct{})
	wait := e.stormIMAP("127.0.0.2", 30, alice, stop)
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	r := e.imapLoginReply(alice, mailerPassword)
	took := time.Since(start)
	close(stop)
	replies := wait()
	t.Logf("the mailer's login during the storm took %v; storm replies: %v", took, replies)
	if r != "L1 OK" {
		t.Fatalf("the mailer's correct login during the storm: %q", r)
	}
	for kind := range replies {
		if strings.HasPrefix(kind, "S1 OK") {
			t.Errorf("a wrong password logged in: %v", replies)
		}
	}
	log := e.proc.Log()
	// The mailer's address logged in before the restart: its login went
	// ahead of the guesses' derivations (which paused) instead of waiting.
	if !strings.Contains(log, "login for "+alice+" from 127.0.0.1 goes ahead of") {
		t.Errorf("the mailer's login did not take the trusted path:\n%s", log)
	}
	// One warning for the storm's first wrong password, not one per guess
	// (the rest are summed up once a minute).
	if n := strings.Count(log, "login failed for "+alice); n != 1 {
		t.Errorf("%d warnings for %d failed logins, want 1", n, sum(replies))
	}

	// status during the storm: alice stays authorised (wrong passwords
	// are not the account failing), and her entry counts the failures
	// and names the storm's address. The file had the first failure at
	// once; the rest follow within a minute.
	fl := e.statusFailedLogins(alice)
	if fl.State != "authorised" || fl.FailedLogins == nil || fl.FailedLogins.LastHour < 1 || fl.FailedLogins.LastAddress != "127.0.0.2" {
		t.Errorf("status --output json during the storm: alice %+v, want authorised with failed logins from 127.0.0.2", fl)
	}
	stormStart := time.Now()

	// bob (password flow) has no tokens: every new password would go to
	// the provider.
	e.prov.ResetCounts()
	stop = make(chan struct{})
	wait = e.stormIMAP("127.0.0.3", 30, bob, stop)
	time.Sleep(3 * time.Second)
	close(stop)
	replies = wait()
	n := 0
	for kind, c := range replies {
		if !strings.HasPrefix(kind, "S1 OK") {
			n += c
		}
	}
	grantsSent := len(e.prov.TokenRequests())
	t.Logf("%d wrong passwords for bob made %d token requests (%v)", n, grantsSent, replies)
	if n < 30 || grantsSent > 4 {
		t.Errorf("%d wrong passwords made %d token requests, want at most 4", n, grantsSent)
	}

	// After the storm the held-back counts are written (a minute after
	// the first write at most): status --check warns about alice, with
	// the count as perfdata. (bob is CRITICAL: the provider refused a
	// relayed password, which marks a password-flow account failing.)
	deadline := stormStart.Add(90 * time.Second)
	aliceWarning := regexp.MustCompile(`; ` + regexp.QuoteMeta(alice) + `: \d\d+ failed logins in the last hour from 1 address, the last from 127\.0\.0\.2 at \d\d:\d\d;`)
	var out string
	var code int
	for {
		out, code = e.checkCLI("--warn-failed-logins", "20")
		if aliceWarning.MatchString(out) || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	if code != 2 || !aliceWarning.MatchString(out) || !regexp.MustCompile(` failed_logins=\d\d+$`).MatchString(out) {
		t.Errorf("status --check after the storm: exit %d %q, want alice's failed logins among the problems and perfdata failed_logins", code, out)
	}
	t.Logf("status --check after the storm: %s", out)
	fl = e.statusFailedLogins(alice)
	if fl.State != "authorised" || fl.FailedLogins == nil || fl.FailedLogins.LastHour <= 20 {
		t.Errorf("status --output json after the storm: alice %+v", fl)
	}
}

type accountFailures struct {
	State        string
	FailedLogins *struct {
		LastHour    int    `json:"last_hour"`
		Addresses   int    `json:"addresses"`
		LastAddress string `json:"last_address"`
	} `json:"failed_logins"`
}

// statusFailedLogins runs status --output json and returns the account's
// state and failed logins.
func (e *env) statusFailedLogins(account string) accountFailures {
	e.t.Helper()
	out, err := e.run("email-oauth2-proxy", "status", "--config", e.config, "--status-file", e.status, "--token-cache", e.tokens, "--output", "json")
	var rep struct {
		Accounts []struct {
			Name string
			accountFailures
		} `json:"accounts"`
	}
	if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
		e.t.Fatalf("status --output json: %v %v\n%s", err, jerr, out)
	}
	for _, a := range rep.Accounts {
		if a.Name == account {
			return a.accountFailures
		}
	}
	e.t.Fatalf("status --output json does not list %s:\n%s", account, out)
	return accountFailures{}
}

func sum(m map[string]int) int {
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}
