package systemd

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeRunDir makes a directory that looks like /run/systemd of a booted
// system ("system" exists), with whatever socket the test puts there.
func fakeRunDir(t testing.TB) string {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "system"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestConnectWithoutSystemd(t *testing.T) {
	// No system bus either, whatever the machine has.
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path="+filepath.Join(t.TempDir(), "no-bus"))
	ctx := context.Background()
	tests := []struct {
		name string
		opts ConnectOptions
		want string
	}{
		{"not booted with systemd", ConnectOptions{RunDir: t.TempDir()}, "not systemd"},
		{"no private socket, no bus", ConnectOptions{RunDir: fakeRunDir(t)}, "cannot connect"},
		{"no private socket, bus not tried", ConnectOptions{RunDir: fakeRunDir(t), NoSystemBus: true}, "cannot connect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Connect(ctx, tt.opts)
			if err == nil {
				m.Close()
				t.Fatal("Connect succeeded")
			}
			if !errors.Is(err, ErrNoSystemd) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrNoSystemd mentioning %q", err, tt.want)
			}
		})
	}
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		// This machine is not booted with systemd: the default options must
		// say so, which is what the CLI relies on.
		_, err := Connect(ctx, ConnectOptions{})
		if !errors.Is(err, ErrNoSystemd) {
			t.Errorf("Connect on a machine without systemd: %v, want ErrNoSystemd", err)
		}
	}
}

func TestConnectPermissionDenied(t *testing.T) {
	// What a non-root dial of /run/systemd/private returns.
	dialErr := &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)}
	if err := noSystemd(dialErr, "/run/systemd/private"); !errors.Is(err, ErrNoSystemd) || !errors.Is(err, fs.ErrPermission) ||
		!strings.Contains(err.Error(), "run as root") {
		t.Errorf("noSystemd(EACCES) = %v, want ErrNoSystemd, fs.ErrPermission and a hint", err)
	}
	if os.Geteuid() == 0 {
		return // root is never refused by file permissions; the rest needs a user
	}
	dir := fakeRunDir(t)
	l, err := net.Listen("unix", filepath.Join(dir, "private"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	os.Chmod(filepath.Join(dir, "private"), 0)
	_, err = Connect(context.Background(), ConnectOptions{RunDir: dir, NoSystemBus: true})
	if !errors.Is(err, ErrNoSystemd) || !errors.Is(err, fs.ErrPermission) {
		t.Errorf("err = %v, want ErrNoSystemd and fs.ErrPermission", err)
	}
}

// TestConnectToWedgedBusGivesUp: a socket that accepts and never answers
// must not hang Connect past its context.
func TestConnectToWedgedBusGivesUp(t *testing.T) {
	dir := fakeRunDir(t)
	l, err := net.Listen("unix", filepath.Join(dir, "private"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			// Read nothing, answer nothing; close when the test ends.
			t.Cleanup(func() { c.Close() })
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		m, err := Connect(ctx, ConnectOptions{RunDir: dir, NoSystemBus: true})
		if m != nil {
			m.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want the context's deadline", err)
		}
		if errors.Is(err, ErrNoSystemd) {
			t.Errorf("a timeout is not proof that systemd is absent: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Connect to a silent socket still hangs 10 s after its 200 ms context ended")
	}
}

func TestOpErrorText(t *testing.T) {
	tests := []struct {
		err  OpError
		want []string
	}{
		{OpError{Op: "start", Unit: "u.service", JobResult: "failed", Props: Properties{ActiveState: "failed", SubState: "failed", Result: "exit-code", ExecMainCode: 1, ExecMainStatus: 78}},
			[]string{`start u.service: the job ended "failed"`, "state failed/failed", "result exit-code", "exited with status 78", "journalctl -u u.service"}},
		{OpError{Op: "restart", Unit: "u.service", JobResult: "done", Props: Properties{ActiveState: "inactive", SubState: "dead", Result: "success", ExecMainCode: 2, ExecMainStatus: 9}},
			[]string{"the unit is inactive", "killed by signal 9"}},
		{OpError{Op: "stop", Unit: "u.service", JobResult: "timeout"}, []string{`the job ended "timeout"`}},
	}
	for _, tt := range tests {
		got := tt.err.Error()
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("%q does not mention %q", got, w)
			}
		}
	}
}

// BenchmarkConnectWithoutSystemd measures how fast the CLI learns that it
// must fall back to the foreground hint.
func BenchmarkConnectWithoutSystemd(b *testing.B) {
	b.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path="+filepath.Join(b.TempDir(), "no-bus"))
	for _, bc := range []struct {
		name string
		opts ConnectOptions
	}{
		{"not-booted", ConnectOptions{RunDir: b.TempDir()}},
		{"no-sockets", ConnectOptions{RunDir: fakeRunDir(b)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := Connect(context.Background(), bc.opts); !errors.Is(err, ErrNoSystemd) {
					b.Fatal(err)
				}
			}
		})
	}
}
