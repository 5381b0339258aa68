package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
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

	"github.com/senhasegura/orbit/internal/testenv"
	"github.com/senhasegura/orbit/internal/testenv/dovecot"
	"github.com/senhasegura/orbit/internal/testenv/fakeoauth"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	clientID     = "6731de76-14a6-49ae-97bc-6eba6914391e"
	clientSecret = "e2e-client-secret-Qx8R2vF"
	alice        = "alice@example.test"
	bob          = "bob@example.test"
	// The password the mailer uses with the proxy; it only encrypts the
	// stored tokens and never reaches the provider (except password flow).
	mailerPassword = "mailer-pass-Z7wY"
)

// env is one complete world: provider, Dovecot, and the orbit binary with
// its files, on free loopback ports.
type env struct {
	t     *testing.T
	orbit string
	dir   string // config, token cache, status file
	tls   *testenv.TLSFiles
	prov  *fakeoauth.Provider
	dc    *dovecot.Server

	config, tokens, status      string
	imapPort, popPort, smtpPort int
	redirectPort                int

	proc *proxyProcess
}

func newEnv(t *testing.T) *env {
	t.Helper()
	testenv.RequireRoot(t, "the end-to-end scenarios (Dovecot)")
	e := &env{t: t, orbit: testenv.BuildOrbit(t), dir: testenv.SharedDir(t)}
	e.tls = testenv.NewTLS(t)
	srvTLS, err := e.tls.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	e.prov = fakeoauth.Start(t, fakeoauth.WithTLS(srvTLS))
	e.prov.AddUser(alice, "alice-provider-pw")
	e.prov.AddUser(bob, "bob-provider-pw")
	e.dc = dovecot.Start(t, dovecot.Options{IntrospectURL: e.prov.IntrospectURL(), IntrospectCAFile: e.tls.CAFile, TLS: e.tls})
	ports := testenv.FreePorts(t, 4)
	e.imapPort, e.popPort, e.smtpPort, e.redirectPort = ports[0], ports[1], ports[2], ports[3]
	e.config = filepath.Join(e.dir, "emailproxy.config")
	e.tokens = filepath.Join(e.dir, "tokens.cache")
	e.status = filepath.Join(e.dir, "status.json")
	return e
}

// addClient registers the proxy's app at the provider; serviceUser is the
// mailbox app-only (client_credentials) tokens act as.
func (e *env) addClient(serviceUser string) {
	e.prov.AddClient(fakeoauth.Client{ID: clientID, Secret: clientSecret, ServiceUser: serviceUser})
}

// register runs `orbit email-oauth2-proxy register` against this world:
// upstreams are Dovecot's three TLS ports, the token endpoint is the fake
// provider's. extra flags come last so they win.
func (e *env) register(extra ...string) string {
	e.t.Helper()
	secretFile := filepath.Join(e.dir, "client-secret")
	if err := os.WriteFile(secretFile, []byte(clientSecret+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
	args := []string{"email-oauth2-proxy", "register", "--no-service", "--force",
		"--config", e.config,
		"--imap-server-address", "127.0.0.1", "--imap-server-port", strconv.Itoa(e.dc.IMAPPort), "--imap-local-port", strconv.Itoa(e.imapPort),
		"--pop-server-address", "127.0.0.1", "--pop-server-port", strconv.Itoa(e.dc.POP3Port), "--pop-local-port", strconv.Itoa(e.popPort),
		"--smtp-server-address", "127.0.0.1", "--smtp-server-port", strconv.Itoa(e.dc.SubmissionPort), "--smtp-server-starttls", "--smtp-local-port", strconv.Itoa(e.smtpPort),
		"--oauth2-token-url", e.prov.TokenURL(),
		"--oauth2-scope", "https://mail.example.test/.default",
		"--oauth2-client-id", clientID,
		"--oauth2-client-secret-file", secretFile,
		"--redirect-uri", fmt.Sprintf("http://127.0.0.1:%d/email-oauth2-proxy-authorize/", e.redirectPort),
		"--redirect-listen-address", fmt.Sprintf("http://127.0.0.1:%d/", e.redirectPort),
	}
	out, err := e.run(append(args, extra...)...)
	if err != nil {
		e.t.Fatalf("register: %v\n%s", err, out)
	}
	return out
}

// run executes the orbit binary with the test CA trusted.
func (e *env) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.orbit, args...)
	cmd.Env = append(os.Environ(), e.tls.Env(), "ORBIT_SETTINGS="+os.DevNull, "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// proxyProcess is `orbit email-oauth2-proxy serve` running on its own.
type proxyProcess struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer
	done chan struct{}
	err  error
}

func (p *proxyProcess) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.Write(b)
}

// Log is everything serve wrote so far.
func (p *proxyProcess) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// serve starts the proxy and waits until every listener accepts.
func (e *env) serve(extra ...string) *proxyProcess {
	e.t.Helper()
	return e.serveOn([]int{e.imapPort, e.popPort, e.smtpPort}, extra...)
}

// serveOn starts the proxy and waits until the listeners on ports accept.
func (e *env) serveOn(ports []int, extra ...string) *proxyProcess {
	e.t.Helper()
	args := append([]string{"email-oauth2-proxy", "serve", "--config", e.config,
		"--token-cache", e.tokens, "--status-file", e.status, "--log-format", "text", "--drain-timeout", "2s"}, extra...)
	p := &proxyProcess{done: make(chan struct{})}
	p.cmd = exec.Command(e.orbit, args...)
	p.cmd.Env = append(os.Environ(), e.tls.Env(), "ORBIT_SETTINGS="+os.DevNull)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	e.proc = p
	e.t.Cleanup(func() {
		e.stop(p)
		if e.t.Failed() {
			e.t.Logf("serve's log:\n%s", p.Log())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, port := range ports {
		if err := testenv.WaitPort(ctx, testenv.Addr(port)); err != nil {
			select {
			case <-p.done:
				e.t.Fatalf("serve exited (%v) before listening:\n%s", p.err, p.Log())
			default:
			}
			e.t.Fatalf("serve does not listen on %d: %v\n%s", port, err, p.Log())
		}
	}
	return p
}

// stop sends SIGTERM and waits for the drain.
func (e *env) stop(p *proxyProcess) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitLog waits until serve's log contains s and returns the log.
func (e *env) waitLog(s string, timeout time.Duration) string {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		l := e.proc.Log()
		if strings.Contains(l, s) {
			return l
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("serve's log never showed %q within %v:\n%s", s, timeout, l)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// python runs a Python snippet with the environment given (credentials
// travel in the environment, never in argv) and returns its output.
func (e *env) python(script string, envv ...string) (string, error) {
	python := testenv.RequireCommand(e.t, "python3")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", script)
	cmd.Env = append(os.Environ(), envv...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// curl runs curl with credentials in a 0600 config file (-K), not argv.
func (e *env) curl(user, password string, args ...string) (string, error) {
	curl := testenv.RequireCommand(e.t, "curl")
	cfg := filepath.Join(e.dir, fmt.Sprintf("curl-%d.conf", time.Now().UnixNano()))
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("user = %q\n", user+":"+password)), 0o600); err != nil {
		e.t.Fatal(err)
	}
	defer os.Remove(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, append([]string{"-sS", "--max-time", "50", "-K", cfg}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// upstreamTLS trusts the test CA, for Go-side checks against Dovecot.
func (e *env) upstreamTLS() *tls.Config { return e.tls.ClientConfig() }
