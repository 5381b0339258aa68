package proxy

import (
	"bufio"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

// TestMaxSessions: over a listener's max_sessions a client gets the
// protocol's "try later" at once (never silence, never an upstream
// connection), and a freed slot is used again.
func TestMaxSessions(t *testing.T) {
	tests := []struct {
		proto    config.Protocol
		serve    func(*fakeUpstream, net.Conn)
		greeting string
		refusal  string
		tls      bool
	}{
		{config.IMAP, serveIMAP, "* OK", "* BYE [UNAVAILABLE] Email OAuth 2.0 Proxy: this listener already serves its maximum of 2 sessions (max_sessions)", false},
		{config.POP, servePOP, "+OK", "-ERR [SYS/TEMP] Email OAuth 2.0 Proxy: this listener already serves its maximum of 2 sessions", false},
		{config.SMTP, serveSMTP, "220 ", "421 4.3.2 Email OAuth 2.0 Proxy: this listener already serves its maximum of 2 sessions", false},
		{config.IMAP, serveIMAP, "* OK", "* BYE [UNAVAILABLE] Email OAuth 2.0 Proxy: this listener already serves", true},
	}
	for _, tt := range tests {
		name := string(tt.proto)
		if tt.tls {
			name += " implicit TLS"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			up := startFake(t, e.ca, true, tt.serve)
			sec := section("X-1", tt.proto, up)
			sec.MaxSessions = 2
			if tt.tls {
				sec.LocalCertificatePath, sec.LocalKeyPath = e.ca.certPath, e.ca.keyPath
			}
			e.apply(sec)
			dial := func() *client {
				c := dialClient(t, e.addr("X-1"))
				if tt.tls {
					c = tlsClient(t, c, e.ca)
				}
				return c
			}
			first := dial()
			first.expect(tt.greeting)
			second := dial()
			second.expect(tt.greeting)
			conns := up.conns.Load()
			third := dial()
			if got := third.line(); !strings.HasPrefix(got, tt.refusal) {
				t.Fatalf("over the cap: got %q, want %q", got, tt.refusal)
			}
			if up.conns.Load() != conns {
				t.Error("a refused client cost an upstream connection")
			}
			first.c.Close()
			for i := 0; e.srv.ActiveSessions() > 1; i++ {
				if i > 500 {
					t.Fatal("the closed session did not end")
				}
				time.Sleep(10 * time.Millisecond)
			}
			dial().expect(tt.greeting)
		})
	}
}

// TestPreLoginDeadline: a client that keeps the session alive with NOOP but
// never logs in is sent away at the pre-login deadline, however long the
// authorisation wait is; a login that is waiting for its token may go on
// past that deadline, up to the authorisation wait.
func TestPreLoginDeadline(t *testing.T) {
	wa := &waitingAuth{started: make(chan struct{}, 4), ended: make(chan error, 4)}
	e := newEnv(t, func(o *Options) {
		o.Authenticator = wa
		o.LoginTimeout = time.Second
		o.AuthorizationTimeout = time.Minute
	})
	up := startFake(t, e.ca, true, serveIMAP)
	e.apply(section("IMAP-1", config.IMAP, up))

	idler := dialClient(t, e.addr("IMAP-1"))
	idler.expect("* OK")
	start := time.Now()
	var bye string
	for i := 0; bye == "" && time.Since(start) < 30*time.Second; i++ {
		idler.send(fmt.Sprintf("n%d NOOP", i))
		for {
			l := idler.line()
			if strings.HasPrefix(l, "* BYE") {
				bye = l
				break
			}
			if strings.HasPrefix(l, fmt.Sprintf("n%d ", i)) {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(bye, "timed out waiting for the client to log in") {
		t.Fatalf("a NOOP-ing client was not sent away at the pre-login deadline: %q", bye)
	}
	if waited := time.Since(start); waited > 20*time.Second {
		t.Errorf("the pre-login deadline took %v; it follows the authorisation wait (1 min) instead of LoginTimeout (1 s)", waited)
	}

	waiter := dialClient(t, e.addr("IMAP-1"))
	waiter.expect("* OK")
	waiter.send("a1 LOGIN alice@example.com alice-PASSWORD-1")
	<-wa.started
	select {
	case err := <-wa.ended:
		t.Fatalf("the token wait ended (%v) at the pre-login deadline; it may last the authorisation wait", err)
	case <-time.After(3 * time.Second):
	}
	waiter.c.Close()
	<-wa.ended
}

// TestDescriptorExhaustion: 3,000 clients against a proxy with a low
// max_sessions and a descriptor limit (RLIMIT_NOFILE 256, in a child
// process) each get an answer: a greeting, or the protocol's "try later",
// never silence.
func TestDescriptorExhaustion(t *testing.T) {
	if os.Getenv("ORBIT_FD_CHILD") != "" {
		fdChild(t)
		return
	}
	if testing.Short() {
		t.Skip("3,000 connections; skipped with -short")
	}
	ca := newTestCA(t)
	up := startFake(t, ca, true, serveIMAP)
	host, port := up.addr()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDescriptorExhaustion$", "-test.v")
	cmd.Env = append(os.Environ(), "ORBIT_FD_CHILD=1", "ORBIT_FD_CA="+ca.caPath,
		"ORBIT_FD_UPSTREAM="+net.JoinHostPort(host, strconv.Itoa(port)))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	var addr string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "LISTENING "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		t.Fatal("the child proxy did not start")
	}
	go io.Copy(io.Discard, stdout)

	const n = 3000
	var (
		wg                       sync.WaitGroup
		mu                       sync.Mutex
		greeted, refused, silent int
		shed                     int // refused while out of descriptors
		sample                   []string
	)
	conns := make(chan net.Conn, n) // held open to the end, as idle mailers would
	sem := make(chan struct{}, 500) // dialling pace, not a cap on open connections
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			c, err := net.DialTimeout("tcp", addr, 30*time.Second)
			<-sem
			if err != nil {
				mu.Lock()
				silent++
				sample = append(sample, "dial: "+err.Error())
				mu.Unlock()
				return
			}
			conns <- c
			c.SetReadDeadline(time.Now().Add(60 * time.Second))
			l, err := bufio.NewReader(c).ReadString('\n')
			mu.Lock()
			defer mu.Unlock()
			switch {
			case strings.HasPrefix(l, "* OK"):
				greeted++
			case strings.HasPrefix(l, "* BYE [UNAVAILABLE] Email OAuth 2.0 Proxy: "):
				refused++
				if strings.Contains(l, "out of file descriptors") {
					shed++
				}
			default:
				silent++
				if len(sample) < 5 {
					sample = append(sample, fmt.Sprintf("%q %v", l, err))
				}
			}
		}()
	}
	wg.Wait()
	close(conns)
	for c := range conns {
		c.Close()
	}
	t.Logf("%d clients: %d greeted, %d refused (%d of them out of descriptors), %d without an answer", n, greeted, refused, shed, silent)
	if silent > 0 || greeted+refused != n {
		t.Fatalf("%d of %d clients got no answer, e.g. %q", silent, n, sample)
	}
	if greeted == 0 {
		t.Error("no client was served")
	}
}

