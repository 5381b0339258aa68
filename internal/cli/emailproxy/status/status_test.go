package status_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/cli/emailproxy/service"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/service/servicetest"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/status"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/internal/systemd"
	"github.com/senhasegura/orbit/internal/testenv/golden"
)

var now = time.Date(2026, 1, 2, 9, 0, 0, 0, time.UTC)

const statusJSON = `{
  "version": 1,
  "pid": 4242,
  "updated": "2026-01-02T08:59:00Z",
  "accounts": {
    "alice@example.com": {"state": "authorised", "flow": "client_credentials", "since": "2026-01-02T08:00:00Z",
      "token_expiry": "2026-01-02T09:55:00Z", "last_activity": "2026-01-02T08:58:00Z"},
    "bob@example.com": {"state": "waiting", "flow": "authorization_code", "since": "2026-01-02T08:30:00Z",
      "auth_url": "https://login.microsoftonline.com/t/oauth2/v2.0/authorize?client_id=c&state=s", "last_activity": "2026-01-02T08:30:00Z"},
    "carol@example.com": {"state": "failing", "flow": "client_credentials", "since": "2026-01-02T08:40:00Z",
      "reason": "invalid_client: AADSTS7000215 invalid client secret", "last_activity": "2026-01-02T08:40:00Z"}
  }
}
`

// statusUnderAttackJSON is statusJSON with failed logins.
var statusUnderAttackJSON = strings.Replace(statusJSON, `
  }
}
`, `
  },
  "failed_logins": {
    "alice@example.com": {"last_hour": 57, "refused": 12, "addresses": 3, "last_address": "203.0.113.9",
      "last": "2026-01-02T08:59:12Z", "delayed_until": "2026-01-02T09:00:30Z"},
    "carol@example.com": {"last_hour": 2, "addresses": 1, "last_address": "198.51.100.4", "last": "2026-01-02T07:30:00Z"}
  },
  "catch_all_failed_logins": {
    "@": {"last_hour": 9, "addresses": 64, "addresses_capped": true, "names": 9, "last_address": "192.0.2.200",
      "last": "2026-01-02T08:58:00Z", "delayed_until": "2026-01-02T08:58:30Z"}
  }
}
`, 1)

// dave's tokens are in the cache file only (the status file was reset);
// erin's access token has expired and she has no refresh token.
const tokenCache = `[dave@example.com]
token_salt = c2FsdA==
access_token = gAAAAAfake
access_token_expiry = 1767347100
refresh_token = gAAAAAfake
last_activity = 1767340800

[erin@example.com]
token_salt = c2FsdA==
access_token = gAAAAAfake
access_token_expiry = 1767300000
last_activity = 1767290000
`

type fixture struct {
	opts *status.Options
	mgr  *servicetest.Manager
	conn *servicetest.Connector
	out  func() (string, string)
	// noProbes: the test's file names no listener to probe.
	noProbes bool
}

