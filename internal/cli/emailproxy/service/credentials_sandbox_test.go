package service

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv"
	"github.com/senhasegura/orbit/internal/testenv/sandbox"
)

// TestSandboxBackgroundRefreshCredential: on a real systemd, with
// background_refresh = True and no credential yet, start creates it with
// systemd-creds (the host key: the sandbox has no TPM2), 0600 root, holding
// 32 random bytes; the unit loads it with LoadCredentialEncrypted=, systemd
// decrypts it into the service's $CREDENTIALS_DIRECTORY, and the engine,
// running as the service user, takes it. A restart keeps the credential as
// it is.
func TestSandboxBackgroundRefreshCredential(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a systemd sandbox (-short)")
	}
	testenv.RequireCommand(t, "journalctl")
	testenv.RequireCommand(t, "systemd-creds")
	dir := testenv.SharedDir(t)
	// /var/lib/systemd: systemd-creds makes the host key there; it must
	// stay in the sandbox.
	s := sandbox.BootWith(t, sandbox.Options{Tmpfs: []string{"/var/lib/orbit", "/var/lib/systemd"}})
	orbit := testenv.BuildOrbit(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cfg := filepath.Join(dir, "proxy", "emailproxy.config")
	if err := os.MkdirAll(filepath.Dir(cfg), 0o755); err != nil {
		t.Fatal(err)
	}
	ports := testenv.FreePorts(t, 3)
	run := func(name string, env []string, args ...string) sandbox.Result {
		t.Helper()
		r := s.Exec(ctx, env, args...)
		if r.Code != 0 {
			t.Fatalf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", name, r.Code, r.Stdout, r.Stderr)
		}
		return r
	}
	run("register", []string{"ORBIT_OAUTH2_CLIENT_SECRET=Qx8~R2.vF_kP9sLmN3tZ7wYbC4dE6gH1jK5nA0uV"},
		orbit, "email-oauth2-proxy", "register", "--provider", "office365", "--tenant-id", "0f3e3b5c-1a2b-4c3d-8e9f-0123456789ab",
		"--oauth2-client-id", "6731de76-14a6-49ae-97bc-6eba6914391e", "--config", cfg, "--force",
		"--imap-local-port", strconv.Itoa(ports[0]), "--imap-server-address", "127.0.0.1", "--imap-server-port", strconv.Itoa(ports[2]),
		"--smtp-local-port", strconv.Itoa(ports[1]), "--smtp-server-address", "127.0.0.1", "--smtp-server-port", strconv.Itoa(ports[2]),
		"--redirect-uri", "https://vault.example.com/email-oauth2-proxy-authorize/",
		"--redirect-listen-address", fmt.Sprintf("http://127.0.0.1:%d/", ports[2]))
	data := run("read the file", nil, "cat", cfg).Stdout
	data = strings.Replace(data, "[emailproxy]\n", "[emailproxy]\nbackground_refresh = True\n", 1)
	if err := os.WriteFile(cfg, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	credPath := "/etc/credstore.encrypted/orbit-background-refresh"
	if r := s.Exec(ctx, nil, "test", "-e", credPath); r.Code == 0 {
		t.Fatalf("%s exists before start", credPath)
	}

	r := run("start", nil, orbit, "email-oauth2-proxy", "start")
	if !strings.Contains(r.Stdout, "active (running)") {
		t.Fatalf("start:\n%s", r.Stdout)
	}
	if want := "Created the credential " + credPath + " for background_refresh: 32 random bytes encrypted by systemd-creds with this host's key"; !strings.Contains(r.Stdout, want) {
		t.Errorf("start does not say %q:\n%s", want, r.Stdout)
	}
	if got := strings.TrimSpace(run("stat the credential", nil, "stat", "-c", "%U:%G %a", credPath).Stdout); got != "root:root 600" {
		t.Errorf("the credential is %s, want root:root 600", got)
	}
	if n := strings.TrimSpace(run("decrypt the credential", nil, "sh", "-c",
		"systemd-creds decrypt --name=orbit-background-refresh "+credPath+" - | wc -c").Stdout); n != "32" {
		t.Errorf("the credential holds %s bytes, want 32", n)
	}
	sealed := run("read the credential", nil, "sha256sum", credPath).Stdout

	unit := run("cat the unit", nil, "cat", "/etc/systemd/system/email-oauth2-proxy.service").Stdout
	if !strings.Contains(unit, "LoadCredentialEncrypted=orbit-background-refresh:/etc/credstore.encrypted/orbit-background-refresh") {
		t.Errorf("the unit does not load the credential:\n%s", unit)
	}
	var journal string
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(journal, "background_refresh") && time.Now().Before(deadline) {
		journal = s.Exec(ctx, nil, "journalctl", "-u", "email-oauth2-proxy.service", "-o", "cat", "--no-pager").Stdout
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(journal, "background_refresh on") {
		t.Errorf("the engine did not take the credential systemd should have delivered; journal:\n%s", journal)
	}
	r = run("restart", nil, orbit, "email-oauth2-proxy", "restart")
	if strings.Contains(r.Stdout, "Created the credential") {
		t.Errorf("restart made the credential again:\n%s", r.Stdout)
	}
	if again := run("read the credential", nil, "sha256sum", credPath).Stdout; again != sealed {
		t.Errorf("restart replaced the credential")
	}
	run("stop", nil, orbit, "email-oauth2-proxy", "stop")
}
