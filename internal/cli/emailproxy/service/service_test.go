package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/service"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/service/servicetest"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/internal/systemd"
	"github.com/senhasegura/orbit/pkg/journal"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type env struct {
	opts *service.Options
	mgr  *servicetest.Manager
	conn *servicetest.Connector
	inst *servicetest.Installer
	jrnl *servicetest.Journal
	out  func() (stdout, stderr string)
}

func newEnv(t *testing.T, a service.Action, cfg string) *env {
	t.Helper()
	io, _, out, errOut := iostreams.Test()
	mgr := servicetest.NewManager()
	e := &env{mgr: mgr, conn: &servicetest.Connector{Manager: mgr}, inst: &servicetest.Installer{}, jrnl: &servicetest.Journal{}}
	e.opts = &service.Options{
		Deps: service.Deps{IO: io, Connector: e.conn, Installer: e.inst, Journal: e.jrnl,
			Executable: func() (string, error) { return "/usr/local/bin/orbit", nil },
			Now:        func() time.Time { return t0 }},
		Location: time.UTC,
		Action:   a, Unit: service.DefaultUnit, ConfigPath: cfg, ConfigExplicit: true,
		Timeout: 5 * time.Second, Output: output.Text,
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
		}
	})
	e.out = func() (string, string) { return out.String(), errOut.String() }
	return e
}

func (e *env) run(t *testing.T) (exitcode.Code, string, string, error) {
	t.Helper()
	err := service.Run(context.Background(), e.opts)
	o, eo := e.out()
	return exitcode.Of(err), o, eo, err
}

// unitFailed is the line systemd logs when the unit fails.
func unitFailed(at time.Time, cursor string) journal.Entry {
	return servicetest.Entry(at, cursor, "email-oauth2-proxy.service: Failed with result 'exit-code'.",
		"SYSLOG_IDENTIFIER=systemd", "UNIT="+service.DefaultUnit, "MESSAGE_ID=d9b373ed55a64feb8242e02dbe79a49c")
}

// lateJournal takes in its late entries only after readsBefore reads, as a
// busy journald does.
type lateJournal struct {
	servicetest.Journal
	readsBefore int
	reads       int
	late        []journal.Entry
}

func (j *lateJournal) Entries(ctx context.Context, q journal.Query) iter.Seq2[journal.Entry, error] {
	j.reads++
	if j.reads == j.readsBefore {
		j.History = append(j.History, j.late...)
	}
	return j.Journal.Entries(ctx, q)
}

