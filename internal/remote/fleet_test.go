package remote_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Non-root logins of the sudo tests: one allowed `sudo -n orbit`, one not.
const (
	sudoUser   = "orbit-t-sudo"
	nosudoUser = "orbit-t-nosudo"
)

// ensureUser creates a system user who can log in with a key only (no
// password: '*'), home /, and removes it when the test ends.
func ensureUser(t *testing.T, name string) {
	t.Helper()
	t.Cleanup(func() { _ = exec.Command("userdel", name).Run() })
	if _, err := exec.Command("id", name).Output(); err == nil {
		return // left by a run that died; reuse it (and remove it after)
	}
	useradd, err := exec.LookPath("useradd")
	if err != nil {
		t.Skipf("useradd is missing (%v)", err)
	}
	if out, err := exec.Command(useradd, "--system", "--no-create-home", "--home-dir", "/", "--shell", "/bin/sh", "--password", "*", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
}

// allowSudo lets user run orbit (only) as root without a password, as the
// sudoers line orbit's error suggests.
func allowSudo(t *testing.T, user, orbit string) {
	t.Helper()
	if _, err := exec.LookPath("sudo"); err != nil {
		t.Skipf("sudo is missing (%v): .ci/install-deps.sh installs it", err)
	}
	file := "/etc/sudoers.d/orbit-test-" + strconv.Itoa(os.Getpid())
	line := fmt.Sprintf("%s ALL=(root) NOPASSWD: %s\n", user, orbit)
	if err := os.WriteFile(file, []byte(line), 0o440); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(file) })
	if out, err := exec.Command("visudo", "-cf", file).CombinedOutput(); err != nil {
		t.Fatalf("visudo -cf %s: %v\n%s", file, err, out)
	}
}

