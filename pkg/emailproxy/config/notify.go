package config

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Notify is the notification settings of [emailproxy] (an orbit
// extension; the Python proxy ignores these keys). Zero durations mean the
// notify package's defaults.
type Notify struct {
	Command  string        // notify_command: absolute path of an executable
	URL      string        // notify_url: receives a JSON POST per event
	Reminder time.Duration // notify_reminder; negative: no reminders
	Timeout  time.Duration // notify_timeout
}

// Notify returns the notification settings; values Validate reports as
// wrong read as unset.
func (c *Config) Notify() Notify {
	n := Notify{
		Command: c.str(GlobalSection, "notify_command"),
		URL:     c.str(GlobalSection, "notify_url"),
	}
	if d, ok := ParseDuration(c.str(GlobalSection, "notify_reminder")); ok {
		n.Reminder = d
		if d == 0 {
			n.Reminder = -1 // "0" turns reminders off
		}
	}
	if d, ok := ParseDuration(c.str(GlobalSection, "notify_timeout")); ok && d > 0 {
		n.Timeout = d
	}
	return n
}

// ParseDuration reads a duration as Go writes it ("90s", "30m", "1h") or
// as a whole number of seconds, the way the Python proxy's settings count.
func ParseDuration(v string) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 && n <= int64(365*24*time.Hour/time.Second) {
		return time.Duration(n) * time.Second, true
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, false
	}
	return d, true
}

// globalChecks check [emailproxy] keys whose values are not booleans.
var globalChecks = map[string]func(l loc, v string) []Diagnostic{
	"notify_command":     checkNotifyCommand,
	"notify_url":         checkNotifyURL,
	"notify_reminder":    checkDuration,
	"notify_timeout":     checkDuration,
	"metrics_listen":     checkMetricsListen,
	"max_sessions":       checkSessions,
	"keep_alive":         checkKeepAlive,
	"background_refresh": checkBackgroundRefresh,
}

func checkNotifyCommand(l loc, v string) []Diagnostic {
	if v == "" {
		return nil
	}
	if !filepath.IsAbs(v) {
		return []Diagnostic{l.diag(Error, fmt.Sprintf("%s = %s is not an absolute path; it is run without a shell, so no PATH search and no arguments", l.name(), v),
			"give the absolute path of an executable (a script can add arguments)")}
	}
	fi, err := os.Stat(v)
	switch {
	case err != nil:
		return []Diagnostic{l.diag(Warning, fmt.Sprintf("%s: %v; notifications through it will fail", l.name(), err),
			"create the program, or correct the path")}
	case fi.IsDir() || fi.Mode().Perm()&0o111 == 0:
		return []Diagnostic{l.diag(Warning, fmt.Sprintf("%s = %s is not an executable file; notifications through it will fail", l.name(), v),
			fmt.Sprintf("chmod 755 %s", v))}
	case fi.Mode().Perm()&0o022 != 0:
		// The engine runs it: whoever can change it runs code as the service.
		return []Diagnostic{l.diag(Error, fmt.Sprintf("%s = %s is writable by group or others, who could then run anything as the proxy's user", l.name(), v),
			fmt.Sprintf("chmod go-w %s", v))}
	}
	return nil
}

func checkNotifyURL(l loc, v string) []Diagnostic {
	if v == "" {
		return nil
	}
	ds, ok := checkText(l, v)
	if !ok {
		return ds
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return append(ds, l.diag(Error, fmt.Sprintf("%s is not an http(s) URL", l.name()), "write it as https://host/path"))
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		ds = append(ds, l.diag(Error, fmt.Sprintf("%s sends authorisation URLs over plain http to %s", l.name(), u.Hostname()),
			"use https://, or a receiver on 127.0.0.1"))
	}
	return ds
}

func checkDuration(l loc, v string) []Diagnostic {
	if v == "" {
		return nil
	}
	if _, ok := ParseDuration(v); !ok {
		return []Diagnostic{l.diag(Error, fmt.Sprintf("%s = %s is not a duration", l.name(), v),
			"write seconds (3600) or a duration such as 90s, 30m or 1h")}
	}
	return nil
}
