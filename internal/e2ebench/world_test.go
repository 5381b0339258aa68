package e2ebench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv"
	"github.com/senhasegura/orbit/internal/testenv/dovecot"
	"github.com/senhasegura/orbit/internal/testenv/fakeoauth"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(idleUpstreamEnv); spec != "" {
		runIdleUpstream(spec)
		return
	}
	testenv.Main(m)
}

const (
	clientID     = "8c1f0a52-5b7e-4f3a-9d64-2e0b7c9a1d33"
	clientSecret = "bench-client-secret-Vn3q"
	account      = "alice@example.test"
	password     = "mailer-pass-Bq7x" // the mailer's password towards the proxy
	scope        = "https://mail.example.test/.default"
)

// world is the provider, optionally Dovecot, and `orbit email-oauth2-proxy
// serve` as its own process, so its CPU time and memory are its own.
type world struct {
	tb    testing.TB
	orbit string
	dir   string
	tls   *testenv.TLSFiles
	prov  *fakeoauth.Provider
	dc    *dovecot.Server

	config, tokens, status string
	imapPort               int // the proxy's IMAP listener
	upHost                 string
	upPort                 int // the IMAP upstream (Dovecot or the idle fake)

	proc *exec.Cmd
	done chan struct{}
	log  lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newWorld starts the provider and, unless upstreamPort is given (a
// lightweight upstream the caller runs with files' certificate), Dovecot;
// it registers the proxy for account with the client-credentials flow.
// files nil makes a fresh test PKI.
func newWorld(tb testing.TB, files *testenv.TLSFiles, upstreamPort int) *world {
	tb.Helper()
	testenv.RequireRoot(tb, "the end-to-end benchmarks (Dovecot, 10,000 descriptors)")
	raiseNOFILE(tb)
	w := &world{tb: tb, orbit: testenv.BuildOrbit(tb), dir: testenv.SharedDir(tb), upHost: "127.0.0.1"}
	w.tls = files
	if w.tls == nil {
		w.tls = testenv.NewTLS(tb)
	}
	srvTLS, err := w.tls.ServerConfig()
	if err != nil {
		tb.Fatal(err)
	}
	w.prov = fakeoauth.Start(tb, fakeoauth.WithTLS(srvTLS))
	w.prov.AddClient(fakeoauth.Client{ID: clientID, Secret: clientSecret, ServiceUser: account})
	if upstreamPort == 0 {
		w.dc = dovecot.Start(tb, dovecot.Options{IntrospectURL: w.prov.IntrospectURL(), IntrospectCAFile: w.tls.CAFile, TLS: w.tls})
		w.upPort = w.dc.IMAPPort
	} else {
		w.upPort = upstreamPort
	}
	w.imapPort = testenv.FreePort(tb)
	w.config = filepath.Join(w.dir, "emailproxy.config")
	w.tokens = filepath.Join(w.dir, "tokens.cache")
	w.status = filepath.Join(w.dir, "status.json")
	w.register()
	return w
}

// raiseNOFILE lifts this process's descriptor limit (serve and the idle
// upstream inherit it): 10,000 sessions are 20,000 descriptors in serve.
// Without CAP_SYS_RESOURCE (containers) only the soft limit rises, to the
// hard one; maxSessions then says how many sessions fit.
func raiseNOFILE(tb testing.TB) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		tb.Fatal(err)
	}
	const want = 1 << 16
	if l.Max < want {
		up := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up) == nil {
			return
		}
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		tb.Fatalf("raising RLIMIT_NOFILE to %d: %v", l.Max, err)
	}
}

// maxSessions is how many sessions serve can hold under the descriptor
// limit: two descriptors each, and room for its listeners and files.
func maxSessions() int {
	var l syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	return int(l.Cur-100) / 2
}

func (w *world) register() {
	secretFile := filepath.Join(w.dir, "client-secret")
	if err := os.WriteFile(secretFile, []byte(clientSecret+"\n"), 0o600); err != nil {
		w.tb.Fatal(err)
	}
	ports := testenv.FreePorts(w.tb, 3)
	args := []string{"email-oauth2-proxy", "register", "--no-service", "--force",
		"--config", w.config, "--account", account, "--oauth2-flow", "client_credentials",
		"--imap-server-address", w.upHost, "--imap-server-port", strconv.Itoa(w.upPort), "--imap-local-port", strconv.Itoa(w.imapPort),
		"--pop-server-address", "127.0.0.1", "--pop-server-port", strconv.Itoa(w.upPort), "--pop-local-port", strconv.Itoa(ports[0]),
		"--smtp-server-address", "127.0.0.1", "--smtp-server-port", strconv.Itoa(w.upPort), "--smtp-server-starttls", "--smtp-local-port", strconv.Itoa(ports[1]),
		"--oauth2-token-url", w.prov.TokenURL(),
		"--oauth2-scope", scope,
		"--oauth2-client-id", clientID,
		"--oauth2-client-secret-file", secretFile,
		"--redirect-uri", fmt.Sprintf("http://127.0.0.1:%d/email-oauth2-proxy-authorize/", ports[2]),
		"--redirect-listen-address", fmt.Sprintf("http://127.0.0.1:%d/", ports[2]),
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.orbit, args...)
	cmd.Env = append(os.Environ(), w.tls.Env(), "ORBIT_SETTINGS="+os.DevNull, "NO_COLOR=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		w.tb.Fatalf("register: %v\n%s", err, out)
	}
}

