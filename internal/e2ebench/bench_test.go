package e2ebench

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv"
	"github.com/senhasegura/orbit/internal/testenv/fakeoauth"
)

func xoauth2(user, token string) string {
	return base64.StdEncoding.EncodeToString([]byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01"))
}

const (
	fetchMessages = 200
	messageSize   = 1 << 20
)

// message is a 1 MiB mail: headers and base64 body lines, as an
// attachment-heavy mail looks on the wire.
func message(i int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: bench@example.test\r\nTo: %s\r\nSubject: message %d\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n", account, i)
	raw := make([]byte, 57)
	for b.Len() < messageSize-80 {
		rand.Read(raw)
		b.WriteString(base64.StdEncoding.EncodeToString(raw))
		b.WriteString("\r\n")
	}
	for b.Len() < messageSize-2 {
		b.WriteByte('A')
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// fetchAll FETCHes every message's body and returns the literal bytes read.
func fetchAll(c *imapConn, tag string) (int64, error) {
	if _, err := fmt.Fprintf(c.c, "%s FETCH 1:* BODY.PEEK[]\r\n", tag); err != nil {
		return 0, err
	}
	var total int64
	for {
		l, err := c.line()
		if err != nil {
			return total, err
		}
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				return total, errors.New(l)
			}
			return total, nil
		}
		if i := strings.LastIndexByte(l, '{'); i >= 0 && strings.HasSuffix(l, "}") {
			n, err := strconv.ParseInt(l[i+1:len(l)-1], 10, 64)
			if err != nil {
				return total, fmt.Errorf("literal in %q: %w", l, err)
			}
			m, err := io.CopyN(io.Discard, c.r, n)
			total += m
			if err != nil {
				return total, err
			}
		}
	}
}

// BenchmarkFetch200x1MiB: FETCH of 200 x 1 MiB messages from Dovecot over
// TLS, through the proxy (plain client side, as a local mailer connects)
// and straight from Dovecot, alternated in one run on one machine. It
// reports both throughputs, their ratio, and serve's CPU time (user +
// system, from /proc) per GB piped. The client is this process, the same
// Go code on both paths (with crypto/tls on the direct one): its own CPU
// time per GB on each path is reported too, since on a 2-core machine the
// client, Dovecot and serve share the CPUs and a costly client slows both
// paths.
func BenchmarkFetch200x1MiB(b *testing.B) {
	w := newWorld(b, nil, 0)
	for i := range fetchMessages {
		if err := w.dc.Deliver(account, message(i)); err != nil {
			b.Fatal(err)
		}
	}
	w.serve()
	token, _ := w.prov.IssueToken(clientID, account, scope)
	px, err := w.proxyLogin()
	if err != nil {
		b.Fatalf("%v\n%s", err, w.log.String())
	}
	defer px.c.Close()
	dx, err := w.directLogin(token)
	if err != nil {
		b.Fatal(err)
	}
	defer dx.c.Close()
	for _, c := range []*imapConn{px, dx} {
		if _, err := c.cmd("S1", "SELECT INBOX"); err != nil {
			b.Fatal(err)
		}
	}
	// Warm Dovecot's index and the page cache once on each path.
	for _, c := range []*imapConn{dx, px} {
		if _, err := fetchAll(c, "W"); err != nil {
			b.Fatal(err)
		}
	}
	var proxyTime, directTime, proxyCPU, proxyClientCPU, directClientCPU time.Duration
	var proxyBytes, directBytes int64
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		c0 := selfCPU()
		t0 := time.Now()
		n, err := fetchAll(dx, "D"+strconv.Itoa(i))
		if err != nil {
			b.Fatal(err)
		}
		directTime += time.Since(t0)
		directClientCPU += selfCPU() - c0
		directBytes += n

		before := w.stats()
		c0 = selfCPU()
		t0 = time.Now()
		n, err = fetchAll(px, "P"+strconv.Itoa(i))
		if err != nil {
			b.Fatal(err)
		}
		proxyTime += time.Since(t0)
		proxyClientCPU += selfCPU() - c0
		proxyCPU += w.stats().cpu - before.cpu
		proxyBytes += n
	}
	if want := int64(fetchMessages*messageSize) * int64(b.N); proxyBytes != want || directBytes != want {
		b.Fatalf("fetched %d bytes through the proxy and %d directly, want %d each", proxyBytes, directBytes, want)
	}
	proxyMBs := float64(proxyBytes) / 1e6 / proxyTime.Seconds()
	directMBs := float64(directBytes) / 1e6 / directTime.Seconds()
	b.ReportMetric(proxyMBs, "proxy-MB/s")
	b.ReportMetric(directMBs, "direct-MB/s")
	b.ReportMetric(proxyMBs/directMBs, "ratio")
	b.ReportMetric(proxyCPU.Seconds()/(float64(proxyBytes)/1e9), "proxy-CPU-s/GB")
	b.ReportMetric(proxyClientCPU.Seconds()/(float64(proxyBytes)/1e9), "proxy-client-CPU-s/GB")
	b.ReportMetric(directClientCPU.Seconds()/(float64(directBytes)/1e9), "direct-client-CPU-s/GB")
}

