package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
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

// With catch-all sections anyone who reaches the listener can invent login
// names; each must not cost a status entry forever.
func TestStatusFileIsBounded(t *testing.T) {
	const bob = "bob@example.com"
	prov := newProvider(t)
	cfg, err := config.Parse([]byte("[emailproxy]\nallow_catch_all_accounts = True\n"+
		"["+alice+"]\noauth2_flow = client_credentials\n"+
		"[@example.com]\ntoken_url = "+prov.url()+"\noauth2_flow = client_credentials\n"+
		"oauth2_scope = https://outlook.office365.com/.default\nclient_id = cid\nclient_secret = "+secretClient+"\n"), "bounded.config")
	if err != nil {
		t.Fatal(err)
	}
	src := ConfigSource(func() *config.Config { return cfg })
	clock := newClock()
	t0 := clock.Now()

	// A full book costs no file write when a previous run's file holds it:
	// alice (her own section) least recently active, then catch-all names
	// that were active after bob, below, started waiting. Only the rules
	// protect alice and bob from the flood.
	path := filepath.Join(t.TempDir(), "status.json")
	seed := Status{Version: StatusVersion, Accounts: map[string]AccountStatus{
		alice: {State: StateAuthorised, Since: t0.Add(-time.Hour), LastActivity: t0.Add(-time.Hour)},
	}}
	seedName := func(i int) string { return fmt.Sprintf("seen%04d@example.com", i) }
	for i := range maxStatusAccounts - 2 {
		at := t0.Add(time.Minute + time.Duration(i)*time.Second)
		seed.Accounts[seedName(i)] = AccountStatus{State: StateAuthorised, Since: at, LastActivity: at}
	}
	raw, err := json.Marshal(seed)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o640); err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(Options{Accounts: src, Store: newMemStore(), HTTPClient: prov.srv.Client(), Now: clock.Now, StatusFile: path})
	if err != nil {
		t.Fatal(err)
	}
	m.SetPendingDevice(bob, "https://microsoft.com/devicelogin", "ABCD-EFGH")

	clock.Advance(time.Hour)
	ctx := context.Background()
	const flood = 200
	newName := func(i int) string { return fmt.Sprintf("nobody%04d@example.com", i) }
	for i := range flood {
		clock.Advance(time.Second)
		if _, err := m.AccessToken(ctx, newName(i), secretPassword); err != nil {
			t.Fatalf("%s: %v", newName(i), err)
		}
	}

	// Survivors: alice, bob and the most recently active names; the flood
	// pushed out as many of the oldest seen names.
	want := map[string]State{alice: StateAuthorised, bob: StateWaiting}
	for i := range flood {
		want[newName(i)] = StateAuthorised
	}
	for i := flood; i < maxStatusAccounts-2; i++ {
		want[seedName(i)] = StateAuthorised
	}
	check := func(where string, got map[string]AccountStatus) {
		t.Helper()
		if len(got) > maxStatusAccounts {
			t.Errorf("%s holds %d accounts, want at most %d", where, len(got), maxStatusAccounts)
		}
		for n, s := range want {
			if got[n].State != s {
				t.Errorf("%s: %s is %+v, want %s", where, n, got[n], s)
			}
		}
	}
	st, err := ReadStatus(path)
	if err != nil {
		t.Fatal(err)
	}
	check("status file", st.Accounts)
	check("Manager.Status", m.Status().Accounts)

	// A file from before the bound (or hand-edited) is trimmed on load.
	for i := range 300 {
		st.Accounts[fmt.Sprintf("old%04d@example.com", i)] = AccountStatus{State: StateFailing, Since: time.Unix(int64(i), 0).UTC()}
	}
	if raw, err = json.Marshal(st); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o640); err != nil {
		t.Fatal(err)
	}
	m2, err := NewManager(Options{Accounts: src, Store: newMemStore(), Now: clock.Now, StatusFile: path})
	if err != nil {
		t.Fatal(err)
	}
	delete(want, bob) // a pending authorisation does not survive a restart
	check("status after restart", m2.Status().Accounts)
}

