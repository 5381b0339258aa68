package systemd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The sandbox is a real systemd as PID 1 of a private PID and mount
// namespace (see /work/shared/recipes/systemd-sandbox.md): the tests talk
// to its real D-Bus API and read its real journal. On top of the recipe,
// /etc is an overlay whose changes stay in the namespace, so the sandbox
// can create the service user without touching the host's /etc/passwd, and
// /var/log/journal (when the host has one) is a tmpfs, so that journald
// neither writes the sandbox's entries into the host's journal nor shows
// those of earlier sandboxes.

const (
	sandboxInnerEnv = "ORBIT_SYSTEMD_SANDBOX_INNER"
	sandboxDirEnv   = "ORBIT_SYSTEMD_SANDBOX_DIR"
	systemdBinary   = "/lib/systemd/systemd"
)

const bootScript = `#!/bin/sh
set -e
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /var/tmp
chmod 1777 /tmp /var/tmp
mkdir -p /run/lock /run/orbit-etc/upper /run/orbit-etc/work
mount -t overlay overlay -o lowerdir=/etc,upperdir=/run/orbit-etc/upper,workdir=/run/orbit-etc/work /etc
mount -t tmpfs tmpfs /etc/systemd/system
# journald writes a persistent journal when /var/log/journal exists: keep
# the sandbox's entries out of the host's journal, and earlier sandboxes'
# entries out of this one.
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
exec env container=other ` + systemdBinary + ` --system --unit=basic.target --log-target=null
`

type sandbox struct {
	pid     int // systemd, PID 1 inside
	unshare *exec.Cmd
	dir     string
}

// sharedDir makes a directory that commands inside the sandbox can see:
// not under /tmp or /var/tmp, which the sandbox hides behind a tmpfs.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/lib", "orbit-systemd-test-")
	if err != nil {
		t.Fatalf("creating a directory the sandbox can see: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func bootSandbox(t *testing.T) *sandbox {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the systemd sandbox needs root (CI runs as root)")
	}
	for _, tool := range []string{"unshare", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing (apt-get install util-linux, or run .ci/install-deps.sh)", tool)
		}
	}
	if _, err := os.Stat(systemdBinary); err != nil {
		t.Skipf("%s is missing (apt-get install systemd, or run .ci/install-deps.sh)", systemdBinary)
	}
	dir := sharedDir(t)
	script := filepath.Join(dir, "boot.sh")
	if err := os.WriteFile(script, []byte(bootScript), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var out bytes.Buffer
	cmd := exec.Command("unshare", "--pid", "--fork", "--mount", "--mount-proc", "--propagation", "private", script)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the sandbox: %v", err)
	}
	s := &sandbox{unshare: cmd, dir: dir}
	t.Cleanup(s.stop)

	// unshare --fork has exactly one child, which becomes systemd.
	deadline := time.Now().Add(10 * time.Second)
	for s.pid == 0 {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
		if f := strings.Fields(string(b)); len(f) > 0 {
			s.pid, _ = strconv.Atoi(f[0])
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox's systemd did not appear within 10 s; output:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// systemctl answers "offline" until systemd listens on its private
	// socket; the host sees the namespace's /run through /proc/PID/root.
	private := fmt.Sprintf("/proc/%d/root/run/systemd/private", s.pid)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(private); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox's systemd did not create its private socket within 30 s; output:\n%s", out.String())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	state, err := s.exec(ctx, "systemctl", "is-system-running", "--wait")
	st := strings.TrimSpace(string(state))
	if st != "running" && st != "degraded" {
		failed, _ := s.exec(ctx, "systemctl", "--failed", "--no-pager")
		t.Fatalf("sandbox systemd is %q (%v); failed units:\n%s\nboot output:\n%s", st, err, failed, out.String())
	}
	t.Logf("measure: sandbox boot to %q in %v", st, time.Since(start).Round(time.Millisecond))
	return s
}

// exec runs a command inside the sandbox.
func (s *sandbox) exec(ctx context.Context, argv ...string) ([]byte, error) {
	cmd := s.command(ctx, argv...)
	return cmd.CombinedOutput()
}

func (s *sandbox) command(ctx context.Context, argv ...string) *exec.Cmd {
	args := append([]string{"-t", strconv.Itoa(s.pid), "-m", "-p"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func (s *sandbox) stop() {
	if s.pid != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s.exec(ctx, "systemctl", "poweroff", "--no-block")
		cancel()
	}
	done := make(chan struct{})
	go func() { s.unshare.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		if s.pid != 0 {
			syscall.Kill(s.pid, syscall.SIGKILL)
		}
		s.unshare.Process.Kill()
		<-done
	}
}

// copyFile copies src to dst with mode.
func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSandbox boots the sandbox and runs TestSandboxInner inside it, with
// this test binary copied where the sandbox can see it (the go build cache
// is under /tmp). The copy also serves as the service's binary: its path
// holds a space and a '%' so that ExecStart quoting is exercised for real.
func TestSandbox(t *testing.T) {
	if os.Getenv(sandboxInnerEnv) != "" {
		t.Skip("already inside the sandbox")
	}
	s := bootSandbox(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(s.dir, "bin dir", "orbit%test")
	copyFile(t, self, bin, 0o755)
	if err := os.Chmod(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args := []string{"env", sandboxInnerEnv + "=1", sandboxDirEnv + "=" + s.dir, bin,
		"-test.run=^TestSandboxInner$", "-test.v", "-test.count=1"}
	out, err := s.exec(ctx, args...)
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		t.Log(line)
	}
	if err != nil {
		t.Fatalf("the test inside the sandbox failed: %v", err)
	}
	if !bytes.Contains(out, []byte("--- PASS: TestSandboxInner")) {
		t.Fatal("the test inside the sandbox did not report a pass")
	}
}
