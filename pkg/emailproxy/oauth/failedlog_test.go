package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
)

// TestFailedLoginsAreSummedUp: wrong passwords leave the account's status
// alone; the first of a run is a loud error (the proxy logs it as a
// warning), the rest are quiet and summed up in one warning per period
// with the count, the address and its delay, under LoginFailed's
// MESSAGE_ID and fields; a period without failures ends the run.
func TestFailedLoginsAreSummedUp(t *testing.T) {
	h := newHarness(t, config.Global{}, []config.Account{ccAccount(alice)}, func(o *Options) {
		o.Guard = GuardOptions{FreeFailures: 3}
	})
	h.m.failedLog.every = 150 * time.Millisecond
	h.store.set(alice, secretPassword, tokens.Record{AccessToken: "AT-stored", AccessTokenExpiry: h.clock.Now().Add(time.Hour)})
	if _, err := h.m.AccessToken(context.Background(), alice, secretPassword); err != nil {
		t.Fatal(err)
	}
	before, _ := h.m.AccountStatus(alice)

	guess := WithClientAddr(context.Background(), "203.0.113.9:4000")
	var quiet []bool
	for _, pw := range []string{"guess-1", "guess-2", "guess-3"} {
		_, err := h.m.AccessToken(guess, alice, pw)
		var q interface{ Quiet() bool }
		if !errors.Is(err, ErrBadPassword) || !errors.As(err, &q) {
			t.Fatalf("%s: %v", pw, err)
		}
		quiet = append(quiet, q.Quiet())
	}
	if quiet[0] || !quiet[1] || !quiet[2] {
		t.Errorf("quiet = %v, want the first loud and the rest quiet", quiet)
	}
	if after, _ := h.m.AccountStatus(alice); after.State != StateAuthorised || after.Reason != "" || after.Since != before.Since {
		t.Errorf("wrong passwords changed the status: %+v -> %+v", before, after)
	}
	warnings := func() []map[string]any {
		var out []map[string]any
		for line := range strings.SplitSeq(h.logs.String(), "\n") {
			var r map[string]any
			if json.Unmarshal([]byte(line), &r) == nil && r["level"] == "WARN" {
				out = append(out, r)
			}
		}
		return out
	}
	if w := warnings(); len(w) != 0 {
		t.Errorf("the token layer warned per wrong password: %v", w)
	}
	waitFor(t, func() bool { return len(warnings()) == 1 })
	w := warnings()[0]
	if msg := w["msg"].(string); !strings.HasPrefix(msg, "2 more failed logins for "+alice+" from 203.0.113.9 in the last ") ||
		!strings.HasSuffix(msg, "; next attempt delayed 1 s") {
		t.Errorf("summary line %q", msg)
	}
	if w["message_id"] != events.LoginFailed || w["account"] != alice || w["client"] != "203.0.113.9" || w["count"] != float64(2) || w["reason"] == nil {
		t.Errorf("summary fields %v", w)
	}
	// A quiet period ends the run (no line for it); the next failure is
	// loud again.
	time.Sleep(400 * time.Millisecond)
	if n := len(warnings()); n != 1 {
		t.Errorf("%d summary lines for one period of failures", n)
	}
	h.m.guard.succeeded(alice, "203.0.113.9") // no back-off in the way
	_, err := h.m.AccessToken(guess, alice, "guess-4")
	var q interface{ Quiet() bool }
	if !errors.As(err, &q) || q.Quiet() {
		t.Errorf("the first failure after a quiet period: %v, want loud", err)
	}
}
