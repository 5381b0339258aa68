package status

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
)

// Monitoring-plugin exit statuses (Nagios, Icinga, Zabbix, Checkmk): the
// convention those systems read, which --check follows instead of orbit's
// own table.
const (
	CheckOK       exitcode.Code = 0
	CheckWarning  exitcode.Code = 1
	CheckCritical exitcode.Code = 2
	CheckUnknown  exitcode.Code = 3
)

var checkNames = map[exitcode.Code]string{CheckOK: "OK", CheckWarning: "WARNING", CheckCritical: "CRITICAL", CheckUnknown: "UNKNOWN"}

// CheckThresholds are --check's warning limits; zero turns one off.
type CheckThresholds struct {
	// Expiry warns when an authorised account's access token expires
	// within this long (--warn-expiry).
	Expiry time.Duration
	// RefreshAge warns when an account's tokens were last used (a login or
	// a refresh) longer ago than this (--warn-refresh-age): Microsoft
	// refresh tokens die after 90 days unused, so 60 days leaves a month.
	RefreshAge time.Duration
	// FailedLogins warns when an account (or a catch-all section's unknown
	// names) had more than this many failed logins in the last hour
	// (--warn-failed-logins).
	FailedLogins int
}

// DefaultWarnFailedLogins: a mailer with a stale password retries a few
// times an hour; a guessing storm makes hundreds.
const DefaultWarnFailedLogins = 20

// DefaultWarnRefreshAge leaves a month before Entra's 90-day limit.
const DefaultWarnRefreshAge = 60 * 24 * time.Hour

// check judges rep the monitoring plugins' way: one line, the worst state
// first, perfdata after "|", and the state as exit status.
func check(rep Report, th CheckThresholds, now time.Time, loc *time.Location) (exitcode.Code, string) {
	var crit, warn, unknown []string
	switch {
	case len(rep.Unreadable) > 0:
		unknown = append(unknown, "cannot read "+strings.Join(rep.Unreadable, ", ")+" (run as root)")
	case rep.Config.Error != "":
		crit = append(crit, "configuration: "+rep.Config.Error)
	}
	switch {
	case rep.Running:
	case rep.Unit.ActiveState == "failed":
		crit = append(crit, "unit failed ("+rep.Unit.Result+")")
	case rep.Unit.LoadState == "not-found" || (!rep.Unit.Systemd && rep.Engine == nil):
		crit = append(crit, "proxy not running (unit not installed)")
	default:
		crit = append(crit, "proxy not running (unit "+nonEmpty(rep.Unit.ActiveState, "inactive")+")")
	}
	if rep.Running {
		for _, l := range rep.Listeners {
			if !l.Listening {
				crit = append(crit, fmt.Sprintf("[%s] not listening on %s", l.Section, l.Address))
			}
		}
	}
	counts := map[string]int{}
	failedTotal := 0
	failedWarn := func(who string, f *FailedLogins) {
		failedTotal += f.LastHour
		if th.FailedLogins > 0 && f.LastHour > th.FailedLogins {
			warn = append(warn, who+": "+failedText(*f, func(t time.Time) string { return clock(t, now, loc) }))
		}
	}
	for _, a := range rep.Accounts {
		counts[a.State]++
		if a.FailedLogins != nil {
			failedWarn(a.Name, a.FailedLogins)
		}
		switch a.State {
		case string(oauth.StateFailing):
			crit = append(crit, fmt.Sprintf("%s failing: %s", a.Name, a.Reason))
		case string(oauth.StateWaiting):
			since := ""
			if a.Since != nil {
				since = " since " + clock(*a.Since, now, loc)
			}
			warn = append(warn, a.Name+" waits for authorisation"+since)
		case StateDisabled:
			crit = append(crit, fmt.Sprintf("%s disabled by errors in the configuration file", a.Name))
		case StateExpired:
			warn = append(warn, a.Name+" has no usable token (the next login needs a new authorisation)")
		case string(oauth.StateAuthorised):
			if th.Expiry > 0 && a.TokenExpiry != nil && a.TokenExpiry.Sub(now) < th.Expiry {
				warn = append(warn, fmt.Sprintf("%s's access token expires %s", a.Name, clock(*a.TokenExpiry, now, loc)))
			}
			if th.RefreshAge > 0 && a.LastActivity != nil && now.Sub(*a.LastActivity) > th.RefreshAge {
				warn = append(warn, fmt.Sprintf("%s's tokens unused for %d days (Microsoft refresh tokens die after 90)", a.Name, int(now.Sub(*a.LastActivity).Hours()/24)))
			}
		}
	}

	for _, c := range rep.CatchAllFailedLogins {
		failedWarn("["+c.Section+"]", &c.FailedLogins)
	}

	code, problems := CheckOK, []string(nil)
	switch {
	case len(crit) > 0:
		code, problems = CheckCritical, append(crit, warn...)
	case len(unknown) > 0:
		code, problems = CheckUnknown, unknown
	case len(warn) > 0:
		code, problems = CheckWarning, warn
	}
	summary := strings.Join(problems, "; ")
	if code == CheckOK {
		what := "unit active"
		if rep.Engine != nil && rep.Engine.Manager == Foreground {
			what = "engine running in the foreground"
		}
		n := counts[string(oauth.StateAuthorised)]
		summary = fmt.Sprintf("%d account%s authorised", n, plural(n))
		if u := counts[StateNotUsed]; u > 0 {
			summary += fmt.Sprintf(", %d not used yet", u)
		}
		summary += ", " + what
	}
	states := make([]string, 0, len(counts))
	for _, s := range []string{string(oauth.StateAuthorised), string(oauth.StateWaiting), string(oauth.StateFailing), StateExpired, StateNotUsed, StateDisabled} {
		states = append(states, fmt.Sprintf("%s=%d", strings.ReplaceAll(s, "-", "_"), counts[s]))
	}
	listening := 0
	for _, l := range rep.Listeners {
		if l.Listening {
			listening++
		}
	}
	sort.Strings(states)
	perf := fmt.Sprintf("accounts=%d %s listeners=%d;;;0;%d failed_logins=%d", len(rep.Accounts), strings.Join(states, " "), listening, len(rep.Listeners), failedTotal)
	return code, fmt.Sprintf("%s: %s | %s", checkNames[code], oneLine(summary), perf)
}