// The order in which a full status book gives up entries when a new name
// arrives: no section of its own first, then own section, waiting last.
func TestStatusBookEvictionOrder(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	// fill makes a full book: entry i was last active at t0+i seconds and
	// is waiting / has its own section as the case says.
	cases := []struct {
		name           string
		waiting, owned func(i int) bool
		wantGone       string
	}{
		{name: "oldest catch-all entry goes first",
			waiting: func(i int) bool { return i == 1 }, owned: func(i int) bool { return i == 0 }, wantGone: "u0002@example.com"},
		{name: "then the oldest with its own section",
			waiting: func(i int) bool { return i%2 == 0 }, owned: func(i int) bool { return i%2 == 1 }, wantGone: "u0001@example.com"},
		{name: "a waiting entry only when all are waiting",
			waiting: func(int) bool { return true }, owned: func(int) bool { return false }, wantGone: "u0000@example.com"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{t: t0}
			owned := map[string]bool{}
			b := newStatusBook("", clock.Now, slog.New(slog.DiscardHandler), func(n string) bool { return owned[n] })
			for i := range maxStatusAccounts {
				n := fmt.Sprintf("u%04d@example.com", i)
				owned[n] = tc.owned(i)
				if tc.waiting(i) {
					b.waiting(n, config.FlowDevice, "https://microsoft.com/devicelogin", "CODE")
				} else {
					b.failing(n, config.FlowClientCredentials, "refused")
				}
				clock.Advance(time.Second)
			}
			b.authorised("new@example.com", config.FlowClientCredentials, clock.Now().Add(time.Hour))
			got := b.snapshot().Accounts
			if len(got) != maxStatusAccounts {
				t.Fatalf("%d accounts, want %d", len(got), maxStatusAccounts)
			}
			if _, ok := got[tc.wantGone]; ok {
				t.Errorf("%s survived", tc.wantGone)
			}
			if _, ok := got["new@example.com"]; !ok {
				t.Error("the new entry was dropped")
			}
		})
	}
}

// TestStatusFileModeFixed: a status file found world-writable (or
// readable) is back at 0640 after the next write.
func TestStatusFileModeFixed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	if err := os.WriteFile(path, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, defaultGlobal(), []config.Account{ccAccount(alice)}, func(o *Options) { o.StatusFile = path })
	h.prov.script(GrantClientCredentials, tokenAnswer("AT-alice", "", 3600))
	if _, err := h.m.AccessToken(context.Background(), alice, secretPassword); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != statusFileMode {
		t.Errorf("status file mode after a write = %v, want %v", fi.Mode().Perm(), os.FileMode(statusFileMode))
	}
}

// TestStatusCatchAllWritesCoalesced: names without a section of their own
// (a client inventing login names through a catch-all) rewrite the whole
// status file at most once per interval, not once each; a configured
// account's change is still written at once, and the catch-all changes
// reach the file within the interval.
func TestStatusCatchAllWritesCoalesced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	b := newStatusBook(path, time.Now, slog.New(slog.DiscardHandler), func(n string) bool { return n == alice })
	b.lazyEvery = 300 * time.Millisecond
	const names = 200
	for i := range names {
		b.failing(fmt.Sprintf("nobody%04d@example.com", i), config.FlowPassword, "the token endpoint refused the request")
	}
	writes := func() int {
		b.fileMu.Lock()
		defer b.fileMu.Unlock()
		return b.fileWrites
	}
	if n := writes(); n > 2 {
		t.Errorf("%d refused catch-all names wrote the status file %d times, want at most 2", names, n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := ReadStatus(path)
		if err == nil && len(st.Accounts) == names {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the status file never caught up with the catch-all names: %d of %d (%v)", len(st.Accounts), names, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A configured account: in the file as soon as update returns.
	b.failing("nobody-late@example.com", config.FlowPassword, "refused")
	b.authorised(alice, config.FlowClientCredentials, time.Now().Add(time.Hour))
	st, err := ReadStatus(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Accounts[alice].State != StateAuthorised {
		t.Errorf("alice (own section) is not in the file at once: %+v", st.Accounts[alice])
	}
	if _, ok := st.Accounts["nobody-late@example.com"]; !ok {
		t.Errorf("the write for alice did not take the waiting catch-all change along")
	}
}
