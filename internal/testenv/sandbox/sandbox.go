// Package sandbox boots a real systemd (Debian's, as on the appliance) as
// PID 1 of a private PID and mount namespace, so tests of unit files,
// systemctl, D-Bus control and the journal run against the real thing
// without booting a machine and without touching the host's systemd.
//
// What the sandbox sees: the host's file system, except that /run, /tmp,
// /var/tmp, /var/log and /etc/systemd/system are fresh tmpfs mounts inside
// it, /etc is an overlay whose changes stay inside (so code under test may
// create users and groups), and Options.Tmpfs adds more tmpfs mounts (a
// unit's StateDirectory, say). So:
//
//   - files a test wants visible inside must NOT live under /tmp or
//     /var/tmp (t.TempDir() is under /tmp): use testenv.SharedDir, which is
//     under /var/lib/orbit-testenv, or the package's own directory;
//   - unit files and drop-ins go to /etc/systemd/system inside (InstallUnit,
//     InstallDropIn), never on the host;
//   - each sandbox starts with an empty journal, which also holds systemd's
//     own lines about its units ("Started ...", "Failed with result ..."),
//     as on a real machine;
//   - systemd-tmpfiles inside cleans the sandbox's /tmp, not the host's (it
//     wiped the host's /tmp before the tmpfs was there).
//
// The network namespace is the host's: a unit inside reaches servers a test
// started on 127.0.0.1, and the test reaches the unit's listeners.
//
// A test can also run its own test binary inside (CopyTestBinary, RunTest),
// for code that must talk to the sandbox's systemd and journal directly.
//
// Boot needs root, unshare and nsenter (util-linux), and /lib/systemd/systemd;
// without them it skips the test and says why.
package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/renameio/v2"

	"github.com/senhasegura/orbit/internal/testenv"
)

// SystemdPath is the systemd binary booted as PID 1.
const SystemdPath = "/lib/systemd/systemd"

// bootScript runs as PID 1 of the new namespaces before systemd replaces
// it; its arguments are the extra tmpfs mount points. Every mount is
// checked before exec: a systemd that started without its tmpfs over /tmp
// would let systemd-tmpfiles empty the host's /tmp.
//
// Every mount is made shared (in peer groups of this namespace only:
// unshare --propagation private cut them off from the host's first), as
// systemd makes them itself when the kernel starts it. With
// container=other systemd leaves propagation to its container manager, and
// credentials need it: systemd 252 prepares a unit's credentials in a
// child with its own mount namespace ("(sd-mkdcreds)": a ramfs on
// /dev/shm, filled, then MS_MOVEd onto /run/credentials/UNIT), and only a
// shared /run carries that move back to PID 1 and so to the unit. With
// private mounts the move stays in the child's namespace, and the unit
// finds the empty, root-only directory PID 1 made before the fork: no
// LoadCredential=, LoadCredentialEncrypted= or SetCredential= arrives.
//
// systemd logs to the journal (not to null) so that a unit's journal has
// the manager's own lines about it, which is what an administrator sees and
// what tools reading that journal must cope with.
const bootScript = `set -eu
fresh() {
  mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$1"
  [ "$(stat -f -c %T "$1")" = tmpfs ] || { echo "sandbox: $1 is not a tmpfs after mounting one" >&2; exit 97; }
}
for d in /run /tmp /var/tmp /var/log; do fresh "$d"; done
chmod 1777 /tmp /var/tmp
mkdir -p /run/lock /run/sandbox-etc/upper /run/sandbox-etc/work
mount -t overlay overlay -o lowerdir=/etc,upperdir=/run/sandbox-etc/upper,workdir=/run/sandbox-etc/work /etc
[ "$(stat -f -c %T /etc)" = overlayfs ] || { echo "sandbox: /etc is not an overlay after mounting one" >&2; exit 97; }
fresh /etc/systemd/system
for d in "$@"; do fresh "$d"; done
mount --make-rshared /
[ "$(findmnt -n -o PROPAGATION /run)" = shared ] || { echo "sandbox: /run is not a shared mount" >&2; exit 97; }
exec env container=other ` + SystemdPath + ` --system --unit=basic.target --log-target=journal
`

// Options change what BootWith sets up.
type Options struct {
	// Tmpfs lists more absolute directories to hide behind a fresh tmpfs
	// inside, so that what the code under test writes there stays in the
	// sandbox: for example /var/lib/orbit, the parent of a unit's
	// StateDirectory. A directory missing on the host is created there
	// (empty, mode 0755) first, since a mount needs a mount point.
	Tmpfs []string
}