// fdChild is the proxy under test, with few descriptors.
func fdChild(t *testing.T) {
	lim := syscall.Rlimit{Cur: 256, Max: 256}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(os.Getenv("ORBIT_FD_CA"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	host, p, _ := net.SplitHostPort(os.Getenv("ORBIT_FD_UPSTREAM"))
	port, _ := strconv.Atoi(p)
	auth := newFakeAuth()
	srv := New(Options{Authenticator: auth, RootCAs: pool, IdleTimeout: time.Minute})
	err = srv.Apply(t.Context(), []config.Server{{Section: "IMAP-1", Protocol: config.IMAP,
		LocalAddress: "127.0.0.1", ServerAddress: host, ServerPort: port, MaxSessions: 100}})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("LISTENING " + srv.Listeners()[0].Address)
	io.Copy(io.Discard, os.Stdin) // until the parent is done
}

// heldUpConn is an accepted connection whose goroutine is held up right
// after it sets a deadline, as a loaded machine (a GC pause, a busy CPU)
// may hold up the accept loop between any two statements.
type heldUpConn struct {
	*net.TCPConn
	hold time.Duration
}

func (c heldUpConn) SetDeadline(t time.Time) error {
	err := c.TCPConn.SetDeadline(t)
	time.Sleep(c.hold)
	return err
}

func (c heldUpConn) SetWriteDeadline(t time.Time) error {
	err := c.TCPConn.SetWriteDeadline(t)
	time.Sleep(c.hold)
	return err
}

// TestShedRefusalHeldUp: the refusal sent while out of descriptors (in
// the accept loop, with a short time budget) reaches the client even when
// the loop is held up longer than that budget at the wrong moment. It used
// to set a 100 ms deadline and then write: held up past it, the write was
// never tried and the client read only the close (the rare client of
// TestDescriptorExhaustion that got EOF under load).
func TestShedRefusalHeldUp(t *testing.T) {
	for _, proto := range []config.Protocol{config.IMAP, config.POP, config.SMTP} {
		t.Run(string(proto), func(t *testing.T) {
			srv := New(Options{})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			cc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			sc, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			lc := &listenerConfig{srv: config.Server{Section: "X-1", Protocol: proto}}
			srv.refuse(heldUpConn{sc.(*net.TCPConn), 300 * time.Millisecond}, lc, "the proxy is out of file descriptors; try again later", true)
			cc.SetReadDeadline(time.Now().Add(10 * time.Second))
			l, err := bufio.NewReader(cc).ReadString('\n')
			if !strings.Contains(l, ReplyPrefix+"the proxy is out of file descriptors; try again later") {
				t.Fatalf("the client read %q (%v), want the refusal", l, err)
			}
		})
	}
}
