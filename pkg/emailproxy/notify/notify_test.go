package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// script writes an executable shell script into dir and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "notify.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newNotifier(t *testing.T, opts Options) (*Notifier, *syncBuffer) {
	t.Helper()
	var logs syncBuffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	if opts.Hostname == "" {
		opts.Hostname = "vault.example.com"
	}
	n := New(opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Close(ctx)
	})
	return n, &logs
}

func readFileEventually(t *testing.T, path string, cond func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if cond(string(b)) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never became as expected; it holds:\n%s", path, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The command gets the event in ORBIT_* variables and nothing of the
// engine's environment, which may hold the client secret.
func TestCommandEnvironment(t *testing.T) {
	t.Setenv("ORBIT_OAUTH2_CLIENT_SECRET", "canary-client-secret")
	t.Setenv("HTTPS_PROXY", "http://user:canary-proxy-pass@proxy:3128")
	out := filepath.Join(t.TempDir(), "env")
	cmd := script(t, "env > "+out+".tmp && mv "+out+".tmp "+out+"\n")
	n, _ := newNotifier(t, Options{Command: cmd})
	n.Notify(Event{Kind: AuthNeeded, Account: "alice@example.com", AuthURL: "https://login.example/authorize?state=s1"})
	env := readFileEventually(t, out, func(s string) bool { return strings.Contains(s, "ORBIT_EVENT") })
	for _, want := range []string{
		"ORBIT_EVENT=auth_needed", "ORBIT_ACCOUNT=alice@example.com",
		"ORBIT_AUTH_URL=https://login.example/authorize?state=s1", "ORBIT_USER_CODE=\n",
		"ORBIT_HOST=vault.example.com", "ORBIT_TEXT=Authorisation needed for alice@example.com on vault.example.com: open https://login.example/authorize?state=s1",
		"ORBIT_TIME=", "ORBIT_SINCE=", "PATH=/usr/local/sbin:",
	} {
		if !strings.Contains(env, want) {
			t.Errorf("environment lacks %q:\n%s", want, env)
		}
	}
	for _, leak := range []string{"canary", "HTTPS_PROXY", "HOME="} {
		if strings.Contains(env, leak) {
			t.Errorf("the engine's environment leaked (%q):\n%s", leak, env)
		}
	}
}

// One delivery at a time per account, in order; another account's
// delivery does not wait behind it.
func TestOneAtATimePerAccount(t *testing.T) {
	dir := t.TempDir()
	cmd := script(t, `echo "start $ORBIT_ACCOUNT $ORBIT_EVENT" >> `+dir+`/log
sleep 0.2
echo "end $ORBIT_ACCOUNT $ORBIT_EVENT" >> `+dir+`/log
`)
	n, _ := newNotifier(t, Options{Command: cmd})
	n.Notify(Event{Kind: AuthNeeded, Account: "alice@example.com", AuthURL: "https://a/1"})
	n.Notify(Event{Kind: AuthCompleted, Account: "alice@example.com"})
	n.Notify(Event{Kind: RefreshFailed, Account: "alice@example.com", Reason: "invalid_grant"})
	n.Notify(Event{Kind: TokenRevoked, Account: "bob@example.com"})
	got := readFileEventually(t, dir+"/log", func(s string) bool { return strings.Count(s, "end ") == 4 })
	var alice []string
	bobStart, aliceLastEnd := -1, -1
	for i, l := range strings.Split(strings.TrimSpace(got), "\n") {
		if strings.Contains(l, "alice") {
			alice = append(alice, l)
			if strings.HasPrefix(l, "end") {
				aliceLastEnd = i
			}
		} else if strings.HasPrefix(l, "start") {
			bobStart = i
		}
	}
	want := []string{
		"start alice@example.com auth_needed", "end alice@example.com auth_needed",
		"start alice@example.com auth_completed", "end alice@example.com auth_completed",
		"start alice@example.com refresh_failed", "end alice@example.com refresh_failed",
	}
	if strings.Join(alice, "\n") != strings.Join(want, "\n") {
		t.Errorf("alice's deliveries:\n%s\nwant, one at a time and in order:\n%s", strings.Join(alice, "\n"), strings.Join(want, "\n"))
	}
	if bobStart > aliceLastEnd {
		t.Errorf("bob's delivery waited for all of alice's:\n%s", got)
	}
}

// A command that overruns the timeout is killed with what it started.
func TestCommandTimeout(t *testing.T) {
	dir := t.TempDir()
	cmd := script(t, "sleep 30 &\necho $! > "+dir+"/child\nsleep 30\n")
	n, logs := newNotifier(t, Options{Command: cmd, Timeout: 300 * time.Millisecond})
	n.Notify(Event{Kind: TokenRevoked, Account: "alice@example.com"})
	readFileEventually(t, dir+"/child", func(s string) bool { return strings.TrimSpace(s) != "" })
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "did not finish within 300ms and was killed") {
		if time.Now().After(deadline) {
			t.Fatalf("no timeout in the log:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, _ := os.ReadFile(dir + "/child")
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("the command's child %d outlived the timeout", pid)
}

func TestWebhook(t *testing.T) {
	var mu sync.Mutex
	var got []map[string]any
	fail := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s with %q", r.Method, r.Header.Get("Content-Type"))
		}
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			t.Error(err)
		}
		mu.Lock()
		defer mu.Unlock()
		got = append(got, m)
		if fail {
			fail = false
			http.Error(w, "try later", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	n, logs := newNotifier(t, Options{URL: srv.URL + "/hook?key=WEBHOOK-KEY"})
	n.Notify(Event{Kind: RefreshFailed, Account: "alice@example.com", Reason: "AADSTS700082: expired"})
	n.Notify(Event{Kind: AuthNeeded, Account: "alice@example.com", AuthURL: "https://login.example/device", UserCode: "ABCD-EFGH"})
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		k := len(got)
		mu.Unlock()
		if k == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d POSTs, want 2", k)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if got[0]["event"] != "refresh_failed" || got[0]["reason"] != "AADSTS700082: expired" || got[0]["host"] != "vault.example.com" {
		t.Errorf("first POST: %v", got[0])
	}
	if got[1]["event"] != "auth_needed" || got[1]["user_code"] != "ABCD-EFGH" ||
		got[1]["text"] != "Authorisation needed for alice@example.com on vault.example.com: visit https://login.example/device and enter the code ABCD-EFGH" {
		t.Errorf("second POST: %v", got[1])
	}
	waitLog(t, logs, "notify_url failed for alice@example.com (refresh_failed): POST "+srv.URL+"/hook answered 503")
	if strings.Contains(logs.String(), "WEBHOOK-KEY") {
		t.Errorf("the webhook's query reached the log:\n%s", logs)
	}
}

func waitLog(t *testing.T, logs *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log lacks %q:\n%s", want, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Reminders repeat while the authorisation is pending and stop when it
// completes; the same URL announced again (another login) is not news;
// an unchanged failure is told once per interval; a refresh nobody waited
// for is not news.
func TestReminderAndRepeats(t *testing.T) {
	dir := t.TempDir()
	cmd := script(t, `echo "$ORBIT_EVENT $ORBIT_AUTH_URL $ORBIT_SINCE" >> `+dir+"/log\n")
	n, _ := newNotifier(t, Options{Command: cmd, Reminder: 150 * time.Millisecond})
	n.Notify(Event{Kind: AuthCompleted, Account: "alice@example.com"})
	n.Notify(Event{Kind: AuthNeeded, Account: "alice@example.com", AuthURL: "https://a/1"})
	n.Notify(Event{Kind: AuthNeeded, Account: "alice@example.com", AuthURL: "https://a/1"})
	readFileEventually(t, dir+"/log", func(s string) bool { return strings.Count(s, "auth_reminder") >= 2 })
	n.Notify(Event{Kind: AuthCompleted, Account: "alice@example.com"})
	n.Notify(Event{Kind: RefreshFailed, Account: "alice@example.com", Reason: "r1"})
	n.Notify(Event{Kind: RefreshFailed, Account: "alice@example.com", Reason: "r1"})
	got := readFileEventually(t, dir+"/log", func(s string) bool { return strings.Contains(s, "refresh_failed") })
	time.Sleep(400 * time.Millisecond) // two reminder intervals: none may come now
	final, _ := os.ReadFile(dir + "/log")
	lines := strings.Split(strings.TrimSpace(string(final)), "\n")
	if !strings.HasPrefix(lines[0], "auth_needed https://a/1 ") || strings.Count(string(final), "auth_needed") != 1 {
		t.Errorf("want one auth_needed first:\n%s", final)
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "auth_reminder") && !strings.HasPrefix(l, "auth_reminder https://a/1 20") {
			t.Errorf("a reminder without the URL or the time it began: %q", l)
		}
	}
	if c := strings.Count(string(final), "auth_completed"); c != 1 {
		t.Errorf("%d auth_completed, want 1 (the first had no pending authorisation):\n%s", c, final)
	}
	if c := strings.Count(string(final), "refresh_failed"); c != 1 {
		t.Errorf("%d refresh_failed, want 1 (the same reason twice):\n%s", c, final)
	}
	if string(final) != got && strings.Count(string(final), "auth_reminder") != strings.Count(got, "auth_reminder") {
		t.Errorf("reminders went on after the authorisation completed:\n%s", final)
	}
}

func TestDisabled(t *testing.T) {
	n := New(Options{})
	if n.Enabled() {
		t.Fatal("enabled with no channel")
	}
	n.Notify(Event{Kind: AuthNeeded, Account: "a"}) // must not panic or start anything
	var nilN *Notifier
	if nilN.Enabled() || nilN.Close(context.Background()) != nil {
		t.Fatal("a nil Notifier must be a quiet no-op")
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://hooks.example/services/T0?token=abc": "https://hooks.example/services/T0",
		"https://user:pass@ntfy.example/topic":        "https://ntfy.example/topic",
		"http://127.0.0.1:8080/x#frag":                "http://127.0.0.1:8080/x",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}