// listening says which probe addresses answer; the rest are refused.
func newFixture(t *testing.T, listening ...string) *fixture {
	t.Helper()
	cfg := servicetest.WriteConfig(t, servicetest.MinimalConfig)
	dir := t.TempDir()
	sf := filepath.Join(dir, "status.json")
	tc := filepath.Join(dir, "tokens.cache")
	for p, c := range map[string]string{sf: statusJSON, tc: tokenCache} {
		if err := os.WriteFile(p, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	io, _, out, errOut := iostreams.Test()
	mgr := servicetest.NewManager()
	mgr.Props = systemd.Properties{Name: service.DefaultUnit, LoadState: "loaded", ActiveState: "active", SubState: "running",
		UnitFileState: "enabled", MainPID: 4242, ActiveEnterTimestamp: now.Add(-2*time.Hour - 5*time.Minute),
		StateChangeTimestamp: now.Add(-2*time.Hour - 5*time.Minute), MemoryCurrent: 13_000_000, MemoryKnown: true, Result: "success"}
	conn := &servicetest.Connector{Manager: mgr}
	var mu sync.Mutex
	var dialed []string
	f := &fixture{mgr: mgr, conn: conn}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if f.noProbes {
			if len(dialed) > 0 {
				t.Errorf("probed %q, want nothing", dialed)
			}
			return
		}
		sort.Strings(dialed)
		if want := "127.0.0.1:2465 127.0.0.1:2993"; strings.Join(dialed, " ") != want {
			t.Errorf("probed %q, want %q", dialed, want)
		}
	})
	f.out = func() (string, string) { return out.String(), errOut.String() }
	f.opts = &status.Options{
		IO: io, Connector: conn, Installer: &servicetest.Installer{},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			dialed = append(dialed, addr)
			mu.Unlock()
			for _, l := range listening {
				if l == addr {
					a, b := net.Pipe()
					b.Close()
					return a, nil
				}
			}
			return nil, &net.OpError{Op: "dial", Net: network, Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
		},
		Now: func() time.Time { return now }, Location: time.UTC,
		Unit: service.DefaultUnit, ConfigPath: cfg, ConfigExplicit: true, StatusFile: sf, TokenCache: tc,
		Output: output.Text,
	}
	return f
}

func (f *fixture) run(t *testing.T) (exitcode.Code, string, string) {
	t.Helper()
	err := status.Run(context.Background(), f.opts)
	o, e := f.out()
	var ee *exitcode.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.Err == nil) {
		e += err.Error() // what Main would print
	}
	return exitcode.Of(err), o, e
}

// normalise replaces the per-run configuration path.
func (f *fixture) normalise(s string) string {
	return strings.ReplaceAll(s, f.opts.ConfigPath, "/etc/orbit/email-oauth2-proxy/emailproxy.config")
}

func TestStatusPlainGolden(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(f *fixture)
		listen []string
		code   exitcode.Code
	}{
		{name: "running", listen: []string{"127.0.0.1:2993"}, code: exitcode.OK},
		{name: "stopped", code: exitcode.NotRunning, setup: func(f *fixture) {
			f.mgr.Props = systemd.Properties{LoadState: "loaded", ActiveState: "inactive", SubState: "dead", UnitFileState: "enabled",
				StateChangeTimestamp: now.Add(-10 * time.Minute)}
		}},
		{name: "failed", code: exitcode.NotRunning, setup: func(f *fixture) {
			f.mgr.Props = systemd.Properties{LoadState: "loaded", ActiveState: "failed", SubState: "failed", UnitFileState: "enabled",
				Result: "exit-code", NRestarts: 5, StateChangeTimestamp: now.Add(-90 * time.Second)}
		}},
		{name: "not-installed", code: exitcode.NotRunning, setup: func(f *fixture) {
			f.mgr.Props = systemd.Properties{LoadState: "not-found", ActiveState: "inactive", SubState: "dead"}
		}},
		{name: "no-systemd", code: exitcode.NoSystemd, setup: func(f *fixture) { f.conn.Err = servicetest.ErrNoSystemd }},
		// A wrong-password storm against alice, and names nobody uses
		// tried under the catch-all: alice stays authorised, her line says
		// how many failed and from where; carol's last failure is over an
		// hour old and not shown.
		{name: "under-attack", listen: []string{"127.0.0.1:2993"}, setup: func(f *fixture) {
			if err := os.WriteFile(f.opts.StatusFile, []byte(statusUnderAttackJSON), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		// After uninstall --purge: no unit, no file, no state. start could
		// only fail; the next step is register.
		{name: "purged", code: exitcode.NotRunning, setup: func(f *fixture) {
			f.mgr.Props = systemd.Properties{LoadState: "not-found", ActiveState: "inactive", SubState: "dead"}
			f.noProbes = true
			for _, p := range []string{f.opts.ConfigPath, f.opts.StatusFile, f.opts.TokenCache} {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.listen...)
			if tt.setup != nil {
				tt.setup(f)
			}
			code, stdout, stderr := f.run(t)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr)
			}
			golden.Check(t, "status-"+tt.name+".txt", f.normalise(stdout))
			if strings.Contains(stdout+stderr, "gAAAAA") || strings.Contains(stdout+stderr, "not-a-real-secret") {
				t.Error("a token or secret was printed")
			}
			if strings.Contains(stdout, "\x1b[") {
				t.Error("escape codes in plain output")
			}
			if tt.code == exitcode.NoSystemd && !strings.Contains(stderr, "orbit email-oauth2-proxy serve --config") {
				t.Errorf("no-systemd error does not show the foreground command:\n%s", stderr)
			}
			if tt.code == exitcode.NotRunning && stderr != "" {
				t.Errorf("a stopped unit is a state, not an error; stderr:\n%s", stderr)
			}
		})
	}
}

