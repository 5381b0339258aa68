package proxy

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

// pipeGoroutines counts the goroutines by what they run: those of a
// session before its pipe (startSession), and the pipe's copy loops.
func pipeGoroutines() (sessions, pipes, total int) {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		switch {
		case strings.Contains(g, "proxy.(*session).pipe.func"):
			pipes++
		case strings.Contains(g, "proxy.(*Server).startSession.func"):
			sessions++
		}
		total++
	}
	return sessions, pipes, total
}

// waitGoroutines waits until cond holds for the current counts, and fails
// with the counts when it does not within 10 s (a correctness bound, not a
// speed assertion: the counts settle in milliseconds).
func waitGoroutines(t *testing.T, what string, cond func(sessions, pipes, total int) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, p, n := pipeGoroutines()
		if cond(s, p, n) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d session goroutines, %d pipe goroutines, %d in all", what, s, p, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPipeGoroutinesReturnToBaseline: an authenticated idle session is two
// copy goroutines and nothing else (the session's own goroutine, whose
// stack grew during TLS and login, has ended), and every goroutine is gone
// again when the sessions end, from either side.
func TestPipeGoroutinesReturnToBaseline(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Debug = false })
	up := startFake(t, e.ca, true, serveIMAP)
	e.apply(section("IMAP-1", config.IMAP, up))
	addr := e.addr("IMAP-1")
	// The fake upstream runs a goroutine per connection: let it settle so
	// the baseline is the world without sessions.
	c0 := loggedIn(t, addr)
	stillWorks(t, c0, "b1")
	c0.c.Close()
	waitGoroutines(t, "first session ended", func(s, p, _ int) bool { return s == 0 && p == 0 })
	time.Sleep(50 * time.Millisecond)
	_, _, base := pipeGoroutines()

	const n = 20
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = loggedIn(t, addr)
	}
	waitGoroutines(t, "sessions logged in and idle", func(s, p, _ int) bool { return s == 0 && p == 2*n })
	for i, c := range clients {
		stillWorks(t, c, "n1")
		if i%2 == 0 {
			c.c.Close() // the client leaves
		} else {
			c.send("z LOGOUT") // the upstream ends the session
			c.expect("* BYE")
			c.expect("z OK")
		}
	}
	waitGoroutines(t, "all sessions ended", func(s, p, total int) bool { return s == 0 && p == 0 && total <= base })
	if got := e.srv.ActiveSessions(); got != 0 {
		t.Errorf("ActiveSessions = %d after every session ended, want 0", got)
	}
}

// TestPipePipelinedAfterLogin: commands the client sends in the same write
// as LOGIN are still in the login reader when the pipe starts; they must
// reach the upstream, in order.
func TestPipePipelinedAfterLogin(t *testing.T) {
	_, _, addr := imapEnv(t)
	c := dialClient(t, addr)
	c.expect("* OK")
	if _, err := c.c.Write([]byte("a1 LOGIN alice@example.com alice-PASSWORD-1\r\na2 NOOP\r\na3 LIST \"\" *\r\n")); err != nil {
		t.Fatal(err)
	}
	c.expect("a1 OK")
	c.expect("a2 OK")
	c.expect(`* LIST () "/" INBOX`)
	c.expect("a3 OK")
}
