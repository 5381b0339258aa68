package oauth

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/events"
)

// failedSummaryEvery is how often, at most, one line sums up the failed
// logins of one account from one client address while they continue.
const failedSummaryEvery = time.Minute

// maxFailedRuns bounds the (account, address) pairs tracked; failures of
// pairs beyond it are summed up together.
const maxFailedRuns = 4096

// failedLogins keeps a wrong-password storm from writing a warning per
// guess: the first failed login of an account from an address is logged
// (by the proxy, with protocol and port: the error is not quiet), and then,
// while failures continue, one line per failedSummaryEvery says how many
// more there were and how long the address's next attempt is delayed. A
// minute without failures ends the run; the next failure is a first again.
type failedLogins struct {
	log   *slog.Logger
	every time.Duration
	// delay is how long the address's next attempt waits (the guard's).
	delay func(addr string) time.Duration

	mu   sync.Mutex
	runs map[trustPair]*failedRun
}

type failedRun struct {
	more  int // failures since the last line
	timer *time.Timer
}

// otherAddresses stands for the addresses beyond maxFailedRuns.
const otherAddresses = "other addresses"

// note records a failed login of account from addr and reports whether it
// is quiet: already counted in a run whose summary will say so.
func (l *failedLogins) note(account, addr string) (quiet bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := trustPair{account, addr}
	r := l.runs[p]
	if r == nil && len(l.runs) >= maxFailedRuns {
		p = trustPair{account, otherAddresses}
		r = l.runs[p]
	}
	if r != nil {
		r.more++
		return true
	}
	r = &failedRun{}
	r.timer = time.AfterFunc(l.every, func() { l.summarise(p) })
	l.runs[p] = r
	return false
}

// summarise writes the run's line, if it had more failures, and keeps
// the run for another period; a period without any ends it.
func (l *failedLogins) summarise(p trustPair) {
	l.mu.Lock()
	r := l.runs[p]
	if r == nil {
		l.mu.Unlock()
		return
	}
	n := r.more
	if n == 0 {
		delete(l.runs, p)
		l.mu.Unlock()
		return
	}
	r.more = 0
	r.timer.Reset(l.every)
	l.mu.Unlock()

	next := "the next attempt is not delayed"
	if p.addr != otherAddresses {
		if d := l.delay(p.addr); d > 0 {
			next = fmt.Sprintf("next attempt delayed %d s", max(1, int(d.Round(time.Second)/time.Second)))
		}
	}
	noun := "logins"
	if n == 1 {
		noun = "login"
	}
	reason := fmt.Sprintf("%d more failed %s for %s from %s in the last %d s", n, noun, printable(p.account), p.addr, max(1, int(l.every.Round(time.Second)/time.Second)))
	l.log.Warn(reason+"; "+next,
		"message_id", events.LoginFailed, "account", p.account, "client", p.addr, "reason", reason, "count", n)
}