func TestStatusTTYPanel(t *testing.T) {
	f := newFixture(t, "127.0.0.1:2993", "127.0.0.1:2465")
	f.opts.IO.SetTTY(true, true, true)
	code, stdout, _ := f.run(t)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, s := range []string{"╭", "email-oauth2-proxy", "listening", "authorised, token valid until 2026-01-02 09:55:00 UTC"} {
		if !strings.Contains(stdout, s) {
			t.Errorf("panel lacks %q:\n%s", s, stdout)
		}
	}
}

func TestStatusBadUnitIsAUsageError(t *testing.T) {
	io, _, out, _ := iostreams.Test()
	// Reaching the connector would be exit 6; the name is refused first.
	err := status.Run(context.Background(), &status.Options{IO: io, Unit: "bad name",
		Connector: &servicetest.Connector{Err: servicetest.ErrNoSystemd}, Installer: &servicetest.Installer{}})
	if exitcode.Of(err) != exitcode.Usage || out.Len() != 0 || !strings.Contains(fmt.Sprint(err), `--unit "bad name" is not a systemd unit name`) {
		t.Errorf("exit %d, stdout %q, error %v", exitcode.Of(err), out, err)
	}
}

// TestStatusPanelOnlyWhereItHelps: NO_COLOR and a terminal narrower than
// the panel get the plain layout, not a frame the terminal would wrap.
func TestStatusPanelOnlyWhereItHelps(t *testing.T) {
	tests := []struct {
		name    string
		noColor bool
		width   int
		panel   bool
	}{
		{"wide terminal", false, 200, true},
		{"NO_COLOR", true, 200, false},
		{"narrow terminal", false, 40, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, "127.0.0.1:2993", "127.0.0.1:2465")
			f.opts.IO.SetTTY(true, true, true)
			f.opts.IO.SetNoColor(tt.noColor)
			f.opts.Width = func() int { return tt.width }
			code, stdout, _ := f.run(t)
			if code != 0 {
				t.Fatalf("exit %d", code)
			}
			if got := strings.Contains(stdout, "╭"); got != tt.panel {
				t.Errorf("panel drawn: %v, want %v:\n%s", got, tt.panel, stdout)
			}
			if !strings.Contains(stdout, "Listeners:") {
				t.Errorf("the listing is missing:\n%s", stdout)
			}
			if tt.noColor && strings.Contains(stdout, "\x1b[") {
				t.Errorf("escape codes with NO_COLOR:\n%q", stdout)
			}
		})
	}
}