// selfCPU is this process's CPU time (user + system), the client's side.
func selfCPU() time.Duration {
	var r syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r)
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}

// BenchmarkLoginStoredToken: connect and log in, with the token already
// stored, through the proxy (plain LOGIN; the proxy dials Dovecot over TLS
// and sends XOAUTH2) against the same login straight to Dovecot (TLS and
// XOAUTH2 by the client). Logins alternate; it reports both medians and
// their difference.
func BenchmarkLoginStoredToken(b *testing.B) {
	w := newWorld(b, nil, 0)
	w.serve()
	token, _ := w.prov.IssueToken(clientID, account, scope)
	c, err := w.proxyLogin() // the first login fetches and stores the token
	if err != nil {
		b.Fatalf("%v\n%s", err, w.log.String())
	}
	c.c.Close()
	const perOp = 50
	var proxy, direct []time.Duration
	b.ResetTimer()
	for b.Loop() {
		for range perOp {
			t0 := time.Now()
			c, err := w.directLogin(token)
			if err != nil {
				b.Fatal(err)
			}
			direct = append(direct, time.Since(t0))
			c.cmd("Z", "LOGOUT")
			c.c.Close()

			t0 = time.Now()
			c, err = w.proxyLogin()
			if err != nil {
				b.Fatal(err)
			}
			proxy = append(proxy, time.Since(t0))
			c.cmd("Z", "LOGOUT")
			c.c.Close()
		}
	}
	pp, dp := median(proxy), median(direct)
	b.ReportMetric(ms(pp), "proxy-p50-ms")
	b.ReportMetric(ms(dp), "direct-p50-ms")
	b.ReportMetric(ms(pp-dp), "delta-p50-ms")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkFirstLogins200: 200 clients log in to one account at the same
// moment on a proxy with no stored token; it reports how many token
// requests reached the provider (1 is the target: the others wait for it).
func BenchmarkFirstLogins200(b *testing.B) {
	w := newWorld(b, nil, 0)
	var requests, logins int
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		if w.proc != nil {
			w.stopServe()
		}
		os.Remove(w.tokens)
		before := w.prov.Count(fakeoauth.EndpointToken)
		w.serve()
		b.StartTimer()
		start := make(chan struct{})
		errs := make(chan error, 200)
		for range 200 {
			go func() {
				<-start
				c, err := w.proxyLogin()
				if err == nil {
					c.c.Close()
				}
				errs <- err
			}()
		}
		close(start)
		for range 200 {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
			logins++
		}
		requests += w.prov.Count(fakeoauth.EndpointToken) - before
	}
	b.ReportMetric(float64(requests)/float64(b.N), "token-requests")
	b.ReportMetric(float64(logins)/float64(b.N), "logins")
}

