package status

import (
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/exitcode"
)

func TestCheck(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	running := Report{Running: true, Engine: &Engine{PID: 42, Manager: ManagedBySystemd},
		Unit:      Unit{Systemd: true, LoadState: "loaded", ActiveState: "active"},
		Listeners: []Listener{{Section: "IMAP-2993", Address: "127.0.0.1:2993", Listening: true}, {Section: "SMTP-2465", Address: "127.0.0.1:2465", Listening: true}}}
	with := func(r Report, f func(*Report)) Report {
		r.Accounts = append([]Account(nil), r.Accounts...)
		r.Listeners = append([]Listener(nil), r.Listeners...)
		if r.Engine != nil {
			e := *r.Engine
			r.Engine = &e
		}
		f(&r)
		return r
	}
	ok := with(running, func(r *Report) {
		r.Accounts = []Account{
			{Name: "alice@example.com", State: "authorised", TokenExpiry: at(time.Hour), LastActivity: at(-time.Hour)},
			{Name: "bob@example.com", State: "authorised", TokenExpiry: at(time.Hour), LastActivity: at(-time.Hour)},
			{Name: "carol@example.com", State: "not-used"},
		}
	})
	for _, tc := range []struct {
		name string
		rep  Report
		th   CheckThresholds
		code exitcode.Code
		line string
	}{
		{"all well", ok, CheckThresholds{RefreshAge: DefaultWarnRefreshAge}, CheckOK,
			"OK: 2 accounts authorised, 1 not used yet, unit active | accounts=3 authorised=2 disabled=0 expired=0 failing=0 not_used=1 waiting=0 listeners=2;;;0;2"},
		{"foreground", with(ok, func(r *Report) { r.Engine.Manager = Foreground; r.Unit = Unit{} }), CheckThresholds{}, CheckOK,
			"OK: 2 accounts authorised, 1 not used yet, engine running in the foreground |"},
		{"waiting", with(ok, func(r *Report) {
			r.Accounts[1] = Account{Name: "bob@example.com", State: "waiting", Since: at(-2 * time.Hour)}
		}), CheckThresholds{}, CheckWarning, "WARNING: bob@example.com waits for authorisation since 10:00 |"},
		{"refresh token ageing", with(ok, func(r *Report) { r.Accounts[0].LastActivity = at(-61 * 24 * time.Hour) }),
			CheckThresholds{RefreshAge: DefaultWarnRefreshAge}, CheckWarning, "WARNING: alice@example.com's tokens unused for 61 days (Microsoft refresh tokens die after 90) |"},
		{"expiry threshold", ok, CheckThresholds{Expiry: 2 * time.Hour}, CheckWarning, "WARNING: alice@example.com's access token expires 13:00; bob@example.com's access token expires 13:00 |"},
		{"failing beats waiting", with(ok, func(r *Report) {
			r.Accounts[0] = Account{Name: "alice@example.com", State: "failing", Reason: "AADSTS700082: expired"}
			r.Accounts[1] = Account{Name: "bob@example.com", State: "waiting"}
		}), CheckThresholds{}, CheckCritical, "CRITICAL: alice@example.com failing: AADSTS700082: expired; bob@example.com waits for authorisation |"},
		{"disabled by the file", with(ok, func(r *Report) {
			r.Accounts[2] = Account{Name: "carol@example.com", State: "disabled", Reason: "[carol@example.com] has errors"}
		}), CheckThresholds{}, CheckCritical, "CRITICAL: carol@example.com disabled by errors in the configuration file | accounts=3 authorised=2 disabled=1 "},
		{"unit failed", with(ok, func(r *Report) {
			r.Running, r.Engine = false, nil
			r.Unit.ActiveState, r.Unit.Result = "failed", "exit-code"
		}), CheckThresholds{}, CheckCritical, "CRITICAL: unit failed (exit-code) |"},
		{"not installed", with(ok, func(r *Report) {
			r.Running, r.Engine, r.Unit.LoadState, r.Unit.ActiveState = false, nil, "not-found", "inactive"
		}),
			CheckThresholds{}, CheckCritical, "CRITICAL: proxy not running (unit not installed) |"},
		{"stopped", with(ok, func(r *Report) { r.Running, r.Engine, r.Unit.ActiveState = false, nil, "inactive" }),
			CheckThresholds{}, CheckCritical, "CRITICAL: proxy not running (unit inactive) |"},
		{"a listener down", with(ok, func(r *Report) { r.Listeners[1].Listening = false }), CheckThresholds{}, CheckCritical,
			"CRITICAL: [SMTP-2465] not listening on 127.0.0.1:2465 |"},
		{"unreadable", with(ok, func(r *Report) { r.Unreadable = []string{"/var/lib/orbit/email-oauth2-proxy/status.json"} }), CheckThresholds{}, CheckUnknown,
			"UNKNOWN: cannot read /var/lib/orbit/email-oauth2-proxy/status.json (run as root) |"},
		{"failed logins over the threshold", with(ok, func(r *Report) {
			r.Accounts[0].FailedLogins = &FailedLogins{LastHour: 57, Addresses: 3, LastAddress: "203.0.113.9", Last: at(-time.Minute)}
			r.Accounts[1].FailedLogins = &FailedLogins{LastHour: 20, Addresses: 1, LastAddress: "192.0.2.1", Last: at(-time.Minute)}
			r.CatchAllFailedLogins = []CatchAllFailedLogins{{Section: "@", FailedLogins: FailedLogins{LastHour: 30, Names: 30, Addresses: 2, LastAddress: "192.0.2.9", Last: at(-2 * time.Minute)}}}
		}), CheckThresholds{FailedLogins: 20}, CheckWarning,
			"WARNING: alice@example.com: 57 failed logins in the last hour from 3 addresses, the last from 203.0.113.9 at 11:59; " +
				"[@]: 30 failed logins in the last hour for 30 unknown names from 2 addresses, the last from 192.0.2.9 at 11:58 | accounts=3 "},
		{"failed logins perfdata", with(ok, func(r *Report) {
			r.Accounts[0].FailedLogins = &FailedLogins{LastHour: 57, Addresses: 3, LastAddress: "203.0.113.9", Last: at(-time.Minute)}
		}), CheckThresholds{}, CheckOK, "OK: 2 accounts authorised, 1 not used yet, unit active | accounts=3 authorised=2 disabled=0 expired=0 failing=0 not_used=1 waiting=0 listeners=2;;;0;2 failed_logins=57"},
		{"a line break or pipe in a reason stays one line", with(ok, func(r *Report) {
			r.Accounts[0] = Account{Name: "alice@example.com", State: "failing", Reason: "a|b\nc"}
		}), CheckThresholds{}, CheckCritical, "CRITICAL: alice@example.com failing: a/b c |"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, line := check(tc.rep, tc.th, now, time.UTC)
			if code != tc.code || !strings.HasPrefix(line, tc.line) || strings.Count(line, "\n") != 0 {
				t.Errorf("check = %d %q\nwant   %d %q...", code, line, tc.code, tc.line)
			}
		})
	}
}

func TestDaysFlag(t *testing.T) {
	var d days
	for in, want := range map[string]time.Duration{"60d": 60 * 24 * time.Hour, "12h": 12 * time.Hour, "0": 0, "0d": 0} {
		if err := d.Set(in); err != nil || time.Duration(d) != want {
			t.Errorf("Set(%q) = %v, %v; want %v", in, time.Duration(d), err, want)
		}
	}
	for _, bad := range []string{"-1d", "x", "1.5d", "-5m"} {
		if err := d.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
}

func TestCountFlag(t *testing.T) {
	var c count
	for in, want := range map[string]int{"0": 0, "20": 20} {
		if err := c.Set(in); err != nil || int(c) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, c, err, want)
		}
	}
	for _, bad := range []string{"-1", "x", "1.5"} {
		if err := c.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
}
