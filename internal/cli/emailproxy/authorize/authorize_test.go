package authorize

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/pkg/emailproxy/control"
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
