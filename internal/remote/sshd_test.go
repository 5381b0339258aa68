package remote_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/remote"
	"github.com/senhasegura/orbit/internal/testenv"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const sshdPath = "/usr/sbin/sshd"

// sshServer is a real OpenSSH sshd on a free loopback port, logging in
// root with one key, and the files a client needs to reach it.
type sshServer struct {
	dir        string
	port       int
	hostKey    ssh.PublicKey
	userKey    string // private key file accepted by the server
	knownHosts string // holds hostKey for the server's address
	addr       string // host:port to reach it
	log        *syncBuffer
}

func writeKey(t *testing.T, path string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// sshdConfig varies a test sshd; the zero value logs in root with a key of
// its own.
type sshdConfig struct {
	userKey      string   // the client key to accept (default: a new one)
	users        []string // who may log in with it, besides root
	forceCommand string   // ForceCommand: a wrapper that records command lines
	listen       string   // ListenAddress (default 127.0.0.1)
	logLevel     string   // LogLevel (default VERBOSE)
}

func startSSHD(t *testing.T, sc sshdConfig) *sshServer {
	t.Helper()
	testenv.RequireRoot(t, "running sshd as root to log in")
	if _, err := os.Stat(sshdPath); err != nil {
		t.Skipf("%s is missing (%v): install openssh-server (.ci/install-deps.sh does)", sshdPath, err)
	}
	// sshd refuses to start without its privilege separation directory,
	// which the package only creates when its service runs.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	s := &sshServer{dir: testenv.SharedDir(t), log: &syncBuffer{}}
	hostKeyFile := filepath.Join(s.dir, "ssh_host_ed25519_key")
	s.hostKey = writeKey(t, hostKeyFile)
	var userPub ssh.PublicKey
	if sc.userKey != "" {
		s.userKey = sc.userKey
		userPub = readPub(t, sc.userKey)
	} else {
		s.userKey = filepath.Join(s.dir, "id_ed25519")
		userPub = writeKey(t, s.userKey)
	}
	// One file per user, readable by all: sshd reads it as the user.
	authDir := filepath.Join(s.dir, "authorized_keys")
	if err := os.Mkdir(authDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, u := range append([]string{"root"}, sc.users...) {
		if err := os.WriteFile(filepath.Join(authDir, u), ssh.MarshalAuthorizedKey(userPub), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	listen, logLevel := cmp.Or(sc.listen, "127.0.0.1"), cmp.Or(sc.logLevel, "VERBOSE")
	force := ""
	if sc.forceCommand != "" {
		force = "ForceCommand " + sc.forceCommand + "\n"
	}

	var cmd *exec.Cmd
	for attempt := 0; ; attempt++ {
		s.port = testenv.FreePort(t)
		config := filepath.Join(s.dir, "sshd_config")
		conf := fmt.Sprintf(`ListenAddress %s
Port %d
HostKey %s
AuthorizedKeysFile %s/%%u
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
PidFile %s
LogLevel %s
%s`, listen, s.port, hostKeyFile, authDir, filepath.Join(s.dir, "sshd.pid"), logLevel, force)
		if err := os.WriteFile(config, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		s.log.Reset()
		cmd = exec.Command(sshdPath, "-D", "-e", "-f", config)
		cmd.Stdout, cmd.Stderr = s.log, s.log
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting sshd: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		up := make(chan error, 1)
		go func() { up <- testenv.WaitPort(ctx, net.JoinHostPort(listen, strconv.Itoa(s.port))) }()
		select {
		case err := <-up:
			cancel()
			if err != nil {
				cmd.Process.Kill()
				t.Fatalf("sshd did not come up: %v\n%s", err, s.log)
			}
			t.Cleanup(func() {
				cmd.Process.Kill()
				<-exited
				if t.Failed() {
					t.Logf("sshd log:\n%s", s.log)
				}
			})
		case err := <-exited:
			cancel()
			// The port may have been taken between choosing and binding.
			if attempt < 2 && strings.Contains(s.log.String(), "Address already in use") {
				continue
			}
			t.Fatalf("sshd exited at start: %v\n%s", err, s.log)
		}
		break
	}

	s.knownHosts = filepath.Join(s.dir, "known_hosts")
	s.addr = net.JoinHostPort(listen, strconv.Itoa(s.port))
	if err := os.WriteFile(s.knownHosts, []byte(s.knownHostsLine()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// knownHostsLine is the known_hosts line for s's address and key.
func (s *sshServer) knownHostsLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.addr)}, s.hostKey)
}

// syncBuffer is sshd's log: written by sshd's output copier, read by tests.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (b *syncBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b.Reset()
}

func readPub(t *testing.T, keyFile string) ssh.PublicKey {
	t.Helper()
	b, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return signer.PublicKey()
}

type result struct {
	code           int
	stdout, stderr string
}

// orbit runs the built orbit binary as a person at a workstation would:
// no ssh-agent, HOME in the test directory (no ~/.ssh of the machine).
func (s *sshServer) orbit(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return s.run(t, testenv.BuildOrbit(t), append([]string{stdin}, args...)...)
}

// run runs bin with args[1:] and args[0] as standard input.
func (s *sshServer) run(t *testing.T, bin string, args ...string) result {
	t.Helper()
	stdin, args := args[0], args[1:]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=", "HOME="+s.dir, "NO_COLOR=1", "ORBIT_SETTINGS=/dev/null")
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

// remoteArgs are the connection flags for s, knownHosts being the file to
// check the host key against.
func (s *sshServer) remoteArgs(t *testing.T, knownHosts string) []string {
	return []string{
		"--host", "127.0.0.1:" + strconv.Itoa(s.port),
		"--ssh-user", "root",
		"--ssh-identity", s.userKey,
		"--ssh-known-hosts", knownHosts,
		"--remote-orbit", testenv.BuildOrbit(t),
	}
}

func TestRemoteOverRealSSHD(t *testing.T) {
	s := startSSHD(t, sshdConfig{})

	t.Run("version as JSON", func(t *testing.T) {
		local := s.orbit(t, "", "version", "--output", "json")
		r := s.orbit(t, "", append(s.remoteArgs(t, s.knownHosts), "version", "--output", "json")...)
		if r.code != 0 {
			t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
			t.Fatalf("remote output is not JSON: %v\n%s", err, r.stdout)
		}
		if v["go_version"] == nil || r.stdout != local.stdout {
			t.Errorf("remote version output\n%s\ndiffers from the local one\n%s", r.stdout, local.stdout)
		}
		// The command really ran over SSH: sshd logged the login.
		if !strings.Contains(s.log.String(), "Accepted publickey for root") {
			t.Errorf("sshd logged no login:\n%s", s.log)
		}
	})

	t.Run("connection flags after the command, --host=", func(t *testing.T) {
		args := []string{"version", "--output=json", "--host=127.0.0.1:" + strconv.Itoa(s.port), "--ssh-user=root",
			"--ssh-identity=" + s.userKey, "--ssh-known-hosts=" + s.knownHosts, "--remote-orbit=" + testenv.BuildOrbit(t)}
		r := s.orbit(t, "", args...)
		if r.code != 0 || !json.Valid([]byte(r.stdout)) {
			t.Fatalf("exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("ORBIT_HOST from the environment", func(t *testing.T) {
		t.Setenv("ORBIT_HOST", "127.0.0.1:"+strconv.Itoa(s.port))
		t.Setenv("ORBIT_SSH_USER", "root")
		args := []string{"--ssh-identity", s.userKey, "--ssh-known-hosts", s.knownHosts, "--remote-orbit", testenv.BuildOrbit(t), "version", "--output", "json"}
		before := strings.Count(s.log.String(), "Accepted publickey")
		r := s.orbit(t, "", args...)
		if r.code != 0 || !json.Valid([]byte(r.stdout)) {
			t.Fatalf("exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
		}
		if after := strings.Count(s.log.String(), "Accepted publickey"); after != before+1 {
			t.Errorf("ORBIT_HOST did not make orbit log in over SSH (%d logins before, %d after)", before, after)
		}
	})

	t.Run("remote exit code passes through", func(t *testing.T) {
		r := s.orbit(t, "", append(s.remoteArgs(t, s.knownHosts), "email-oauth2-proxy", "config", "validate", "/nonexistent")...)
		if r.code != 4 {
			t.Fatalf("exit %d, want 4 (invalid); stderr:\n%s", r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, "/nonexistent does not exist") {
			t.Errorf("the remote error did not reach stderr:\n%s", r.stderr)
		}
	})

	t.Run("stdin reaches the remote command", func(t *testing.T) {
		const secret = "S3cr3t 'quoted' $value"
		args := append(s.remoteArgs(t, s.knownHosts), "email-oauth2-proxy", "register", "--provider", "google",
			"--oauth2-client-id", "1234567890-abc.apps.googleusercontent.com",
			"--oauth2-client-secret-file", "-",
			"--redirect-uri", "https://vault.example.com/email-oauth2-proxy-authorize/",
			"--config", filepath.Join(s.dir, "absent", "emailproxy.config"), "--dry-run")
		r := s.orbit(t, secret, args...)
		if r.code != 0 {
			t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
		if !strings.Contains(r.stdout, "client_secret = ********") || !strings.Contains(r.stdout, "client_id = 1234567890-abc.apps.googleusercontent.com") {
			t.Errorf("no masked file in the output:\n%s", r.stdout)
		}
		if strings.Contains(r.stdout+r.stderr, "S3cr3t") {
			t.Errorf("the secret leaked into the output")
		}
		// Control: without standard input the remote side has no secret.
		if r := s.orbit(t, "", args...); r.code != 4 || !strings.Contains(r.stderr, "standard input holds no secret") {
			t.Errorf("empty stdin: exit %d, stderr:\n%s", r.code, r.stderr)
		}
	})

	t.Run("secret on the command line goes over stdin", func(t *testing.T) {
		args := append(s.remoteArgs(t, s.knownHosts), "email-oauth2-proxy", "register", "--provider", "google",
			"--oauth2-client-id", "1234567890-abc.apps.googleusercontent.com",
			"--oauth2-client-secret", "not-in-ps",
			"--redirect-uri", "https://vault.example.com/email-oauth2-proxy-authorize/",
			"--config", filepath.Join(s.dir, "absent", "emailproxy.config"), "--dry-run")
		r := s.orbit(t, "", args...)
		if r.code != 0 || strings.Contains(r.stderr, "warning") || !strings.Contains(r.stdout, "client_secret = ********") {
			t.Errorf("exit %d, stdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
	})

	fingerprint := ssh.FingerprintSHA256(s.hostKey)

	t.Run("unknown host key refused", func(t *testing.T) {
		empty := filepath.Join(s.dir, "known_hosts.empty")
		if err := os.WriteFile(empty, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, kh := range []string{empty, filepath.Join(s.dir, "known_hosts.missing")} {
			before := strings.Count(s.log.String(), "Accepted publickey")
			r := s.orbit(t, "", append(s.remoteArgs(t, kh), "version")...)
			t.Logf("stderr:\n%s", r.stderr)
			if r.code != 10 {
				t.Errorf("%s: exit %d, want 10; stderr:\n%s", kh, r.code, r.stderr)
			}
			for _, want := range []string{"is not in " + kh, fingerprint, "ssh-keyscan -p " + strconv.Itoa(s.port) + " -t ed25519 127.0.0.1 >> " + kh, "root@127.0.0.1"} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("%s: stderr lacks %q:\n%s", kh, want, r.stderr)
				}
			}
			if r.stdout != "" || strings.Count(s.log.String(), "Accepted publickey") != before {
				t.Errorf("%s: orbit logged in despite the unknown key; stdout %q", kh, r.stdout)
			}
		}
	})

	t.Run("changed host key refused", func(t *testing.T) {
		other := writeKey(t, filepath.Join(s.dir, "other_host_key"))
		changed := filepath.Join(s.dir, "known_hosts.changed")
		line := knownhosts.Line([]string{knownhosts.Normalize(testenv.Addr(s.port))}, other)
		if err := os.WriteFile(changed, []byte(line+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := s.orbit(t, "", append(s.remoteArgs(t, changed), "version")...)
		t.Logf("stderr:\n%s", r.stderr)
		if r.code != 10 {
			t.Errorf("exit %d, want 10; stderr:\n%s", r.code, r.stderr)
		}
		for _, want := range []string{"CHANGED", fingerprint, changed + ":1 expects ssh-ed25519 " + ssh.FingerprintSHA256(other), "ssh-keygen -R"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
			}
		}
	})

	t.Run("key not authorised", func(t *testing.T) {
		stranger := filepath.Join(s.dir, "stranger")
		writeKey(t, stranger)
		args := s.remoteArgs(t, s.knownHosts)
		args[5] = stranger
		r := s.orbit(t, "", append(args, "version")...)
		if r.code != 10 || !strings.Contains(r.stderr, "root@127.0.0.1:"+strconv.Itoa(s.port)+" refused every key offered ("+stranger+")") {
			t.Errorf("exit %d, want 10; stderr:\n%s", r.code, r.stderr)
		}
	})

	t.Run("missing remote program", func(t *testing.T) {
		args := s.remoteArgs(t, s.knownHosts)
		args[len(args)-1] = "/nonexistent/orbit"
		r := s.orbit(t, "", append(args, "version")...)
		if r.code != 127 || !strings.Contains(r.stderr, "--remote-orbit names its full path") {
			t.Errorf("exit %d, want 127; stderr:\n%s", r.code, r.stderr)
		}
	})

	// tty(1) as the remote program tells whether the remote side got a
	// terminal: only when both local ends are one.
	t.Run("terminal only for a terminal", func(t *testing.T) {
		args := s.remoteArgs(t, s.knownHosts)
		args[len(args)-1] = "/usr/bin/tty"
		r := s.orbit(t, "", args...)
		if r.code != 1 || !strings.Contains(r.stdout, "not a tty") {
			t.Errorf("without a terminal: exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
		}
		script, err := exec.LookPath("script")
		if err != nil {
			t.Skipf("script(1) is not installed (%v); util-linux has it", err)
		}
		line := remote.CommandLine(testenv.BuildOrbit(t), args)
		r = s.run(t, script, "", "-qec", line, "/dev/null")
		if r.code != 0 || !strings.Contains(r.stdout, "/dev/pts/") {
			t.Errorf("under a terminal: exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
		}
	})

	// Ctrl-C in a script (no terminal) reaches orbit, which passes SIGINT
	// on and hangs up: orbit exits 130 and the session closes, so a remote
	// command reading its input sees the end of it. (OpenSSH delivers the
	// signal itself only to non-root logins; this test logs in as root.)
	t.Run("interrupt closes the session", func(t *testing.T) {
		args := s.remoteArgs(t, s.knownHosts)
		args[len(args)-1] = "cat"
		const marker = "/nonexistent-31415" // unique, to find the remote process
		cmd := exec.Command(testenv.BuildOrbit(t), append(args, "-", marker)...)
		cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=", "HOME="+s.dir, "ORBIT_SETTINGS=/dev/null")
		stdin, err := cmd.StdinPipe() // held open: only the hang-up ends cat
		if err != nil {
			t.Fatal(err)
		}
		defer stdin.Close()
		var errOut bytes.Buffer
		cmd.Stderr = &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		remoteCat := func() []byte {
			out, _ := exec.Command("pgrep", "-f", "^cat - "+marker+"$").Output()
			return bytes.TrimSpace(out)
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(remoteCat()) == 0 {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("the remote cat never started; stderr:\n%s", errOut.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 || !strings.Contains(errOut.String(), "interrupted") {
			t.Errorf("after SIGINT: %v, want exit 130; stderr:\n%s", err, errOut.String())
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			pids := remoteCat()
			if len(pids) == 0 {
				break
			}
			if time.Now().After(deadline) {
				for _, pid := range strings.Fields(string(pids)) {
					if n, err := strconv.Atoi(pid); err == nil {
						if p, err := os.FindProcess(n); err == nil {
							p.Kill()
						}
					}
				}
				t.Fatalf("the remote command still runs after the interrupt")
			}
		}
	})

	t.Run("help stays local", func(t *testing.T) {
		before := strings.Count(s.log.String(), "Connection from")
		r := s.orbit(t, "", append(s.remoteArgs(t, s.knownHosts), "-help")...)
		if r.code != 0 || !strings.Contains(r.stdout, "orbit is the operator CLI") {
			t.Errorf("exit %d, stdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
		if strings.Count(s.log.String(), "Connection from") != before {
			t.Errorf("-help connected to sshd")
		}
	})
}

// TestRemotePassphraseKey: a passphrase-protected key is not asked for; the
// error says to use ssh-agent. No server is needed: keys load first.
func TestRemotePassphraseKey(t *testing.T) {
	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("pass phrase"))
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &sshServer{dir: dir}
	r := s.orbit(t, "", "--host", "127.0.0.1:1", "--ssh-identity", key, "--ssh-known-hosts", filepath.Join(dir, "kh"), "version")
	if r.code != 10 || !strings.Contains(r.stderr, "protected by a passphrase") || !strings.Contains(r.stderr, "ssh-add "+key) {
		t.Errorf("exit %d, want 10; stderr:\n%s", r.code, r.stderr)
	}
}