// BenchmarkIdleSessions holds n authenticated idle IMAP sessions through
// one serve and reports serve's resident memory, descriptors and threads
// per session (from /proc). The upstream for this one measurement is a
// lightweight TLS IMAP server in the benchmark process (it accepts any
// XOAUTH2 token), because 10,000 Dovecot sessions would need 10,000 imap
// processes on this machine; the proxy's side of each session (client
// socket, upstream TLS connection, pipe) is the same as with Dovecot.
func BenchmarkIdleSessions(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run("n="+strconv.Itoa(n), func(b *testing.B) {
			if max := maxSessions(); n > max {
				b.Logf("the descriptor limit allows %d sessions through one process here, not %d: measuring %d", max, n, max)
				n = max
			}
			files := testenv.NewTLS(b)
			w := newWorld(b, files, startIdleUpstream(b, files))
			w.serve()
			for b.Loop() {
				idleSessions(b, w, n)
			}
		})
	}
}

func idleSessions(b *testing.B, w *world, n int) {
	// A few sessions first, so the token is stored and the TLS and
	// runtime state every session shares exists before the baseline.
	warm, err := openSessions(w, 50)
	if err != nil {
		b.Fatalf("%v\n%s", err, w.log.String())
	}
	closeAll(warm)
	time.Sleep(500 * time.Millisecond)
	base := w.stats()
	conns, err := openSessions(w, n)
	defer closeAll(conns)
	if err != nil {
		b.Fatalf("%d of %d sessions open: %v", len(conns), n, err)
	}
	// Let the runtime settle (stacks shrink and memory returns at GC).
	time.Sleep(2 * time.Second)
	held := w.stats()
	// Every session still works after the wait.
	for i, c := range conns {
		if i%(n/10) != 0 {
			continue
		}
		c.c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.cmd("N", "NOOP"); err != nil {
			b.Fatalf("session %d after idling: %v", i, err)
		}
	}
	b.ReportMetric(float64(held.rssKiB-base.rssKiB)/float64(n), "RSS-KiB/session")
	b.ReportMetric(float64(held.fds-base.fds)/float64(n), "fds/session")
	b.ReportMetric(float64(held.threads), "threads")
	b.ReportMetric(float64(held.rssKiB)/1024, "RSS-MiB")
	b.ReportMetric(float64(len(conns)), "sessions")
}

// openSessions logs in n sessions, 64 at a time.
func openSessions(w *world, n int) ([]*imapConn, error) {
	conns := make([]*imapConn, n)
	var mu sync.Mutex
	var first error
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := w.proxyLogin()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = fmt.Errorf("session %d: %w", i, err)
				}
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	out := conns[:0]
	for _, c := range conns {
		if c != nil {
			out = append(out, c)
		}
	}
	return out, first
}

func closeAll(conns []*imapConn) {
	for _, c := range conns {
		c.c.Close()
	}
}

// The lightweight upstream of BenchmarkIdleSessions runs as a child
// process (this test binary again, see TestMain), so its descriptors count
// neither against serve's nor the clients' limit: here the hard limit is
// 20,000 per process and cannot be raised without CAP_SYS_RESOURCE.
const idleUpstreamEnv = "ORBIT_E2EBENCH_IDLE_UPSTREAM"

// startIdleUpstream starts the child and returns its port; the child ends
// when its stdin closes, that is when this process ends.
func startIdleUpstream(b *testing.B, files *testenv.TLSFiles) int {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), idleUpstreamEnv+"="+files.CertFile+string(os.PathListSeparator)+files.KeyFile)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatalf("idle upstream: %v", err)
	}
	port, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		b.Fatalf("idle upstream said %q", line)
	}
	return port
}

// runIdleUpstream is the child: implicit TLS, a greeting offering XOAUTH2,
// OK to everything, BYE on LOGOUT.
func runIdleUpstream(spec string) {
	certFile, keyFile, _ := strings.Cut(spec, string(os.PathListSeparator))
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go serveIdle(tls.Server(c, cfg))
	}
}

func serveIdle(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 1024)
	io.WriteString(c, "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] idle upstream ready\r\n")
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return
		}
		tag, rest, _ := strings.Cut(strings.TrimSpace(l), " ")
		if strings.HasPrefix(strings.ToUpper(rest), "LOGOUT") {
			io.WriteString(c, "* BYE bye\r\n"+tag+" OK LOGOUT completed\r\n")
			return
		}
		io.WriteString(c, tag+" OK done\r\n")
	}
}
