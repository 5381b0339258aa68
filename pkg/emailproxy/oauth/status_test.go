package oauth

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
)

func TestStatusFile(t *testing.T) {
	const bob, carol, dave = "bob@example.com", "carol@example.com", "dave@example.com"
	path := filepath.Join(t.TempDir(), "state", "status.json")
	withFile := func(o *Options) { o.StatusFile = path; o.Interactive = &fakeAuthorizer{release: make(chan struct{})} }

	bobAcct := ccAccount(bob)
	bobAcct.Flow = config.FlowDevice
	carolAcct := ccAccount(carol)
	daveAcct := ccAccount(dave)
	h := newHarness(t, defaultGlobal(), []config.Account{ccAccount(alice), bobAcct, carolAcct, daveAcct}, withFile)
	h.prov.script(GrantClientCredentials, tokenAnswer("AT-alice-"+"SECRET-ACCESS", "", 3600),
		jsonAnswer(401, map[string]string{"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}))
	ctx := context.Background()

	// alice: authorised.
	tok, err := h.m.AccessToken(ctx, alice, secretPassword)
	if err != nil {
		t.Fatal(err)
	}
	// carol: the provider refuses.
	if _, err := h.m.AccessToken(ctx, carol, secretPassword); !errors.Is(err, ErrProviderRefused) {
		t.Fatalf("carol: %v", err)
	}
	// bob: waiting for a person, as the Authorizer reports it.
	h.m.SetPendingDevice(bob, "https://microsoft.com/devicelogin", "ABCD-EFGH")
	// dave: a stored refresh token, never shown.
	h.store.set(dave, secretPassword, tokens.Record{AccessToken: "AT-dave-SECRET", AccessTokenExpiry: h.clock.Now().Add(2 * time.Hour), RefreshToken: "RT-dave-SECRET"})
	if _, err := h.m.AccessToken(ctx, dave, secretPassword); err != nil {
		t.Fatal(err)
	}

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("status file mode = %o, want 640", fi.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecrets(t, "status file", string(raw), tok, "AT-dave-SECRET", "RT-dave-SECRET")

	st, err := ReadStatus(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != StatusVersion || st.PID != os.Getpid() {
		t.Errorf("header = version %d pid %d", st.Version, st.PID)
	}
	now := h.clock.Now().UTC()
	want := map[string]AccountStatus{
		alice: {State: StateAuthorised, Flow: config.FlowClientCredentials, Since: now, TokenExpiry: now.Add(time.Hour), LastActivity: now},
		bob:   {State: StateWaiting, Flow: config.FlowDevice, Since: now, AuthURL: "https://microsoft.com/devicelogin", UserCode: "ABCD-EFGH", LastActivity: now},
		carol: {State: StateFailing, Flow: config.FlowClientCredentials, Since: now, LastActivity: now},
		dave:  {State: StateAuthorised, Flow: config.FlowClientCredentials, Since: now, TokenExpiry: now.Add(2 * time.Hour), LastActivity: now},
	}
	for name, w := range want {
		g, ok := st.Accounts[name]
		if !ok {
			t.Errorf("%s missing from the status file", name)
			continue
		}
		if name == carol {
			if !strings.Contains(g.Reason, "AADSTS7000215") {
				t.Errorf("carol's reason = %q, want the provider's description", g.Reason)
			}
			g.Reason = ""
		}
		if g != w {
			t.Errorf("%s:\n got %+v\nwant %+v", name, g, w)
		}
	}

	// A restart: the authorised and failing entries carry over, the pending
	// one does not (its request died with the process).
	m2, err := NewManager(Options{Accounts: h.src, Store: h.store, Now: h.clock.Now, StatusFile: path})
	if err != nil {
		t.Fatal(err)
	}
	got := m2.Status().Accounts
	if _, ok := got[bob]; ok {
		t.Error("a pending authorisation survived the restart")
	}
	if got[alice].State != StateAuthorised || got[carol].State != StateFailing {
		t.Errorf("after restart: %+v", got)
	}
}

func TestStatusFileActivityIsThrottled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	h := newHarness(t, defaultGlobal(), []config.Account{ccAccount(alice)}, func(o *Options) { o.StatusFile = path })
	ctx := context.Background()
	if _, err := h.m.AccessToken(ctx, alice, secretPassword); err != nil {
		t.Fatal(err)
	}
	first, _ := ReadStatus(path)
	h.clock.Advance(10 * time.Second)
	if _, err := h.m.AccessToken(ctx, alice, secretPassword); err != nil {
		t.Fatal(err)
	}
	if st, _ := ReadStatus(path); !st.Accounts[alice].LastActivity.Equal(first.Accounts[alice].LastActivity) {
		t.Error("a login that changed only last_activity rewrote the file at once")
	}
	if got := h.m.Status().Accounts[alice].LastActivity; !got.Equal(h.clock.Now()) {
		t.Errorf("in memory last_activity = %v, want now", got)
	}
	h.clock.Advance(activityWriteInterval)
	if _, err := h.m.AccessToken(ctx, alice, secretPassword); err != nil {
		t.Fatal(err)
	}
	if st, _ := ReadStatus(path); !st.Accounts[alice].LastActivity.Equal(h.clock.Now()) {
		t.Error("last_activity not written after the interval")
	}
}

func TestReadStatusErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadStatus(filepath.Join(dir, "none.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	cases := map[string]string{
		"garbage.json": "{not json",
		"future.json":  `{"version": 99, "accounts": {}}`,
	}
	for name, body := range cases {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadStatus(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: err = %v, want one naming the file", name, err)
		}
	}
}
