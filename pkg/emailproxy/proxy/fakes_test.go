package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv"
	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
)

// ---- test PKI ----------------------------------------------------------

type testCA struct {
	pool     *x509.CertPool
	server   tls.Certificate
	certPath string // PEM of the server certificate, for local TLS listeners
	keyPath  string
	caPath   string // PEM of the CA, for clients outside Go
}

// newTestCA makes a throwaway CA and a server certificate for loopback
// with the project's shared test PKI (internal/testenv).
func newTestCA(t testing.TB) *testCA {
	t.Helper()
	f, err := testenv.WriteTLS(t.TempDir(), testenv.DefaultTLSHosts...)
	if err != nil {
		t.Fatal(err)
	}
	server, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{pool: f.Pool, server: server, certPath: f.CertFile, keyPath: f.KeyFile, caPath: f.CAFile}
}

func (ca *testCA) serverTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{ca.server}, MinVersion: tls.VersionTLS12}
}

// ---- fake Authenticator ------------------------------------------------

// fakeAuth knows accounts and passwords; the token of user u is "tok-"+u.
// err, when set for a user, is returned instead.
type fakeAuth struct {
	mu        sync.Mutex
	passwords map[string]string
	errs      map[string]error
	calls     atomic.Int64
}

func newFakeAuth() *fakeAuth {
	return &fakeAuth{passwords: map[string]string{}, errs: map[string]error{}}
}

func (a *fakeAuth) add(user, pass string) { a.mu.Lock(); a.passwords[user] = pass; a.mu.Unlock() }
func (a *fakeAuth) fail(user string, err error) {
	a.mu.Lock()
	a.errs[user] = err
	a.mu.Unlock()
}

func (a *fakeAuth) AccessToken(ctx context.Context, user, pass string) (string, error) {
	a.calls.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.errs[user]; err != nil {
		return "", err
	}
	want, ok := a.passwords[user]
	if !ok {
		return "", fmt.Errorf("no section for %s: %w", user, oauth.ErrUnknownAccount)
	}
	if pass != want {
		return "", fmt.Errorf("decrypting tokens of %s: %w", user, oauth.ErrBadPassword)
	}
	return tokenFor(user), nil
}

func tokenFor(user string) string { return "tok-" + user + "-SECRETTOKEN" }

// checkXOAUTH2 verifies a SASL XOAUTH2 response exactly as a provider
// would: standard padded base64 of user=U^Aauth=Bearer T^A^A, with the
// token belonging to U. refusedUsers are always refused (to test the
// upstream refusing a token the proxy believed good).
func checkXOAUTH2(b64 string, refused map[string]bool) (string, bool) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || base64.StdEncoding.EncodeToString(raw) != b64 {
		return "", false
	}
	s := string(raw)
	if !strings.HasPrefix(s, "user=") || !strings.HasSuffix(s, "\x01\x01") {
		return "", false
	}
	user, rest, ok := strings.Cut(strings.TrimPrefix(s, "user="), "\x01auth=Bearer ")
	if !ok {
		return "", false
	}
	tok := strings.TrimSuffix(rest, "\x01\x01")
	if tok != tokenFor(user) || refused[user] {
		return user, false
	}
	return user, true
}

const errChallenge = "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIn0=" // {"status":"401","schemes":"bearer"}

// ---- fake upstream servers ---------------------------------------------

type fakeUpstream struct {
	t        testing.TB
	ln       net.Listener
	tlsCfg   *tls.Config
	implicit bool // TLS from the first byte (IMAP, POP, SMTP 465)
	refused  map[string]bool
	message  []byte // message 1

	mu       sync.Mutex
	logins   []string // accounts logged in
	ehlos    []string // EHLO/HELO arguments, with "tls:" prefix when on TLS
	authTLS  []bool   // SMTP: whether TLS was on at AUTH
	appended [][]byte
	mails    [][]byte
	ids      []string // IMAP ID arguments, literals inline
	conns    atomic.Int64
	wg       sync.WaitGroup
}

func (f *fakeUpstream) addr() (string, int) {
	a := f.ln.Addr().(*net.TCPAddr)
	return "127.0.0.1", a.Port
}

func (f *fakeUpstream) loginCount() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.logins) }

func startFake(t testing.TB, ca *testCA, implicit bool, serve func(f *fakeUpstream, c net.Conn)) *fakeUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeUpstream{t: t, ln: ln, tlsCfg: ca.serverTLS(), implicit: implicit, refused: map[string]bool{},
		message: []byte("From: a@example.com\r\nSubject: hi\r\n\r\nhello through the proxy\r\n")}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.conns.Add(1)
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer c.Close()
				if implicit {
					tc := tls.Server(c, f.tlsCfg)
					if tc.Handshake() != nil {
						return
					}
					c = tc
				}
				serve(f, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return f
}

