package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
)

// scheduler stands in for time.AfterFunc on the fake clock: run fires what
// is due.
type scheduler struct {
	mu    sync.Mutex
	clock *fakeClock
	due   []scheduled
}

type scheduled struct {
	at time.Time
	f  func()
}

func (s *scheduler) afterFunc(d time.Duration, f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.due = append(s.due, scheduled{s.clock.Now().Add(d), f})
}

func (s *scheduler) run() {
	s.mu.Lock()
	var now []func()
	keep := s.due[:0]
	for _, x := range s.due {
		if !x.at.After(s.clock.Now()) {
			now = append(now, x.f)
		} else {
			keep = append(keep, x)
		}
	}
	s.due = keep
	s.mu.Unlock()
	for _, f := range now {
		f()
	}
}

// TestStatusFileCountsAStorm: 60 wrong passwords for alice from three
// addresses over two minutes are in the status file as failed_logins
// (count, addresses, the last one and when, the delay), written about once
// a minute rather than once per guess (the first at once), and alice's state, since and
// last_activity are those of her last real login.
func TestStatusFileCountsAStorm(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	h := newHarness(t, config.Global{}, []config.Account{ccAccount(alice)}, func(o *Options) {
		o.StatusFile = path
		o.Guard = GuardOptions{FreeFailures: 3, MaxDelay: 2 * time.Second}
	})
	sched := &scheduler{clock: h.clock}
	h.m.status.afterFunc = sched.afterFunc
	h.store.set(alice, secretPassword, tokens.Record{AccessToken: "AT-stored", AccessTokenExpiry: h.clock.Now().Add(3 * time.Hour)})
	if _, err := h.m.AccessToken(context.Background(), alice, secretPassword); err != nil {
		t.Fatal(err)
	}
	before, err := ReadStatus(path)
	if err != nil {
		t.Fatal(err)
	}
	if before.FailedLogins != nil {
		t.Fatalf("failed_logins before any failure: %v", before.FailedLogins)
	}
	writesBefore := h.m.status.fileWrites

	var last time.Time
	for i := range 60 {
		// Each guess comes once the address's back-off has passed, so the
		// guard lets it through to the password check.
		h.clock.Advance(2 * time.Second)
		sched.run()
		ctx := WithClientAddr(context.Background(), fmt.Sprintf("198.51.100.%d:4000", 1+i%3))
		if _, err := h.m.AccessToken(ctx, alice, fmt.Sprintf("guess-%d", i)); !errors.Is(err, ErrBadPassword) {
			t.Fatalf("guess %d: %v", i, err)
		}
		last = h.clock.Now()
		if i == 0 {
			// The first failure is in the file at once, although the
			// file was written moments before.
			if st, _ := ReadStatus(path); st.FailedLogins[alice].LastHour != 1 {
				t.Fatalf("after the first failure the file has %+v", st.FailedLogins)
			}
		}
	}
	// Right after the storm: the delay is in force.
	now := h.m.Status()
	f := now.FailedLogins[alice]
	if f.LastHour != 60 || f.Refused != 0 || f.Addresses != 3 || f.AddressesCapped || f.LastAddress != "198.51.100.3" ||
		!f.Last.Equal(last.Truncate(time.Second)) || !f.DelayedUntil.Equal(last.Add(2*time.Second)) {
		t.Errorf("failed_logins[alice] = %+v, want 60 from 3 addresses, the last from 198.51.100.3 at %v, delayed until %v", f, last, last.Add(2*time.Second))
	}
	storm := h.m.status.fileWrites - writesBefore
	// The first failure writes at once, then at most one write per minute
	// of the two-minute storm.
	if storm < 2 || storm > 3 {
		t.Errorf("%d status file writes during a 2-minute storm of 60 failures, want 2 or 3 (once a minute)", storm)
	}
	// The last minute's failures are written a minute after the last write.
	h.clock.Advance(time.Minute)
	sched.run()
	if n := h.m.status.fileWrites - writesBefore; n != storm+1 {
		t.Errorf("%d writes after the storm, want %d (one for what was held back)", n, storm+1)
	}
	after, err := ReadStatus(path)
	if err != nil {
		t.Fatal(err)
	}
	f = after.FailedLogins[alice]
	if f.LastHour != 60 || f.Addresses != 3 || f.LastAddress != "198.51.100.3" || !f.DelayedUntil.IsZero() {
		t.Errorf("the file's failed_logins[alice] = %+v, want all 60, no delay any more", f)
	}
	b, a := before.Accounts[alice], after.Accounts[alice]
	if a.State != StateAuthorised || !a.Since.Equal(b.Since) || !a.LastActivity.Equal(b.LastActivity) || a.Reason != "" {
		t.Errorf("the storm changed alice's entry: %+v -> %+v", b, a)
	}
	if len(after.CatchAllFailedLogins) != 0 || len(after.FailedLogins) != 1 {
		t.Errorf("failed logins of others: %v %v", after.FailedLogins, after.CatchAllFailedLogins)
	}
	// An hour after the last failure the entry is gone.
	h.clock.Advance(time.Hour)
	if st := h.m.Status(); st.FailedLogins != nil {
		t.Errorf("failed_logins an hour after the storm: %v", st.FailedLogins)
	}
}

