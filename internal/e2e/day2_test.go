package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/cli/emailproxy/status"
	"github.com/senhasegura/orbit/internal/testenv"
	"github.com/senhasegura/orbit/internal/testenv/fakeoauth"
	"github.com/senhasegura/orbit/internal/testenv/sandbox"
)

// The day-2 scenarios (issue 9): the journeys around the documented one,
// each on a real systemd (internal/testenv/sandbox) with its journal, a
// real Dovecot and the fake provider, orbit's commands run inside the
// sandbox as root as an administrator runs them.

// The unit's state directory and its parent, as systemd and serve use them.
const (
	stateParent = "/var/lib/orbit"
	stateDir    = "/var/lib/orbit/email-oauth2-proxy"
)

// newDay2World registers alice (authorization_code) in a directory of the
// file's own, boots a sandbox whose /var/lib/orbit (and each of tmpfs) is
// a private tmpfs, and trusts the test CA in the unit as a site with a
// private CA would.
func newDay2World(t *testing.T, tmpfs ...string) *unitWorld {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a systemd sandbox and Dovecot (-short)")
	}
	sandbox.Require(t)
	e := newEnv(t)
	e.addClient(alice)
	e.config = filepath.Join(e.dir, "proxy", "emailproxy.config")
	if err := os.MkdirAll(filepath.Dir(e.config), 0o755); err != nil {
		t.Fatal(err)
	}
	e.register("--account", alice, "--oauth2-flow", "authorization_code", "--oauth2-permission-url", e.prov.AuthorizeURL())
	box := sandbox.BootWith(t, sandbox.Options{Tmpfs: append([]string{stateParent}, tmpfs...)})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	w := &unitWorld{env: e, box: box, ctx: ctx}
	if err := box.InstallDropIn(ctx, unitName, "ca.conf", "[Service]\nEnvironment=SSL_CERT_FILE="+e.tls.CAFile+"\n"); err != nil {
		t.Fatal(err)
	}
	return w
}

