package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv"
	"github.com/senhasegura/orbit/pkg/emailproxy/control"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth/interactive"
)

// TestAuthorizationWaitCoversAuthTimeout: the proxy ends a login's token
// wait at AuthorizationTimeout, so it must leave room for the whole wait for
// an administrator that --auth-timeout promises; the pre-login deadline of
// clients that are not waiting for a token stays the proxy's default.
func TestAuthorizationWaitCoversAuthTimeout(t *testing.T) {
	for _, auth := range []time.Duration{0, -1, time.Second, interactive.DefaultTimeout, 30 * time.Minute} {
		got := authorizationWait(auth)
		want := auth
		if auth == 0 {
			want = interactive.DefaultTimeout
		}
		if want > 0 && got <= want {
			t.Errorf("AuthTimeout %v: authorisation wait %v would end the wait for an administrator early", auth, got)
		}
	}
}

// TestNewRefusesOpenFiles: the engine does not start on a configuration
// others may change or a token store others may read.
func TestNewRefusesOpenFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "emailproxy.config")
	tok := filepath.Join(dir, "tokens.cache")
	const file = "[IMAP-1993]\nserver_address = 127.0.0.1\nserver_port = 993\nlocal_address = 127.0.0.1\n"
	if err := os.WriteFile(cfg, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tok, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	opts := Options{ConfigPath: cfg, TokenPath: tok, StatusPath: "-"}
	if _, err := New(opts); err != nil {
		t.Fatalf("private files: %v", err)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{tok, 0o644}, {cfg, 0o620}} {
		if err := os.Chmod(c.path, c.mode); err != nil {
			t.Fatal(err)
		}
		_, err := New(opts)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "chmod 600 "+c.path) {
			t.Errorf("%s at %v: %v", c.path, c.mode, err)
		}
		if err := os.Chmod(c.path, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAccountErrorsDisableOnlyThatAccount: a file whose only errors are in
// one account section is served; that account's logins are refused with
// the section and the problem named, and the refusal is logged at start.
// An error in a server section still refuses the file.
func TestAccountErrorsDisableOnlyThatAccount(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "emailproxy.config")
	good := `[IMAP-2993]
server_address = imap.example.com
server_port = 993
local_address = 127.0.0.1
[alice@example.com]
token_url = https://127.0.0.1:1/token
oauth2_scope = mail
oauth2_flow = password
client_id = app
[bob@example.com]
token_url = https://127.0.0.1:1/token
oauth2_scope = mail
client_id = app
permission_url = https://login.example.com/authorize
`
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	var logBuf bytes.Buffer
	e, err := New(Options{ConfigPath: path, TokenPath: filepath.Join(dir, "tokens"), StatusPath: "-",
		Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	if err != nil {
		t.Fatalf("a file with one broken account is refused: %v", err)
	}
	e.logDisabled(e.current.Load())
	if !strings.Contains(logBuf.String(), "account [bob@example.com] disabled: redirect_uri") {
		t.Errorf("log does not say which account is disabled and why:\n%s", logBuf.String())
	}
	_, err = gate{e}.AccessToken(context.Background(), "bob@example.com", "pw")
	if !errors.Is(err, ErrAccountDisabled) || !strings.Contains(err.Error(), "[bob@example.com] is disabled: redirect_uri is missing") {
		t.Errorf("bob's login: %v", err)
	}
	// alice is not refused by the gate: her login reaches the token
	// manager, which fails on the unreachable provider instead.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := (gate{e}).AccessToken(ctx, "alice@example.com", "pw"); errors.Is(err, ErrAccountDisabled) {
		t.Errorf("alice's login was refused as disabled: %v", err)
	}

	bad := strings.Replace(good, "server_port = 993\n", "", 1)
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{ConfigPath: path, StatusPath: "-"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("a server section without server_port: %v, want ErrInvalidConfig", err)
	}
}

// TestStartClaimsTheStatusFile: a new engine writes the status file when it
// starts, with its own PID and what it carried over. Before, the file kept
// the previous engine's PID until some login changed an account, so after
// every restart `status` called the running proxy's file stale and hid the
// account states it held.
func TestStartClaimsTheStatusFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "emailproxy.config")
	status := filepath.Join(dir, "status.json")
	file := "[IMAP-" + strconv.Itoa(testenv.FreePorts(t, 1)[0]) + "]\nserver_address = 127.0.0.1\nserver_port = 993\nlocal_address = 127.0.0.1\n"
	if err := os.WriteFile(cfg, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	expiry := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	old := oauth.Status{Version: oauth.StatusVersion, PID: os.Getpid() + 100000, Updated: time.Now().Add(-time.Minute).UTC(),
		Accounts: map[string]oauth.AccountStatus{"alice@example.com": {State: oauth.StateAuthorised, TokenExpiry: expiry}}}
	data, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(status, data, 0o640); err != nil {
		t.Fatal(err)
	}
	e, err := New(Options{ConfigPath: cfg, TokenPath: filepath.Join(dir, "tokens.cache"), StatusPath: status})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.Shutdown(ctx) }()
	got, err := oauth.ReadStatus(status)
	if err != nil {
		t.Fatal(err)
	}
	if got.PID != os.Getpid() {
		t.Errorf("the status file names PID %d after start, want this engine's %d", got.PID, os.Getpid())
	}
	if a := got.Accounts["alice@example.com"]; a.State != oauth.StateAuthorised || !a.TokenExpiry.Equal(expiry) {
		t.Errorf("alice in the file after start: %+v, want what the previous engine knew", a)
	}
}

// TestReloadBringsBackARemovedStateDirectory: an administrator who removed
// the state directory under a running engine (rm -rf, a botched cleanup)
// gets its control socket and status file back with a reload. Before, the
// engine kept serving without them until a restart: `authorize` said the
// proxy was not running, and `status` showed no account states.
func TestReloadBringsBackARemovedStateDirectory(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "state")
	cfg := filepath.Join(base, "emailproxy.config")
	file := "[IMAP-" + strconv.Itoa(testenv.FreePorts(t, 1)[0]) + "]\nserver_address = 127.0.0.1\nserver_port = 993\nlocal_address = 127.0.0.1\n"
	if err := os.WriteFile(cfg, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	status := filepath.Join(dir, "status.json")
	e, err := New(Options{ConfigPath: cfg, TokenPath: filepath.Join(dir, "tokens.cache"), StatusPath: status})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.Shutdown(ctx) }()
	sock := e.opts.controlPath()
	for _, p := range []string{sock, status} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("after start: %v", err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{sock, status} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("after the reload: %v", err)
		}
	}
	if _, err := control.Call(ctx, sock, control.Request{Op: "ping"}, nil); errors.Is(err, control.ErrNotRunning) {
		t.Errorf("the control socket does not answer after the reload: %v", err)
	}
}
