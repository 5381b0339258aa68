package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv/fakeoauth"
)

// credPath is background_refresh's credential as start makes it.
const credPath = "/etc/credstore.encrypted/orbit-background-refresh"

// TestE2EBackgroundRefreshUnit is background_refresh as an administrator
// runs it, on a real systemd: one line in the file, then start makes the
// credential with systemd-creds and systemd delivers it to the unit's
// service user, which logs that background_refresh is on. The mailbox is
// authorised through a login; the unit is then stopped until every token
// issued has expired and started again, and the account is refreshed with
// no mailer login (from the sealed copy, with the key systemd decrypted);
// the mailer's first login then needs no token request. uninstall keeps the
// credential and the copies; uninstall --purge removes both.
func TestE2EBackgroundRefreshUnit(t *testing.T) {
	const lifetime = 20 * time.Second
	// /var/lib/systemd: systemd-creds makes the host key there.
	w := newDay2World(t, "/var/lib/systemd")
	e := w.env
	data, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.config, []byte(strings.Replace(string(data), "[emailproxy]\n", "[emailproxy]\nbackground_refresh = True\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}

	r := w.inside(0, "start", "--config", e.config)
	if !strings.Contains(r.Stdout, "Created the credential "+credPath) {
		t.Fatalf("start did not make the credential:\n%s", r.Stdout)
	}
	w.journalSays("background_refresh on")
	sealed := w.sh("sha256sum", credPath)

	// Renew 3 s before expiry rather than 600 s, so seconds-long tokens
	// show the keep-alive at work: the unit's own command line, plus the
	// hidden flag, in a drop-in.
	var execStart string
	for _, line := range strings.Split(w.sh("cat", "/etc/systemd/system/"+unitName), "\n") {
		if strings.HasPrefix(line, "ExecStart=") {
			execStart = line
		}
	}
	if execStart == "" {
		t.Fatal("the unit has no ExecStart")
	}
	if err := w.box.InstallDropIn(w.ctx, unitName, "margin.conf", "[Service]\nExecStart=\n"+execStart+" --refresh-margin 3s\n"); err != nil {
		t.Fatal(err)
	}
	r = w.inside(0, "restart")
	if strings.Contains(r.Stdout, "Created the credential") || w.sh("sha256sum", credPath) != sealed {
		t.Fatalf("restart made the credential again:\n%s", r.Stdout)
	}

	e.prov.SetAccessTokenLifetime(lifetime)
	e.prov.RotateRefreshTokens(true)
	w.authorise(func() string { return strings.TrimSpace(w.inside(0, "logs", "--auth-url").Stdout) })
	copyFile := stateDir + "/background-refresh.json"
	deadline := time.Now().Add(30 * time.Second)
	for w.box.Exec(w.ctx, nil, "test", "-s", copyFile).Code != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no sealed copy in %s after the login", copyFile)
		}
		time.Sleep(200 * time.Millisecond)
	}

	w.inside(0, "stop")
	time.Sleep(lifetime + time.Second) // every token issued so far expires
	e.prov.ResetCounts()
	w.inside(0, "start")
	deadline = time.Now().Add(3 * lifetime)
	for e.prov.GrantCount(fakeoauth.GrantRefreshToken) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no renewal within %v of the start, with no mailer login: %v", 3*lifetime, grants(e.prov.TokenRequests()))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if reqs := e.prov.TokenRequests(); reqs[0].Status != 200 {
		t.Fatalf("the renewal after the restart failed: %v", grants(reqs))
	}
	e.prov.ResetCounts()
	w.loggedIn(w.login(), "the mailer's first login after the restart", 30*time.Second)
	if n := e.prov.Count(fakeoauth.EndpointToken); n != 0 {
		t.Errorf("the mailer's first login after the restart made %d token requests, want 0: %v", n, grants(e.prov.TokenRequests()))
	}
	w.journalSecretFree(map[string]string{"client secret": clientSecret, "mailer password": mailerPassword})

	r = w.inside(0, "uninstall")
	if !strings.Contains(r.Stdout, "Kept "+credPath+" (uninstall --purge removes it).") {
		t.Errorf("uninstall does not say it keeps the credential:\n%s", r.Stdout)
	}
	w.sh("test", "-s", credPath)
	w.sh("test", "-s", copyFile)
	r = w.inside(0, "uninstall", "--purge", "--yes", "--config", e.config)
	for _, want := range []string{"Removed " + credPath + ".", "Removed " + stateDir + "."} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("uninstall --purge lacks %q:\n%s", want, r.Stdout)
		}
	}
	for _, gone := range []string{credPath, copyFile} {
		if w.box.Exec(w.ctx, nil, "test", "-e", gone).Code == 0 {
			t.Errorf("%s survived uninstall --purge", gone)
		}
	}
}

// journalSays waits until the unit's journal has a line containing want.
func (w *unitWorld) journalSays(want string) {
	w.t.Helper()
	var out string
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out, want) {
		if time.Now().After(deadline) {
			w.t.Fatalf("the unit's journal never said %q:\n%s", want, out)
		}
		time.Sleep(200 * time.Millisecond)
		out = w.box.Exec(w.ctx, nil, "journalctl", "--no-pager", "-o", "cat", "-u", unitName).Stdout
	}
}
