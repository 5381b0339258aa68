package authorize

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/pkg/emailproxy/control"
	"github.com/spf13/cobra"
)

const url = "https://login.example/authorize?state=s1"

// engine is a scripted control socket: the replies it sends, then the
// final one (or an error).
func engine(replies []control.Reply, final control.Reply, err error, got *control.Request) func(context.Context, string, control.Request, func(control.Reply)) (control.Reply, error) {
	return func(ctx context.Context, _ string, req control.Request, on func(control.Reply)) (control.Reply, error) {
		*got = req
		for _, r := range replies {
			on(r)
			if ctx.Err() != nil {
				return control.Reply{}, ctx.Err()
			}
		}
		return final, err
	}
}

func TestRun(t *testing.T) {
	expiry := time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC)
	waiting := []control.Reply{{Type: control.TypeWaiting, AuthURL: url}}
	authorised := control.Reply{Type: control.TypeAuthorised, Flow: "authorization_code", TokenExpiry: expiry}
	for _, tc := range []struct {
		name     string
		tty      bool
		noWait   bool
		json     bool
		replies  []control.Reply
		final    control.Reply
		err      error
		wantCode exitcode.Code
		wantOut  []string
	}{
		{name: "script", replies: waiting, final: authorised,
			wantOut: []string{"Please visit the following URL to authenticate account alice@example.com: " + url + "\n", "alice@example.com is signed in (authorization_code)"}},
		{name: "terminal", tty: true, replies: waiting, final: authorised,
			wantOut: []string{"Open this URL in a browser and sign in as alice@example.com:\n\n  ", url, "is signed in"}},
		{name: "device code", replies: []control.Reply{{Type: control.TypeWaiting, AuthURL: "https://login.example/device", UserCode: "ABCD-EFGH"}}, final: authorised,
			wantOut: []string{"Visit https://login.example/device and use code ABCD-EFGH to authenticate account alice@example.com"}},
		{name: "no wait, JSON", noWait: true, json: true, replies: waiting, final: authorised,
			wantOut: []string{`"state": "waiting"`, `"auth_url": "` + url + `"`}},
		{name: "authorised at once, JSON", json: true, final: authorised,
			wantOut: []string{`"state": "authorised"`, `"token_expiry": "2026-12-01T11:00:00Z"`}},
		{name: "not running", err: fmt.Errorf("%w (no control socket at /x)", control.ErrNotRunning), wantCode: exitcode.NotRunning},
		{name: "unknown account", final: control.Reply{Type: control.TypeError, Kind: control.KindUnknownAccount, Message: "not configured"}, wantCode: exitcode.Invalid},
		{name: "nobody signed in", replies: waiting, final: control.Reply{Type: control.TypeError, Kind: control.KindTimeout, Message: "authorisation required"}, wantCode: exitcode.Timeout},
		{name: "provider refused", final: control.Reply{Type: control.TypeError, Kind: control.KindRefused, Message: "access_denied"}, wantCode: exitcode.Error},
	} {
		t.Run(tc.name, func(t *testing.T) {
			io, in, out, _ := iostreams.Test()
			io.SetTTY(false, tc.tty, false)
			in.WriteString("mailer-pw\n")
			var req control.Request
			o := &Options{IO: io, Account: "alice@example.com", PasswordFile: "-", NoWait: tc.noWait,
				Call: engine(tc.replies, tc.final, tc.err, &req)}
			if tc.json {
				o.Output = output.JSON
			}
			err := Run(context.Background(), o)
			if code := exitcode.Of(err); code != tc.wantCode {
				t.Fatalf("exit %d (%v), want %d", code, err, tc.wantCode)
			}
			if req.Password != "mailer-pw" || req.Account != "alice@example.com" || req.Op != "authorize" {
				t.Errorf("request %+v", req)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// The engine's absence is reported before any password is asked for.
func TestNotRunningBeforePassword(t *testing.T) {
	io, _, _, _ := iostreams.Test()
	io.SetTTY(true, true, true)
	var o *Options
	cmd := New(&factory.Factory{IO: io}, func(_ context.Context, got *Options) error { o = got; return nil })
	cmd.SetArgs([]string{"--account", "a@b", "--socket", t.TempDir() + "/control.sock"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	asked := false
	o.ReadPassword = func(string) (string, error) { asked = true; return "pw", nil }
	if err := Run(context.Background(), o); exitcode.Of(err) != exitcode.NotRunning || asked {
		t.Fatalf("Run = %v (exit %d), password asked: %v; want exit 3 before any prompt", err, exitcode.Of(err), asked)
	}
}

func TestPassword(t *testing.T) {
	io, _, _, _ := iostreams.Test()
	o := &Options{IO: io, Account: "a@b"}
	if _, err := o.password(); exitcode.Of(err) != exitcode.Usage {
		t.Errorf("no password and no terminal: %v, want a usage error", err)
	}
	io.SetTTY(true, true, true)
	o.ReadPassword = func(string) (string, error) { return "typed", nil }
	if p, err := o.password(); p != "typed" || err != nil {
		t.Errorf("prompt: %q %v", p, err)
	}
	o.PasswordFile = "/nonexistent"
	o.ReadFile = func(string) ([]byte, error) { return nil, errors.New("boom") }
	if _, err := o.password(); err == nil {
		t.Error("an unreadable file must fail")
	}
}

// TestAccountCompletion: --account completes the logins the proxy knows
// (the file's own account sections and the accounts with stored tokens,
// which a catch-all file names nowhere else), never a catch-all section
// and never file names.
func TestAccountCompletion(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "emailproxy.config")
	tokens := filepath.Join(dir, "tokens.cache")
	files := map[string]string{
		cfg: "[emailproxy]\nallow_catch_all_accounts = True\n[IMAP-2993]\nserver_address = imap.example.com\nserver_port = 993\nlocal_address = 127.0.0.1\n" +
			"[alice@example.com]\ntoken_url = https://login.example/token\npermission_url = https://login.example/authorize\noauth2_scope = s\nclient_id = c\nclient_secret = x\nredirect_uri = http://localhost/\n" +
			"[@example.org]\ntoken_url = https://login.example/token\npermission_url = https://login.example/authorize\noauth2_scope = s\nclient_id = c\nclient_secret = x\nredirect_uri = http://localhost/\n",
		tokens: "[bob@example.org]\ntoken_salt = c2FsdA==\naccess_token = gAAAAAfake\naccess_token_expiry = 1767347100\nrefresh_token = gAAAAAfake\nlast_activity = 1767340800\n",
	}
	for p, c := range files {
		if err := os.WriteFile(p, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := AccountNames(cfg, filepath.Join(dir, "none.json"), tokens), []string{"alice@example.com", "bob@example.org"}; !slices.Equal(got, want) {
		t.Errorf("AccountNames = %q, want %q", got, want)
	}
	if got := AccountNames(filepath.Join(dir, "missing.config"), "", ""); len(got) != 0 {
		t.Errorf("no file: %q, want nothing", got)
	}

	io, _, out, _ := iostreams.Test()
	opts := newOptions(factory.New(io))
	opts.AccountNames = func() []string { return AccountNames(cfg, "", tokens) }
	cmd := newCommand(opts, nil)
	cmd.SetOut(io.Out)
	cmd.SetArgs([]string{cobra.ShellCompRequestCmd, "--account", "b"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "bob@example.org\n:4\n" {
		t.Errorf("orbit email-oauth2-proxy authorize --account b<TAB>: %q, want bob's login and no file names (:4)", got)
	}
}