// catchAllSource serves every name ending in @example.com from [@example.com]
// unless it has a section of its own.
type catchAllSource struct {
	*source
	def config.Account
}

func (s catchAllSource) Account(name string) (config.Account, bool) {
	if a, ok := s.source.Account(name); ok {
		return a, true
	}
	if !strings.HasSuffix(name, "@example.com") {
		return config.Account{}, false
	}
	a := s.def
	a.Name = name
	return a, true
}

// TestCatchAllInventedNamesAddNoFailureEntries: wrong passwords for names
// nobody uses under a catch-all section are counted under the section
// (with how many names), not one failed_logins entry per name, while a
// name that is in use keeps its own count.
func TestCatchAllInventedNamesAddNoFailureEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	h := newHarness(t, config.Global{}, nil, func(o *Options) {
		o.StatusFile = path
		o.Guard = GuardOptions{FreeFailures: 1000}
	})
	def := passwordAccount("@example.com")
	def.TokenURL = h.prov.url()
	src := catchAllSource{source: newSource(config.Global{}), def: def}
	h.m.src = src
	h.m.status.afterFunc = func(time.Duration, func()) {}
	// carol logs in for real, then gets wrong passwords.
	h.prov.script(GrantPassword, tokenAnswer("AT-carol", "RT-carol", 3600))
	carol := "carol@example.com"
	if _, err := h.m.AccessToken(context.Background(), carol, "carols-password"); err != nil {
		t.Fatal(err)
	}
	refused := jsonAnswer(http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "AADSTS50126: invalid username or password."})
	ctx := WithClientAddr(context.Background(), "203.0.113.5:1000")
	for i := range 80 {
		h.prov.script(GrantPassword, refused)
		h.clock.Advance(2 * time.Second) // past the relay back-off
		_, err := h.m.AccessToken(ctx, fmt.Sprintf("invented-%d@example.com", i), "guess")
		if !errors.Is(err, ErrProviderRefused) {
			t.Fatalf("invented name %d: %v", i, err)
		}
	}
	h.prov.script(GrantPassword, refused)
	h.clock.Advance(2 * time.Second)
	if _, err := h.m.AccessToken(ctx, carol, "wrong"); err == nil {
		t.Fatal("a wrong password for carol logged in")
	}
	st := h.m.Status()
	if len(st.FailedLogins) != 1 || st.FailedLogins[carol].LastHour != 1 {
		t.Errorf("failed_logins = %v, want only carol's one", st.FailedLogins)
	}
	c := st.CatchAllFailedLogins["@example.com"]
	if len(st.CatchAllFailedLogins) != 1 || c.LastHour != 80 || c.Names != maxFailureNames || !c.NamesCapped || c.Addresses != 1 || c.LastAddress != "203.0.113.5" {
		t.Errorf("catch_all_failed_logins = %+v, want 80 failed logins of at least %d names under @example.com", st.CatchAllFailedLogins, maxFailureNames)
	}
}

// TestFailureBookBounds: entries, addresses per entry and the window are
// bounded.
func TestFailureBookBounds(t *testing.T) {
	fb := newFailureBook()
	t0 := time.Date(2026, 1, 2, 9, 0, 0, 0, time.UTC)
	for i := range maxFailureEntries + 500 {
		fb.note(fmt.Sprintf("user%d@example.com", i), "", "192.0.2.1", false, t0.Add(time.Duration(i)*time.Millisecond))
	}
	if n := len(fb.accts); n > maxFailureEntries {
		t.Errorf("%d entries kept, want at most %d", n, maxFailureEntries)
	}
	if _, ok := fb.accts["user0@example.com"]; ok {
		t.Error("the oldest entry was kept over newer ones")
	}
	for i := range 200 {
		fb.note("alice@example.com", "", fmt.Sprintf("192.0.2.%d", i), i%2 == 0, t0.Add(time.Second))
	}
	if n := len(fb.accts["alice@example.com"].addrs); n > maxFailureAddrs {
		t.Errorf("%d addresses kept for one account, want at most %d", n, maxFailureAddrs)
	}
	accts, _ := fb.snapshot(t0.Add(2*time.Second), nil)
	a := accts["alice@example.com"]
	if a.LastHour != 200 || a.Refused != 100 || a.Addresses != maxFailureAddrs || !a.AddressesCapped || a.LastAddress != "192.0.2.199" {
		t.Errorf("alice = %+v", a)
	}
	// Counts older than the hour drop out, minute by minute.
	fb.note("alice@example.com", "", "192.0.2.1", false, t0.Add(50*time.Minute))
	accts, _ = fb.snapshot(t0.Add(61*time.Minute), nil)
	if a := accts["alice@example.com"]; a.LastHour != 1 || a.Addresses != 1 || a.AddressesCapped {
		t.Errorf("an hour later alice = %+v, want the one failure of the last hour", a)
	}
	accts, _ = fb.snapshot(t0.Add(2*time.Hour), nil)
	if len(accts) != 0 || len(fb.accts) != 0 {
		t.Errorf("entries two hours after the last failure: %v", accts)
	}
}
