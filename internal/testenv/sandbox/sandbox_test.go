package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv"
)

func randomName(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// eventually retries f until it succeeds or 10 s pass: the journal gets a
// unit's output asynchronously.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestSandbox(t *testing.T) {
	if Inside() {
		t.Skip("inside a sandbox already")
	}
	Require(t)
	// The DANGER the recipe warns about: systemd-tmpfiles in the sandbox
	// must not clean the host's /tmp.
	sentinel, err := os.CreateTemp("", "orbit-sandbox-sentinel-*")
	if err != nil {
		t.Fatal(err)
	}
	sentinel.Close()
	defer os.Remove(sentinel.Name())

	s := Boot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("is running", func(t *testing.T) {
		out, err := s.Run(ctx, "systemctl", "is-system-running")
		if state := strings.TrimSpace(out); state != "running" && state != "degraded" {
			t.Fatalf("is-system-running = %q (%v)", state, err)
		}
		if s.State == "degraded" {
			failed, _ := s.Run(ctx, "systemctl", "--failed", "--no-legend")
			t.Logf("degraded; failed units:\n%s", failed)
		}
		pid1, err := s.Run(ctx, "cat", "/proc/1/comm")
		if err != nil || strings.TrimSpace(pid1) != "systemd" {
			t.Fatalf("PID 1 inside is %q (%v), want systemd", pid1, err)
		}
	})

	t.Run("private mounts", func(t *testing.T) {
		for _, d := range []string{"/run", "/tmp", "/var/tmp", "/var/log", "/etc/systemd/system"} {
			out, err := s.Run(ctx, "stat", "-f", "-c", "%T", d)
			if err != nil || strings.TrimSpace(out) != "tmpfs" {
				t.Errorf("%s inside is %q (%v), want tmpfs", d, strings.TrimSpace(out), err)
			}
		}
		if _, err := s.Run(ctx, "test", "-e", sentinel.Name()); err == nil {
			t.Error("the host's /tmp is visible inside the sandbox")
		}
	})

	t.Run("shared dir is visible inside", func(t *testing.T) {
		dir := testenv.SharedDir(t)
		f := filepath.Join(dir, "hello.txt")
		if err := os.WriteFile(f, []byte("from the host\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := s.Run(ctx, "cat", f)
		if err != nil || out != "from the host\n" {
			t.Fatalf("cat %s inside: %q %v", f, out, err)
		}
	})

	t.Run("transient unit and its journal", func(t *testing.T) {
		unit := randomName("orbit-probe-")
		marker := randomName("marker-")
		if _, err := s.Run(ctx, "systemd-run", "--unit", unit, "--wait", "--quiet", "/bin/echo", marker); err != nil {
			t.Fatal(err)
		}
		eventually(t, "journal of "+unit, func() error {
			out, err := s.Run(ctx, "journalctl", "--no-pager", "-u", unit, "-o", "cat")
			if err != nil {
				return err
			}
			if !strings.Contains(out, marker) {
				return errString("marker not in journal yet: " + out)
			}
			return nil
		})
	})

	t.Run("installed unit stays inside", func(t *testing.T) {
		unit := randomName("orbit-installed-") + ".service"
		marker := randomName("installed-")
		content := "[Unit]\nDescription=orbit testenv probe\n\n[Service]\nType=simple\nExecStart=/bin/sh -c 'echo " + marker + "; exec sleep 300'\n"
		if err := s.InstallUnit(ctx, unit, content); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join("/etc/systemd/system", unit)); !os.IsNotExist(err) {
			t.Fatalf("the unit file reached the host's /etc/systemd/system (%v)", err)
		}
		if _, err := s.Run(ctx, "systemctl", "start", unit); err != nil {
			t.Fatal(err)
		}
		if out, _ := s.Run(ctx, "systemctl", "is-active", unit); strings.TrimSpace(out) != "active" {
			t.Fatalf("is-active = %q", out)
		}
		mainPID, err := s.Run(ctx, "systemctl", "show", "-P", "MainPID", unit)
		if err != nil || strings.TrimSpace(mainPID) == "0" {
			t.Fatalf("MainPID = %q %v", mainPID, err)
		}
		eventually(t, "journal of "+unit, func() error {
			out, err := s.Run(ctx, "journalctl", "--no-pager", "-u", unit, "-o", "json")
			if err != nil {
				return err
			}
			if !strings.Contains(out, marker) || !strings.Contains(out, `"_SYSTEMD_UNIT":"`+unit+`"`) {
				return errString("not in the journal yet: " + out)
			}
			return nil
		})
		if _, err := s.Run(ctx, "systemctl", "stop", unit); err != nil {
			t.Fatal(err)
		}
		if out, _ := s.Run(ctx, "systemctl", "is-active", unit); strings.TrimSpace(out) != "inactive" {
			t.Fatalf("after stop is-active = %q", out)
		}
	})

	t.Run("system bus", func(t *testing.T) {
		out, err := s.Run(ctx, "busctl", "--system", "--no-pager", "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
			"org.freedesktop.DBus.Properties", "Get", "ss", "org.freedesktop.systemd1.Manager", "Version")
		if err != nil || !strings.Contains(out, "252") {
			t.Fatalf("systemd's Version over the system bus: %q %v", out, err)
		}
	})

	begin := time.Now()
	if err := s.Poweroff(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("powered off in %v", time.Since(begin).Round(time.Millisecond))
	select {
	case <-s.Exited():
	default:
		t.Fatal("Poweroff returned with the sandbox still there")
	}
	if _, err := os.Stat(sentinel.Name()); err != nil {
		t.Fatalf("the host's /tmp lost a file while the sandbox ran: %v", err)
	}
}

func TestRunReportsFailure(t *testing.T) {
	if Inside() {
		t.Skip("inside a sandbox already")
	}
	s := Boot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.Run(ctx, "systemctl", "start", "no-such-unit-orbit.service")
	if err == nil || !strings.Contains(err.Error(), "no-such-unit-orbit.service") || !strings.Contains(err.Error(), "exit status") {
		t.Fatalf("err = %v, want the command, its exit status and its stderr", err)
	}
	if err := s.InstallUnit(ctx, "../escape.service", ""); err == nil {
		t.Fatal("InstallUnit accepted a path")
	}
}

func BenchmarkBoot(b *testing.B) {
	Require(b)
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		s, err := boot(ctx, b.TempDir(), Options{})
		if err != nil {
			cancel()
			if s != nil {
				s.Poweroff(context.Background())
			}
			b.Fatal(err)
		}
		if err := s.Poweroff(ctx); err != nil {
			b.Fatal(err)
		}
		cancel()
	}
}

// TestTwoAtOnce boots two sandboxes side by side (go test runs packages in
// parallel, so e2e tests of different packages may do this) and checks each
// runs its own units.
func TestTwoAtOnce(t *testing.T) {
	if Inside() {
		t.Skip("inside a sandbox already")
	}
	Require(t)
	boxes := make([]*Sandbox, 2)
	for i := range boxes {
		t.Run("boot", func(t *testing.T) {
			t.Parallel()
			boxes[i] = Boot(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			unit := randomName("orbit-twin-")
			if _, err := boxes[i].Run(ctx, "systemd-run", "--unit", unit, "--quiet", "/bin/sleep", "30"); err != nil {
				t.Fatal(err)
			}
			out, _ := boxes[i].Run(ctx, "systemctl", "list-units", "--no-legend", "--plain", "orbit-twin-*")
			if n := strings.Count(out, "orbit-twin-"); n != 1 {
				t.Fatalf("sandbox %d sees %d orbit-twin units, want only its own:\n%s", i, n, out)
			}
		})
	}
}

func TestOptionsRejected(t *testing.T) {
	for _, d := range []string{"relative/dir", "/", "/var/lib/../lib/x", "/tmp/x", "/etc/orbit", "/run", "/proc/1"} {
		if err := (Options{Tmpfs: []string{d}}).check(); err == nil {
			t.Errorf("Tmpfs %q accepted", d)
		}
	}
	if err := (Options{Tmpfs: []string{"/var/lib/orbit", "/srv/x"}}).check(); err != nil {
		t.Errorf("plain directories refused: %v", err)
	}
}

// TestPrivateState: /etc changes, extra tmpfs mounts, drop-ins, Exec's
// environment and exit codes, and a test binary run inside all stay in the
// sandbox.
func TestPrivateState(t *testing.T) {
	if Inside() {
		t.Skip("inside a sandbox already")
	}
	Require(t)
	state := filepath.Join(testenv.SharedDir(t), "state")
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	hostFile := filepath.Join(state, "host-only")
	if err := os.WriteFile(hostFile, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := BootWith(t, Options{Tmpfs: []string{state}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	user := randomName("orbitsb")[:16]
	if r := s.Exec(ctx, nil, "useradd", "--system", "--no-create-home", user); r.Code != 0 {
		t.Fatalf("useradd inside: %+v", r)
	}
	if r := s.Exec(ctx, nil, "id", "-u", user); r.Code != 0 {
		t.Errorf("the user made inside is not there inside: %+v", r)
	}
	if b, _ := os.ReadFile("/etc/passwd"); strings.Contains(string(b), user+":") {
		t.Fatalf("useradd inside the sandbox reached the host's /etc/passwd")
	}

	if r := s.Exec(ctx, nil, "test", "-e", hostFile); r.Code != 1 {
		t.Errorf("%s is visible inside although its directory is a Tmpfs: %+v", hostFile, r)
	}
	if r := s.Exec(ctx, nil, "touch", filepath.Join(state, "inside-only")); r.Code != 0 {
		t.Fatal(r)
	}
	if _, err := os.Stat(filepath.Join(state, "inside-only")); !os.IsNotExist(err) {
		t.Errorf("a file written inside a Tmpfs reached the host (%v)", err)
	}

	r := s.Exec(ctx, []string{"ORBIT_PROBE=from-env"}, "sh", "-c", `echo "$ORBIT_PROBE"; echo oops >&2; exit 3`)
	if r.Code != 3 || r.Stdout != "from-env\n" || r.Stderr != "oops\n" {
		t.Errorf("Exec = %+v, want exit 3, the environment's value and stderr", r)
	}
	if r := s.Exec(ctx, nil, "/no/such/program"); r.Code == 0 {
		t.Errorf("Exec of a missing program: %+v", r)
	}

	unit := randomName("orbit-dropin-") + ".service"
	if err := s.InstallUnit(ctx, unit, "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo \"probe=$PROBE\"'\n"); err != nil {
		t.Fatal(err)
	}
	if err := s.InstallDropIn(ctx, unit, "env.conf", "[Service]\nEnvironment=PROBE=dropped-in\n"); err != nil {
		t.Fatal(err)
	}
	if err := s.InstallDropIn(ctx, unit, "env.txt", ""); err == nil {
		t.Error("InstallDropIn accepted a name systemd ignores")
	}
	if _, err := s.Run(ctx, "systemctl", "start", unit); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the drop-in's environment in the journal", func() error {
		out, err := s.Run(ctx, "journalctl", "--no-pager", "-u", unit, "-o", "cat")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "probe=dropped-in") {
			return errString("not yet: " + out)
		}
		// systemd logs its own lines about the unit to the journal.
		if !strings.Contains(out, "Finished") && !strings.Contains(out, "Deactivated") {
			return errString("no line of systemd's about the unit yet: " + out)
		}
		return nil
	})

	bin := CopyTestBinary(t, filepath.Join(testenv.SharedDir(t), "bin", "sandbox.test"))
	s.RunTest(ctx, t, bin, "TestInner", "ORBIT_PROBE=passed-on")
}

// TestInner runs inside the sandbox, started by TestPrivateState.
func TestInner(t *testing.T) {
	if !Inside() {
		t.Skip("runs inside the sandbox only; TestPrivateState starts it there")
	}
	if b, _ := os.ReadFile("/proc/1/comm"); strings.TrimSpace(string(b)) != "systemd" {
		t.Errorf("PID 1 is %q, want the sandbox's systemd", b)
	}
	if v := os.Getenv("ORBIT_PROBE"); v != "passed-on" {
		t.Errorf("ORBIT_PROBE = %q, want RunTest's env", v)
	}
}

// TestCredentials: systemd in the sandbox delivers credentials as on a
// booted host, to a unit with User= too: LoadCredential= (a plain file),
// SetCredential= (a literal) and LoadCredentialEncrypted= (made with
// systemd-creds and the host key) arrive in $CREDENTIALS_DIRECTORY on a
// ramfs, readable by the unit's user alone. Before the sandbox's mounts
// were shared the directory stayed empty (see bootScript). The host's own
// mount propagation is not changed by the sandbox.
func TestCredentials(t *testing.T) {
	if Inside() {
		t.Skip("inside a sandbox already")
	}
	Require(t)
	testenv.RequireCommand(t, "systemd-creds")
	hostProp := propagation(t, "/proc/self/mountinfo")
	// /var/lib/systemd: systemd-creds makes the host key there, which
	// must stay inside.
	state := filepath.Join(testenv.SharedDir(t), "creds")
	s := BootWith(t, Options{Tmpfs: []string{state, "/var/lib/systemd"}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	user := randomName("orbitcr")[:16]
	if r := s.Exec(ctx, nil, "useradd", "--system", "--no-create-home", user); r.Code != 0 {
		t.Fatalf("useradd inside: %+v", r)
	}
	plain, literal, sealed := randomName("plain-"), randomName("literal-"), randomName("sealed-")
	if r := s.Exec(ctx, []string{"PLAIN=" + plain, "SEALED=" + sealed}, "sh", "-c",
		`printf %s "$PLAIN" > `+state+`/plain && chmod 0600 `+state+`/plain &&
		 printf %s "$SEALED" | systemd-creds encrypt --with-key=host --name=sealed - `+state+`/sealed.cred`); r.Code != 0 {
		t.Fatalf("making the credentials: %+v", r)
	}
	unit := randomName("orbit-creds-") + ".service"
	if err := s.InstallUnit(ctx, unit, "[Service]\nType=oneshot\nUser="+user+"\n"+
		"LoadCredential=plain:"+state+"/plain\n"+
		"LoadCredentialEncrypted=sealed:"+state+"/sealed.cred\n"+
		"SetCredential=literal:"+literal+"\n"+
		"ExecStart=/bin/sh -c 'cd \"$CREDENTIALS_DIRECTORY\" && stat -f -c fs=%%T . && stat -c \"%%n %%U %%a\" . plain sealed literal && for f in plain sealed literal; do printf \"%%s=%%s\\\\n\" $f \"$(cat $f)\"; done'\n"); err != nil {
		t.Fatal(err)
	}
	if r := s.Exec(ctx, nil, "systemctl", "start", unit); r.Code != 0 {
		out, _ := s.Run(ctx, "journalctl", "--no-pager", "-u", unit)
		t.Fatalf("the unit failed: %+v\n%s", r, out)
	}
	want := []string{"fs=ramfs", ". " + user + " 500", "plain " + user + " 400", "sealed " + user + " 400", "literal " + user + " 400",
		"plain=" + plain, "sealed=" + sealed, "literal=" + literal}
	eventually(t, "what the unit read in $CREDENTIALS_DIRECTORY", func() error {
		out, err := s.Run(ctx, "journalctl", "--no-pager", "-u", unit, "-o", "cat")
		if err != nil {
			return err
		}
		for _, w := range want {
			if !strings.Contains(out, w+"\n") {
				return errString("no " + w + " in:\n" + out)
			}
		}
		return nil
	})
	if got := propagation(t, "/proc/self/mountinfo"); got != hostProp {
		t.Errorf("the host's / changed propagation from %q to %q", hostProp, got)
	}
}

// propagation is the optional fields (shared:N, master:N) of / in a
// mountinfo file: empty for a private mount.
func propagation(t *testing.T, mountinfo string) string {
	t.Helper()
	b, err := os.ReadFile(mountinfo)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 6 && f[4] == "/" {
			var opt []string
			for _, o := range f[6:] {
				if o == "-" {
					break
				}
				opt = append(opt, o)
			}
			return strings.Join(opt, " ")
		}
	}
	t.Fatalf("no / in %s", mountinfo)
	return ""
}