// TestStatusJSONSchema pins the documented --output json schema
// (docs/status-json.md): every key, and the values of a known state.
func TestStatusJSONSchema(t *testing.T) {
	f := newFixture(t, "127.0.0.1:2993")
	f.opts.Output = output.JSON
	code, stdout, _ := f.run(t)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	wantKeys(t, "top", doc, "running", "engine", "unit", "config", "listeners", "accounts", "status_file")
	unit := doc["unit"].(map[string]any)
	wantKeys(t, "unit", unit, "name", "systemd", "load_state", "active_state", "sub_state", "unit_file_state",
		"main_pid", "since", "memory_bytes", "result", "restarts")
	if unit["active_state"] != "active" || unit["main_pid"] != float64(4242) || unit["memory_bytes"] != float64(13_000_000) ||
		unit["since"] != "2026-01-02T06:55:00Z" || doc["running"] != true {
		t.Errorf("unit = %v", unit)
	}
	ls := doc["listeners"].([]any)
	if len(ls) != 2 {
		t.Fatalf("listeners = %v", ls)
	}
	l0, l1 := ls[0].(map[string]any), ls[1].(map[string]any)
	wantKeys(t, "listener", l0, "section", "protocol", "address", "upstream", "listening")
	wantKeys(t, "listener", l1, "section", "protocol", "address", "upstream", "listening", "error")
	if l0["listening"] != true || l1["listening"] != false || l1["error"] != "connection refused" || l0["address"] != "127.0.0.1:2993" {
		t.Errorf("listeners = %v", ls)
	}
	accts := map[string]map[string]any{}
	for _, a := range doc["accounts"].([]any) {
		m := a.(map[string]any)
		accts[m["name"].(string)] = m
	}
	for name, want := range map[string]string{
		"alice@example.com": "authorised/status-file", "bob@example.com": "waiting/status-file",
		"carol@example.com": "failing/status-file", "dave@example.com": "authorised/token-store",
		"erin@example.com": "expired/token-store",
	} {
		a := accts[name]
		if got := fmt.Sprintf("%v/%v", a["state"], a["source"]); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
	if _, ok := accts["@"]; ok {
		t.Error("the catch-all section is listed although its accounts are")
	}
	wantKeys(t, "waiting account", accts["bob@example.com"], "name", "state", "source", "flow", "since", "auth_url", "last_activity")
	wantKeys(t, "status_file", doc["status_file"].(map[string]any), "path", "updated", "pid", "stale")
}

func wantKeys(t *testing.T, what string, m map[string]any, keys ...string) {
	t.Helper()
	var got []string
	for k := range m {
		got = append(got, k)
	}
	sort.Strings(got)
	sort.Strings(keys)
	if strings.Join(got, ",") != strings.Join(keys, ",") {
		t.Errorf("%s keys = %v, want %v", what, got, keys)
	}
}

func TestStatusWithoutStatusFileOrConfig(t *testing.T) {
	f := newFixture(t)
	f.opts.StatusFile = filepath.Join(t.TempDir(), "none.json")
	f.opts.TokenCache = ""
	// Probes still happen: the config is there. Only the account sources vary.
	code, stdout, _ := f.run(t)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(stdout, "@  not used yet (client_credentials)") {
		t.Errorf("the configured catch-all is not listed as unused:\n%s", stdout)
	}
}

func TestProbeRealListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	cfg := servicetest.WriteConfig(t, fmt.Sprintf("[IMAP-%d]\nserver_address = a.example\nserver_port = 993\n\n[SMTP-%d]\nserver_address = b.example\nserver_port = 587\nlocal_address = 127.0.0.1\n", port, closedPort))
	for _, how := range []string{"socket table", "dial"} {
		t.Run(how, func(t *testing.T) {
			io, _, out, _ := iostreams.Test()
			var d net.Dialer
			o := &status.Options{IO: io, Connector: &servicetest.Connector{Err: servicetest.ErrNoSystemd}, Dial: d.DialContext,
				ConfigPath: cfg, ConfigExplicit: true, Output: output.JSON, Now: func() time.Time { return now }}
			if how == "socket table" {
				if _, err := status.ReadListening(); err != nil {
					t.Skipf("no /proc/net/tcp here: %v", err)
				}
				o.Listening = status.ReadListening
				o.Dial = func(context.Context, string, string) (net.Conn, error) {
					t.Error("dialled a listener although the socket table was readable")
					return nil, errors.New("no")
				}
			}
			err = status.Run(context.Background(), o)
			if exitcode.Of(err) != exitcode.NoSystemd {
				t.Fatalf("exit %d: %v", exitcode.Of(err), err)
			}
			var rep status.Report
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			if len(rep.Listeners) != 2 || !rep.Listeners[0].Listening || rep.Listeners[1].Listening {
				t.Errorf("listeners = %+v (the first listens on 127.0.0.1 and is configured on the wildcard default, the second is closed)", rep.Listeners)
			}
			if rep.Listeners[0].Address != net.JoinHostPort("::", fmt.Sprint(port)) {
				t.Errorf("address %q: the configured bind address should be shown", rep.Listeners[0].Address)
			}
		})
	}
}

