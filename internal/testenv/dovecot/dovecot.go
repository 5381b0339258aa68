// Package dovecot runs a real Dovecot per test as the upstream mail server
// of end-to-end tests: on free loopback ports, TLS on (implicit TLS IMAP and
// POP3, submission with STARTTLS) with a throwaway CA, SASL XOAUTH2 and
// OAUTHBEARER only, every bearer token checked at an OAuth 2.0 introspection
// URL (the fakeoauth provider's). Submitted mail is relayed to an smtpsink
// that writes it into the recipient's Maildir, so a message sent over SMTP
// can be read back over IMAP and POP3.
//
// It needs root (Dovecot's master process starts as root and drops to the
// users dovecot, dovenull and nobody) and Debian's dovecot-imapd,
// dovecot-pop3d and dovecot-submissiond (.ci/install-deps.sh); without them
// Start skips the test and says why.
//
// Limits are raised so that hundreds of concurrent sessions of one account
// work (Dovecot's default refuses the 11th per user and IP).
package dovecot

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/google/renameio/v2"

	"github.com/senhasegura/orbit/internal/testenv"
	"github.com/senhasegura/orbit/internal/testenv/smtpsink"
)

// Options configures Start.
type Options struct {
	// IntrospectURL is where Dovecot checks every token (required), for
	// example fakeoauth.Provider.IntrospectURL().
	IntrospectURL string
	// IntrospectCAFile is the CA bundle Dovecot trusts when IntrospectURL
	// is https.
	IntrospectCAFile string
	// TLS is the server certificate; nil makes a fresh one
	// (testenv.NewTLS). Its CAFile is what clients must trust.
	TLS *testenv.TLSFiles
	// MaxSessions is how many concurrent sessions one user may have from
	// one IP, per protocol; 0 means 1000.
	MaxSessions int
	// Hostname is Dovecot's hostname (greetings, submission); default
	// mx.example.test.
	Hostname string
	// AuthDebug turns on auth_debug (Dovecot then logs much more,
	// including the introspection exchange): for diagnosing a test only.
	AuthDebug bool
}

// Server is one running Dovecot.
type Server struct {
	Dir        string // per-test directory: config, run/, log/, home/
	ConfigFile string
	LogFile    string
	// IMAPPort is implicit TLS IMAP (like 993), POP3Port implicit TLS POP3
	// (like 995), SubmissionPort SMTP submission with STARTTLS (like 587).
	IMAPPort, POP3Port, SubmissionPort int
	TLS                                *testenv.TLSFiles
	// Sink receives what submission relays, and delivers it to Maildirs.
	Sink *smtpsink.Sink
	// StartTook is how long the last start took, from exec to every port
	// accepting.
	StartTook time.Duration

	t       testing.TB
	mu      sync.Mutex
	running bool
	seq     atomic.Int64
}

