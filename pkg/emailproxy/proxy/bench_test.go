package proxy

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

const benchMessage = 1 << 20

func benchEnv(b *testing.B) (*env, *fakeUpstream, string) {
	// The test environment's 5 s dial and idle limits fail 1,000
	// simultaneous TLS logins on a busy 2-core machine; a benchmark
	// measures them instead.
	e := newEnv(b, func(o *Options) {
		o.Debug = false
		o.DialTimeout, o.IdleTimeout = time.Minute, time.Minute
	})
	up := startFake(b, e.ca, true, serveIMAP)
	up.message = make([]byte, benchMessage)
	rand.Read(up.message)
	e.apply(section("IMAP-1", config.IMAP, up))
	return e, up, e.addr("IMAP-1")
}

// fetchLoop FETCHes the 1 MiB message b.N times over an IMAP session.
func fetchLoop(b *testing.B, conn io.ReadWriter) {
	r := bufio.NewReaderSize(conn, 64<<10)
	buf := make([]byte, benchMessage)
	b.SetBytes(benchMessage)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tag := fmt.Sprintf("f%d", i)
		fmt.Fprintf(conn, "%s FETCH 1 BODY[]\r\n", tag)
		if _, err := r.ReadString('\n'); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(r, buf); err != nil {
			b.Fatal(err)
		}
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if strings.HasPrefix(l, tag+" ") {
				break
			}
		}
	}
}

// BenchmarkIMAPPipeThroughput: FETCH of a 1 MiB message through an
// authenticated proxy session (plain client side, TLS upstream).
func BenchmarkIMAPPipeThroughput(b *testing.B) {
	_, _, addr := benchEnv(b)
	c := loggedIn(b, addr)
	fetchLoop(b, c.c)
}

// BenchmarkIMAPDirectThroughput is the same FETCH straight from the TLS
// fake upstream, the baseline the proxy's number compares with.
func BenchmarkIMAPDirectThroughput(b *testing.B) {
	e, up, _ := benchEnv(b)
	host, port := up.addr()
	tc, err := tls.Dial("tcp", fmt.Sprintf("%s:%d", host, port), &tls.Config{RootCAs: e.ca.pool, ServerName: host})
	if err != nil {
		b.Fatal(err)
	}
	defer tc.Close()
	r := bufio.NewReader(tc)
	r.ReadString('\n')
	fmt.Fprintf(tc, "a AUTHENTICATE XOAUTH2 %s\r\n", xoauth2("alice@example.com", tokenFor("alice@example.com")))
	if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "a OK") {
		b.Fatalf("direct login: %q", l)
	}
	fetchLoop(b, tc)
}

// BenchmarkIMAPLogin: connect, greeting, LOGIN (fake Authenticator),
// XOAUTH2 upstream over a fresh TLS connection, NOOP, LOGOUT.
func BenchmarkIMAPLogin(b *testing.B) {
	_, _, addr := benchEnv(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := imapRoundTrip(addr); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConcurrentLogins1000: one op is 1000 sessions logging in at once.
func BenchmarkConcurrentLogins1000(b *testing.B) {
	_, _, addr := benchEnv(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var first error
		for j := 0; j < 1000; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := imapRoundTrip(addr); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if first != nil {
			b.Fatal(first)
		}
	}
}