// TestStatusForegroundEngine: no unit, but serve runs in the foreground
// for this file and wrote the status file: status says it runs (exit 0),
// names the process, and takes the status file's states as current.
func TestStatusForegroundEngine(t *testing.T) {
	f := newFixture(t, "127.0.0.1:2993", "127.0.0.1:2465")
	f.mgr.Props = systemd.Properties{LoadState: "not-found", ActiveState: "inactive", SubState: "dead"}
	f.opts.Processes = func() ([]status.Process, error) {
		return []status.Process{{PID: 4242, Config: f.opts.ConfigPath, Argv: []string{"orbit", "email-oauth2-proxy", "serve"}}}, nil
	}
	f.opts.Output = output.JSON
	code, stdout, stderr := f.run(t)
	if code != exitcode.OK {
		t.Fatalf("exit %d, want 0 (a foreground proxy runs); stderr:\n%s", code, stderr)
	}
	var rep status.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.Running || rep.Engine == nil || rep.Engine.PID != 4242 || rep.Engine.Manager != status.Foreground {
		t.Errorf("running %v, engine %+v; want the foreground engine 4242", rep.Running, rep.Engine)
	}
	if rep.StatusFile.Stale {
		t.Error("the status file written by the running foreground engine is called stale")
	}
	found := false
	for _, a := range rep.Accounts {
		found = found || (a.Name == "alice@example.com" && a.State == "authorised" && a.Source == status.SourceStatusFile)
	}
	if !found {
		t.Errorf("alice's state from the live engine's status file is missing: %+v", rep.Accounts)
	}

	f2 := newFixture(t, "127.0.0.1:2993", "127.0.0.1:2465")
	f2.mgr.Props = f.mgr.Props
	f2.opts.Processes = func() ([]status.Process, error) {
		return []status.Process{{PID: 4242, Config: f2.opts.ConfigPath}}, nil
	}
	_, text, _ := f2.run(t)
	for _, want := range []string{"running in the foreground, PID 4242", "orbit email-oauth2-proxy start"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "no longer") {
		t.Errorf("text calls the live engine's status file stale:\n%s", text)
	}
}

// TestStatusStaleStatusFileIsNotCurrent: nothing runs (the unit is gone,
// no serve process): the old status file's "authorised", "waiting" and
// "failing" are not reported as the accounts' state.
func TestStatusStaleStatusFileIsNotCurrent(t *testing.T) {
	f := newFixture(t)
	f.mgr.Props = systemd.Properties{LoadState: "not-found", ActiveState: "inactive", SubState: "dead"}
	f.opts.Processes = func() ([]status.Process, error) { return nil, nil }
	f.opts.Output = output.JSON
	code, stdout, _ := f.run(t)
	if code != exitcode.NotRunning {
		t.Fatalf("exit %d, want 3", code)
	}
	var rep status.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.StatusFile.Stale || rep.Engine != nil {
		t.Errorf("status file %+v, engine %+v: want stale and no engine", rep.StatusFile, rep.Engine)
	}
	for _, a := range rep.Accounts {
		if a.Source == status.SourceStatusFile {
			t.Errorf("%s is reported %s from the stale status file", a.Name, a.State)
		}
	}
}