// Start starts Dovecot for t and stops it when t ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	testenv.RequireRoot(t, "Dovecot")
	testenv.RequireCommand(t, "dovecot")
	testenv.RequireCommand(t, "doveadm")
	for _, mod := range []string{"imap", "pop3", "submission"} {
		if _, err := os.Stat(filepath.Join("/usr/lib/dovecot", mod)); err != nil {
			t.Skipf("Dovecot's %s service is not installed (%v); run .ci/install-deps.sh, as CI does", mod, err)
		}
	}
	if opts.IntrospectURL == "" {
		t.Fatal("dovecot.Start: Options.IntrospectURL is required (fakeoauth.Provider.IntrospectURL())")
	}
	if opts.MaxSessions == 0 {
		opts.MaxSessions = 1000
	}
	if opts.Hostname == "" {
		opts.Hostname = "mx.example.test"
	}
	if opts.TLS == nil {
		opts.TLS = testenv.NewTLS(t)
	}
	s := &Server{t: t, Dir: testenv.SharedDir(t), TLS: opts.TLS}
	s.ConfigFile = filepath.Join(s.Dir, "dovecot.conf")
	s.LogFile = filepath.Join(s.Dir, "log", "dovecot.log")
	for _, d := range []string{"log", "home"} {
		if err := os.MkdirAll(filepath.Join(s.Dir, d), 0o755); err != nil {
			t.Fatalf("dovecot: %v", err)
		}
	}
	if err := chownNobody(filepath.Join(s.Dir, "home")); err != nil {
		t.Fatalf("dovecot: %v", err)
	}
	s.Sink = smtpsink.Start(t, s.Deliver)

	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("stopping Dovecot: %v", err)
		}
		if t.Failed() {
			t.Logf("Dovecot log (%s), last lines:\n%s", s.LogFile, tail(s.Log(), 40))
		}
	})

	// A port found free can be taken before Dovecot binds it; try again
	// with new ports rather than fail the test.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		ports := testenv.FreePorts(t, 3)
		s.IMAPPort, s.POP3Port, s.SubmissionPort = ports[0], ports[1], ports[2]
		if err = s.writeConfig(opts); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = s.Start(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "Address already in use") {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// IMAPAddr, POP3Addr and SubmissionAddr are 127.0.0.1:PORT.
func (s *Server) IMAPAddr() string       { return testenv.Addr(s.IMAPPort) }
func (s *Server) POP3Addr() string       { return testenv.Addr(s.POP3Port) }
func (s *Server) SubmissionAddr() string { return testenv.Addr(s.SubmissionPort) }

// Start starts Dovecot (again, after Stop) with the same configuration and
// ports, and waits until every listener accepts.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return nil
	}
	begin := time.Now()
	// A master that exited may still be an unreaped zombie (see Stop), and
	// dovecot refuses to start while the pid in master.pid answers kill(0).
	if pid := s.masterPID(); pid > 0 && processGone(pid) {
		_ = os.Remove(filepath.Join(s.Dir, "run", "master.pid"))
	}
	// dovecot forks its master into the background and exits; a bad
	// configuration makes it exit non-zero with the reason on stderr. The
	// master inherits stdout and stderr, so they must be a file: with a
	// pipe, reading the output would wait for the master to exit.
	outFile, err := os.CreateTemp(s.Dir, "start-*.out")
	if err != nil {
		return fmt.Errorf("starting Dovecot: %w", err)
	}
	defer os.Remove(outFile.Name())
	defer outFile.Close()
	cmd := exec.CommandContext(ctx, "dovecot", "-c", s.ConfigFile)
	cmd.Stdout, cmd.Stderr = outFile, outFile
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(outFile.Name())
		return fmt.Errorf("starting Dovecot with %s: %w: %s%s", s.ConfigFile, err, bytes.TrimSpace(out), s.logHint())
	}
	s.running = true
	for _, addr := range []string{s.IMAPAddr(), s.POP3Addr(), s.SubmissionAddr()} {
		if err := testenv.WaitPort(ctx, addr); err != nil {
			return fmt.Errorf("dovecot started but does not listen: %w%s", err, s.logHint())
		}
	}
	// A listening port is not a serving login process: wait for a greeting
	// on each, which also means the login processes finished starting (a
	// stop before that hangs 5 s on their stats handshake).
	for _, g := range []struct {
		addr, want string
		tls        bool
	}{{s.IMAPAddr(), "* OK", true}, {s.POP3Addr(), "+OK", true}, {s.SubmissionAddr(), "220", false}} {
		if err := waitGreeting(ctx, g.addr, g.want, g.tls, s.TLS); err != nil {
			return fmt.Errorf("dovecot listens but does not greet: %w%s", err, s.logHint())
		}
	}
	s.StartTook = time.Since(begin)
	return nil
}