type fakeConn struct {
	c net.Conn
	r *bufio.Reader
}

func newFakeConn(c net.Conn) *fakeConn { return &fakeConn{c: c, r: bufio.NewReaderSize(c, 64<<10)} }

func (fc *fakeConn) line() (string, error) {
	l, err := fc.r.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}
func (fc *fakeConn) send(format string, args ...any) {
	fmt.Fprintf(fc.c, format+"\r\n", args...)
}

const fakeIMAPCaps = "IMAP4rev1 SASL-IR LOGINDISABLED AUTH=XOAUTH2 AUTH=OAUTHBEARER STARTTLS ID LITERAL+ IDLE"

func serveIMAP(f *fakeUpstream, c net.Conn) {
	fc := newFakeConn(c)
	fc.send("* OK [CAPABILITY %s] fake IMAP ready", fakeIMAPCaps)
	authed := false
	for {
		line, err := fc.line()
		if err != nil {
			return
		}
		tag, cmd, rest := splitIMAP(line)
		switch strings.ToUpper(cmd) {
		case "CAPABILITY":
			fc.send("* CAPABILITY %s", fakeIMAPCaps)
			fc.send("%s OK CAPABILITY completed", tag)
		case "NOOP":
			fc.send("%s OK NOOP completed", tag)
		case "ID":
			// Literals in the client's ID list, as Thunderbird sends them.
			args := rest
			for cur := line; ; {
				n, sync, ok := literalSuffix(cur)
				if !ok {
					break
				}
				if sync {
					fc.send("+ go ahead")
				}
				buf := make([]byte, n)
				if _, err := io.ReadFull(fc.r, buf); err != nil {
					return
				}
				if cur, err = fc.line(); err != nil {
					return
				}
				args += "\r\n" + string(buf) + cur
			}
			f.mu.Lock()
			f.ids = append(f.ids, args)
			f.mu.Unlock()
			fc.send(`* ID ("name" "fake")`)
			fc.send("%s OK ID completed", tag)
		case "LOGOUT":
			fc.send("* BYE logging out")
			fc.send("%s OK LOGOUT completed", tag)
			return
		case "AUTHENTICATE":
			mech, ir, _ := strings.Cut(rest, " ")
			if !strings.EqualFold(mech, "XOAUTH2") || ir == "" {
				fc.send("%s NO expected XOAUTH2 with an initial response", tag)
				continue
			}
			user, ok := checkXOAUTH2(ir, f.refused)
			if !ok {
				fc.send("+ %s", errChallenge)
				if l, _ := fc.line(); l != "" {
					fc.send("%s BAD expected an empty response to the error challenge", tag)
					continue
				}
				fc.send("%s NO [AUTHENTICATIONFAILED] Invalid credentials", tag)
				continue
			}
			f.loggedIn(user)
			authed = true
			fc.send("%s OK [CAPABILITY IMAP4rev1 IDLE] Logged in", tag)
		case "SELECT", "EXAMINE":
			if !authed {
				fc.send("%s BAD not authenticated", tag)
				continue
			}
			fc.send("* 1 EXISTS")
			fc.send("* OK [UIDVALIDITY 1] ok")
			fc.send("%s OK [READ-WRITE] SELECT completed", tag)
		case "LIST":
			fc.send(`* LIST () "/" INBOX`)
			fc.send("%s OK LIST completed", tag)
		case "FETCH", "UID":
			if !authed {
				fc.send("%s BAD not authenticated", tag)
				continue
			}
			f.mu.Lock()
			msg := f.message
			f.mu.Unlock()
			fmt.Fprintf(fc.c, "* 1 FETCH (UID 1 BODY[] {%d}\r\n", len(msg))
			fc.c.Write(msg)
			fc.send(")")
			fc.send("%s OK FETCH completed", tag)
		case "APPEND":
			n, sync, ok := literalSuffix(line)
			if !ok {
				fc.send("%s BAD APPEND needs a literal", tag)
				continue
			}
			if sync {
				fc.send("+ go ahead")
			}
			buf := make([]byte, n)
			if _, err := io.ReadFull(fc.r, buf); err != nil {
				return
			}
			fc.line()
			f.mu.Lock()
			f.appended = append(f.appended, buf)
			f.message = buf
			f.mu.Unlock()
			fc.send("%s OK APPEND completed", tag)
		case "IDLE":
			fc.send("+ idling")
			fc.send("* 2 EXISTS")
			if l, _ := fc.line(); !strings.EqualFold(l, "DONE") {
				return
			}
			fc.send("%s OK IDLE terminated", tag)
		default:
			fc.send("%s BAD unknown command", tag)
		}
	}
}

