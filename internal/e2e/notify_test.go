package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/errcatalog"
)

// notifyRecorder is a notify_command script that appends each event's
// ORBIT_* environment to a file, and a loopback webhook that keeps each
// JSON document.
type notifyRecorder struct {
	t       *testing.T
	script  string
	logFile string
	hook    *httptest.Server

	mu    sync.Mutex
	posts []map[string]string
}

func newNotifyRecorder(t *testing.T, dir string) *notifyRecorder {
	r := &notifyRecorder{t: t, script: filepath.Join(dir, "notify.sh"), logFile: filepath.Join(dir, "notify.log")}
	body := "#!/bin/sh\n{ env | grep '^ORBIT_' | sort; echo --; } >> " + r.logFile + "\n"
	if err := os.WriteFile(r.script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	r.hook = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var m map[string]string
		if err := json.NewDecoder(req.Body).Decode(&m); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		r.mu.Lock()
		r.posts = append(r.posts, m)
		r.mu.Unlock()
	}))
	t.Cleanup(r.hook.Close)
	return r
}

// events are the command's deliveries, each as its ORBIT_* variables.
func (r *notifyRecorder) events() []map[string]string {
	b, _ := os.ReadFile(r.logFile)
	var out []map[string]string
	for _, block := range strings.Split(string(b), "--\n") {
		if strings.TrimSpace(block) == "" {
			continue
		}
		m := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(block), "\n") {
			k, v, _ := strings.Cut(l, "=")
			m[k] = v
		}
		out = append(out, m)
	}
	return out
}

// await waits until both channels delivered an event matching want (all
// its ORBIT_* keys) and returns the command's.
func (r *notifyRecorder) await(want map[string]string) map[string]string {
	r.t.Helper()
	match := func(m map[string]string, key func(string) string) bool {
		for k, v := range want {
			if m[key(k)] != v {
				return false
			}
		}
		return true
	}
	jsonKey := func(k string) string {
		k = strings.ToLower(strings.TrimPrefix(k, "ORBIT_"))
		if k == "event" {
			return "event"
		}
		return k
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var cmd map[string]string
		for _, m := range r.events() {
			if match(m, func(k string) string { return k }) {
				cmd = m
			}
		}
		r.mu.Lock()
		posted := false
		for _, m := range r.posts {
			posted = posted || match(m, jsonKey)
		}
		r.mu.Unlock()
		if cmd != nil && posted {
			return cmd
		}
		if time.Now().After(deadline) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.t.Fatalf("no notification %v through both channels; command saw %v, webhook %v", want, r.events(), r.posts)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// setNotify adds the notification keys to the file by hand, as an admin
// would.
func (e *env) setNotify(lines ...string) {
	e.t.Helper()
	b, err := os.ReadFile(e.config)
	if err != nil {
		e.t.Fatal(err)
	}
	s := strings.Replace(string(b), "[emailproxy]\n", "[emailproxy]\n"+strings.Join(lines, "\n")+"\n", 1)
	if err := os.WriteFile(e.config, []byte(s), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// TestE2ENotifications: notify_command and notify_url tell of an
// authorisation needed (with the URL the log shows), reminders while it is
// pending, its completion, a token the mail server refused, and a token
// request the provider refused (with the catalogue's explanation); the
// command's environment holds nothing of the engine's and no secret.
func TestE2ENotifications(t *testing.T) {
	e := newEnv(t)
	e.addClient(bob)
	e.registerCode(alice)
	e.register("--account", bob, "--oauth2-flow", "client_credentials")
	rec := newNotifyRecorder(t, e.dir)
	e.setNotify("notify_command = "+rec.script, "notify_url = "+rec.hook.URL+"/hook", "notify_reminder = 1s")
	t.Setenv("ORBIT_OAUTH2_CLIENT_SECRET", clientSecret) // serve's environment must not reach the command
	e.serve()

	login := e.imapLoginAsync(alice)
	authURL := e.waitAuthURL(alice, 1)
	needed := rec.await(map[string]string{"ORBIT_EVENT": "auth_needed", "ORBIT_ACCOUNT": alice, "ORBIT_AUTH_URL": authURL})
	if !strings.HasPrefix(needed["ORBIT_TEXT"], "Authorisation needed for "+alice+" on ") || needed["ORBIT_SINCE"] == "" {
		t.Errorf("auth_needed: %v", needed)
	}
	rec.await(map[string]string{"ORBIT_EVENT": "auth_reminder", "ORBIT_ACCOUNT": alice, "ORBIT_AUTH_URL": authURL})

	e.authorize(alice, authURL)
	e.awaitLogin(login, "the login that waited")
	rec.await(map[string]string{"ORBIT_EVENT": "auth_completed", "ORBIT_ACCOUNT": alice})
	reminders := func() (n int) {
		for _, m := range rec.events() {
			if m["ORBIT_EVENT"] == "auth_reminder" {
				n++
			}
		}
		return n
	}
	before := reminders()
	time.Sleep(2500 * time.Millisecond)
	if after := reminders(); after != before {
		t.Errorf("reminders went on after the authorisation completed: %d -> %d", before, after)
	}

	// The provider revokes alice's tokens: the mail server refuses the
	// access token (token_revoked) and, the refresh token being dead too,
	// a new authorisation is needed (auth_needed with a new URL).
	e.prov.Revoke(alice)
	e.imapLoginReply(alice, mailerPassword)
	rec.await(map[string]string{"ORBIT_EVENT": "token_revoked", "ORBIT_ACCOUNT": alice})

	// bob's client secret is refused for good: refresh_failed with the
	// catalogue's explanation.
	entry, _ := errcatalog.Lookup(errcatalog.TokenEndpoint, "invalid_client", "AADSTS7000222: The provided client secret keys are expired.")
	e.prov.RefuseNextWith(1, http.StatusUnauthorized, "invalid_client", "AADSTS7000222: The provided client secret keys are expired.")
	if r := e.imapLoginReply(bob, mailerPassword); !strings.HasPrefix(r, "L1 NO") {
		t.Fatalf("bob's login with a refused secret: %q", r)
	}
	failed := rec.await(map[string]string{"ORBIT_EVENT": "refresh_failed", "ORBIT_ACCOUNT": bob})
	if !strings.Contains(failed["ORBIT_REASON"], entry.Hint()) {
		t.Errorf("refresh_failed reason %q lacks %q", failed["ORBIT_REASON"], entry.Hint())
	}

	all, _ := os.ReadFile(rec.logFile)
	rec.mu.Lock()
	posted := fmt.Sprint(rec.posts)
	rec.mu.Unlock()
	for _, secret := range []string{clientSecret, mailerPassword, "alice-provider-pw"} {
		if strings.Contains(string(all), secret) || strings.Contains(posted, secret) {
			t.Errorf("a secret reached a notification: %q", secret)
		}
	}
	if strings.Contains(string(all), "ORBIT_OAUTH2_CLIENT_SECRET") {
		t.Errorf("the engine's environment reached the command:\n%s", all)
	}
	e.checkNoSecrets()
}