func TestStartStopRestart(t *testing.T) {
	cfg := servicetest.WriteConfig(t, servicetest.MinimalConfig)
	opErr := &systemd.OpError{Op: "start", Unit: service.DefaultUnit, JobResult: "failed",
		Props: systemd.Properties{ActiveState: "failed", SubState: "failed", Result: "exit-code", ExecMainCode: 1, ExecMainStatus: 4}}
	tests := []struct {
		name    string
		action  service.Action
		setup   func(e *env)
		code    exitcode.Code
		calls   []string
		stdout  []string // substrings
		stderr  []string // substrings (error included)
		noCalls []string
		// noStderr must not appear on stderr, noStdout on stdout.
		noStderr []string
		noStdout []string
	}{
		{
			name: "start installs, reloads, enables and starts", action: service.Start,
			setup: func(e *env) { e.mgr.Props.LoadState = "not-found" },
			code:  exitcode.OK,
			calls: []string{"daemon-reload", "enable " + service.DefaultUnit, "start " + service.DefaultUnit},
			stdout: []string{"Installed /etc/systemd/system/email-oauth2-proxy.service.", "Reloaded systemd's unit files.",
				"Enabled at boot.", "Started email-oauth2-proxy.service: active (running), main PID 4242."},
		},
		{
			name: "start with the unit already current does not reload", action: service.Start,
			setup: func(e *env) { e.install(t, cfg) },
			code:  exitcode.OK, calls: []string{"enable " + service.DefaultUnit, "start " + service.DefaultUnit},
			noCalls: []string{"daemon-reload"},
		},
		{
			name: "systemd saw the file change behind its back: reload", action: service.Start,
			setup: func(e *env) { e.install(t, cfg); e.mgr.Props.NeedDaemonReload = true },
			code:  exitcode.OK, calls: []string{"daemon-reload", "enable " + service.DefaultUnit, "start " + service.DefaultUnit},
		},
		{
			name: "start --no-enable", action: service.Start,
			setup: func(e *env) { e.opts.NoEnable = true },
			code:  exitcode.OK, calls: []string{"daemon-reload", "start " + service.DefaultUnit},
			noCalls: []string{"enable " + service.DefaultUnit},
		},
		{
			name: "failed start shows the journal since the job and what to do", action: service.Start,
			setup: func(e *env) {
				e.mgr.Fail = map[string]error{"start " + service.DefaultUnit: opErr}
				e.jrnl.History = []journal.Entry{
					servicetest.Entry(t0.Add(-time.Hour), "c1", "an old line that is not about this start"),
					servicetest.Entry(t0.Add(100*time.Millisecond), "c2", "Starting orbit email OAuth 2.0 proxy...", "SYSLOG_IDENTIFIER=systemd", "UNIT="+service.DefaultUnit),
					servicetest.Entry(t0.Add(200*time.Millisecond), "c3", "config: [IMAP-2993] server_port: \"x\" is not a port"),
					unitFailed(t0.Add(300*time.Millisecond), "c4"),
				}
			},
			code: exitcode.Failed,
			stderr: []string{"Last 3 journal lines of email-oauth2-proxy.service:",
				"2026-01-02 03:04:05 orbit[4242]: config: [IMAP-2993] server_port",
				"email-oauth2-proxy.service: Failed with result 'exit-code'.",
				`start email-oauth2-proxy.service: the job ended "failed"`, "main process exited with status 4",
				"orbit email-oauth2-proxy config validate " + cfg, "orbit email-oauth2-proxy logs -n 100"},
		},
		{
			// journald reads its sockets on its own time: right after the
			// job failed the journal may not hold the engine's reason yet.
			name: "failed start waits for journald to take in why", action: service.Start,
			setup: func(e *env) {
				e.mgr.Fail = map[string]error{"start " + service.DefaultUnit: opErr}
				e.opts.Journal = &lateJournal{readsBefore: 3, late: []journal.Entry{
					servicetest.Entry(t0.Add(200*time.Millisecond), "c3", "invalid configuration: emailproxy.config:1: this line comes before any [section] header"),
					unitFailed(t0.Add(300*time.Millisecond), "c4"),
				}}
			},
			code: exitcode.Failed,
			stderr: []string{"Last 2 journal lines of email-oauth2-proxy.service:", "invalid configuration: emailproxy.config:1:",
				"Failed with result 'exit-code'."},
		},
		{
			name: "failed start with no journalctl still explains", action: service.Start,
			setup: func(e *env) {
				e.mgr.Fail = map[string]error{"start " + service.DefaultUnit: opErr}
				e.jrnl.Err = fmt.Errorf("%w: journalctl is needed", journal.ErrNoJournalctl)
			},
			code:   exitcode.Failed,
			stderr: []string{"the unit's journal cannot be shown: journalctl not found", `the job ended "failed"`},
		},
		{
			name: "a start that outlives --timeout exits 8", action: service.Start,
			setup: func(e *env) {
				e.opts.Timeout = 50 * time.Millisecond
				e.mgr.Block = map[string]bool{"start " + service.DefaultUnit: true}
			},
			code: exitcode.Timeout, stderr: []string{"raise --timeout"},
		},
		{
			name: "no systemd: exit 6 and the foreground command", action: service.Start,
			setup: func(e *env) { e.conn.Err = servicetest.ErrNoSystemd },
			code:  exitcode.NoSystemd,
			stderr: []string{"cannot start email-oauth2-proxy.service: systemd is not running here",
				"orbit email-oauth2-proxy serve --config " + cfg},
		},
		{
			name: "stop without systemd: exit 6, how a foreground proxy stops", action: service.Stop,
			setup:  func(e *env) { e.conn.Err = servicetest.ErrNoSystemd },
			code:   exitcode.NoSystemd,
			stderr: []string{"cannot stop email-oauth2-proxy.service: systemd is not running here", "stops with Ctrl-C or SIGTERM"},
		},
		{
			name: "systemd refuses a non-root user: exit 10", action: service.Stop,
			setup: func(e *env) {
				e.conn.Err = fmt.Errorf("%w: cannot connect: %w", systemd.ErrNoSystemd, errors.Join(fs.ErrPermission, errors.New("EACCES")))
			},
			code: exitcode.Permission, stderr: []string{"Run as root"},
		},
		{
			// A user other than root reaches systemd's bus, and polkit
			// refuses the job; the journal is closed to that user too, and
			// reading it only adds journalctl's complaint to the advice.
			name: "systemd refuses the job to a non-root user: exit 10, no journal", action: service.Stop,
			setup: func(e *env) {
				e.mgr.Fail = map[string]error{"stop " + service.DefaultUnit: fmt.Errorf("stop %s: %w", service.DefaultUnit,
					dbus.Error{Name: "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", Body: []any{"Interactive authentication required."}})}
				e.jrnl.Err = fmt.Errorf("journalctl failed: %w", journal.ErrDenied)
			},
			code: exitcode.Permission, stderr: []string{"Run as root"}, noStderr: []string{"journal"},
		},
		{
			name: "missing configuration file: exit 4, nothing installed", action: service.Start,
			setup: func(e *env) { e.opts.ConfigPath = cfg + ".missing" },
			code:  exitcode.Invalid, stderr: []string{"does not exist", "orbit email-oauth2-proxy register"},
			noCalls: []string{"start " + service.DefaultUnit, "daemon-reload"},
		},
		{
			name: "stop a running unit", action: service.Stop,
			setup: func(e *env) {
				e.mgr.Props.ActiveState, e.mgr.Props.SubState, e.mgr.Props.MainPID = "active", "running", 7
			},
			code: exitcode.OK, calls: []string{"stop " + service.DefaultUnit},
			stdout:  []string{"Stopped email-oauth2-proxy.service (inactive)."},
			noCalls: []string{"daemon-reload", "enable " + service.DefaultUnit},
		},
		{
			name: "stop a unit that is not installed: nothing to do", action: service.Stop,
			setup: func(e *env) { e.mgr.Props.LoadState = "not-found" },
			code:  exitcode.OK, stdout: []string{"is not installed; nothing to stop"},
			noCalls: []string{"stop " + service.DefaultUnit},
		},
		{
			// systemd's start is a no-op on an active unit: the engine keeps
			// the file it read, and the next reload, restart or boot would
			// refuse this one. Said, with exit 4.
			name: "start on a running unit with a broken file: exit 4, the old file stays in use", action: service.Start,
			setup: func(e *env) {
				e.install(t, cfg)
				e.mgr.Props.ActiveState, e.mgr.Props.SubState, e.mgr.Props.MainPID, e.mgr.Props.UnitFileState = "active", "running", 7, "enabled"
				e.opts.ConfigPath = servicetest.WriteConfig(t, "[IMAP-2993]\nserver_address = a\nserver_port = x\n")
			},
			code:     exitcode.Invalid,
			stdout:   []string{"email-oauth2-proxy.service was already running: active (running), main PID 7."},
			stderr:   []string{"is not valid", "main PID 7", "keeps the file it read when it started", "reload, restart or the next boot would refuse it"},
			noCalls:  []string{"restart " + service.DefaultUnit},
			noStdout: []string{"Enabled at boot."},
		},
		{
			name: "start on a running, enabled unit: already running, not enabled again", action: service.Start,
			setup: func(e *env) {
				e.install(t, cfg)
				e.mgr.Props.ActiveState, e.mgr.Props.SubState, e.mgr.Props.MainPID, e.mgr.Props.UnitFileState = "active", "running", 7, "enabled"
			},
			code:     exitcode.OK,
			stdout:   []string{"email-oauth2-proxy.service was already running: active (running), main PID 7.", "orbit email-oauth2-proxy reload"},
			noStdout: []string{"Enabled at boot."},
		},
		{
			name: "restart of an enabled unit does not claim to enable it", action: service.Restart,
			setup: func(e *env) {
				e.mgr.Props.ActiveState, e.mgr.Props.UnitFileState = "active", "enabled"
			},
			code: exitcode.OK, stdout: []string{"Restarted email-oauth2-proxy.service"}, noStdout: []string{"Enabled at boot."},
		},
		{
			name: "restart refreshes and restarts", action: service.Restart,
			setup: func(e *env) { e.mgr.Props.ActiveState = "active" },
			code:  exitcode.OK, calls: []string{"daemon-reload", "enable " + service.DefaultUnit, "restart " + service.DefaultUnit},
			stdout: []string{"Restarted email-oauth2-proxy.service: active (running)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.action, cfg)
			if tt.setup != nil {
				tt.setup(e)
			}
			code, stdout, stderr, err := e.run(t)
			if err != nil {
				stderr += err.Error()
			}
			if code != tt.code {
				t.Fatalf("exit %d, want %d (err %v)", code, tt.code, err)
			}
			calls := strings.Join(e.mgr.CallList(), ", ")
			for _, c := range tt.calls {
				if !strings.Contains(calls, c) {
					t.Errorf("calls %q lack %q", calls, c)
				}
			}
			if len(tt.calls) > 0 && !strings.HasSuffix(calls, tt.calls[len(tt.calls)-1]) {
				t.Errorf("calls %q do not end with %q", calls, tt.calls[len(tt.calls)-1])
			}
			for _, c := range tt.noCalls {
				if strings.Contains(calls, c) {
					t.Errorf("calls %q include %q", calls, c)
				}
			}
			for _, s := range tt.stdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout)
				}
			}
			for _, s := range tt.stderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
			for _, s := range tt.noStderr {
				if strings.Contains(stderr, s) {
					t.Errorf("stderr has %q:\n%s", s, stderr)
				}
			}
			for _, s := range tt.noStdout {
				if strings.Contains(stdout, s) {
					t.Errorf("stdout has %q:\n%s", s, stdout)
				}
			}
			if strings.Contains(stdout+stderr, "not-a-real-secret") {
				t.Error("the client secret was printed")
			}
			if strings.Contains(stderr, "an old line") {
				t.Error("the journal excerpt reaches back before the job")
			}
		})
	}
}