// sh runs a command inside the sandbox and fails the test unless it exits 0.
func (w *unitWorld) sh(args ...string) string {
	w.t.Helper()
	r := w.box.Exec(w.ctx, nil, args...)
	if r.Code != 0 {
		w.t.Fatalf("%s: exit %d\n%s%s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// show is `systemctl show -p NAME --value` for the unit.
func (w *unitWorld) show(prop string) string {
	w.t.Helper()
	return strings.TrimSpace(w.sh("systemctl", "show", "-p", prop, "--value", unitName))
}

// settled waits until the unit is in no transitional state and returns
// its ActiveState/SubState. A unit waiting to be restarted (activating/
// auto-restart) counts as settled: that is the restart loop, and a unit
// that will not be restarted goes straight to failed/failed instead.
func (w *unitWorld) settled() string {
	w.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := w.show("ActiveState") + "/" + w.show("SubState")
		if strings.HasSuffix(s, "/auto-restart") {
			return s
		}
		if !strings.HasPrefix(s, "activating") && !strings.HasPrefix(s, "deactivating") && !strings.HasPrefix(s, "reloading") {
			return s
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("the unit is still %s after 30 s", s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// foreground is `orbit email-oauth2-proxy serve` started by hand inside
// the sandbox as root, with the default token store and status file.
type foreground struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer
	done chan struct{}
}

func (f *foreground) Write(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.log.Write(b)
}

func (f *foreground) Log() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.log.String()
}

// serveForeground starts serve inside the sandbox, as an administrator
// trying the proxy before `start` does, and waits until it listens.
func (w *unitWorld) serveForeground() *foreground {
	w.t.Helper()
	f := &foreground{done: make(chan struct{})}
	f.cmd = w.box.Command(w.ctx, w.env.orbit, "email-oauth2-proxy", "serve", "--config", w.env.config, "--log-format", "text", "--drain-timeout", "2s")
	f.cmd.Env = append(f.cmd.Env, w.env.tls.Env(), "ORBIT_SETTINGS=/dev/null")
	f.cmd.Stdout, f.cmd.Stderr = f, f
	if err := f.cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() { _ = f.cmd.Wait(); close(f.done) }()
	w.t.Cleanup(func() {
		w.stopForeground(f)
		if w.t.Failed() {
			w.t.Logf("foreground serve's log:\n%s", f.Log())
		}
	})
	ctx, cancel := context.WithTimeout(w.ctx, 20*time.Second)
	defer cancel()
	for _, port := range []int{w.env.imapPort, w.env.popPort, w.env.smtpPort} {
		if err := testenv.WaitPort(ctx, testenv.Addr(port)); err != nil {
			w.t.Fatalf("foreground serve does not listen on %d: %v\n%s", port, err, f.Log())
		}
	}
	return f
}

// stopForeground sends SIGTERM to serve itself (nsenter's child, which
// nsenter does not forward signals to) and waits for it to end.
func (w *unitWorld) stopForeground(f *foreground) {
	select {
	case <-f.done:
		return
	default:
	}
	if pid := hostChild(f.cmd.Process.Pid); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	select {
	case <-f.done:
	case <-time.After(15 * time.Second):
		_ = f.cmd.Process.Kill()
		<-f.done
	}
}

// hostChild is the (first) child of pid, as the host sees it.
func hostChild(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	c, _ := strconv.Atoi(f[0])
	return c
}

// authorise logs alice in through whatever listens, completes the
// browser step with the URL that fetch returns, and waits for the login.
func (w *unitWorld) authorise(fetch func() string) {
	w.t.Helper()
	login := w.login()
	var authURL string
	deadline := time.Now().Add(30 * time.Second)
	for authURL == "" {
		select {
		case out := <-login:
			w.t.Fatalf("the login finished (%q) before any authorisation", out)
		default:
		}
		if authURL = fetch(); authURL == "" {
			if time.Now().After(deadline) {
				w.t.Fatal("no authorisation URL within 30 s of the login")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	browser := fakeoauth.Browser{Username: alice, Password: "alice-provider-pw", TLS: w.env.tls.ClientConfig()}
	res, err := browser.Authorize(w.ctx, authURL)
	if err != nil || res.Status != 200 {
		w.t.Fatalf("the browser step: %v (status %d)", err, res.Status)
	}
	w.loggedIn(login, "the first login", 30*time.Second)
}

// asNobody runs a command as the unprivileged user nobody (65534).
var asNobody = []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"}

// statusAs runs `status --output json` inside the sandbox, as nobody when
// unprivileged, and returns the report and the exit status.
func (w *unitWorld) statusAs(unprivileged bool) (status.Report, sandbox.Result) {
	w.t.Helper()
	args := []string{w.env.orbit, "email-oauth2-proxy", "status", "--config", w.env.config, "--output", "json"}
	if unprivileged {
		args = append(append([]string(nil), asNobody...), args...)
	}
	r := w.box.Exec(w.ctx, nil, args...)
	var rep status.Report
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		w.t.Fatalf("status --output json (exit %d) is not a report: %v\n%s\n%s", r.Code, err, r.Stdout, r.Stderr)
	}
	return rep, r
}

// TestE2EForegroundThenUnit is issue 9's first journey: the administrator
// tries the proxy with `serve` as root (as register's advice says where
// systemd is absent), authorises the mailbox there, stops it, then runs
// `start`. The unit must start (not fail with 200/CHDIR and restart for
// ever), use the tokens the foreground run saved without a new token
// request, and a state directory broken behind orbit's back must fail once
// (no restart loop) with status naming the path and the fix.
func TestE2EForegroundThenUnit(t *testing.T) {
	begin := time.Now()
	w := newDay2World(t)
	e := w.env
	// On a fresh machine serve's MkdirAll creates /var/lib/orbit itself,
	// mode 0700 and root's; the tmpfs mount point stands in for it.
	w.sh("chmod", "0700", stateParent)

	fg := w.serveForeground()
	w.authorise(func() string {
		if urls := authURLs(fg.Log(), alice); len(urls) > 0 {
			return urls[len(urls)-1]
		}
		return ""
	})
	if n := e.prov.GrantCount(fakeoauth.GrantAuthorizationCode); n != 1 {
		t.Fatalf("code exchanges = %d, want 1", n)
	}
	// start while the foreground proxy still holds the ports: refused
	// with what to do, not a unit failing on "address already in use".
	if r := w.inside(7, "start", "--config", e.config); !strings.Contains(r.Stderr, "already runs in the foreground") {
		t.Errorf("start beside the foreground proxy said:\n%s", r.Stderr)
	}
	w.stopForeground(fg)
	t.Logf("foreground run left: %s", w.sh("ls", "-la", stateParent, stateDir))

	tokenCalls := e.prov.Count(fakeoauth.EndpointToken)
	r := w.inside(0, "start", "--config", e.config)
	if !strings.Contains(r.Stdout, "Started "+unitName+": active (running)") {
		t.Errorf("start said:\n%s", r.Stdout)
	}
	if !strings.Contains(r.Stdout, "Repaired the state directory") {
		t.Errorf("start does not say it repaired the state directory the foreground run left:\n%s", r.Stdout)
	}
	w.loggedIn(w.login(), "the unit's first login", 20*time.Second)
	if n := e.prov.Count(fakeoauth.EndpointToken); n != tokenCalls {
		t.Errorf("the unit made %d token requests, want none: the foreground run's tokens are still valid", n-tokenCalls)
	}
	if n := e.prov.GrantCount(fakeoauth.GrantAuthorizationCode); n != 1 {
		t.Errorf("code exchanges = %d, want still 1", n)
	}
	rep := w.status(0)
	if a := w.account(rep, alice); a.State != "authorised" {
		t.Errorf("status under the unit: %+v, want authorised", a)
	}
	if len(rep.StateProblems) != 0 {
		t.Errorf("status finds state problems after start: %+v", rep.StateProblems)
	}

	// The same damage done behind orbit's back (systemctl start, not
	// orbit's): one failure, no restart loop, and status says what and how.
	w.inside(0, "stop")
	w.sh("chmod", "0700", stateParent)
	w.sh("chown", "root:root", stateDir+"/tokens.cache")
	failedStart := w.box.Exec(w.ctx, nil, "systemctl", "start", unitName)
	if failedStart.Code == 0 {
		t.Fatalf("systemctl start succeeded with %s at 0700 root", stateParent)
	}
	if s := w.settled(); s != "failed/failed" {
		t.Errorf("the unit is %s after a permanent failure, want failed/failed (no restart loop)", s)
	}
	if n := w.show("NRestarts"); n != "0" {
		t.Errorf("NRestarts = %s after 200/CHDIR, want 0", n)
	}
	if st := w.show("ExecMainStatus"); st != "200" {
		t.Errorf("ExecMainStatus = %s, want 200 (CHDIR)", st)
	}
	r = w.inside(3, "status")
	for _, want := range []string{stateParent + ": mode 0700", "200/CHDIR", stateDir + "/tokens.cache: owned by uid 0", "fix: orbit email-oauth2-proxy start", "Repair and start it"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("status after the failure lacks %q:\n%s", want, r.Stdout)
		}
	}
	w.inside(0, "start")
	w.loggedIn(w.login(), "login after the repair", 20*time.Second)
	w.inside(0, "stop")
	t.Logf("measure: TestE2EForegroundThenUnit took %v", time.Since(begin).Round(time.Millisecond))
}

// TestE2EStatusForeground: with serve running in the foreground and no
// unit, status recognises the running engine (exit 0, its PID, the live
// status file), and a user who cannot read the files is told so (exit 10)
// instead of "none configured".
func TestE2EStatusForeground(t *testing.T) {
	w := newDay2World(t)
	fg := w.serveForeground()
	w.authorise(func() string {
		if urls := authURLs(fg.Log(), alice); len(urls) > 0 {
			return urls[len(urls)-1]
		}
		return ""
	})
	rep, r := w.statusAs(false)
	if r.Code != 0 {
		t.Errorf("status with serve in the foreground: exit %d, want 0\n%s", r.Code, r.Stderr)
	}
	if !rep.Running || rep.Engine == nil || rep.Engine.Manager != status.Foreground || rep.Unit.LoadState != "not-found" {
		t.Errorf("running %v, engine %+v, unit %+v: want the foreground engine recognised", rep.Running, rep.Engine, rep.Unit)
	}
	if rep.StatusFile.Stale || rep.StatusFile.PID != rep.Engine.PID {
		t.Errorf("status file %+v: written by the running engine %+v, so not stale", rep.StatusFile, rep.Engine)
	}
	for _, l := range rep.Listeners {
		if !l.Listening {
			t.Errorf("listener %s not listening: %s", l.Section, l.Error)
		}
	}
	if a := w.account(rep, alice); a.State != "authorised" || a.Source != status.SourceStatusFile {
		t.Errorf("alice: %+v, want authorised from the live engine's status file", a)
	}
	text := w.box.Exec(w.ctx, nil, w.env.orbit, "email-oauth2-proxy", "status", "--config", w.env.config)
	if !strings.Contains(text.Stdout, "running in the foreground, PID") || strings.Contains(text.Stdout, "no longer") {
		t.Errorf("status text:\n%s", text.Stdout)
	}

	// reload has no unit to go through, and says how the foreground one
	// reloads.
	if r := w.inside(3, "reload", "--config", w.env.config); !strings.Contains(r.Stderr, "runs in the foreground (PID "+strconv.Itoa(rep.Engine.PID)+")") || !strings.Contains(r.Stderr, "kill -HUP") {
		t.Errorf("reload beside a foreground proxy said:\n%s", r.Stderr)
	}

	// As a user who may read nothing of it.
	rep, r = w.statusAs(true)
	if r.Code != 10 {
		t.Errorf("status as nobody: exit %d, want 10 (permission)\n%s", r.Code, r.Stderr)
	}
	if len(rep.Unreadable) == 0 || !strings.Contains(r.Stderr, "permission denied") || !strings.Contains(r.Stderr, "run as root") {
		t.Errorf("status as nobody: unreadable %q, stderr:\n%s", rep.Unreadable, r.Stderr)
	}
	text = w.box.Exec(w.ctx, nil, append(append([]string(nil), asNobody...), w.env.orbit, "email-oauth2-proxy", "status", "--config", w.env.config)...)
	if strings.Contains(text.Stdout, "none configured") || !strings.Contains(text.Stdout, "cannot tell: permission denied") {
		t.Errorf("status text as nobody:\n%s", text.Stdout)
	}
}

// appendListener adds an IMAP listener on port to the file, as an
// administrator's edit.
func appendListener(t *testing.T, e *env, port int) {
	t.Helper()
	f, err := os.OpenFile(e.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "\n[IMAP-%d]\nserver_address = 127.0.0.1\nserver_port = %d\nlocal_address = 127.0.0.1\n", port, e.dc.IMAPPort); err != nil {
		t.Fatal(err)
	}
}

// TestE2EReloadUnit: systemctl reload and orbit's reload make the running
// unit take an edited file without a restart, orbit's reload reports the
// engine's verdict from the journal, and a broken file is refused before
// the engine is signalled.
func TestE2EReloadUnit(t *testing.T) {
	w := newDay2World(t)
	e := w.env
	w.inside(0, "start", "--config", e.config)
	pid := w.status(0).Unit.MainPID

	// systemctl reload works at all (the unit has ExecReload).
	extra := testenv.FreePorts(t, 2)
	appendListener(t, e, extra[0])
	w.sh("systemctl", "reload", unitName)
	ctx, cancel := context.WithTimeout(w.ctx, 15*time.Second)
	defer cancel()
	if err := testenv.WaitPort(ctx, testenv.Addr(extra[0])); err != nil {
		t.Fatalf("after systemctl reload the new listener does not listen: %v", err)
	}

	// orbit's reload: checked, signalled, and the verdict read back.
	appendListener(t, e, extra[1])
	r := w.inside(0, "reload")
	if !strings.Contains(r.Stdout, "Reloaded "+unitName+": the engine (main PID "+strconv.Itoa(int(pid))+") took "+e.config) {
		t.Errorf("reload said:\n%s", r.Stdout)
	}
	if err := testenv.WaitPort(ctx, testenv.Addr(extra[1])); err != nil {
		t.Errorf("after reload the new listener does not listen: %v", err)
	}
	r = w.inside(0, "reload", "--output", "json")
	var res struct {
		Verdict string `json:"verdict"`
		MainPID uint32 `json:"main_pid"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil || res.Verdict != "reloaded" || res.MainPID != pid || !strings.Contains(res.Message, "reloaded") {
		t.Errorf("reload --output json: %+v, %v\n%s", res, err, r.Stdout)
	}

	// A broken file: refused with the problem, the engine never signalled.
	good, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.config, append(good, []byte("\n[IMAP-2999]\nserver_port = 993\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	before := w.sh("journalctl", "--no-pager", "-o", "cat", "-u", unitName)
	r = w.inside(4, "reload")
	for _, want := range []string{e.config + " is not valid", "IMAP-2999", "keeps its current configuration"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("reload of a broken file lacks %q:\n%s", want, r.Stderr)
		}
	}
	if after := w.sh("journalctl", "--no-pager", "-o", "cat", "-u", unitName); strings.Count(after, "reload refused") != strings.Count(before, "reload refused") || strings.Count(after, "Reloading") != strings.Count(before, "Reloading") {
		t.Errorf("the engine was signalled for a file orbit refused:\n%s", after)
	}
	if err := os.WriteFile(e.config, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if rep := w.status(0); rep.Unit.MainPID != pid {
		t.Errorf("main PID %d after the reloads, want still %d", rep.Unit.MainPID, pid)
	}
	for _, l := range w.status(0).Listeners {
		if !l.Listening {
			t.Errorf("listener %s stopped listening across the reloads: %s", l.Section, l.Error)
		}
	}
}

// TestE2ERestartRefusesBrokenFile: restart and register's automatic
// restart check the file first and leave a healthy proxy running when it
// is broken; the unit itself, started on that file behind orbit's back,
// fails once with 78/CONFIG and is not restarted.
func TestE2ERestartRefusesBrokenFile(t *testing.T) {
	w := newDay2World(t)
	e := w.env
	w.inside(0, "start", "--config", e.config)
	pid := w.status(0).Unit.MainPID

	good, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	broken := append(append([]byte(nil), good...), []byte("\n[IMAP-2999]\nserver_port = 993\n")...)
	if err := os.WriteFile(e.config, broken, 0o600); err != nil {
		t.Fatal(err)
	}
	r := w.inside(4, "restart")
	for _, want := range []string{e.config + " is not valid", "IMAP-2999", "main PID " + strconv.Itoa(int(pid)) + ") was left as it is", "config validate"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("restart on a broken file lacks %q:\n%s", want, r.Stderr)
		}
	}
	if rep := w.status(0); rep.Unit.MainPID != pid {
		t.Errorf("main PID %d after the refused restart, want still %d", rep.Unit.MainPID, pid)
	}

	// register, whose automatic restart would otherwise stop the proxy,
	// checks the whole file too (its hook checks again before restarting:
	// TestHookDoesNotRestartOnABrokenFile) and the proxy keeps running.
	secretFile := filepath.Join(e.dir, "client-secret")
	reg := w.box.Exec(w.ctx, nil, e.orbit, "email-oauth2-proxy", "register", "--force", "--config", e.config,
		"--account", bob, "--oauth2-flow", "authorization_code", "--oauth2-permission-url", e.prov.AuthorizeURL(),
		"--imap-server-address", "127.0.0.1", "--imap-server-port", strconv.Itoa(e.dc.IMAPPort), "--imap-local-port", strconv.Itoa(e.imapPort),
		"--smtp-server-address", "127.0.0.1", "--smtp-server-port", strconv.Itoa(e.dc.SubmissionPort), "--smtp-server-starttls", "--smtp-local-port", strconv.Itoa(e.smtpPort),
		"--oauth2-token-url", e.prov.TokenURL(), "--oauth2-scope", "https://mail.example.test/.default",
		"--oauth2-client-id", clientID, "--oauth2-client-secret-file", secretFile,
		"--redirect-uri", fmt.Sprintf("http://127.0.0.1:%d/email-oauth2-proxy-authorize/", e.redirectPort),
		"--redirect-listen-address", fmt.Sprintf("http://127.0.0.1:%d/", e.redirectPort))
	if reg.Code != 4 || !strings.Contains(reg.Stderr, "IMAP-2999") {
		t.Errorf("register on a file with a broken section: exit %d, want 4 naming the section\n%s%s", reg.Code, reg.Stdout, reg.Stderr)
	}
	if rep := w.status(0); rep.Unit.MainPID != pid {
		t.Errorf("main PID %d after register, want still %d", rep.Unit.MainPID, pid)
	}

	// Behind orbit's back: serve exits 78, systemd shows 78/CONFIG and
	// does not restart it.
	if r := w.box.Exec(w.ctx, nil, "systemctl", "restart", unitName); r.Code == 0 {
		t.Fatal("systemctl restart on a broken file succeeded")
	}
	if s := w.settled(); s != "failed/failed" {
		t.Errorf("the unit is %s, want failed/failed (no restart after 78)", s)
	}
	if st, n := w.show("ExecMainStatus"), w.show("NRestarts"); st != "78" || n != "0" {
		t.Errorf("ExecMainStatus %s, NRestarts %s; want 78 and 0", st, n)
	}
	if j := w.sh("journalctl", "--no-pager", "-u", unitName); !strings.Contains(j, "status=78/CONFIG") {
		t.Errorf("the journal does not show status=78/CONFIG:\n%s", j)
	}

	// Fixed file: start brings it back.
	if err := os.WriteFile(e.config, good, 0o600); err != nil {
		t.Fatal(err)
	}
	w.inside(0, "start")
	w.inside(0, "stop")
}

// TestE2EUninstall: uninstall stops, disables and removes the unit and its
// sysusers.d entry, keeps the file and the token store, is idempotent;
// status then says not installed without the old status file's states;
// --purge needs --yes without a terminal and removes the rest.
func TestE2EUninstall(t *testing.T) {
	w := newDay2World(t)
	e := w.env
	w.inside(0, "start", "--config", e.config)
	w.authorise(func() string { return strings.TrimSpace(w.inside(0, "logs", "--auth-url").Stdout) })
	if a := w.account(w.status(0), alice); a.State != "authorised" || a.Source != status.SourceStatusFile {
		t.Fatalf("before uninstall: %+v", a)
	}

	r := w.inside(0, "uninstall")
	for _, want := range []string{"Stopped " + unitName, "Disabled " + unitName, "Removed /etc/systemd/system/" + unitName,
		"Removed /etc/sysusers.d/orbit-emailproxy.conf", "Kept " + e.config, "Kept " + stateDir,
		"Kept /etc/systemd/system/" + unitName + ".d (your drop-ins", "Uninstalled " + unitName} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("uninstall lacks %q:\n%s", want, r.Stdout)
		}
	}
	if st := w.show("LoadState"); st != "not-found" {
		t.Errorf("LoadState after uninstall: %s", st)
	}
	if _, err := os.Stat(e.config); err != nil {
		t.Errorf("the file is gone after uninstall without --purge: %v", err)
	}
	w.sh("test", "-s", stateDir+"/tokens.cache")

	rep := w.status(3)
	if rep.Running || rep.Unit.LoadState != "not-found" || !rep.StatusFile.Stale {
		t.Errorf("status after uninstall: running %v, unit %+v, status file %+v", rep.Running, rep.Unit, rep.StatusFile)
	}
	for _, a := range rep.Accounts {
		if a.Source == status.SourceStatusFile {
			t.Errorf("status after uninstall shows %s %s from the old status file", a.Name, a.State)
		}
	}
	if text := w.inside(3, "status").Stdout; !strings.Contains(text, "not installed") {
		t.Errorf("status text after uninstall:\n%s", text)
	}

	r = w.inside(0, "uninstall")
	if !strings.Contains(r.Stdout, "is not installed; nothing to remove") {
		t.Errorf("second uninstall said:\n%s", r.Stdout)
	}
	r = w.inside(2, "uninstall", "--purge", "--config", e.config)
	if !strings.Contains(r.Stderr, "pass --yes") {
		t.Errorf("--purge without a terminal or --yes:\n%s", r.Stderr)
	}
	r = w.inside(0, "uninstall", "--purge", "--yes", "--config", e.config)
	for _, want := range []string{"Removed " + e.config, "Removed " + stateDir} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("uninstall --purge lacks %q:\n%s", want, r.Stdout)
		}
	}
	if _, err := os.Stat(e.config); !os.IsNotExist(err) {
		t.Errorf("the file survived --purge: %v", err)
	}
	if r := w.box.Exec(w.ctx, nil, "test", "-e", stateDir); r.Code == 0 {
		t.Errorf("%s survived --purge", stateDir)
	}
	// Nothing left to start: the next step is register.
	r = w.inside(3, "status", "--config", e.config)
	if !strings.Contains(r.Stdout, "orbit email-oauth2-proxy register") || strings.Contains(r.Stdout, "email-oauth2-proxy start") {
		t.Errorf("status after --purge should point at register, not start:\n%s", r.Stdout)
	}
}