// TestStatusNamesStateDirectoryProblems: what CheckStateDir finds is in
// the report with its fix, and the next step is start (which repairs it).
func TestStatusNamesStateDirectoryProblems(t *testing.T) {
	f := newFixture(t)
	f.mgr.Props = systemd.Properties{LoadState: "loaded", ActiveState: "failed", SubState: "failed", Result: "exit-code", ExecMainCode: 1, ExecMainStatus: 200}
	f.opts.Installer = &servicetest.Installer{Problems: []systemd.StateProblem{{Path: "/var/lib/orbit", What: "mode 0700, owner uid 0: the service user orbit-emailproxy cannot enter it", Fix: "chmod 0755 /var/lib/orbit"}}}
	code, stdout, _ := f.run(t)
	if code != exitcode.NotRunning {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"/var/lib/orbit: mode 0700", "fix: chmod 0755 /var/lib/orbit", "Repair and start it: orbit email-oauth2-proxy start"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, stdout)
		}
	}
}

// A token cache that cannot be read is said, not silently left out: the
// accounts it holds are missing from the list.
func TestStatusShowsAnUnreadableTokenCache(t *testing.T) {
	damaged := func(t *testing.T, format output.Format) (string, exitcode.Code) {
		f := newFixture(t)
		f.opts.StatusFile = filepath.Join(t.TempDir(), "none.json")
		f.opts.Output = format
		if err := os.WriteFile(f.opts.TokenCache, []byte("no section here\n[unclosed\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		code, stdout, _ := f.run(t)
		return strings.ReplaceAll(stdout, f.opts.TokenCache, "TOKENS"), code
	}
	if stdout, code := damaged(t, output.Text); code != 0 || !strings.Contains(stdout, "token cache: token store TOKENS cannot be read as an INI file") {
		t.Errorf("exit %d; the damaged token cache is not reported:\n%s", code, stdout)
	}
	stdout, _ := damaged(t, output.JSON)
	var rep status.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.AccountErrors) != 1 || !strings.Contains(rep.AccountErrors[0], "TOKENS cannot be read") {
		t.Errorf("account_errors = %q, want the token cache's error", rep.AccountErrors)
	}
}

// TestStatusListsTheFileErrorsReadably: a file edited by hand into errors
// is reported as such, not as unreadable, one problem per indented line,
// with no padding at their ends (a colour style rendered the whole list
// as one block, padding every line to the longest).
func TestStatusListsTheFileErrorsReadably(t *testing.T) {
	for _, tty := range []bool{false, true} {
		t.Run(fmt.Sprintf("tty=%v", tty), func(t *testing.T) {
			f := newFixture(t)
			f.noProbes = true
			f.opts.ConfigPath = servicetest.WriteConfig(t, "[IMAP-2993]\nserver_address = a\nserver_port = 993\n[SMTP-2465\nserver_address = b\nserver_port = 587\n")
			f.opts.IO.SetTTY(tty, tty, tty)
			f.opts.Width = func() int { return 40 } // no panel: the lines as they are
			code, stdout, _ := f.run(t)
			if code != 0 {
				t.Fatalf("exit %d", code)
			}
			plain := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(stdout, "")
			for i, line := range strings.Split(plain, "\n") {
				if strings.TrimRight(line, " ") != line {
					t.Errorf("line %d ends in spaces: %q", i+1, line)
				}
			}
			if strings.Contains(plain, "cannot read") {
				t.Errorf("a file with errors is called unreadable:\n%s", plain)
			}
			for _, want := range []string{
				"  the configuration has errors (orbit email-oauth2-proxy config validate " + f.opts.ConfigPath + " explains each):\n    " + f.opts.ConfigPath + ":4: this line",
				"\n    " + f.opts.ConfigPath + ":5: key \"server_address\" appears a second time",
			} {
				if !strings.Contains(plain, want) {
					t.Errorf("status lacks %q:\n%s", want, plain)
				}
			}
		})
	}
}

// TestStatusAsNonRootListsEachPathOnce: without the right to read the
// configuration's directory, the path is listed once among the files
// status cannot read, not once for the file and again for its tokens.
func TestStatusAsNonRootListsEachPathOnce(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as nobody (65534) for a moment")
	}
	f := newFixture(t)
	f.noProbes = true
	f.opts.Output = output.JSON
	// The fixture's files are under t.TempDir(), 0700 root: nobody can
	// reach none of them.
	if err := syscall.Setresuid(-1, 65534, -1); err != nil {
		t.Skipf("cannot take the effective user nobody: %v", err)
	}
	code, stdout, stderr := f.run(t)
	if err := syscall.Setresuid(-1, 0, -1); err != nil {
		t.Fatalf("cannot go back to root: %v", err)
	}
	if code != exitcode.Permission {
		t.Fatalf("exit %d, want %d (permission); stderr:\n%s", code, exitcode.Permission, stderr)
	}
	var rep status.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, stdout)
	}
	seen := map[string]bool{}
	for _, p := range rep.Unreadable {
		if seen[p] {
			t.Errorf("unreadable lists %s twice: %q", p, rep.Unreadable)
		}
		seen[p] = true
	}
	if !seen[f.opts.ConfigPath] {
		t.Errorf("unreadable %q lacks the configuration %s", rep.Unreadable, f.opts.ConfigPath)
	}
	if n := strings.Count(stderr, f.opts.ConfigPath); n != 1 {
		t.Errorf("the error names the configuration %d times, want once:\n%s", n, stderr)
	}
}

