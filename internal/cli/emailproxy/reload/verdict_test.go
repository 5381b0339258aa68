package reload

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/journal"
	"github.com/senhasegura/orbit/pkg/journal/journaltest"
)

// TestWaitVerdictRightAfterTheCursor: on a real journal, the verdict
// logged right after the cursor's entry (which is no lifecycle entry) is
// found; journalctl 252's --after-cursor with a MESSAGE_ID match skipped it.
func TestWaitVerdictRightAfterTheCursor(t *testing.T) {
	const unit = "email-oauth2-proxy.service"
	path := journaltest.Write(t, filepath.Join(t.TempDir(), "reload.journal"), 0,
		journaltest.Rec{{"_SYSTEMD_UNIT", unit}, {"_PID", "42"}, {"MESSAGE", "IMAP login a@x"}},
		journaltest.Rec{{"_SYSTEMD_UNIT", unit}, {"_PID", "42"}, {"MESSAGE_ID", events.Lifecycle},
			{events.Prefix + events.FieldState, StateReloaded}, {"MESSAGE", "reloaded"}},
	)
	r := &journal.Reader{Args: []string{"--file=" + path}}
	all, err := r.Collect(context.Background(), journal.Query{})
	if err != nil || len(all) != 2 {
		t.Fatalf("%d entries, %v", len(all), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := waitVerdict(ctx, r, unit, 42, all[0].Cursor, time.Time{})
	if err != nil || e.Cursor != all[1].Cursor {
		t.Fatalf("waitVerdict: %q, %v; want the verdict entry", e.Message, err)
	}
}
