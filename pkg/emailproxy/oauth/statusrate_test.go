package oauth

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

// TestStatusWriteRate pins the status file's write rate under the soak's
// mix on a fake clock: catch-all names changing a hundred times a second
// (refused names, renewals of names without a section) are written at most
// once a second in all, and a configured account's change (a renewal every
// 2.5 s here) is written at once. Each write at once used to start a chain
// of its own of catch-all writes a second, so the rate grew with the run:
// six writes a second after a few minutes of the soak.
func TestStatusWriteRate(t *testing.T) {
	now := time.Date(2026, 1, 2, 9, 0, 0, 0, time.UTC)
	type timer struct {
		at time.Time
		f  func()
	}
	var timers []timer
	b := newStatusBook(filepath.Join(t.TempDir(), "status.json"), func() time.Time { return now },
		slog.New(slog.DiscardHandler), func(n string) bool { return n == alice })
	b.afterFunc = func(d time.Duration, f func()) { timers = append(timers, timer{now.Add(d), f}) }
	// run fires the timers due by now, earliest first.
	run := func() {
		for {
			i := slices.IndexFunc(timers, func(x timer) bool { return !x.at.After(now) })
			if i < 0 {
				return
			}
			x := timers[i]
			timers = slices.Delete(timers, i, i+1)
			x.f()
		}
	}

	const (
		period = 60 * time.Second
		step   = 10 * time.Millisecond
		renew  = 2500 * time.Millisecond
	)
	own := 0
	for i := 0; time.Duration(i)*step < period; i++ {
		now = now.Add(step)
		run()
		b.failing(fmt.Sprintf("nobody%d@example.com", i), config.FlowPassword, "the token endpoint refused the request")
		if time.Duration(i)*step%renew == 0 {
			b.authorised(alice, config.FlowClientCredentials, now.Add(8*time.Second))
			own++
		}
	}
	now = now.Add(2 * b.lazyEvery)
	run()
	// The catch-all changes: at most one write a second (plus one for the
	// last changes); the configured account's: one each.
	want := own + int(period/b.lazyEvery) + 1
	t.Logf("%d status writes in %v, %d of them a configured account's", b.fileWrites, period, own)
	if got := b.fileWrites; got > want {
		t.Errorf("%d status writes in %v (%d of them a configured account's), want at most %d (%.1f a second)", got, period, own, want, float64(got)/period.Seconds())
	}
	if len(timers) != 0 {
		t.Errorf("%d timers still armed after the last write", len(timers))
	}
	if st, err := ReadStatus(b.path); err != nil || len(st.Accounts) != maxStatusAccounts {
		t.Errorf("the file's last write missed the last catch-all changes: %d accounts (%v), want %d", len(st.Accounts), err, maxStatusAccounts)
	}
}