func (f *fakeUpstream) loggedIn(user string) {
	f.mu.Lock()
	f.logins = append(f.logins, user)
	f.mu.Unlock()
}

// acceptXOAUTH2 plays the server side of AUTH XOAUTH2 without an initial
// response, as POP3 (continuation "+") and SMTP ("334") do: on a refused
// response an error challenge, the client's empty answer, then refusal.
func (f *fakeUpstream) acceptXOAUTH2(fc *fakeConn, cont, refusal string) bool {
	fc.send("%s ", cont)
	ir, _ := fc.line()
	user, ok := checkXOAUTH2(ir, f.refused)
	if !ok {
		fc.send("%s %s", cont, errChallenge)
		fc.line()
		fc.send("%s", refusal)
		return false
	}
	f.loggedIn(user)
	return true
}

func servePOP(f *fakeUpstream, c net.Conn) {
	fc := newFakeConn(c)
	fc.send("+OK fake POP3 ready <1.2@fake>")
	authed := false
	for {
		line, err := fc.line()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "CAPA":
			fc.send("+OK capabilities\r\nTOP\r\nUIDL\r\nSASL XOAUTH2 OAUTHBEARER\r\nSTLS\r\nRESP-CODES\r\n.")
		case "AUTH":
			if !strings.EqualFold(arg, "XOAUTH2") {
				fc.send("-ERR expected AUTH XOAUTH2 without an initial response")
				continue
			}
			if !f.acceptXOAUTH2(fc, "+", "-ERR [AUTH] Authentication failed") {
				continue
			}
			authed = true
			fc.send("+OK Logged in.")
		case "STAT":
			fc.send("+OK 1 %d", len(f.message))
		case "LIST":
			fc.send("+OK 1 messages\r\n1 %d\r\n.", len(f.message))
		case "UIDL":
			fc.send("+OK\r\n1 uid1\r\n.")
		case "RETR":
			if !authed {
				fc.send("-ERR not authenticated")
				continue
			}
			fc.send("+OK %d octets", len(f.message))
			fc.c.Write(f.message)
			fc.send(".")
		case "QUIT":
			fc.send("+OK bye")
			return
		default:
			fc.send("-ERR unknown command")
		}
	}
}

func serveSMTP(f *fakeUpstream, c net.Conn) {
	fc := newFakeConn(c)
	onTLS := f.implicit
	fc.send("220 fake.test ESMTP ready")
	authed := false
	for {
		line, err := fc.line()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO", "HELO":
			f.mu.Lock()
			if onTLS {
				f.ehlos = append(f.ehlos, "tls:"+arg)
			} else {
				f.ehlos = append(f.ehlos, arg)
			}
			f.mu.Unlock()
			if strings.EqualFold(verb, "HELO") {
				fc.send("250 fake.test")
				continue
			}
			if onTLS {
				fc.send("250-fake.test hello %s\r\n250-PIPELINING\r\n250-SIZE 35882577\r\n250-AUTH XOAUTH2 OAUTHBEARER\r\n250 8BITMIME", arg)
			} else {
				fc.send("250-fake.test hello %s\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME", arg)
			}
		case "STARTTLS":
			if onTLS {
				fc.send("503 already on TLS")
				continue
			}
			fc.send("220 2.0.0 go ahead")
			tc := tls.Server(c, f.tlsCfg)
			if tc.Handshake() != nil {
				return
			}
			c, onTLS = tc, true
			fc = newFakeConn(tc)
		case "AUTH":
			f.mu.Lock()
			f.authTLS = append(f.authTLS, onTLS)
			f.mu.Unlock()
			if !strings.EqualFold(arg, "XOAUTH2") || !onTLS {
				fc.send("504 5.7.4 expected AUTH XOAUTH2 over TLS")
				continue
			}
			if !f.acceptXOAUTH2(fc, "334", "535 5.7.3 Authentication unsuccessful") {
				continue
			}
			authed = true
			fc.send("235 2.7.0 Authentication successful")
		case "MAIL", "RCPT":
			if !authed {
				fc.send("530 5.7.0 Authentication required")
				continue
			}
			fc.send("250 2.1.0 OK")
		case "DATA":
			fc.send("354 go ahead")
			var msg bytes.Buffer
			for {
				l, err := fc.line()
				if err != nil {
					return
				}
				if l == "." {
					break
				}
				msg.WriteString(l + "\r\n")
			}
			f.mu.Lock()
			f.mails = append(f.mails, msg.Bytes())
			f.mu.Unlock()
			fc.send("250 2.0.0 queued")
		case "RSET", "NOOP":
			fc.send("250 2.0.0 OK")
		case "QUIT":
			fc.send("221 2.0.0 bye")
			return
		default:
			fc.send("502 5.5.2 unknown command")
		}
	}
}