// TestStatusShowsLocalSTARTTLSRequired: a local_starttls listener says on
// its line and in JSON which clients must upgrade before a password; a
// listener without local_starttls says nothing about it.
func TestStatusShowsLocalSTARTTLSRequired(t *testing.T) {
	cfg := servicetest.MinimalConfig + `
[IMAP-2994]
server_address = outlook.office365.com
server_port = 993
local_address = 127.0.0.1
local_starttls = True
local_certificate_path = /etc/orbit/cert.pem
local_key_path = /etc/orbit/key.pem

[POP-2995]
server_address = outlook.office365.com
server_port = 995
local_address = 127.0.0.1
local_starttls = True
local_starttls_required = always
local_certificate_path = /etc/orbit/cert.pem
local_key_path = /etc/orbit/key.pem

[SMTP-2587]
server_address = smtp.office365.com
server_port = 587
server_starttls = True
local_address = 127.0.0.1
local_starttls = True
local_starttls_required = never
local_certificate_path = /etc/orbit/cert.pem
local_key_path = /etc/orbit/key.pem
`
	want := map[string]string{"IMAP-2993": "", "SMTP-2465": "", "IMAP-2994": "remote", "POP-2995": "always", "SMTP-2587": "never"}
	wantText := map[string]string{
		"IMAP-2994": "listening; STARTTLS required before a password from clients not on loopback (local_starttls_required = remote)",
		"POP-2995":  "listening; STLS required before a password from every client (local_starttls_required = always)",
		"SMTP-2587": "listening; STARTTLS offered, passwords accepted without it (local_starttls_required = never)",
	}
	for _, format := range []output.Format{output.JSON, output.Text} {
		t.Run(string(format), func(t *testing.T) {
			f := newFixture(t)
			f.noProbes = true
			f.opts.ConfigPath = servicetest.WriteConfig(t, cfg)
			f.opts.Listening = func() ([]status.Socket, error) {
				var s []status.Socket
				for _, p := range []int{2993, 2465, 2994, 2995, 2587} {
					s = append(s, status.Socket{IP: net.IPv4(127, 0, 0, 1), Port: p})
				}
				return s, nil
			}
			f.opts.Output = format
			code, stdout, _ := f.run(t)
			if code != 0 {
				t.Fatalf("exit %d", code)
			}
			if format == output.Text {
				for sec, tail := range wantText {
					port := strings.TrimPrefix(strings.TrimPrefix(strings.TrimPrefix(sec, "IMAP-"), "POP-"), "SMTP-")
					re := regexp.MustCompile(`(?m)^  \S+\s+127\.0\.0\.1:` + port + `\s+->\s+\S+\s+(.*)$`)
					m := re.FindStringSubmatch(stdout)
					if m == nil || m[1] != tail {
						t.Errorf("[%s] line ends %q, want %q:\n%s", sec, m, tail, stdout)
					}
				}
				if strings.Count(stdout, "local_starttls_required") != 3 {
					t.Errorf("the plain listeners mention local_starttls_required:\n%s", stdout)
				}
				return
			}
			var doc struct {
				Listeners []map[string]any `json:"listeners"`
			}
			if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
				t.Fatal(err)
			}
			if len(doc.Listeners) != len(want) {
				t.Fatalf("listeners = %v", doc.Listeners)
			}
			for _, l := range doc.Listeners {
				sec := l["section"].(string)
				got, has := l["local_starttls_required"]
				if want[sec] == "" {
					if has {
						t.Errorf("[%s] has local_starttls_required %v without local_starttls", sec, got)
					}
					continue
				}
				if got != want[sec] {
					t.Errorf("[%s] local_starttls_required = %v, want %s", sec, got, want[sec])
				}
			}
		})
	}
}