func (o Options) check() error {
	for _, d := range o.Tmpfs {
		if !filepath.IsAbs(d) || filepath.Clean(d) != d || d == "/" {
			return fmt.Errorf("sandbox: Options.Tmpfs entry %q must be a clean absolute path other than /", d)
		}
		for _, own := range []string{"/run", "/tmp", "/var/tmp", "/var/log", "/etc", "/proc", "/sys", "/dev"} {
			if d == own || strings.HasPrefix(d, own+"/") {
				return fmt.Errorf("sandbox: Options.Tmpfs entry %q is under %s, which the sandbox sets up itself", d, own)
			}
		}
	}
	return nil
}

// Sandbox is a booted systemd.
type Sandbox struct {
	// PID is systemd's process id on the host (PID 1 inside).
	PID int
	// BootTook is from starting unshare until systemctl is-system-running
	// said running (or degraded).
	BootTook time.Duration
	// State is what is-system-running answered after boot.
	State string

	cmd      *exec.Cmd
	exited   chan struct{}
	outFile  string
	stopOnce sync.Once
	stopErr  error
}

// Require skips t unless a sandbox can boot here.
func Require(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t, "the systemd sandbox")
	testenv.RequireCommand(t, "unshare")
	testenv.RequireCommand(t, "nsenter")
	if _, err := os.Stat(SystemdPath); err != nil {
		t.Skipf("systemd is not installed (%v); run .ci/install-deps.sh, as CI does", err)
	}
}

// Boot starts a sandbox for t, waits until it is running, and powers it off
// when t ends.
func Boot(t testing.TB) *Sandbox {
	t.Helper()
	return BootWith(t, Options{})
}