// ---- harness -------------------------------------------------------------

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type env struct {
	t    testing.TB
	ca   *testCA
	auth *fakeAuth
	srv  *Server
	logs *syncBuffer
}

func newEnv(t testing.TB, mutate ...func(*Options)) *env {
	t.Helper()
	e := &env{t: t, ca: newTestCA(t), auth: newFakeAuth(), logs: &syncBuffer{}}
	e.auth.add("alice@example.com", "alice-PASSWORD-1")
	opts := Options{
		Authenticator: e.auth,
		Logger:        slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		RootCAs:       e.ca.pool,
		DialTimeout:   5 * time.Second,
		IdleTimeout:   10 * time.Second,
		Debug:         true,
	}
	for _, m := range mutate {
		m(&opts)
	}
	e.srv = New(opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.srv.Shutdown(ctx)
	})
	return e
}

// section describes a listener on an ephemeral loopback port.
func section(name string, proto config.Protocol, up *fakeUpstream) config.Server {
	host, port := up.addr()
	return config.Server{Section: name, Protocol: proto, LocalAddress: "127.0.0.1", LocalPort: 0,
		ServerAddress: host, ServerPort: port}
}

func (e *env) apply(secs ...config.Server) {
	e.t.Helper()
	if err := e.srv.Apply(context.Background(), secs); err != nil {
		e.t.Fatalf("Apply: %v", err)
	}
}

func (e *env) addr(sectionName string) string {
	e.t.Helper()
	for _, l := range e.srv.Listeners() {
		if l.Section == sectionName {
			return l.Address
		}
	}
	e.t.Fatalf("no listener for %s in %+v", sectionName, e.srv.Listeners())
	return ""
}

func (e *env) port(sectionName string) int {
	_, p, _ := net.SplitHostPort(e.addr(sectionName))
	n, _ := strconv.Atoi(p)
	return n
}

// assertNoSecrets fails if a password, token or XOAUTH2 string reached the log.
func (e *env) assertNoSecrets(extra ...string) {
	e.t.Helper()
	logs := e.logs.String()
	secrets := append([]string{"alice-PASSWORD-1", "SECRETTOKEN", xoauth2("alice@example.com", tokenFor("alice@example.com")),
		base64.StdEncoding.EncodeToString([]byte("\x00alice@example.com\x00alice-PASSWORD-1"))}, extra...)
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			e.t.Errorf("log contains secret %q", s)
		}
	}
}

// client is a line-oriented test client.
type client struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dialClient(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, r: bufio.NewReaderSize(c, 64<<10)}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s+"\r\n"); err != nil {
		c.t.Fatalf("send %q: %v", s, err)
	}
}

func (c *client) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading a line: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// until reads lines up to and including one starting with prefix.
func (c *client) until(prefix string) []string {
	c.t.Helper()
	var out []string
	for {
		l := c.line()
		out = append(out, l)
		if strings.HasPrefix(l, prefix) {
			return out
		}
	}
}

func (c *client) expect(prefix string) string {
	c.t.Helper()
	l := c.line()
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got %q, want prefix %q", l, prefix)
	}
	return l
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// tlsClient upgrades a test client to TLS, trusting the test CA.
func tlsClient(t testing.TB, c *client, ca *testCA) *client {
	t.Helper()
	tc := tls.Client(c.c, &tls.Config{RootCAs: ca.pool, ServerName: "127.0.0.1"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return &client{t: t, c: tc, r: bufio.NewReaderSize(tc, 64<<10)}
}

// imapRoundTrip connects, logs in, sends NOOP and logs out, returning the
// first thing that went wrong.
func imapRoundTrip(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(c)
	expect := func(prefix string) error {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("waiting for %q: %w", prefix, err)
			}
			if strings.HasPrefix(l, prefix) {
				return nil
			}
			if !strings.HasPrefix(l, "* ") {
				return fmt.Errorf("waiting for %q, got %q", prefix, l)
			}
		}
	}
	if err := expect("* OK"); err != nil {
		return err
	}
	io.WriteString(c, "a1 LOGIN alice@example.com alice-PASSWORD-1\r\n")
	if err := expect("a1 OK"); err != nil {
		return err
	}
	io.WriteString(c, "a2 NOOP\r\n")
	if err := expect("a2 OK"); err != nil {
		return err
	}
	io.WriteString(c, "a3 LOGOUT\r\n")
	return expect("a3 OK")
}