// TestStatusJSONFailedLogins: an account's failed logins are in its
// accounts[] entry, unknown names' under catch_all_failed_logins; a count
// whose last failure is over an hour old is left out, and a delay that
// has passed is not reported.
func TestStatusJSONFailedLogins(t *testing.T) {
	f := newFixture(t, "127.0.0.1:2993")
	if err := os.WriteFile(f.opts.StatusFile, []byte(statusUnderAttackJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	f.opts.Output = output.JSON
	code, stdout, _ := f.run(t)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	wantKeys(t, "top", doc, "running", "engine", "unit", "config", "listeners", "accounts", "status_file", "catch_all_failed_logins")
	accts := map[string]map[string]any{}
	for _, a := range doc["accounts"].([]any) {
		m := a.(map[string]any)
		accts[m["name"].(string)] = m
	}
	alice := accts["alice@example.com"]
	if alice["state"] != "authorised" {
		t.Errorf("alice's state under attack: %v", alice["state"])
	}
	fl, _ := alice["failed_logins"].(map[string]any)
	wantKeys(t, "alice's failed_logins", fl, "last_hour", "refused", "addresses", "last_address", "last", "delayed_until")
	if fl["last_hour"] != float64(57) || fl["addresses"] != float64(3) || fl["last_address"] != "203.0.113.9" ||
		fl["last"] != "2026-01-02T08:59:12Z" || fl["delayed_until"] != "2026-01-02T09:00:30Z" || fl["refused"] != float64(12) {
		t.Errorf("alice's failed_logins = %v", fl)
	}
	if _, ok := accts["carol@example.com"]["failed_logins"]; ok {
		t.Error("carol's failed logins of over an hour ago are shown")
	}
	ca := doc["catch_all_failed_logins"].([]any)
	if len(ca) != 1 {
		t.Fatalf("catch_all_failed_logins = %v", ca)
	}
	c := ca[0].(map[string]any)
	wantKeys(t, "catch-all failed logins", c, "section", "last_hour", "addresses", "addresses_capped", "names", "last_address", "last")
	if c["section"] != "@" || c["names"] != float64(9) || c["addresses_capped"] != true {
		t.Errorf("catch_all_failed_logins = %v", c)
	}
}