// install puts the unit that start would render in place, as if an
// earlier register had written it.
func (e *env) install(t *testing.T, cfg string) {
	t.Helper()
	u, err := systemd.Render(systemd.UnitOptions{Service: service.Description, ConfigFile: cfg, Binary: "/usr/local/bin/orbit", Sessions: service.ConfiguredSessions(cfg)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.inst.Install(context.Background(), u); err != nil {
		t.Fatal(err)
	}
}

func TestStartInstallsTheRenderedUnitAndGrantsTheFile(t *testing.T) {
	cfg := servicetest.WriteConfig(t, servicetest.MinimalConfig)
	e := newEnv(t, service.Start, cfg)
	if code, _, _, err := e.run(t); code != 0 {
		t.Fatal(err)
	}
	data, err := e.inst.Installed(service.DefaultUnit)
	if err != nil {
		t.Fatal(err)
	}
	u, err := service.ParseInstalled(data)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/usr/local/bin/orbit", "email-oauth2-proxy", "serve", "--config", cfg}
	if strings.Join(u.Argv, "|") != strings.Join(want, "|") || u.Foreign || u.ConfigPath != cfg {
		t.Errorf("installed unit runs %q (foreign %v, config %q), want %q", u.Argv, u.Foreign, u.ConfigPath, want)
	}
	if len(e.inst.Users) != 1 || e.inst.Users[0] != service.DefaultUser {
		t.Errorf("EnsureUser calls %q", e.inst.Users)
	}
	if len(e.inst.Granted) != 1 || e.inst.Granted[0] != service.DefaultUser+":"+cfg {
		t.Errorf("GrantConfigAccess calls %q", e.inst.Granted)
	}
}

func TestStartLeavesAForeignEngineAlone(t *testing.T) {
	cfg := servicetest.WriteConfig(t, servicetest.MinimalConfig)
	u, err := systemd.Render(systemd.UnitOptions{Service: service.Description, ConfigFile: cfg,
		Exec: []string{"/usr/local/bin/emailproxy", "--no-gui", "--local-server-auth", "--config-file", systemd.ConfigPlaceholder}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, service.Start, "/ignored/because/not/explicit.config")
	e.opts.ConfigExplicit = false
	e.inst.Install(context.Background(), u)
	before, _ := e.inst.Installed(service.DefaultUnit)
	code, stdout, _, err := e.run(t)
	if code != 0 {
		t.Fatal(err)
	}
	after, _ := e.inst.Installed(service.DefaultUnit)
	if string(before) != string(after) {
		t.Error("start rewrote a unit that runs another engine")
	}
	if !strings.Contains(stdout, "runs another engine") {
		t.Errorf("stdout does not say the unit was left alone:\n%s", stdout)
	}
	if len(e.inst.Granted) != 1 || !strings.HasSuffix(e.inst.Granted[0], ":"+cfg) {
		t.Errorf("the foreign unit's file (from its ExecStart) was not granted: %q", e.inst.Granted)
	}
}

func TestConfigComesFromTheInstalledUnitUnlessGiven(t *testing.T) {
	cfg := servicetest.WriteConfig(t, servicetest.MinimalConfig)
	e := newEnv(t, service.Start, "/etc/orbit/email-oauth2-proxy/emailproxy.config")
	e.install(t, cfg)
	e.opts.ConfigExplicit = false
	if code, _, _, err := e.run(t); code != 0 {
		t.Fatalf("start with the unit's file: %v", err)
	}
	data, _ := e.inst.Installed(service.DefaultUnit)
	if u, _ := service.ParseInstalled(data); u.ConfigPath != cfg {
		t.Errorf("start switched the unit to %q, want it to keep %q", u.ConfigPath, cfg)
	}
}

func TestJSONResult(t *testing.T) {
	cfg := servicetest.WriteConfig(t, servicetest.MinimalConfig)
	e := newEnv(t, service.Start, cfg)
	e.opts.Output = output.JSON
	code, stdout, _, err := e.run(t)
	if code != 0 {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	want := map[string]any{
		"action": "start", "unit": service.DefaultUnit, "config": cfg,
		"unit_file": "/etc/systemd/system/email-oauth2-proxy.service", "unit_written": true,
		"daemon_reloaded": true, "foreign_engine": false, "enabled_now": true,
		"active_state": "active", "sub_state": "running", "main_pid": float64(4242),
		"since": "2026-01-02T03:04:05Z", "enabled_changed": true,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("keys %v, want exactly %v", keys(got), keys(want))
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestTTYAndPlainOutput(t *testing.T) {
	cfg := servicetest.WriteConfig(t, servicetest.MinimalConfig)
	for _, tty := range []bool{false, true} {
		t.Run(fmt.Sprint("tty=", tty), func(t *testing.T) {
			e := newEnv(t, service.Start, cfg)
			e.opts.IO.SetTTY(tty, tty, tty)
			_, stdout, _, err := e.run(t)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(stdout, "✓"); got != tty {
				t.Errorf("check mark present %v, want %v:\n%s", got, tty, stdout)
			}
			if !tty && strings.Contains(stdout, "\x1b[") {
				t.Errorf("escape codes in plain output:\n%q", stdout)
			}
		})
	}
}

func TestSplitExecUndoesRenderQuoting(t *testing.T) {
	for _, cfg := range []string{"/etc/orbit/e.config", "/srv/with space/100%/e$HOME.config", `/srv/q"uote/e.config`} {
		u, err := systemd.Render(systemd.UnitOptions{Service: service.Description, ConfigFile: cfg, Binary: "/opt/orbit dir/orbit%1"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := service.ParseInstalled(u.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if got.ConfigPath != cfg || got.Argv[0] != "/opt/orbit dir/orbit%1" || got.Foreign {
			t.Errorf("%q: parsed %q (config %q)", cfg, got.Argv, got.ConfigPath)
		}
	}
}

// TestTailNewestOfWindow: Tail shows the window's newest n lines, and asks
// the journal for only those n (Lines with Since, which the journal package
// reads backwards from the end) instead of reading the whole window to keep
// its end; and only for the fields it shows.
func TestTailNewestOfWindow(t *testing.T) {
	j := &servicetest.Journal{}
	for i := range 25 {
		j.History = append(j.History, servicetest.Entry(t0.Add(time.Duration(i)*time.Millisecond), fmt.Sprintf("c%d", i), fmt.Sprintf("line %d", i)))
	}
	got, err := service.Tail(context.Background(), j, service.DefaultUnit, 20, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 20 || got[0].Message != "line 5" || got[19].Message != "line 24" {
		t.Fatalf("Tail = %d entries, %q .. %q, want line 5 .. line 24", len(got), got[0].Message, got[len(got)-1].Message)
	}
	if len(j.Queries) != 1 {
		t.Fatalf("%d journal queries, want 1: %+v", len(j.Queries), j.Queries)
	}
	q := j.Queries[0]
	if q.Lines != 20 || !q.Since.Equal(t0) || q.Reverse || !slices.Contains(q.Fields, "MESSAGE") || !slices.Contains(q.Fields, "MESSAGE_ID") {
		t.Errorf("query %+v, want the newest 20 since the start, MESSAGE and MESSAGE_ID among the fields", q)
	}
}

func TestCheckUnit(t *testing.T) {
	tests := []struct {
		in, want string
		bad      string // substring of the error; "" when valid
	}{
		{"", service.DefaultUnit, ""},
		{"email-oauth2-proxy", "email-oauth2-proxy.service", ""},
		{"mail@site-b.service", "mail@site-b.service", ""},
		{"x.timer", "", "use a name ending in .service"},
		{"bad name", "", "is not a systemd unit name"},
		{".service", "", "is not a systemd unit name"},
		{"a/b.service", "", "is not a systemd unit name"},
	}
	for _, tt := range tests {
		got, err := service.CheckUnit(tt.in)
		if tt.bad == "" {
			if err != nil || got != tt.want {
				t.Errorf("CheckUnit(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			continue
		}
		if exitcode.Of(err) != exitcode.Usage || !strings.Contains(fmt.Sprint(err), tt.bad) {
			t.Errorf("CheckUnit(%q): %v (exit %d); want a usage error containing %q", tt.in, err, exitcode.Of(err), tt.bad)
		}
	}
}

// TestBadFlagsNeverReachSystemd: a bad --unit or --timeout is a usage
// error before any connection, so it exits 2 on a machine without systemd
// too, and no unit file is written under a bad name.
func TestBadFlagsNeverReachSystemd(t *testing.T) {
	cfg := servicetest.WriteConfig(t, servicetest.MinimalConfig)
	for _, a := range []service.Action{service.Start, service.Stop, service.Restart} {
		for name, set := range map[string]func(*service.Options){
			"unit":    func(o *service.Options) { o.Unit = "proxy.timer" },
			"timeout": func(o *service.Options) { o.Timeout = -time.Second },
		} {
			e := newEnv(t, a, cfg)
			e.conn.Err = servicetest.ErrNoSystemd // reaching it would exit 6
			set(e.opts)
			code, _, _, err := e.run(t)
			if code != exitcode.Usage || !strings.Contains(err.Error(), "--"+name) {
				t.Errorf("%s with a bad --%s: exit %d (%v), want %d naming the flag", a, name, code, err, exitcode.Usage)
			}
		}
	}
}
