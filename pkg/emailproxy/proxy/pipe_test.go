package proxy

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
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

// TestIMAPLiterals: the scanner knows how much of a literal is still to
// come however the server's bytes are split, and bytes inside a literal
// that look like a literal marker are data.
func TestIMAPLiterals(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		left int64
	}{
		{"no literal", "* 1 EXISTS\r\na1 OK done\r\n", 0},
		{"announced", "* 1 FETCH (BODY[] {10}\r\n", 10},
		{"partly sent", "* 1 FETCH (BODY[] {10}\r\n0123", 6},
		{"whole", "* 1 FETCH (BODY[] {10}\r\n0123456789)\r\na1 OK\r\n", 0},
		{"marker inside a literal is data", "* 1 FETCH (BODY[] {12}\r\nx {99999}\r\nz)\r\n", 0},
		{"second literal in one response", "* 1 FETCH (BODY[HEADER] {3}\r\nabc BODY[TEXT] {5}\r\nab", 3},
		{"literal8", "* 1 FETCH (BINARY[] ~{7}\r\n", 7},
		{"marker not at the end", "* OK {5} is not a literal\r\n", 0},
		{"bare LF", "* 1 FETCH (BODY[] {4}\nab", 2},
		{"zero", "* 1 FETCH (BODY[] {0}\r\n)\r\n", 0},
		{"too many digits", "* 1 FETCH (BODY[] {123456789012}\r\n", 0},
		{"long line", "* 1 FETCH (" + strings.Repeat("X-Header ", 500) + "BODY[] {300000}\r\n", 300000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every split in two, and byte by byte.
			for i := 0; i <= len(tc.in); i++ {
				var s imapLiterals
				s.feed([]byte(tc.in[:i]))
				s.feed([]byte(tc.in[i:]))
				if s.left != tc.left {
					t.Fatalf("split at %d: %d bytes left, want %d", i, s.left, tc.left)
				}
			}
			var s imapLiterals
			for i := range len(tc.in) {
				s.feed([]byte{tc.in[i]})
			}
			if s.left != tc.left {
				t.Fatalf("byte by byte: %d bytes left, want %d", s.left, tc.left)
			}
		})
	}
}

// TestPipeWantsNoMoreThanComes: a raised wait never asks for bytes the
// literal does not still owe, and the end of a literal is never waited
// for (a partial TLS record may hold up to 16 KiB of it already).
func TestPipeWantsNoMoreThanComes(t *testing.T) {
	tlsEnd := pipeEnd{held: tlsRecordPlain, lit: new(imapLiterals)}
	plainEnd := pipeEnd{lit: new(imapLiterals)}
	for _, tc := range []struct {
		end  pipeEnd
		left int64
		want int
	}{
		{pipeEnd{}, 0, 1},
		{tlsEnd, 0, 1},
		{tlsEnd, tlsRecordPlain, 1},
		{tlsEnd, tlsRecordPlain + 100, 100},
		{tlsEnd, 10 << 20, lowatMax},
		{plainEnd, 100, 100},
		{plainEnd, 10 << 20, lowatMax},
	} {
		if tc.end.lit != nil {
			tc.end.lit.left = tc.left
		}
		if got := tc.end.want(); got != tc.want {
			t.Errorf("held %d, literal owes %d: want() = %d, expected %d", tc.end.held, tc.left, got, tc.want)
		}
	}
}

// TestPipeSlowLiteral: a server that sends a large literal in pieces and
// waits between them (here: until the client has each piece) gets every
// piece through. After the first piece the pipe waits for a quarter of a
// megabyte at once (the literal owes more); the smaller pieces that follow
// must still come through, after the wait's timeout, or this deadlocks.
func TestPipeSlowLiteral(t *testing.T) {
	e := newEnv(t)
	pieces := []int{40 << 10, 20 << 10, 1, 300 << 10}
	size := 0
	for _, n := range pieces {
		size += n
	}
	payload := make([]byte, size)
	rand.Read(payload)
	got := make(chan struct{}, len(pieces))
	up := startFake(t, e.ca, true, func(f *fakeUpstream, c net.Conn) {
		fc := newFakeConn(c)
		fc.send("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] slow fake ready")
		for {
			line, err := fc.line()
			if err != nil {
				return
			}
			tag, cmd, _ := splitIMAP(line)
			switch strings.ToUpper(cmd) {
			case "FETCH":
				fmt.Fprintf(fc.c, "* 1 FETCH (BODY[] {%d}\r\n", size)
				off := 0
				for _, n := range pieces {
					fc.c.Write(payload[off : off+n])
					off += n
					select {
					case <-got:
					case <-time.After(time.Minute): // longer than the client's deadline
						return
					}
				}
				fc.send(")")
				fc.send("%s OK FETCH completed", tag)
			case "LOGOUT":
				fc.send("%s OK LOGOUT completed", tag)
				return
			default:
				fc.send("%s OK done", tag)
			}
		}
	})
	e.apply(section("IMAP-1", config.IMAP, up))
	c := loggedIn(t, e.addr("IMAP-1"))
	c.send("f1 FETCH 1 BODY[]")
	c.expect(fmt.Sprintf("* 1 FETCH (BODY[] {%d}", size))
	back := make([]byte, size)
	off := 0
	for i, n := range pieces {
		if _, err := io.ReadFull(c.r, back[off:off+n]); err != nil {
			t.Fatalf("piece %d (%d bytes) of the literal did not come through while the server waited: %v", i+1, n, err)
		}
		off += n
		got <- struct{}{}
	}
	if !bytes.Equal(back, payload) {
		t.Fatal("the literal changed on its way down")
	}
	c.expect(")")
	c.expect("f1 OK")
}

// literalsOwed is the scanner's specification, written the slow way: what
// a literal still owes after data, following it line by line.
func literalsOwed(data []byte) int64 {
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return 0
		}
		line := strings.TrimSuffix(string(data[:i]), "\r")
		data = data[i+1:]
		if n, _, ok := literalSuffix(line); ok && n > 0 {
			if len(data) < n {
				return int64(n - len(data))
			}
			data = data[n:]
		}
	}
}

// FuzzIMAPLiterals: fed in any pieces, the scanner agrees with
// literalsOwed (it keeps only a line's last bytes, the specification reads
// whole lines).
func FuzzIMAPLiterals(f *testing.F) {
	f.Add([]byte("* 1 FETCH (BODY[] {10}\r\n0123"), uint16(7))
	f.Add([]byte("* 1 FETCH (BODY[] {12}\r\nx {99999}\r\nz)\r\na OK\r\n"), uint16(30))
	f.Add([]byte("* 1 FETCH (BODY[HEADER] {3}\r\nabc BODY[TEXT] {5}\r\nab"), uint16(3))
	f.Add([]byte("* OK x{1234567890}\r\n{00000000000000000001}\r\n"), uint16(20))
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		var s imapLiterals
		for rest, n := data, max(1, int(split)%64); len(rest) > 0; {
			k := min(n, len(rest))
			s.feed(rest[:k])
			rest = rest[k:]
		}
		if want := literalsOwed(data); s.left != want {
			t.Fatalf("scanner owes %d, specification %d, for %q", s.left, want, data)
		}
	})
}
