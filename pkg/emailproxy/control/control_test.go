package control

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func echoHandler(ctx context.Context, req Request, send func(Reply) error) {
	send(Reply{Type: TypeWaiting, AuthURL: "https://login.example/" + req.Account})
	if req.Account == "slow" {
		<-ctx.Done()
		return
	}
	send(Reply{Type: TypeAuthorised, Flow: "authorization_code"})
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketName)
	s, err := Listen(path, echoHandler, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&fs.ModeSocket == 0 {
		t.Fatalf("socket %v %v, want a 0600 socket", fi.Mode(), err)
	}
	var waiting []Reply
	final, err := Call(context.Background(), path, Request{Op: "authorize", Account: "alice"}, func(r Reply) { waiting = append(waiting, r) })
	if err != nil || final.Type != TypeAuthorised || len(waiting) != 1 || waiting[0].AuthURL != "https://login.example/alice" {
		t.Fatalf("Call = %+v, %v; waiting %+v", final, err, waiting)
	}
}

// A second engine does not steal a live socket; a stale one (its engine
// gone) is replaced; Close removes the socket.
func TestSocketLifecycle(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketName)
	s, err := Listen(path, echoHandler, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path, echoHandler, nil); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Listen: %v", err)
	}
	s.Close()
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the socket outlived Close: %v", err)
	}
	// A stale socket file: bound, then its listener gone without unlinking.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	s, err = Listen(path, echoHandler, nil)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	s.Close()
}

func TestNotRunningAndCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketName)
	if _, err := Call(context.Background(), path, Request{Op: "authorize"}, nil); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("no engine: %v", err)
	}
	s, err := Listen(path, echoHandler, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := Call(ctx, path, Request{Op: "authorize", Account: "slow"}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call that outlives its context: %v", err)
	}
	// Close ends exchanges under way (the handler sees its context end).
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs on an exchange under way")
	}
}

func TestBadRequests(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketName)
	s, err := Listen(path, echoHandler, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct{ name, send, want string }{
		{"not JSON", "hello\n", "not a JSON object"},
		{"too long", strings.Repeat("x", maxRequest+10) + "\n", "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte(tc.send))
			buf := make([]byte, 4096)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _ := c.Read(buf)
			if got := string(buf[:n]); !strings.Contains(got, `"type":"error"`) || !strings.Contains(got, tc.want) {
				t.Fatalf("reply %q, want an error with %q", got, tc.want)
			}
		})
	}
}