// Stop stops Dovecot and waits until its master process has exited, so a
// test can check what clients see while the upstream is down.
//
// It signals the master itself (SIGTERM, what doveadm stop sends) rather
// than run doveadm stop, which waits until the pid stops answering kill(0):
// the daemonized master's parent here is the machine's PID 1, which reaps
// zombies late, so doveadm stop took 2 to 7 s where the master was gone in
// about one.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return nil
	}
	pid := s.masterPID()
	if pid <= 0 {
		out, err := exec.CommandContext(ctx, "doveadm", "-c", s.ConfigFile, "stop").CombinedOutput()
		if err != nil {
			return fmt.Errorf("doveadm -c %s stop: %w: %s", s.ConfigFile, err, bytes.TrimSpace(out))
		}
		s.running = false
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signalling Dovecot master %d: %w", pid, err)
	}
	for !processGone(pid) {
		select {
		case <-ctx.Done():
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return fmt.Errorf("dovecot master %d did not exit after SIGTERM: %w%s", pid, ctx.Err(), s.logHint())
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.running = false
	return nil
}

func waitGreeting(ctx context.Context, addr, want string, useTLS bool, files *testenv.TLSFiles) error {
	var last error
	for {
		last = greet(ctx, addr, want, useTLS, files)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the greeting on %s: %w (last: %v)", addr, ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func greet(ctx context.Context, addr, want string, useTLS bool, files *testenv.TLSFiles) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	if useTLS {
		cfg := files.ClientConfig()
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("TLS handshake: %w", err)
		}
		c = tc
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading the greeting: %w", err)
	}
	if !strings.HasPrefix(line, want) {
		return fmt.Errorf("greeting %q does not start with %q", strings.TrimSpace(line), want)
	}
	return nil
}

// processGone is true when pid has exited, zombies included.
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] == 'Z' || b[i+2] == 'X'
	}
	return false
}

func (s *Server) masterPID() int {
	b, err := os.ReadFile(filepath.Join(s.Dir, "run", "master.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// Log returns Dovecot's log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogFile)
	return string(b)
}

func (s *Server) logHint() string {
	if l := tail(s.Log(), 15); l != "" {
		return "\nDovecot log " + s.LogFile + ":\n" + l
	}
	return ""
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Maildir is user's Maildir (user is the full login name).
func (s *Server) Maildir(user string) string {
	return filepath.Join(s.Dir, "home", user, "Maildir")
}

// Deliver writes a message into user's INBOX the way an MDA does (tmp/,
// then a rename into new/), owned by the mail user, so IMAP IDLE and POP3
// see it. rcpt may be an SMTP address (the sink passes recipients).
func (s *Server) Deliver(rcpt string, data []byte) error {
	user := strings.Trim(strings.TrimSpace(rcpt), "<>")
	if user == "" || strings.ContainsAny(user, "/\x00") || user == "." || user == ".." {
		return fmt.Errorf("dovecot: cannot deliver to %q: not a mailbox name", rcpt)
	}
	home := filepath.Join(s.Dir, "home", user)
	md := s.Maildir(user)
	for _, d := range []string{home, md, filepath.Join(md, "tmp"), filepath.Join(md, "new"), filepath.Join(md, "cur")} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("dovecot: creating %s: %w", d, err)
		}
		if err := chownNobody(d); err != nil {
			return err
		}
	}
	host, _ := os.Hostname()
	name := fmt.Sprintf("%d.M%dP%dQ%d.%s,S=%d", time.Now().Unix(), time.Now().Nanosecond()/1000, os.Getpid(), s.seq.Add(1), host, len(data))
	tmp := filepath.Join(md, "tmp", name)
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("dovecot: writing %s: %w", tmp, err)
	}
	if err := chownNobody(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(md, "new", name)); err != nil {
		return fmt.Errorf("dovecot: delivering %s: %w", name, err)
	}
	return nil
}

var nobody struct {
	once     sync.Once
	uid, gid int
	err      error
}

// chownNobody gives path to the user Dovecot's userdb maps every account to.
func chownNobody(path string) error {
	nobody.once.Do(func() {
		u, err := user.Lookup("nobody")
		if err != nil {
			nobody.err = fmt.Errorf("dovecot: looking up user nobody: %w", err)
			return
		}
		g, err := user.LookupGroup("nogroup")
		if err != nil {
			nobody.err = fmt.Errorf("dovecot: looking up group nogroup: %w", err)
			return
		}
		nobody.uid, _ = strconv.Atoi(u.Uid)
		nobody.gid, _ = strconv.Atoi(g.Gid)
	})
	if nobody.err != nil {
		return nobody.err
	}
	if err := os.Lchown(path, nobody.uid, nobody.gid); err != nil {
		return fmt.Errorf("dovecot: giving %s to nobody: %w", path, err)
	}
	return nil
}

type configData struct {
	Dir, Hostname, CertFile, KeyFile           string
	IMAPPort, POP3Port, SubmissionPort         int
	SinkPort                                   int
	MaxSessions, ProcessLimit, ClientLimit     int
	IntrospectURL, IntrospectCAFile, AuthDebug string
}