// recorder writes a ForceCommand wrapper that appends every remote command
// line to log, then runs it as sshd would have.
func recorder(t *testing.T, dir string) (script, log string) {
	t.Helper()
	log = filepath.Join(dir, "commands.log")
	if err := os.WriteFile(log, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(log, 0o666) // the umask may have taken write bits away
	script = filepath.Join(dir, "record-command")
	body := "#!/bin/sh\nprintf '%s\\n' \"$SSH_ORIGINAL_COMMAND\" >> " + log + "\nexec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, log
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// runOrbit runs the built orbit with HOME=home (its ~/.ssh), no ssh-agent,
// stdin as standard input and env added to the environment.
func runOrbit(t *testing.T, home, stdin string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.BuildOrbit(t), args...)
	cmd.Env = append(append(os.Environ(), "SSH_AUTH_SOCK=", "HOME="+home, "NO_COLOR=1", "ORBIT_SETTINGS=/dev/null", "ORBIT_HOST=", "ORBIT_HOSTS="), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("running orbit %q: %v", args, err)
	}
	return r
}

func writeSSHConfig(t *testing.T, home, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".ssh", "config"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func logins(s *sshServer, user string) int {
	return strings.Count(s.log.String(), "Accepted publickey for "+user+" ")
}

// TestRemoteAddressesAndSSHConfig: the address forms ssh takes, the
// precedence of --ssh-user over USER@ over ~/.ssh/config, aliases with
// Host patterns, hashed known_hosts, IPv6, and ProxyJump with its own host
// key check.
func TestRemoteAddressesAndSSHConfig(t *testing.T) {
	s := startSSHD(t, sshdConfig{users: []string{nosudoUser}})
	ensureUser(t, nosudoUser)
	orbit := testenv.BuildOrbit(t)
	home := t.TempDir()
	port := strconv.Itoa(s.port)
	conn := []string{"--ssh-identity", s.userKey, "--ssh-known-hosts", s.knownHosts, "--remote-orbit", orbit}

	for _, tt := range []struct {
		name, host, user string
		extra            []string
	}{
		{"user@host:port", "root@127.0.0.1:" + port, "root", nil},
		{"ssh:// URI", "ssh://root@127.0.0.1:" + port, "root", nil},
		{"--ssh-port with user@host", "root@127.0.0.1", "root", []string{"--ssh-port", port}},
		// --ssh-user wins over root@; --ssh-sudo never: version needs no root.
		{"--ssh-user wins over user@", "root@127.0.0.1:" + port, nosudoUser, []string{"--ssh-user", nosudoUser, "--ssh-sudo", "never"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := logins(s, tt.user)
			r := runOrbit(t, home, "", nil, append(append([]string{"--host", tt.host}, append(conn, tt.extra...)...), "version", "--output", "json")...)
			if r.code != 0 || !json.Valid([]byte(r.stdout)) {
				t.Fatalf("exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
			}
			if logins(s, tt.user) != before+1 {
				t.Errorf("no login as %s in the sshd log:\n%s", tt.user, s.log)
			}
		})
	}

	t.Run("IPv6 in brackets", func(t *testing.T) {
		if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
			t.Skipf("no IPv6 loopback: %v", err)
		} else {
			ln.Close()
		}
		s6 := startSSHD(t, sshdConfig{listen: "::1", userKey: s.userKey})
		r := runOrbit(t, home, "", nil, "--host", "root@[::1]:"+strconv.Itoa(s6.port), "--ssh-identity", s6.userKey, "--ssh-known-hosts", s6.knownHosts, "--remote-orbit", orbit, "version")
		if r.code != 0 || logins(s6, "root") != 1 {
			t.Fatalf("exit %d, stderr:\n%s\nsshd log:\n%s", r.code, r.stderr, s6.log)
		}
	})

	// The jump host logs at DEBUG1, where sshd names each forwarding's target.
	jump := startSSHD(t, sshdConfig{userKey: s.userKey, logLevel: "DEBUG1"})
	hashed := filepath.Join(home, "known_hosts.hashed")
	hashedLine := knownhosts.Line([]string{knownhosts.HashHostname(knownhosts.Normalize(s.addr))}, s.hostKey)
	if err := os.WriteFile(hashed, []byte(hashedLine+"\n"+jump.knownHostsLine()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyKH := filepath.Join(home, "known_hosts.empty")
	if err := os.WriteFile(emptyKH, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	writeSSHConfig(t, home, fmt.Sprintf(`# orbit test: aliases as admins write them
Host vault-*
    HostName 127.0.0.1
    Port %[1]d
    IdentityFile %[2]s
    UserKnownHostsFile %[3]s

Host vault-a
    User root

Host vault-nosudo
    User %[5]s

Host vault-j
    User root
    ProxyJump bastion

Host vault-jx
    User root
    ProxyJump root@bastion-unknown

Host bastion bastion-unknown
    HostName 127.0.0.1
    Port %[4]d
    User root
    IdentityFile %[2]s

Host bastion
    UserKnownHostsFile %[3]s

Host bastion-unknown
    UserKnownHostsFile %[6]s
`, s.port, s.userKey, hashed, jump.port, nosudoUser, emptyKH))

	t.Run("alias with Host patterns and a hashed known_hosts", func(t *testing.T) {
		if !strings.HasPrefix(hashedLine, "|1|") {
			t.Fatalf("known_hosts line %q is not hashed", hashedLine)
		}
		before := logins(s, "root")
		r := runOrbit(t, home, "", nil, "--host", "vault-a", "--remote-orbit", orbit, "version", "--output", "json")
		if r.code != 0 || !json.Valid([]byte(r.stdout)) || logins(s, "root") != before+1 {
			t.Fatalf("exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("alias: user@ wins over User", func(t *testing.T) {
		before := logins(s, nosudoUser)
		r := runOrbit(t, home, "", nil, "--host", nosudoUser+"@vault-a", "--ssh-sudo", "never", "--remote-orbit", orbit, "version")
		if r.code != 0 || logins(s, nosudoUser) != before+1 {
			t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
	})

	t.Run("--ssh-config none ignores the file", func(t *testing.T) {
		r := runOrbit(t, home, "", nil, "--host", "vault-a", "--ssh-config", "none", "--ssh-timeout", "3s", "--remote-orbit", orbit, "version")
		if r.code == 0 {
			t.Fatalf("vault-a resolved without the file; stderr:\n%s", r.stderr)
		}
	})

	t.Run("ProxyJump", func(t *testing.T) {
		before := logins(jump, "root")
		r := runOrbit(t, home, "", nil, "--host", "vault-j", "--remote-orbit", orbit, "version", "--output", "json")
		if r.code != 0 || !json.Valid([]byte(r.stdout)) {
			t.Fatalf("exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
		}
		if logins(jump, "root") != before+1 {
			t.Errorf("no login on the jump host:\n%s", jump.log)
		}
		if want := "target 127.0.0.1 port " + strconv.Itoa(s.port); !strings.Contains(jump.log.String(), want) {
			t.Errorf("the jump host forwarded nothing to the appliance (%q not in its log):\n%s", want, jump.log)
		}
	})

	t.Run("ProxyJump: unknown jump host key refused", func(t *testing.T) {
		beforeJump, beforeVault := logins(jump, "root"), logins(s, "root")
		r := runOrbit(t, home, "", nil, "--host", "vault-jx", "--remote-orbit", orbit, "version")
		t.Logf("stderr:\n%s", r.stderr)
		if r.code != 10 {
			t.Errorf("exit %d, want 10", r.code)
		}
		for _, want := range []string{"jump host bastion-unknown (ProxyJump of vault-jx)", "is not in " + emptyKH, ssh.FingerprintSHA256(jump.hostKey), "ssh-keyscan -p " + strconv.Itoa(jump.port)} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr lacks %q", want)
			}
		}
		if logins(jump, "root") != beforeJump || logins(s, "root") != beforeVault {
			t.Errorf("logged in despite the unknown jump host key")
		}
	})
}

// TestRemoteSecretsAndSudo: a secret given as a value travels over
// standard input, never on the remote command line (a ForceCommand wrapper
// records every line); non-root logins run orbit through sudo -n, and a
// login sudo refuses gets the sudoers line that fixes it.
func TestRemoteSecretsAndSudo(t *testing.T) {
	orbit := testenv.BuildOrbit(t)
	dir := testenv.SharedDir(t)
	script, cmdlog := recorder(t, dir)
	ensureUser(t, sudoUser)
	ensureUser(t, nosudoUser)
	allowSudo(t, sudoUser, orbit)
	s := startSSHD(t, sshdConfig{users: []string{sudoUser, nosudoUser}, forceCommand: script})
	home := t.TempDir()
	const secret = "Sup3r-s3cret 'v@lue' $x"
	// A directory only root can write: register succeeds there only as root.
	rootOnly := filepath.Join(dir, "root-only")
	if err := os.Mkdir(rootOnly, 0o700); err != nil {
		t.Fatal(err)
	}
	register := func(user, config string, secretArgs ...string) []string {
		return append([]string{"--host", user + "@" + s.addr, "--ssh-identity", s.userKey, "--ssh-known-hosts", s.knownHosts, "--remote-orbit", orbit,
			"email-oauth2-proxy", "register", "--provider", "google",
			"--oauth2-client-id", "1234567890-abc.apps.googleusercontent.com",
			"--redirect-uri", "https://vault.example.com/email-oauth2-proxy-authorize/",
			"--config", config, "--no-service"}, secretArgs...)
	}

	for _, tt := range []struct{ name, user string }{{"as root", "root"}, {"as a sudoer, through sudo -n", sudoUser}} {
		t.Run("--oauth2-client-secret VALUE "+tt.name, func(t *testing.T) {
			config := filepath.Join(rootOnly, tt.user+".config")
			r := runOrbit(t, home, "", nil, register(tt.user, config, "--oauth2-client-secret", secret)...)
			if r.code != 0 {
				t.Fatalf("exit %d, stderr:\n%s\ncommands:\n%s", r.code, r.stderr, readFile(t, cmdlog))
			}
			if got := readFile(t, config); !strings.Contains(got, "client_secret = "+secret) {
				t.Errorf("the secret did not reach the remote file:\n%s", got)
			}
			lines := readFile(t, cmdlog)
			if strings.Contains(lines, "s3cret") {
				t.Errorf("the secret is on a remote command line:\n%s", lines)
			}
			last := lastLine(lines)
			if !strings.Contains(last, "--oauth2-client-secret-file -") {
				t.Errorf("the remote command does not read the secret from standard input: %s", last)
			}
			if wantSudo := tt.user != "root"; strings.HasPrefix(last, "sudo -n -- ") != wantSudo {
				t.Errorf("remote command line %q: sudo -n wanted %v", last, wantSudo)
			}
			if strings.Contains(r.stderr, "warning") {
				t.Errorf("warned although the secret stayed off the command line:\n%s", r.stderr)
			}
		})
	}

	t.Run("sudo refused: the sudoers line", func(t *testing.T) {
		r := runOrbit(t, home, secret+"\n", nil, register(nosudoUser, filepath.Join(rootOnly, "nosudo.config"), "--oauth2-client-secret-file", "-")...)
		t.Logf("stderr:\n%s", r.stderr)
		if r.code != 10 {
			t.Errorf("exit %d, want 10 (permission)", r.code)
		}
		for _, want := range []string{"sudo: a password is required", nosudoUser + "@127.0.0.1 may not run orbit as root without a password", nosudoUser + " ALL=(root) NOPASSWD: " + orbit, "visudo -f /etc/sudoers.d/orbit"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr lacks %q", want)
			}
		}
	})

	t.Run("--ssh-sudo never", func(t *testing.T) {
		r := runOrbit(t, home, "", nil, "--host", sudoUser+"@"+s.addr, "--ssh-identity", s.userKey, "--ssh-known-hosts", s.knownHosts, "--remote-orbit", orbit, "--ssh-sudo", "never", "version")
		if r.code != 0 || strings.HasPrefix(lastLine(readFile(t, cmdlog)), "sudo") {
			t.Errorf("exit %d, last command %q, stderr:\n%s", r.code, lastLine(readFile(t, cmdlog)), r.stderr)
		}
	})

	t.Run("local: the secret on the command line warns", func(t *testing.T) {
		r := runOrbit(t, home, "", nil, "email-oauth2-proxy", "register", "--provider", "google",
			"--oauth2-client-id", "1234567890-abc.apps.googleusercontent.com", "--oauth2-client-secret", secret,
			"--redirect-uri", "https://vault.example.com/email-oauth2-proxy-authorize/",
			"--config", filepath.Join(dir, "local.config"), "--dry-run")
		if r.code != 0 || !strings.Contains(r.stderr, "warning: --oauth2-client-secret puts the secret in the process list (ps) and your shell history") {
			t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
		if strings.Contains(r.stderr, "s3cret") {
			t.Errorf("the warning shows the secret:\n%s", r.stderr)
		}
	})
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// fleet is three real sshds with host keys of their own, a login as root
// and one through sudo, plus hosts that fail in each way a fleet meets.
type fleet struct {
	a, b, c        *sshServer
	home, cmdlog   string
	key, kh        string
	timeout, refus string // addresses: a silent listener, a closed port
}

func startFleet(t *testing.T) *fleet {
	orbit := testenv.BuildOrbit(t)
	dir := testenv.SharedDir(t)
	script, cmdlog := recorder(t, dir)
	ensureUser(t, sudoUser)
	allowSudo(t, sudoUser, orbit)
	f := &fleet{home: t.TempDir(), cmdlog: cmdlog}
	f.a = startSSHD(t, sshdConfig{forceCommand: script})
	f.key = f.a.userKey
	f.b = startSSHD(t, sshdConfig{userKey: f.key, users: []string{sudoUser}, forceCommand: script})
	f.c = startSSHD(t, sshdConfig{userKey: f.key})
	if f.a.hostKey.Type() == "" || bytes.Equal(f.a.hostKey.Marshal(), f.b.hostKey.Marshal()) {
		t.Fatal("the hosts share a host key")
	}
	// c's entry holds another key: c looks like a reinstalled (or
	// impersonated) appliance.
	other := writeKey(t, filepath.Join(dir, "other_host_key"))
	changed := knownhosts.Line([]string{knownhosts.Normalize(f.c.addr)}, other)
	f.kh = filepath.Join(f.home, "known_hosts")
	if err := os.WriteFile(f.kh, []byte(f.a.knownHostsLine()+"\n"+f.b.knownHostsLine()+"\n"+changed+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A listener that accepts and never speaks: only --ssh-timeout ends it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	f.timeout = ln.Addr().String()
	f.refus = testenv.Addr(testenv.FreePort(t))
	return f
}

func (f *fleet) flags(t *testing.T) []string {
	return []string{"--ssh-identity", f.key, "--ssh-known-hosts", f.kh, "--remote-orbit", testenv.BuildOrbit(t), "--ssh-timeout", "2s"}
}

func TestRemoteFleet(t *testing.T) {
	f := startFleet(t)
	hostsFile := filepath.Join(f.home, "hosts")
	good := []string{"root@" + f.a.addr, sudoUser + "@" + f.b.addr}
	all := append(slices.Clone(good), "root@"+f.c.addr, "root@"+f.timeout, "root@"+f.refus)
	body := "# appliances of the test fleet\n" + good[0] + "   # root login\n\n" + good[1] + "\n" + strings.Join(all[2:], "\n") + "\n"
	if err := os.WriteFile(hostsFile, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("text", func(t *testing.T) {
		r := runOrbit(t, f.home, "", nil, append([]string{"--hosts-file", hostsFile}, append(f.flags(t), "version")...)...)
		t.Logf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		if r.code != 11 {
			t.Errorf("exit %d, want 11 (hosts-failed)", r.code)
		}
		for _, h := range good {
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(h) + ` +\| orbit `).MatchString(r.stdout) {
				t.Errorf("no version line prefixed with %s", h)
			}
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(h) + ` +0 \(ok\) +\d`).MatchString(r.stdout) {
				t.Errorf("summary has no success row for %s", h)
			}
		}
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta("root@"+f.c.addr) + ` +10 \(permission\) +\d+ms +refusing to connect: the host key of \[127.0.0.1\]:\d+ has CHANGED$`).MatchString(r.stdout) {
			t.Errorf("summary has no changed-key row for %s", f.c.addr)
		}
		for _, want := range []string{
			"root@" + f.timeout, "no answer within 2s",
			"root@" + f.refus, "connection refused",
			"2 of 5 hosts succeeded",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("stdout lacks %q", want)
			}
		}
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta("root@"+f.c.addr) + ` +\| orbit: +ssh-keygen -R `).MatchString(r.stderr) {
			t.Errorf("the changed key's full message is not on stderr with its host")
		}
	})

	t.Run("a malformed address stops the run before any connection", func(t *testing.T) {
		before := logins(f.a, "root")
		r := runOrbit(t, f.home, "", nil, append([]string{"--host", good[0], "--host", "vault:0"}, append(f.flags(t), "version")...)...)
		if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, `--host "vault:0": the port must be a number`) {
			t.Errorf("exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
		}
		if logins(f.a, "root") != before {
			t.Errorf("connected to %s although the run was refused", good[0])
		}
	})

	t.Run("json", func(t *testing.T) {
		r := runOrbit(t, f.home, "", nil, append([]string{"--hosts-file", hostsFile}, append(f.flags(t), "version", "--output", "json")...)...)
		t.Logf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		if r.code != 11 {
			t.Errorf("exit %d, want 11", r.code)
		}
		var doc struct {
			Hosts []struct {
				Host       string         `json:"host"`
				ExitCode   int            `json:"exit_code"`
				DurationMS *int64         `json:"duration_ms"`
				Output     map[string]any `json:"output"`
				Error      string         `json:"error"`
			} `json:"hosts"`
			Succeeded, Failed int
		}
		if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
			t.Fatalf("not one JSON document: %v", err)
		}
		if len(doc.Hosts) != 5 || doc.Succeeded != 2 || doc.Failed != 3 {
			t.Fatalf("%d hosts, %d succeeded, %d failed; want 5, 2, 3", len(doc.Hosts), doc.Succeeded, doc.Failed)
		}
		for i, h := range doc.Hosts {
			if h.Host != all[i] || h.DurationMS == nil {
				t.Errorf("entry %d: host %q, duration %v; want %q in hosts-file order", i, h.Host, h.DurationMS, all[i])
			}
			if i < 2 && (h.ExitCode != 0 || h.Output["version"] == nil) {
				t.Errorf("%s: exit %d, output %v; want 0 and the parsed version JSON", h.Host, h.ExitCode, h.Output)
			}
			if i >= 2 && (h.ExitCode == 0 || h.Error == "") {
				t.Errorf("%s: exit %d, error %q; want a failure with orbit's error", h.Host, h.ExitCode, h.Error)
			}
		}
	})

	t.Run("--host repeated, stdin to every host", func(t *testing.T) {
		// Both write the same file (b through sudo, as root): each run
		// succeeds only when its standard input held the secret.
		config := filepath.Join(testenv.SharedDir(t), "stdin.config")
		args := append(slices.Clone(f.flags(t)), "--host", good[0], "--host", good[1], "--parallel", "1",
			"email-oauth2-proxy", "register", "--provider", "google",
			"--oauth2-client-id", "1234567890-abc.apps.googleusercontent.com",
			"--redirect-uri", "https://vault.example.com/email-oauth2-proxy-authorize/",
			"--config", config, "--no-service", "--force", "--oauth2-client-secret-file", "-")
		r := runOrbit(t, f.home, "piped-secret\n", nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "2 of 2 hosts succeeded") {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
		if got := readFile(t, config); !strings.Contains(got, "client_secret = piped-secret") {
			t.Errorf("stdin did not reach the hosts:\n%s", got)
		}
	})

	t.Run("ORBIT_HOSTS, secret lifted on every host", func(t *testing.T) {
		dir := testenv.SharedDir(t)
		config := filepath.Join(dir, "fleet.config")
		r := runOrbit(t, f.home, "", []string{"ORBIT_HOSTS=" + good[0] + "," + good[1]}, append(f.flags(t),
			"email-oauth2-proxy", "register", "--provider", "google",
			"--oauth2-client-id", "1234567890-abc.apps.googleusercontent.com",
			"--redirect-uri", "https://vault.example.com/email-oauth2-proxy-authorize/",
			"--config", config, "--no-service", "--force", "--oauth2-client-secret", "fleet-s3cret", "--output", "json")...)
		if r.code != 0 {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
		if got := readFile(t, config); !strings.Contains(got, "client_secret = fleet-s3cret") {
			t.Errorf("the secret did not reach the hosts:\n%s", got)
		}
		if lines := readFile(t, f.cmdlog); strings.Contains(lines, "fleet-s3cret") {
			t.Errorf("the secret is on a remote command line:\n%s", lines)
		}
	})

	t.Run("Ctrl-C stops every remote command", func(t *testing.T) {
		const marker = "/nonexistent-27182"
		args := []string{"--host", good[0], "--host", "root@" + f.c.addr, "--host", "root@" + f.b.addr,
			"--ssh-identity", f.key, "--ssh-known-hosts", f.kh, "--remote-orbit", "cat"}
		// c's key is refused; a and b run cat until the interrupt.
		cmd := exec.Command(testenv.BuildOrbit(t), append(args, "-", marker)...)
		cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=", "HOME="+f.home, "ORBIT_SETTINGS=/dev/null", "ORBIT_HOSTS=")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		defer stdin.Close()
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		remoteCats := func() []string {
			o, _ := exec.Command("pgrep", "-f", "^cat - "+marker+"$").Output()
			return strings.Fields(string(o))
		}
		deadline := time.Now().Add(15 * time.Second)
		for len(remoteCats()) < 2 {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("the remote cats never started; stderr:\n%s", errOut.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			t.Errorf("after SIGINT: %v, want exit 130; stdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
		}
		for deadline := time.Now().Add(10 * time.Second); len(remoteCats()) > 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				for _, pid := range remoteCats() {
					if n, err := strconv.Atoi(pid); err == nil {
						if p, err := os.FindProcess(n); err == nil {
							p.Kill()
						}
					}
				}
				t.Fatalf("remote commands still run after the interrupt")
			}
		}
	})
}
