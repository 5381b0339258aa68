package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNotifySettings(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "notify.sh")
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755)
	loose := filepath.Join(dir, "loose.sh")
	os.WriteFile(loose, []byte("#!/bin/sh\n"), 0o755)
	os.Chmod(loose, 0o777)
	plain := filepath.Join(dir, "plain.txt")
	os.WriteFile(plain, nil, 0o644)

	for _, tc := range []struct {
		name  string
		keys  string
		want  Notify
		diags []string // substrings of the expected diagnostics, in order; "" none
	}{
		{name: "all set", keys: "notify_command = " + exe + "\nnotify_url = https://hooks.example/x\nnotify_reminder = 30m\nnotify_timeout = 10",
			want: Notify{Command: exe, URL: "https://hooks.example/x", Reminder: 30 * time.Minute, Timeout: 10 * time.Second}},
		{name: "reminder 0 turns reminders off", keys: "notify_url = http://127.0.0.1:9000/\nnotify_reminder = 0",
			want: Notify{URL: "http://127.0.0.1:9000/", Reminder: -1}},
		{name: "relative command", keys: "notify_command = notify.sh", want: Notify{Command: "notify.sh"},
			diags: []string{"error: [emailproxy] (line 2): notify_command = notify.sh is not an absolute path"}},
		{name: "missing command is a warning", keys: "notify_command = " + dir + "/missing", want: Notify{Command: dir + "/missing"},
			diags: []string{"warning:", "no such file"}},
		{name: "not executable", keys: "notify_command = " + plain, want: Notify{Command: plain},
			diags: []string{"warning:", "is not an executable file", "chmod 755"}},
		{name: "writable by others", keys: "notify_command = " + loose, want: Notify{Command: loose},
			diags: []string{"error:", "writable by group or others", "chmod go-w"}},
		{name: "plain http off the machine", keys: "notify_url = http://chat.example/hook", want: Notify{URL: "http://chat.example/hook"},
			diags: []string{"error:", "plain http to chat.example"}},
		{name: "not a URL", keys: "notify_url = hooks.example", want: Notify{URL: "hooks.example"},
			diags: []string{"error:", "is not an http(s) URL"}},
		{name: "bad durations", keys: "notify_reminder = soon\nnotify_timeout = -5s",
			diags: []string{"error: [emailproxy] (line 2): notify_reminder = soon is not a duration", "error: [emailproxy] (line 3): notify_timeout = -5s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustParse(t, "[emailproxy]\n"+tc.keys+"\n")
			if got := c.Notify(); got != tc.want {
				t.Errorf("Notify() = %+v, want %+v", got, tc.want)
			}
			var got []string
			for _, d := range c.Validate() {
				if d.Section == GlobalSection && strings.HasPrefix(d.Key, "notify_") {
					got = append(got, d.String())
				}
			}
			all := strings.Join(got, "\n")
			if len(tc.diags) == 0 && all != "" {
				t.Errorf("unexpected diagnostics:\n%s", all)
			}
			rest := all
			for _, want := range tc.diags {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Errorf("diagnostics lack %q (in order):\n%s", want, all)
					break
				}
				rest = rest[i+len(want):]
			}
		})
	}
}