// serve starts the proxy and waits until it accepts.
func (w *world) serve() {
	w.tb.Helper()
	w.proc = exec.Command(w.orbit, "email-oauth2-proxy", "serve", "--config", w.config,
		"--token-cache", w.tokens, "--status-file", w.status, "--log-format", "text", "--drain-timeout", "2s")
	w.proc.Env = append(os.Environ(), w.tls.Env(), "ORBIT_SETTINGS="+os.DevNull)
	w.proc.Stdout, w.proc.Stderr = &w.log, &w.log
	if err := w.proc.Start(); err != nil {
		w.tb.Fatal(err)
	}
	done := make(chan struct{})
	w.done = done
	go func() { w.proc.Wait(); close(done) }()
	p := w.proc
	w.tb.Cleanup(func() { stopProc(p, done) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := testenv.WaitPort(ctx, testenv.Addr(w.imapPort)); err != nil {
		w.tb.Fatalf("serve does not listen: %v\n%s", err, w.log.String())
	}
}

func (w *world) stopServe() {
	stopProc(w.proc, w.done)
}

func stopProc(p *exec.Cmd, done chan struct{}) {
	select {
	case <-done:
		return
	default:
	}
	p.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		p.Process.Kill()
		<-done
	}
}

// procStats reads what the kernel accounts to serve.
type procStats struct {
	cpu     time.Duration // user + system
	rssKiB  int64
	threads int64
	fds     int
}

func (w *world) stats() procStats {
	w.tb.Helper()
	pid := strconv.Itoa(w.proc.Process.Pid)
	var s procStats
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		w.tb.Fatal(err)
	}
	// Fields after the parenthesised command: state is field 3, utime 14,
	// stime 15 (clock ticks of 1/100 s on Linux).
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.cpu = time.Duration(ut+st) * 10 * time.Millisecond
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		w.tb.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(l, ":")
		v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
		switch k {
		case "VmRSS":
			s.rssKiB, _ = strconv.ParseInt(v, 10, 64)
		case "Threads":
			s.threads, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	fds, _ := os.ReadDir("/proc/" + pid + "/fd")
	s.fds = len(fds)
	return s
}

// imapConn is a client's IMAP connection.
type imapConn struct {
	c net.Conn
	r *bufio.Reader
}

func (c *imapConn) line() (string, error) {
	s, err := c.r.ReadString('\n')
	return strings.TrimRight(s, "\r\n"), err
}

// cmd sends a command and reads up to its tagged completion.
func (c *imapConn) cmd(tag, cmd string) (string, error) {
	if _, err := fmt.Fprintf(c.c, "%s %s\r\n", tag, cmd); err != nil {
		return "", err
	}
	for {
		l, err := c.line()
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				return l, fmt.Errorf("%s: %q", cmd[:min(len(cmd), 12)], l)
			}
			return l, nil
		}
	}
}

// proxyLogin connects to the proxy and logs in with LOGIN.
func (w *world) proxyLogin() (*imapConn, error) {
	c, err := net.DialTimeout("tcp", testenv.Addr(w.imapPort), 30*time.Second)
	if err != nil {
		return nil, err
	}
	ic := &imapConn{c: c, r: bufio.NewReaderSize(c, 64<<10)}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if g, err := ic.line(); err != nil || !strings.HasPrefix(g, "* OK") {
		c.Close()
		return nil, fmt.Errorf("proxy greeting %q: %v", g, err)
	}
	if _, err := ic.cmd("L1", fmt.Sprintf("LOGIN %s %s", account, password)); err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return ic, nil
}

// directLogin connects to the upstream over TLS and logs in with XOAUTH2
// and token, as a mail client talking to the server itself would.
func (w *world) directLogin(token string) (*imapConn, error) {
	d := &net.Dialer{Timeout: 30 * time.Second}
	cfg := w.tls.ClientConfig()
	cfg.ServerName = w.upHost
	c, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(w.upHost, strconv.Itoa(w.upPort)), cfg)
	if err != nil {
		return nil, err
	}
	ic := &imapConn{c: c, r: bufio.NewReaderSize(c, 64<<10)}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if g, err := ic.line(); err != nil || !strings.HasPrefix(g, "* OK") {
		c.Close()
		return nil, fmt.Errorf("upstream greeting %q: %v", g, err)
	}
	if _, err := ic.cmd("L1", "AUTHENTICATE XOAUTH2 "+xoauth2(account, token)); err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return ic, nil
}
