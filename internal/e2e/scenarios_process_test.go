package e2e

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv"
	"github.com/senhasegura/orbit/internal/testenv/fakeoauth"
)

// TestE2EReload: SIGHUP re-reads the file for real. IMAP moved to a new
// local port serves there and the old port closes, while a session opened
// before the reload carries on; an invalid file is refused with the reason
// logged and the running configuration kept; fixing it and SIGHUP again
// applies it.
func TestE2EReload(t *testing.T) {
	e := newEnv(t)
	e.addClient(alice)
	e.register("--account", alice, "--oauth2-flow", "client_credentials")
	e.serve()
	if err := e.dc.Deliver(alice, testMessage(alice, alice, "before the reload")); err != nil {
		t.Fatal(err)
	}
	old, err := imapSession(e.imapPort, alice, mailerPassword)
	if err != nil {
		t.Fatal(err)
	}
	defer old.c.Close()
	if l, _, err := old.imapCmd("S1", "SELECT INBOX"); err != nil || !strings.HasPrefix(l, "S1 OK") {
		t.Fatalf("SELECT before the reload: %q %v", l, err)
	}

	oldPort, newPort := e.imapPort, testenv.FreePort(t)
	e.register("--account", alice, "--oauth2-flow", "client_credentials", "--imap-local-port", itoa(newPort))
	e.hup("configuration reloaded", 1)
	e.imapPort = newPort
	if msgs, out, err := e.imapFetchAll(alice, mailerPassword); err != nil || len(msgs) != 1 {
		t.Fatalf("imaplib on the new port %d: %v, %d messages\n%s", newPort, err, len(msgs), out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := testenv.WaitPortClosed(ctx, testenv.Addr(oldPort)); err != nil {
		t.Errorf("the old IMAP port %d still accepts after the section moved: %v", oldPort, err)
	}
	if l, _, err := old.imapCmd("F1", "FETCH 1 (FLAGS)"); err != nil || !strings.HasPrefix(l, "F1 OK") {
		t.Errorf("the session opened before the reload: %q %v", l, err)
	}

	// An invalid file is refused; the proxy keeps serving what it had.
	good := readFile(t, e.config)
	bad := strings.Replace(good, "oauth2_flow = client_credentials", "oauth2_flow = client-credentials", 1)
	if bad == good {
		t.Fatalf("register wrote no oauth2_flow line to break:\n%s", good)
	}
	if err := os.WriteFile(e.config, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	e.hup("reload refused; still serving the previous configuration", 1)
	if l := e.proc.Log(); !strings.Contains(l, `oauth2_flow = "client-credentials" is not a flow the proxy knows`) {
		t.Errorf("the refused reload does not say what is wrong:\n%s", l)
	}
	select {
	case <-e.proc.done:
		t.Fatalf("serve exited on an invalid file (%v)", e.proc.err)
	default:
	}
	if r := e.imapLoginReply(alice, mailerPassword); r != "L1 OK" {
		t.Errorf("login after a refused reload: %q", r)
	}
	if l, _, err := old.imapCmd("N1", "NOOP"); err != nil || !strings.HasPrefix(l, "N1 OK") {
		t.Errorf("the old session after a refused reload: %q %v", l, err)
	}

	// Fixed, and moved back: the next SIGHUP applies it.
	e.register("--account", alice, "--oauth2-flow", "client_credentials", "--imap-local-port", itoa(oldPort))
	e.hup("configuration reloaded", 2)
	e.imapPort = oldPort
	if r := e.imapLoginReply(alice, mailerPassword); r != "L1 OK" {
		t.Errorf("login on the port moved back: %q", r)
	}
	if l, _, err := old.imapCmd("O1", "LOGOUT"); err != nil || !strings.HasPrefix(l, "O1 OK") {
		t.Errorf("LOGOUT of the session opened before both reloads: %q %v", l, err)
	}
	if n := e.prov.Count(fakeoauth.EndpointToken); n != 1 {
		t.Errorf("token requests = %d, want 1: reloads keep the tokens", n)
	}
}

// TestE2EDrain: SIGTERM stops accepting at once, lets a session in
// progress finish its work and log out, then exits 0.
func TestE2EDrain(t *testing.T) {
	e := newEnv(t)
	e.addClient(alice)
	e.register("--account", alice, "--oauth2-flow", "client_credentials")
	e.serve("--drain-timeout", "60s")
	msg := testMessage(alice, alice, "read while draining")
	if err := e.dc.Deliver(alice, msg); err != nil {
		t.Fatal(err)
	}
	c, err := imapSession(e.imapPort, alice, mailerPassword)
	if err != nil {
		t.Fatal(err)
	}
	defer c.c.Close()

	if err := e.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	e.waitLog("stopping: no new connections", 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := testenv.WaitPortClosed(ctx, testenv.Addr(e.imapPort)); err != nil {
		t.Errorf("IMAP still accepts while draining: %v", err)
	}

	if l, before, err := c.imapCmd("S1", "SELECT INBOX"); err != nil || !strings.HasPrefix(l, "S1 OK") || !contains(before, "* 1 EXISTS") {
		t.Fatalf("SELECT while draining: %q %q %v", l, before, err)
	}
	if l, _, err := c.imapCmd("F1", "FETCH 1 (RFC822.SIZE)"); err != nil || !strings.HasPrefix(l, "F1 OK") {
		t.Fatalf("FETCH while draining: %q %v", l, err)
	}
	select {
	case <-e.proc.done:
		t.Fatal("serve exited while a session was still in progress")
	default:
	}
	if l, _, err := c.imapCmd("O1", "LOGOUT"); err != nil || !strings.HasPrefix(l, "O1 OK") {
		t.Fatalf("LOGOUT while draining: %q %v", l, err)
	}
	select {
	case <-e.proc.done:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit once its last session ended")
	}
	if e.proc.err != nil {
		t.Errorf("serve exited with %v after a clean drain, want 0", e.proc.err)
	}
	if l := e.proc.Log(); !strings.Contains(l, "state=stopped") || strings.Contains(l, "cut short") {
		t.Errorf("serve's log does not show a clean stop:\n%s", l)
	}
}

// TestE2EConfigError: serve refuses a file it cannot serve with exit code
// 78 (EX_CONFIG: the journal shows 78/CONFIG and the unit does not restart)
// and says what is wrong and where; a listener it cannot bind is a
// non-zero exit too.
func TestE2EConfigError(t *testing.T) {
	orbit := testenv.BuildOrbit(t)
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	freePort := testenv.FreePort(t)
	valid := func(port int) string {
		return "[emailproxy]\nallow_catch_all_accounts = True\n\n[IMAP-" + itoa(port) + "]\nserver_address = 127.0.0.1\nserver_port = 993\nlocal_address = 127.0.0.1\n\n" +
			"[@example.test]\ntoken_url = https://127.0.0.1:9/token\noauth2_scope = https://mail.example.test/.default\noauth2_flow = client_credentials\nclient_id = id\nclient_secret = s\n"
	}
	for _, tc := range []struct {
		name, file string
		code       int
		want       []string
	}{
		{"unknown flow", strings.Replace(valid(freePort), "client_credentials", "client-credentials", 1), 78,
			[]string{`[@example.test] (line 12): oauth2_flow = "client-credentials" is not a flow the proxy knows`, "config validate"}},
		{"no token_url", strings.Replace(valid(freePort), "token_url = https://127.0.0.1:9/token\n", "", 1), 78,
			[]string{"[@example.test]", "token_url is missing"}},
		{"not INI", "server_port 993\n", 78, []string{":1:", "before any [section] header"}},
		{"missing file", "", 78, []string{"no such file or directory"}},
		{"port in use", valid(busyPort), 1, []string{"cannot listen", "[IMAP-" + itoa(busyPort) + "]", "address already in use"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".config")
			if tc.file != "" {
				if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, orbit, "email-oauth2-proxy", "serve", "--config", path,
				"--token-cache", filepath.Join(dir, "tokens.cache"), "--status-file", "-", "--log-format", "text")
			cmd.Env = append(os.Environ(), "ORBIT_SETTINGS="+os.DevNull)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("serve with a bad file: %v (want exit %d)\n%s", err, tc.code, out)
			}
			if ee.ExitCode() != tc.code {
				t.Errorf("exit code %d, want %d\n%s", ee.ExitCode(), tc.code, out)
			}
			want := tc.want
			if tc.code == 78 {
				want = append(want, path)
			}
			for _, w := range want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output does not say %q:\n%s", w, out)
				}
			}
		})
	}
}
