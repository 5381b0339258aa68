package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv"
)

// The scenarios speak the protocols over raw sockets where the exact reply
// text matters (Python's libraries reword or hide it) and where a client
// must hold a session open across an event (IDLE, reload, drain).

// ioTimeout bounds every read of a raw session: generous, because a
// login may wait for a key derivation and a token request on a loaded
// machine; it only turns a hang into a failure.
const ioTimeout = 60 * time.Second

// lineConn is one raw client connection to a proxy listener.
type lineConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialLine(port int) (*lineConn, error) {
	c, err := net.DialTimeout("tcp", testenv.Addr(port), 10*time.Second)
	if err != nil {
		return nil, err
	}
	return &lineConn{c: c, r: bufio.NewReader(c)}, nil
}

// mustDial is dialLine for the test goroutine; the connection closes with
// the test.
func mustDial(t *testing.T, port int) *lineConn {
	t.Helper()
	c, err := dialLine(port)
	if err != nil {
		t.Fatalf("connecting to the proxy on %d: %v", port, err)
	}
	t.Cleanup(func() { c.c.Close() })
	return c
}

// line reads one line without its CRLF.
func (c *lineConn) line() (string, error) {
	c.c.SetReadDeadline(time.Now().Add(ioTimeout))
	s, err := c.r.ReadString('\n')
	if err != nil {
		return s, fmt.Errorf("reading from the proxy (got %q so far): %w", s, err)
	}
	return strings.TrimRight(s, "\r\n"), nil
}

func (c *lineConn) send(s string) error {
	c.c.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, err := c.c.Write([]byte(s + "\r\n"))
	return err
}

// until reads lines until one starts with prefix and returns it with the
// lines before it.
func (c *lineConn) until(prefix string) (last string, before []string, err error) {
	for {
		l, err := c.line()
		if err != nil {
			return "", before, fmt.Errorf("waiting for %q after %q: %w", prefix, before, err)
		}
		if strings.HasPrefix(l, prefix) {
			return l, before, nil
		}
		before = append(before, l)
	}
}

// imapCmd sends "tag cmd" and returns the tagged completion.
func (c *lineConn) imapCmd(tag, cmd string) (string, []string, error) {
	if err := c.send(tag + " " + cmd); err != nil {
		return "", nil, err
	}
	return c.until(tag + " ")
}

// imapSession connects, reads the greeting and logs in; the returned
// error carries the proxy's reply when the login is refused.
func imapSession(port int, user, password string) (*lineConn, error) {
	c, err := dialLine(port)
	if err != nil {
		return nil, err
	}
	g, err := c.line()
	if err != nil {
		c.c.Close()
		return nil, err
	}
	if !strings.HasPrefix(g, "* OK") {
		c.c.Close()
		return nil, fmt.Errorf("greeting %q", g)
	}
	done, _, err := c.imapCmd("L1", fmt.Sprintf("LOGIN %s %s", imapQuote(user), imapQuote(password)))
	if err != nil {
		c.c.Close()
		return nil, err
	}
	if !strings.HasPrefix(done, "L1 OK") {
		c.c.Close()
		return nil, &refusedError{reply: done}
	}
	return c, nil
}

// refusedError is a login the proxy answered with a failure reply.
type refusedError struct{ reply string }

func (e *refusedError) Error() string { return "login refused: " + e.reply }

// imapLoginReply logs in over a raw socket and returns the tagged reply
// to LOGIN, whatever it is, then logs out.
func (e *env) imapLoginReply(user, password string) string {
	e.t.Helper()
	c, err := imapSession(e.imapPort, user, password)
	var re *refusedError
	if errors.As(err, &re) {
		return re.reply
	}
	if err != nil {
		e.t.Fatalf("IMAP login as %s: %v", user, err)
	}
	defer c.c.Close()
	c.imapCmd("L9", "LOGOUT")
	return "L1 OK"
}

func imapQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// popLoginReply logs in with USER/PASS and returns the reply to PASS.
func (e *env) popLoginReply(user, password string) string {
	e.t.Helper()
	c := mustDial(e.t, e.popPort)
	defer c.c.Close()
	if g, err := c.line(); err != nil || !strings.HasPrefix(g, "+OK") {
		e.t.Fatalf("POP3 greeting %q: %v", g, err)
	}
	c.send("USER " + user)
	if r, err := c.line(); err != nil || !strings.HasPrefix(r, "+OK") {
		e.t.Fatalf("POP3 USER: %q %v", r, err)
	}
	c.send("PASS " + password)
	r, err := c.line()
	if err != nil {
		e.t.Fatalf("POP3 PASS: %v", err)
	}
	if strings.HasPrefix(r, "+OK") {
		c.send("QUIT")
	}
	return r
}

// smtpReply reads one (possibly multi-line) SMTP reply; the result is the
// last line, e.g. "250 ok".
func (c *lineConn) smtpReply() (string, error) {
	for {
		l, err := c.line()
		if err != nil {
			return "", err
		}
		if len(l) < 4 || l[3] != '-' {
			return l, nil
		}
	}
}

// smtpLoginReply says EHLO, logs in with AUTH PLAIN and returns the reply
// to AUTH, then quits.
func (e *env) smtpLoginReply(user, password string) string {
	e.t.Helper()
	c := mustDial(e.t, e.smtpPort)
	defer c.c.Close()
	if g, err := c.smtpReply(); err != nil || !strings.HasPrefix(g, "220") {
		e.t.Fatalf("SMTP greeting %q: %v", g, err)
	}
	c.send("EHLO mailer.example.test")
	if r, err := c.smtpReply(); err != nil || !strings.HasPrefix(r, "250") {
		e.t.Fatalf("SMTP EHLO %q: %v", r, err)
	}
	c.send("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+password)))
	r, err := c.smtpReply()
	if err != nil {
		e.t.Fatalf("SMTP AUTH: %v", err)
	}
	c.send("QUIT")
	return r
}

// greeting connects to port and returns the first line the proxy sends.
func (e *env) greeting(port int) string {
	e.t.Helper()
	c := mustDial(e.t, port)
	defer c.c.Close()
	l, err := c.line()
	if err != nil {
		e.t.Fatalf("no greeting on %d (a bare reset or close instead of a reply): %v", port, err)
	}
	return l
}

// restartServe stops the running proxy (SIGTERM, drained) and starts a new
// one with the same files.
func (e *env) restartServe(extra ...string) *proxyProcess {
	e.t.Helper()
	e.stop(e.proc)
	return e.serve(extra...)
}

// hup sends SIGHUP and waits for the reload's log line (n counts reloads
// so far, so each call waits for its own).
func (e *env) hup(want string, n int) {
	e.t.Helper()
	if err := e.proc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		e.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(e.proc.Log(), want) < n {
		if time.Now().After(deadline) {
			e.t.Fatalf("serve's log never showed %q %d times after SIGHUP:\n%s", want, n, e.proc.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pythonInterop runs the tokens package's independent implementation of
// the spec's token scheme (python3-cryptography) with one JSON request.
func (e *env) pythonInterop(request string) string {
	e.t.Helper()
	python := testenv.RequireCommand(e.t, "python3")
	if out, err := exec.Command(python, "-c", "import cryptography").CombinedOutput(); err != nil {
		e.t.Skipf("python3's cryptography module is missing (%v: %s); install python3-cryptography, as CI does", err, out)
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, filepath.Join(root, "pkg", "emailproxy", "tokens", "testdata", "interop.py"))
	cmd.Stdin = strings.NewReader(request)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			e.t.Fatalf("interop.py: %v\n%s", err, ee.Stderr)
		}
		e.t.Fatalf("interop.py: %v", err)
	}
	return string(out)
}

// readFile is os.ReadFile for the test goroutine.
func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
