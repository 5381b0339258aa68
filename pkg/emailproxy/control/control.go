// Package control is the running engine's local control socket: a Unix
// socket in the engine's state directory that only root and the engine's
// own user can use. `orbit email-oauth2-proxy authorize` signs an account in
// through it before any mailer login, whether the engine runs under systemd
// or in the foreground.
//
// The protocol is one JSON request line from the client, then JSON reply
// lines from the engine until a final one (authorised or error). The
// request may hold the account's password (it encrypts the tokens, as the
// mailer's login would); it travels only over this socket, never in argv.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// SocketName is the socket's file name in the state directory.
const SocketName = "control.sock"

// DefaultPath is the socket of the default state directory.
const DefaultPath = "/var/lib/orbit/email-oauth2-proxy/" + SocketName

// PathFor is the socket beside a status file (both live in the engine's
// state directory, so a non-default --status-file moves both).
func PathFor(statusFile string) string {
	return filepath.Join(filepath.Dir(statusFile), SocketName)
}

// Request is the client's one line.
type Request struct {
	Op       string `json:"op"` // "authorize"
	Account  string `json:"account"`
	Password string `json:"password"`
}

// Reply types.
const (
	TypeWaiting    = "waiting"
	TypeAuthorised = "authorised"
	TypeError      = "error"
)

// Error kinds, so the CLI can choose an exit code without parsing text.
const (
	KindUnknownAccount = "unknown_account"
	KindBadPassword    = "bad_password"
	KindRefused        = "refused"     // the provider refused (permanent)
	KindUnavailable    = "unavailable" // the provider or network failed (temporary)
	KindTimeout        = "timeout"     // nobody completed the authorisation in time
	KindBadRequest     = "bad_request"
	KindInternal       = "internal"
)

// Reply is one line from the engine.
type Reply struct {
	Type string `json:"type"`
	// waiting: what a person must open (and the device code).
	AuthURL  string `json:"auth_url,omitempty"`
	UserCode string `json:"user_code,omitempty"`
	// authorised
	Flow        string    `json:"flow,omitempty"`
	TokenExpiry time.Time `json:"token_expiry,omitzero"`
	// error
	Kind    string `json:"kind,omitempty"`
	Message string `json:"message,omitempty"`
}

// Final reports whether r ends the exchange.
func (r Reply) Final() bool { return r.Type == TypeAuthorised || r.Type == TypeError }

// Handler answers one request, sending replies until a final one.
type Handler func(ctx context.Context, req Request, send func(Reply) error)

// maxRequest bounds the request line: an account name and a password.
const maxRequest = 16 << 10

// Server is a listening control socket.
type Server struct {
	ln      net.Listener
	path    string
	handler Handler
	log     *slog.Logger
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
}

// Listen creates the socket at path, replacing a stale one from an engine
// that is gone, readable and writable by the engine's user only (root can
// always connect), and serves it until Close.
func Listen(path string, h Handler, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another engine is already running and listening on it; stop it first", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("control socket: removing the stale %s: %w", path, err)
	}
	// The umask makes the socket 0600 from its creation: no window in
	// which another user could connect.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{ln: ln, path: path, handler: h, log: log, ctx: ctx, cancel: cancel}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Path is where the socket is.
func (s *Server) Path() string { return s.path }

// Close stops accepting, ends the exchanges under way and removes the
// socket.
func (s *Server) Close() error {
	s.cancel()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.serve(c.(*net.UnixConn))
		}()
	}
}

func (s *Server) serve(c *net.UnixConn) {
	// The file mode keeps others out already; the peer's credentials are
	// checked too, so a socket moved or chmod-ed by mistake stays closed.
	uid, err := peerUID(c)
	if err != nil || (uid != 0 && uid != os.Geteuid()) {
		s.log.Warn(fmt.Sprintf("control socket: refused a connection from uid %d (only root and the engine's user may use it)", uid))
		writeReply(c, Reply{Type: TypeError, Kind: KindBadRequest, Message: "permission denied: only root and the proxy's service user may use the control socket"})
		return
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReaderSize(c, 4096)
	line, err := readLine(r, maxRequest)
	if err != nil {
		writeReply(c, Reply{Type: TypeError, Kind: KindBadRequest, Message: "no request line: " + err.Error()})
		return
	}
	c.SetReadDeadline(time.Time{})
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		writeReply(c, Reply{Type: TypeError, Kind: KindBadRequest, Message: "the request is not a JSON object"})
		return
	}
	// The exchange ends when the client hangs up (it reads nothing after
	// its request, so a read returning is the hang-up) or the engine stops.
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	go func() {
		var b [1]byte
		c.Read(b[:])
		cancel()
	}()
	var mu sync.Mutex
	s.handler(ctx, req, func(rep Reply) error {
		mu.Lock()
		defer mu.Unlock()
		return writeReply(c, rep)
	})
}

func writeReply(c net.Conn, r Reply) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Write(append(b, '\n'))
	return err
}

func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max {
			return nil, fmt.Errorf("request longer than %d bytes", max)
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

func peerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if cerr != nil {
		return -1, cerr
	}
	return int(cred.Uid), nil
}

// ErrNotRunning is the engine not listening at the socket's path.
var ErrNotRunning = errors.New("the proxy engine is not running")

// Call sends req and hands each reply to onReply until the final one,
// which it returns. It ends when ctx does.
func Call(ctx context.Context, path string, req Request, onReply func(Reply)) (Reply, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
			return Reply{}, fmt.Errorf("%w (no control socket at %s)", ErrNotRunning, path)
		case errors.Is(err, fs.ErrPermission):
			return Reply{}, fmt.Errorf("control socket %s: %w", path, fs.ErrPermission)
		}
		return Reply{}, fmt.Errorf("control socket %s: %w", path, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	b, err := json.Marshal(req)
	if err != nil {
		return Reply{}, err
	}
	if _, err := c.Write(append(b, '\n')); err != nil {
		return Reply{}, fmt.Errorf("control socket %s: %w", path, err)
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		var rep Reply
		if err := json.Unmarshal(sc.Bytes(), &rep); err != nil {
			return Reply{}, fmt.Errorf("control socket %s: a reply that is not JSON", path)
		}
		if rep.Final() {
			return rep, nil
		}
		if onReply != nil {
			onReply(rep)
		}
	}
	if ctx.Err() != nil {
		return Reply{}, ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return Reply{}, fmt.Errorf("control socket %s: %w", path, err)
	}
	return Reply{}, fmt.Errorf("control socket %s: the engine closed the connection without an answer (did it stop?)", path)
}
