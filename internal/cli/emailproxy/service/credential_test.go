package service_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/senhasegura/orbit/internal/cli/emailproxy/service"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/service/servicetest"
	"github.com/senhasegura/orbit/internal/exitcode"
)

const bgConfig = "[emailproxy]\nbackground_refresh = True\n"

// TestCredentialMakerLeavesAlone: Ensure makes nothing, and runs nothing,
// when the file does not ask for background_refresh, does not load, or the
// credential exists (replacing it would orphan every sealed copy). The
// command is one that cannot run, so running it would be an error.
func TestCredentialMakerLeavesAlone(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "credstore.encrypted")
	existing := filepath.Join(dir, "existing")
	if err := os.MkdirAll(existing, 0o700); err != nil {
		t.Fatal(err)
	}
	cred := filepath.Join(existing, "orbit-background-refresh")
	if err := os.WriteFile(cred, []byte("sealed before"), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, store, config string
	}{
		{"background_refresh off", store, write("off.config", "[emailproxy]\nbackground_refresh = False\n")},
		{"not set", store, write("unset.config", "[emailproxy]\n")},
		{"no file", store, filepath.Join(dir, "missing.config")},
		{"credential exists", existing, write("on.config", bgConfig)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := service.CredentialMaker{Store: tt.store, Command: filepath.Join(dir, "no-such-systemd-creds")}
			done, err := c.Ensure(context.Background(), tt.config)
			if err != nil || len(done) != 0 {
				t.Fatalf("Ensure = %q, %v; want nothing done", done, err)
			}
		})
	}
	if _, err := os.Stat(store); !os.IsNotExist(err) {
		t.Errorf("the credential store was created without a credential to make: %v", err)
	}
	if b, _ := os.ReadFile(cred); string(b) != "sealed before" {
		t.Errorf("the existing credential was changed: %q", b)
	}
}

// TestCredentialMakerFails: without systemd-creds, or when it fails, the
// error has the credential exit code, says why, names the fix, and no
// file is left behind.
func TestCredentialMakerFails(t *testing.T) {
	cfg := servicetest.WriteConfig(t, bgConfig)
	tests := []struct {
		name, command string
		want          []string
	}{
		{"systemd-creds missing", filepath.Join(t.TempDir(), "systemd-creds"), []string{"is not installed", "systemd 250"}},
		// false answers has-tpm2 "no" and fails encrypt, saying nothing.
		{"systemd-creds fails", "false", []string{"encrypt --with-key=host failed", "exit status 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := filepath.Join(t.TempDir(), "credstore.encrypted")
			_, err := service.CredentialMaker{Store: store, Command: tt.command}.Ensure(context.Background(), cfg)
			if exitcode.Of(err) != exitcode.Credential {
				t.Fatalf("Ensure: exit %d (%v), want %d", exitcode.Of(err), err, exitcode.Credential)
			}
			msg := err.Error()
			for _, w := range append(tt.want, filepath.Join(store, "orbit-background-refresh"), "The proxy runs without it",
				"orbit email-oauth2-proxy restart", "systemd-creds encrypt --name=orbit-background-refresh", "background_refresh = False") {
				if !strings.Contains(msg, w) {
					t.Errorf("the error lacks %q:\n%s", w, msg)
				}
			}
			if entries, _ := os.ReadDir(store); len(entries) != 0 {
				t.Errorf("left behind in the store: %v", entries)
			}
		})
	}
}

// TestStartWithoutCredential: a credential that cannot be made does not
// stop start: the unit is installed (without LoadCredentialEncrypted=) and
// started, the report is printed, and start then exits with the credential
// code and its explanation.
func TestStartWithoutCredential(t *testing.T) {
	cfg := servicetest.WriteConfig(t, strings.Replace(servicetest.MinimalConfig, "[emailproxy]\n", bgConfig, 1))
	e := newEnv(t, service.Start, cfg)
	e.opts.Family = service.Family
	e.opts.Family.Provision = service.CredentialMaker{Store: t.TempDir(), Command: filepath.Join(t.TempDir(), "systemd-creds")}.Ensure
	code, stdout, _, err := e.run(t)
	if code != exitcode.Credential || !strings.Contains(err.Error(), "is not installed") {
		t.Fatalf("start: exit %d (%v), want %d", code, err, exitcode.Credential)
	}
	if !strings.Contains(stdout, "Started email-oauth2-proxy.service: active (running)") {
		t.Errorf("start did not start the unit:\n%s", stdout)
	}
	if !slices.Contains(e.mgr.CallList(), "start "+service.DefaultUnit) {
		t.Errorf("the unit was not started: %v", e.mgr.CallList())
	}
	data, err := e.inst.Installed(service.DefaultUnit)
	if unit := string(data); err != nil || strings.Contains(unit, "LoadCredential") {
		t.Errorf("the unit names a credential that does not exist:\n%s", unit)
	}
}