// failedText describes failed logins: "57 failed logins in the last hour
// from 3 addresses, the last from 203.0.113.9 at 08:59", with "for N
// unknown names" for a catch-all section's.
func failedText(f FailedLogins, when func(time.Time) string) string {
	s := fmt.Sprintf("%d failed login%s in the last hour", f.LastHour, plural(f.LastHour))
	if f.Names > 0 {
		s += fmt.Sprintf(" for %s unknown name%s", atLeast(f.Names, f.NamesCapped), plural(f.Names))
	}
	s += fmt.Sprintf(" from %s address%s", atLeast(f.Addresses, f.AddressesCapped), map[bool]string{true: "", false: "es"}[f.Addresses == 1])
	if f.LastAddress != "" && f.Last != nil {
		s += ", the last from " + f.LastAddress + " at " + when(*f.Last)
	}
	return s
}

func atLeast(n int, capped bool) string {
	if capped {
		return fmt.Sprintf("at least %d", n)
	}
	return fmt.Sprint(n)
}

// clock shows a time as the admin reads it: the time of day when it is
// today, else the date too.
func clock(t, now time.Time, loc *time.Location) string {
	if loc == nil {
		loc = time.Local
	}
	t, now = t.In(loc), now.In(loc)
	if t.Year() == now.Year() && t.YearDay() == now.YearDay() {
		return t.Format("15:04")
	}
	return t.Format("2006-01-02 15:04")
}

func oneLine(s string) string {
	s = strings.NewReplacer("\n", " ", "\r", " ", "|", "/").Replace(s)
	if len(s) > 900 {
		s = s[:900] + "..."
	}
	return s
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// days is a duration flag that also takes days ("60d"), since refresh-token
// lifetimes are counted in days.
type days time.Duration

func (d *days) String() string {
	v := time.Duration(*d)
	if v > 0 && v%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", v/(24*time.Hour))
	}
	return v.String()
}

func (d *days) Set(s string) error {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var v int
		if _, err := fmt.Sscanf(n, "%d", &v); err != nil || v < 0 || fmt.Sprint(v) != n {
			return fmt.Errorf("%q is not a number of days (e.g. 60d)", s)
		}
		*d = days(time.Duration(v) * 24 * time.Hour)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration (e.g. 60d, 12h, 30m)", s)
	}
	*d = days(v)
	return nil
}

func (d *days) Type() string { return "duration" }

// count is an int flag that refuses negative numbers, so that a typo such
// as --warn-failed-logins -1 is a usage error, not a threshold that
// silently turns the check off.
type count int

func (c *count) String() string { return strconv.Itoa(int(*c)) }

func (c *count) Set(s string) error {
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a count (0 or more; 0: off)", s)
	}
	*c = count(v)
	return nil
}

func (c *count) Type() string { return "int" }
