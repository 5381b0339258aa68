package testenv

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"
)

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago. All n listeners are held open until every port is chosen, so
// the ports differ from each other; another process may still take one
// before the caller binds it, which callers that start servers should treat
// as a reason to retry.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free loopback port: %v", err)
		}
		held = append(held, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// FreePort returns one TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	return FreePorts(t, 1)[0]
}

// Addr joins 127.0.0.1 and port.
func Addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// WaitPort waits until addr accepts a TCP connection or ctx is done. The
// error names addr and the last dial error, so a server that never came up
// is told apart from one that is refusing.
func WaitPort(ctx context.Context, addr string) error {
	var d net.Dialer
	delay := 10 * time.Millisecond
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to accept connections: %w (last dial: %v)", addr, ctx.Err(), err)
		case <-time.After(delay):
		}
		if delay < 200*time.Millisecond {
			delay *= 2
		}
	}
}

// WaitPortClosed waits until nothing accepts on addr any more, for tests
// that stop a server and must know it is gone.
func WaitPortClosed(ctx context.Context, addr string) error {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("waiting for %s to stop accepting: %w", addr, ctx.Err())
			}
			return nil
		}
		c.Close()
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to stop accepting: %w", addr, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