var configTmpl = template.Must(template.New("dovecot.conf").Parse(`# Written by orbit's internal/testenv/dovecot for one test. Self-contained:
# nothing from /etc/dovecot is included.
base_dir = {{.Dir}}/run
state_dir = {{.Dir}}/state
log_path = {{.Dir}}/log/dovecot.log
protocols = imap pop3 submission
listen = 127.0.0.1
hostname = {{.Hostname}}

ssl = required
ssl_cert = <{{.CertFile}}
ssl_key = <{{.KeyFile}}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes

auth_mechanisms = xoauth2 oauthbearer
auth_verbose = yes
auth_failure_delay = 0
auth_debug = {{.AuthDebug}}
first_valid_uid = 1
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
mail_location = maildir:~/Maildir

passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {{.Dir}}/dovecot-oauth2.conf.ext
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home={{.Dir}}/home/%u
}

# Hundreds of concurrent sessions of one account.
default_process_limit = {{.ProcessLimit}}
default_client_limit = {{.ClientLimit}}
protocol imap {
  mail_max_userip_connections = {{.MaxSessions}}
}
protocol pop3 {
  mail_max_userip_connections = {{.MaxSessions}}
}

service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = {{.IMAPPort}}
    ssl = yes
  }
  service_count = 0
  process_min_avail = 1
  process_limit = 4
  client_limit = {{.ClientLimit}}
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    address = 127.0.0.1
    port = {{.POP3Port}}
    ssl = yes
  }
  service_count = 0
  process_min_avail = 1
  process_limit = 4
  client_limit = {{.ClientLimit}}
}
service submission-login {
  inet_listener submission {
    address = 127.0.0.1
    port = {{.SubmissionPort}}
  }
  service_count = 0
  process_min_avail = 1
  process_limit = 4
  client_limit = {{.ClientLimit}}
}

# Dovecot delays every failed login by a penalty that grows per client IP
# (2, 4, 8, 15 s); all test clients share 127.0.0.1, so one wrong-token test
# would slow every later one. Without this socket the penalty is off.
# Login processes connect to the stats service at startup; started on
# demand, it may never come up when a test stops Dovecot right after
# starting it, and shutdown then waits 5 s for their handshake to time out.
service stats {
  process_min_avail = 1
}

service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}

submission_relay_host = 127.0.0.1
submission_relay_port = {{.SinkPort}}
submission_relay_trusted = yes
`))

var oauth2Tmpl = template.Must(template.New("oauth2").Parse(`introspection_mode = post
introspection_url = {{.IntrospectURL}}
username_attribute = username
active_attribute = active
active_value = true
{{if .IntrospectCAFile}}tls_ca_cert_file = {{.IntrospectCAFile}}
{{end}}`))

func (s *Server) writeConfig(opts Options) error {
	d := configData{
		Dir: s.Dir, Hostname: opts.Hostname, CertFile: s.TLS.CertFile, KeyFile: s.TLS.KeyFile,
		IMAPPort: s.IMAPPort, POP3Port: s.POP3Port, SubmissionPort: s.SubmissionPort, SinkPort: s.Sink.Port(),
		MaxSessions: opts.MaxSessions, ProcessLimit: opts.MaxSessions + 100, ClientLimit: 4 * (opts.MaxSessions + 100),
		IntrospectURL: opts.IntrospectURL, IntrospectCAFile: opts.IntrospectCAFile, AuthDebug: "no",
	}
	if opts.AuthDebug {
		d.AuthDebug = "yes"
	}
	for _, f := range []struct {
		path string
		tmpl *template.Template
	}{
		{s.ConfigFile, configTmpl},
		{filepath.Join(s.Dir, "dovecot-oauth2.conf.ext"), oauth2Tmpl},
	} {
		var b bytes.Buffer
		if err := f.tmpl.Execute(&b, d); err != nil {
			return fmt.Errorf("dovecot: rendering %s: %w", f.path, err)
		}
		if err := renameio.WriteFile(f.path, b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("dovecot: writing %s: %w", f.path, err)
		}
	}
	return nil
}