// BootWith is Boot with opts.
func BootWith(t testing.TB, opts Options) *Sandbox {
	t.Helper()
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := boot(ctx, testenv.SharedDir(t), opts)
	if s != nil {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if t.Failed() {
				if out, err := s.Run(ctx, "journalctl", "--no-pager", "-n", "60"); err == nil {
					t.Logf("sandbox journal, last lines:\n%s", out)
				}
			}
			if err := s.Poweroff(ctx); err != nil {
				t.Errorf("sandbox poweroff: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sandbox systemd (host pid %d) %s after %v", s.PID, s.State, s.BootTook.Round(time.Millisecond))
	return s
}

func boot(ctx context.Context, dir string, opts Options) (*Sandbox, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	for _, d := range opts.Tmpfs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("sandbox: creating the mount point %s for Options.Tmpfs: %w", d, err)
		}
	}
	begin := time.Now()
	s := &Sandbox{exited: make(chan struct{}), outFile: filepath.Join(dir, "sandbox-boot.out")}
	out, err := os.Create(s.outFile)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	defer out.Close()
	args := append([]string{"--pid", "--fork", "--mount", "--mount-proc", "--propagation", "private",
		"/bin/sh", "-c", bootScript, "sandbox-boot"}, opts.Tmpfs...)
	s.cmd = exec.Command("unshare", args...)
	// A new session, so the sandbox is not in the test's process group
	// or tied to its terminal (the recipe's setsid).
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	s.cmd.Stdout, s.cmd.Stderr = out, out
	s.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("sandbox: starting unshare: %w", err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()

	// systemd is the child of unshare once the script has exec'd it.
	for {
		if pid := childOf(s.cmd.Process.Pid); pid > 0 && commOf(pid) == "systemd" {
			s.PID = pid
			break
		}
		select {
		case <-s.exited:
			return s, fmt.Errorf("sandbox: unshare exited before systemd started: %s", s.bootOutput())
		case <-ctx.Done():
			return s, fmt.Errorf("sandbox: systemd did not start: %w: %s", ctx.Err(), s.bootOutput())
		case <-time.After(5 * time.Millisecond):
		}
	}

	// is-system-running --wait fails while the manager's bus is not up
	// yet; retry until it answers.
	for {
		state, err := s.Run(ctx, "systemctl", "is-system-running", "--wait")
		state = strings.TrimSpace(state)
		if state == "running" || state == "degraded" {
			s.State = state
			break
		}
		select {
		case <-s.exited:
			return s, fmt.Errorf("sandbox: systemd exited during boot: %s", s.bootOutput())
		case <-ctx.Done():
			return s, fmt.Errorf("sandbox: not running after %v (is-system-running: %q, %v): %w", time.Since(begin).Round(time.Millisecond), state, err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	s.BootTook = time.Since(begin)
	return s, nil
}

func (s *Sandbox) bootOutput() string {
	b, _ := os.ReadFile(s.outFile)
	if len(b) == 0 {
		return "(no output)"
	}
	return strings.TrimSpace(string(b))
}

// Command prepares name args... to run inside the sandbox (its mount and
// PID namespaces) through nsenter. The environment is a minimal one; set
// cmd.Env to add to it.
func (s *Sandbox) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	full := append([]string{"-t", strconv.Itoa(s.PID), "-m", "-p", "--", name}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", full...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", "NO_COLOR=1"}
	// nsenter forks to enter the PID namespace, so killing it when ctx
	// ends may leave the command holding the output pipes: do not wait
	// for them forever.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Result is how a command run by Exec ended.
type Result struct {
	// Code is the exit status; -1 when the command could not run or was
	// killed, and then Stderr ends with why.
	Code           int
	Stdout, Stderr string
}

// Exec runs args inside the sandbox with env added to Command's
// environment (secrets belong there, never in args) and reports how it
// ended; a non-zero exit is not an error but a Result.
func (s *Sandbox) Exec(ctx context.Context, env []string, args ...string) Result {
	if len(args) == 0 {
		return Result{Code: -1, Stderr: "sandbox: Exec needs a command"}
	}
	cmd := s.Command(ctx, args[0], args[1:]...)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		r.Code = exit.ExitCode()
	default:
		r.Code = -1
		r.Stderr += fmt.Sprintf("\nsandbox: %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// Run runs args inside the sandbox and returns its standard output; a
// failure's error carries the exit status and standard error.
func (s *Sandbox) Run(ctx context.Context, args ...string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("sandbox: Run needs a command")
	}
	cmd := s.Command(ctx, args[0], args[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("sandbox: %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Path is where path inside the sandbox is reachable from the host
// (/proc/PID/root/...), for reading and writing files that live on the
// sandbox's own mounts, such as /run or /etc/systemd/system.
func (s *Sandbox) Path(path string) string {
	return filepath.Join("/proc", strconv.Itoa(s.PID), "root", path)
}

// InstallUnit writes a unit file into the sandbox's /etc/systemd/system (a
// tmpfs: never the host's) and reloads systemd.
func (s *Sandbox) InstallUnit(ctx context.Context, name, content string) error {
	if err := checkUnitName(name); err != nil {
		return err
	}
	if err := renameio.WriteFile(s.Path(filepath.Join("/etc/systemd/system", name)), []byte(content), 0o644); err != nil {
		return fmt.Errorf("sandbox: installing %s: %w", name, err)
	}
	if _, err := s.Run(ctx, "systemctl", "daemon-reload"); err != nil {
		return err
	}
	return nil
}

func checkUnitName(name string) error {
	if name == "" || strings.ContainsRune(name, '/') || !strings.Contains(name, ".") {
		return fmt.Errorf("sandbox: unit name %q must be a file name such as orbit-x.service", name)
	}
	return nil
}

// InstallDropIn writes a drop-in name (such as "ca.conf") for unit into
// the sandbox's /etc/systemd/system/UNIT.d and reloads systemd: the way an
// administrator adds to a unit that a tool under test wrote.
func (s *Sandbox) InstallDropIn(ctx context.Context, unit, name, content string) error {
	if err := checkUnitName(unit); err != nil {
		return err
	}
	if !strings.HasSuffix(name, ".conf") || strings.ContainsRune(name, '/') {
		return fmt.Errorf("sandbox: drop-in name %q must be a file name ending in .conf (systemd ignores others)", name)
	}
	dir := s.Path(filepath.Join("/etc/systemd/system", unit+".d"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("sandbox: creating %s.d: %w", unit, err)
	}
	if err := renameio.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		return fmt.Errorf("sandbox: installing drop-in %s for %s: %w", name, unit, err)
	}
	if _, err := s.Run(ctx, "systemctl", "daemon-reload"); err != nil {
		return err
	}
	return nil
}

// Poweroff asks systemd to power off and waits until the namespace is gone,
// killing systemd if it does not go by itself before ctx ends. Calling it
// again returns the first result.
func (s *Sandbox) Poweroff(ctx context.Context) error {
	s.stopOnce.Do(func() {
		if s.PID > 0 {
			// --no-block: systemctl would otherwise be killed with the
			// namespace and report an error for a poweroff that worked.
			_, _ = s.Run(ctx, "systemctl", "poweroff", "--no-block")
		}
		select {
		case <-s.exited:
			return
		case <-ctx.Done():
		}
		if s.PID > 0 {
			_ = syscall.Kill(s.PID, syscall.SIGKILL)
		}
		_ = s.cmd.Process.Kill()
		<-s.exited
		s.stopErr = fmt.Errorf("sandbox: systemd (host pid %d) did not power off in time and was killed: %w", s.PID, ctx.Err())
	})
	return s.stopErr
}

// Exited is closed once the sandbox is gone.
func (s *Sandbox) Exited() <-chan struct{} { return s.exited }

// childOf returns one child of pid, or 0.
func childOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			c, _ := strconv.Atoi(f[0])
			return c
		}
		return 0
	}
	// Kernels without CONFIG_PROC_CHILDREN: scan for the parent.
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppidOf(c) == pid {
			return c
		}
	}
	return 0
}

func ppidOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

func commOf(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}
