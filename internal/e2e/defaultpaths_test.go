package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv/sandbox"
)

// TestE2EDefaultPaths is the walk-through (docs/email-oauth2-proxy.md) as
// an administrator types it on a fresh appliance: no --config, no
// --settings, /etc/orbit as the package makes it (0700 root), register
// installing the unit, then start, status, authorisation, restart, and the
// same commands as a user other than root. The other scenarios name their
// file in a directory of the test's own and ORBIT_SETTINGS=/dev/null, so
// none of them met the defaults, where it failed: the service user could
// not pass /etc/orbit, so serve stopped at "reading settings file
// /etc/orbit/orbit.yaml: permission denied" (exit 4, restarted every 5 s)
// and could not have read its file either; every command run without sudo
// stopped there too.
func TestE2EDefaultPaths(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a systemd sandbox and Dovecot (-short)")
	}
	sandbox.Require(t)
	begin := time.Now()
	e := newEnv(t)
	e.addClient(alice)
	e.config = "/etc/orbit/email-oauth2-proxy/emailproxy.config"
	box := sandbox.BootWith(t, sandbox.Options{Tmpfs: []string{stateParent}})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	w := &unitWorld{env: e, box: box, ctx: ctx}
	// /etc is the sandbox's own overlay: what register writes there stays
	// inside. The package ships /etc/orbit like this.
	w.sh("install", "-d", "-m", "0700", "/etc/orbit")
	if err := box.InstallDropIn(ctx, unitName, "ca.conf", "[Service]\nEnvironment=SSL_CERT_FILE="+e.tls.CAFile+"\n"); err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(e.dir, "client-secret")
	if err := os.WriteFile(secretFile, []byte(clientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// register as the guide writes it: no --config, no --no-service.
	w.inside(0, "register",
		"--imap-server-address", "127.0.0.1", "--imap-server-port", strconv.Itoa(e.dc.IMAPPort), "--imap-local-port", strconv.Itoa(e.imapPort),
		"--smtp-server-address", "127.0.0.1", "--smtp-server-port", strconv.Itoa(e.dc.SubmissionPort), "--smtp-server-starttls", "--smtp-local-port", strconv.Itoa(e.smtpPort),
		"--oauth2-token-url", e.prov.TokenURL(),
		"--oauth2-permission-url", e.prov.AuthorizeURL(),
		"--oauth2-flow", "authorization_code",
		"--oauth2-scope", "https://mail.example.test/.default",
		"--oauth2-client-id", clientID,
		"--oauth2-client-secret-file", secretFile,
		"--redirect-uri", fmt.Sprintf("http://127.0.0.1:%d/email-oauth2-proxy-authorize/", e.redirectPort),
		"--redirect-listen-address", fmt.Sprintf("http://127.0.0.1:%d/", e.redirectPort))

	r := w.inside(0, "start")
	if !strings.Contains(r.Stdout, "Started "+unitName+": active (running)") {
		t.Errorf("start said:\n%s%s", r.Stdout, r.Stderr)
	}
	if s := w.settled(); s != "active/running" {
		t.Fatalf("the unit is %s after start, want active/running", s)
	}
	rep := w.status(0)
	if rep.Config.Path != e.config {
		t.Errorf("status names the file %q, want the default %s", rep.Config.Path, e.config)
	}
	for _, l := range rep.Listeners {
		if !l.Listening {
			t.Errorf("listener %s (%s) is not listening: %s", l.Section, l.Address, l.Error)
		}
	}

	w.authorise(func() string { return strings.TrimSpace(w.inside(0, "logs", "--auth-url").Stdout) })
	if a := w.account(w.status(0), alice); a.State != "authorised" {
		t.Fatalf("alice after the authorisation: %+v, want authorised", a)
	}

	// After a restart the running engine owns the status file: status
	// must neither call it stale nor hide alice's state.
	w.inside(0, "restart")
	rep = w.status(0)
	if rep.StatusFile.Stale || rep.StatusFile.PID != int(rep.Unit.MainPID) {
		t.Errorf("status after a restart: status file %+v, the unit's main PID %d; want the running engine's, not stale", rep.StatusFile, rep.Unit.MainPID)
	}
	if a := w.account(rep, alice); a.State != "authorised" {
		t.Errorf("alice after a restart: %+v, want still authorised", a)
	}

	// Without sudo: a command that needs nothing of root's works, and
	// those that do say so with the documented exit 10.
	unprivileged := func(want int, args ...string) sandbox.Result {
		t.Helper()
		r := box.Exec(ctx, nil, append(append(append([]string(nil), asNobody...), e.orbit), args...)...)
		if r.Code != want {
			t.Errorf("orbit %s as nobody: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.Code, want, r.Stdout, r.Stderr)
		}
		return r
	}
	unprivileged(0, "version")
	unprivileged(0, "email-oauth2-proxy", "--help")
	if _, r := w.statusAs(true); r.Code != 10 {
		t.Errorf("status as nobody: exit %d, want 10\n%s", r.Code, r.Stderr)
	}
	for _, args := range [][]string{{"logs", "-n", "5"}, {"logs", "--auth-url"}} {
		r := unprivileged(10, append([]string{"email-oauth2-proxy"}, args...)...)
		if !strings.Contains(r.Stderr, "root") || strings.Contains(r.Stderr, "--output-fields") {
			t.Errorf("logs %s as nobody says:\n%s\nwant what to do (run as root), not journalctl's command line", strings.Join(args, " "), r.Stderr)
		}
	}
	r = unprivileged(10, "email-oauth2-proxy", "stop")
	if strings.Contains(r.Stderr, "journal") {
		t.Errorf("stop as nobody talks about the journal it could not read:\n%s", r.Stderr)
	}
	if s := w.settled(); s != "active/running" {
		t.Errorf("the unit is %s after the refused stop", s)
	}

	w.inside(0, "uninstall", "--purge", "--yes")
	t.Logf("measure: the walk-through on the default paths took %v", time.Since(begin).Round(time.Millisecond))
}
