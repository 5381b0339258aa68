package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/events"
)

// Defaults for the zero values of Options.
const (
	DefaultDialTimeout  = 15 * time.Second
	DefaultIdleTimeout  = 2 * time.Minute
	DefaultLoginTimeout = 5 * time.Minute
)

// Options configures a Server. Only Authenticator is required.
type Options struct {
	// Authenticator turns the client's plain login into an access token.
	Authenticator Authenticator
	// Logger receives login events and, with Debug, protocol traces.
	// nil discards everything.
	Logger *slog.Logger
	// RootCAs verifies upstream servers. nil means the system roots, which
	// Go reads from SSL_CERT_FILE / SSL_CERT_DIR when set.
	RootCAs *x509.CertPool
	// UpstreamTLS, when set, may adjust the upstream TLS configuration (for
	// example client certificates). The proxy then re-imposes ServerName,
	// verification and TLS 1.2 minimum, so it cannot weaken them.
	UpstreamTLS func(*tls.Config)
	// DialTimeout bounds connecting to the upstream server, TLS included.
	DialTimeout time.Duration
	// IdleTimeout bounds each wait for a line from the client or the
	// upstream server before login. After login the connection is a pipe
	// with no timeout (IMAP IDLE may legitimately sit for 29 minutes);
	// TCP keepalive finds dead peers.
	IdleTimeout time.Duration
	// LoginTimeout bounds the whole pre-authentication phase, so a client
	// that trickles bytes (or sends NOOP now and then) cannot hold a
	// connection, and the upstream one with it, forever.
	LoginTimeout time.Duration
	// AuthorizationTimeout is how long a login may wait for its access
	// token, even past LoginTimeout: the token layer may be waiting for
	// an administrator to authorise the account. 0 means no longer than
	// LoginTimeout.
	AuthorizationTimeout time.Duration
	// Debug traces protocol lines at slog.LevelDebug, credentials redacted.
	Debug bool
}

// ListenerInfo describes one running listener.
type ListenerInfo struct {
	Section  string          // e.g. "IMAP-2993"
	Protocol config.Protocol // IMAP, POP or SMTP
	Address  string          // the bound address, e.g. "127.0.0.1:2993"
	TLS      bool            // implicit TLS towards clients
	StartTLS bool            // STARTTLS (POP: STLS) offered to clients
}

// Server runs one listener per server section and one goroutine per client
// connection. It is safe for concurrent use.
type Server struct {
	opts Options
	log  *slog.Logger

	baseCtx context.Context
	cancel  context.CancelFunc

	applyMu   sync.Mutex // serialises Apply and Shutdown
	mu        sync.Mutex
	listeners map[string]*listener
	sessions  map[*session]struct{}
	closing   bool
	sessWG    sync.WaitGroup
	acceptWG  sync.WaitGroup
	refused   sync.WaitGroup // refusals being sent

	// reserve is a descriptor kept open so that, out of descriptors, the
	// accept loop can still take a waiting client to refuse it (shed).
	reserveMu sync.Mutex
	reserve   *os.File

	// halfCloseLinger is how long the pipe waits for the second direction
	// after the first one ended cleanly.
	halfCloseLinger time.Duration

	logins loginCounters // for Stats
	bytes  byteCounters
}

// listenerConfig is what a session needs from its section; it is swapped
// atomically when only upstream or certificate settings change, so a reload
// never closes the socket for them.
type listenerConfig struct {
	srv      config.Server
	localTLS *tls.Config // nil: plain listener
}

func (lc *listenerConfig) implicitTLS() bool   { return lc.localTLS != nil && !lc.startTLS() }
func (lc *listenerConfig) startTLS() bool      { return lc.srv.LocalStartTLS }
func (lc *listenerConfig) offerStartTLS() bool { return lc.startTLS() && lc.localTLS != nil }

type listener struct {
	section string
	bindKey string
	ln      net.Listener
	cur     atomic.Pointer[listenerConfig]
	done    chan struct{}
	// lastWarn (unix ns) rate-limits accept failure warnings.
	lastWarn atomic.Int64
	// active counts this listener's sessions against max_sessions.
	active atomic.Int64
}

// maxSessions is the listener's cap; a section built without a config
// file (tests, embedders) gets the configuration's default.
func (lc *listenerConfig) maxSessions() int64 {
	if lc.srv.MaxSessions > 0 {
		return int64(lc.srv.MaxSessions)
	}
	return config.DefaultMaxSessions
}

// New returns a Server with no listeners; call Apply to start some.
func New(opts Options) *Server {
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.LoginTimeout <= 0 {
		opts.LoginTimeout = DefaultLoginTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	reserve, _ := os.Open(os.DevNull)
	return &Server{
		reserve:         reserve,
		opts:            opts,
		log:             log,
		baseCtx:         ctx,
		cancel:          cancel,
		listeners:       map[string]*listener{},
		sessions:        map[*session]struct{}{},
		logins:          newLoginCounters(),
		bytes:           newByteCounters(),
		halfCloseLinger: 30 * time.Second,
	}
}

// ErrServerClosed is returned by Apply after Shutdown.
var ErrServerClosed = errors.New("proxy server is shut down")

func bindKey(s config.Server) string {
	return string(s.Protocol) + "|" + s.LocalAddress + "|" + strconv.Itoa(s.LocalPort)
}

// Apply makes the running listeners match servers: sections that are new
// start listening, removed ones stop, ones whose protocol or bind address
// changed are re-bound, and the others take their new upstream and
// certificate settings in place without closing the socket. Sessions already
// running are never touched. A section that fails (bad certificate, port in
// use) is reported in the joined error and the others still apply; a section
// that was running keeps its old settings when its new ones fail (a bad
// certificate, or a new local_address that cannot be bound).
func (s *Server) Apply(ctx context.Context, servers []config.Server) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return ErrServerClosed
	}

	var errs []error
	want := map[string]*listenerConfig{}
	keys := map[string]string{}
	for _, srv := range servers {
		if srv.LocalAddress == "" {
			srv.LocalAddress = "::"
		}
		if _, dup := want[srv.Section]; dup {
			errs = append(errs, fmt.Errorf("[%s]: the section appears twice; remove one of them", srv.Section))
			continue
		}
		lc, err := prepare(srv)
		if err != nil {
			errs = append(errs, err)
			want[srv.Section] = nil // keep an old listener of this name running
			continue
		}
		want[srv.Section] = lc
		keys[srv.Section] = bindKey(srv)
	}

	s.mu.Lock()
	var stop []*listener
	previous := map[string]*listenerConfig{} // for re-binds that fail
	for name, l := range s.listeners {
		lc, ok := want[name]
		switch {
		case !ok:
			stop = append(stop, l)
			delete(s.listeners, name)
		case lc == nil:
			// its new settings failed; keep serving the old ones
		case keys[name] != l.bindKey:
			stop = append(stop, l)
			delete(s.listeners, name)
			previous[name] = l.cur.Load()
		default:
			l.cur.Store(lc)
			delete(want, name)
		}
	}
	s.mu.Unlock()
	// Old sockets close first: a new local_address may overlap the old
	// one ("::" covers 127.0.0.1) on the same port.
	for _, l := range stop {
		s.stopListener(l, "stopped")
	}

	names := make([]string, 0, len(want))
	for name, lc := range want {
		if lc != nil {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		lc := want[name]
		ln, err := listen(ctx, lc.srv)
		if err != nil {
			if old := previous[name]; old != nil {
				if ln2, err2 := listen(ctx, old.srv); err2 == nil {
					err = fmt.Errorf("%w (still listening with the previous local_address %s)", err, old.srv.LocalAddress)
					ln, lc, keys[name] = ln2, old, bindKey(old.srv)
				}
			}
			errs = append(errs, err)
			if ln == nil {
				continue
			}
		}
		if !s.serve(name, keys[name], ln, lc) {
			return ErrServerClosed
		}
	}
	return errors.Join(errs...)
}

// serve registers a bound listener and starts accepting on it.
func (s *Server) serve(name, key string, ln net.Listener, lc *listenerConfig) bool {
	l := &listener{section: name, bindKey: key, ln: ln, done: make(chan struct{})}
	l.cur.Store(lc)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return false
	}
	s.listeners[name] = l
	s.acceptWG.Add(1)
	s.mu.Unlock()
	upstream := net.JoinHostPort(lc.srv.ServerAddress, strconv.Itoa(lc.srv.ServerPort))
	s.log.Info(fmt.Sprintf("listening on %s for [%s] -> %s", ln.Addr(), name, upstream),
		"message_id", events.Lifecycle, "state", "listening", "section", name,
		"protocol", string(lc.srv.Protocol), "address", ln.Addr().String(),
		"upstream", upstream)
	go s.acceptLoop(l)
	return true
}

func (s *Server) stopListener(l *listener, state string) {
	l.ln.Close()
	<-l.done
	why := "the section left the configuration"
	if state == "stopping" {
		why = "the proxy is stopping"
	}
	s.log.Info(fmt.Sprintf("stopped listening on %s for [%s]: %s", l.ln.Addr(), l.section, why),
		"message_id", events.Lifecycle, "state", state,
		"section", l.section, "address", l.ln.Addr().String())
}

// prepare checks one section and loads its local certificate.
func prepare(srv config.Server) (*listenerConfig, error) {
	switch srv.Protocol {
	case config.IMAP, config.POP, config.SMTP:
	default:
		return nil, fmt.Errorf("[%s]: unknown protocol %q; server sections are named IMAP-<port>, POP-<port> or SMTP-<port>", srv.Section, srv.Protocol)
	}
	if srv.LocalPort < 0 || srv.LocalPort > 65535 {
		return nil, fmt.Errorf("[%s]: local port %d is out of range 1-65535; rename the section", srv.Section, srv.LocalPort)
	}
	if srv.ServerAddress == "" || srv.ServerPort <= 0 || srv.ServerPort > 65535 {
		return nil, fmt.Errorf("[%s]: server_address and server_port (1-65535) are required; set them to the upstream mail server", srv.Section)
	}
	lc := &listenerConfig{srv: srv}
	certSet, keySet := srv.LocalCertificatePath != "", srv.LocalKeyPath != ""
	if certSet != keySet {
		return nil, fmt.Errorf("[%s]: local_certificate_path and local_key_path must be set together (or neither, for a plain listener)", srv.Section)
	}
	if srv.LocalStartTLS && !certSet {
		return nil, fmt.Errorf("[%s]: local_starttls needs local_certificate_path and local_key_path; set both, or set local_starttls = False", srv.Section)
	}
	if certSet {
		cert, err := tls.LoadX509KeyPair(srv.LocalCertificatePath, srv.LocalKeyPath)
		if err != nil {
			return nil, fmt.Errorf("[%s]: loading local_certificate_path %s and local_key_path %s: %w", srv.Section, srv.LocalCertificatePath, srv.LocalKeyPath, err)
		}
		lc.localTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return lc, nil
}

// listen binds one section. "::" is dual stack; where IPv6 is unavailable
// it falls back to IPv4, as the spec says.
func listen(ctx context.Context, srv config.Server) (net.Listener, error) {
	var lcfg net.ListenConfig // backlog: the kernel's somaxconn, not 5
	addr := net.JoinHostPort(srv.LocalAddress, strconv.Itoa(srv.LocalPort))
	ln, err := lcfg.Listen(ctx, "tcp", addr)
	if err != nil && srv.LocalAddress == "::" && !errors.Is(err, syscall.EADDRINUSE) && !errors.Is(err, syscall.EACCES) {
		addr4 := net.JoinHostPort("0.0.0.0", strconv.Itoa(srv.LocalPort))
		if ln4, err4 := lcfg.Listen(ctx, "tcp4", addr4); err4 == nil {
			return ln4, nil
		}
	}
	if err != nil {
		return nil, bindError(srv, addr, err)
	}
	return ln, nil
}

func bindError(srv config.Server, addr string, err error) error {
	var hint string
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		hint = "another program (or another proxy instance) is using this port: stop it, or rename the section to a free port"
	case errors.Is(err, syscall.EACCES):
		hint = "ports below 1024 need root or CAP_NET_BIND_SERVICE: use a port of 1024 or above"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		hint = "local_address is not an address of this host: use 127.0.0.1 or an address shown by `ip addr`"
	default:
		hint = "check local_address and the section's port"
	}
	return fmt.Errorf("[%s]: cannot listen on %s: %w; %s", srv.Section, addr, err, hint)
}

func (s *Server) acceptLoop(l *listener) {
	defer s.acceptWG.Done()
	defer close(l.done)
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if (errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)) && s.shed(l) {
				// Out of file descriptors: the client waiting in the
				// backlog got a reply instead of silence; the next one
				// may be waiting too.
				s.warnAccept(l, err)
				continue
			}
			// EMFILE and friends: slow down instead of spinning or dying.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff < time.Second {
				backoff *= 2
			}
			s.warnAccept(l, err)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		lc := l.cur.Load()
		if max := lc.maxSessions(); l.active.Load() >= max {
			s.refuse(c, lc, fmt.Sprintf("this listener already serves its maximum of %d sessions (max_sessions); try again later", max), false)
			continue
		}
		l.active.Add(1)
		s.startSession(c, lc, &l.active)
	}
}

// warnAccept logs a failed accept at most once a second per listener: under
// descriptor exhaustion it fails for every waiting client.
func (s *Server) warnAccept(l *listener, err error) {
	now := time.Now().UnixNano()
	if last := l.lastWarn.Load(); now-last < int64(time.Second) || !l.lastWarn.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn(fmt.Sprintf("accepting a connection on %s for [%s] failed: %v; if out of file descriptors, raise LimitNOFILE (ulimit -n) or lower max_sessions", l.ln.Addr(), l.section, err),
		"section", l.section, "reason", err.Error(),
		"hint", "out of file descriptors: raise LimitNOFILE (ulimit -n) or lower max_sessions")
}

// refuseGrace bounds sending a refusal, TLS handshake included;
// refuseLinger is how long the client's own bytes are read before the
// close.
const (
	refuseGrace  = 3 * time.Second
	refuseLinger = 100 * time.Millisecond
)

// refuse answers a client the proxy will not serve with the protocol's
// "come back later" and closes it; reason is for the client. A refusal is
// not a session: it holds no upstream connection. sync answers in the
// caller's goroutine (descriptor exhaustion, where a goroutine per client
// would pile up).
func (s *Server) refuse(c net.Conn, lc *listenerConfig, reason string, sync bool) {
	var line string
	switch lc.srv.Protocol {
	case config.POP:
		line = "-ERR [SYS/TEMP] " + ReplyPrefix + reason
	case config.SMTP:
		line = "421 4.3.2 " + ReplyPrefix + reason
	default:
		line = "* BYE [UNAVAILABLE] " + ReplyPrefix + reason
	}
	send := func() {
		defer c.Close()
		if lc.implicitTLS() {
			if sync {
				return // no time for a handshake here; the close is the answer
			}
			c.SetDeadline(time.Now().Add(refuseGrace))
			tc := tls.Server(c, lc.localTLS)
			if tc.Handshake() != nil {
				return
			}
			c = tc
			io.WriteString(c, line+"\r\n")
		} else {
			writeFresh(c, line+"\r\n")
		}
		if cw, ok := c.(closeWriter); ok && !sync {
			// Let the reply leave before the close, and read what the
			// client sent meanwhile, so the close is not a reset that
			// destroys the reply in flight. Briefly: the descriptor is
			// what is scarce here.
			cw.CloseWrite()
			c.SetReadDeadline(time.Now().Add(refuseLinger))
			io.Copy(io.Discard, io.LimitReader(c, 4<<10))
		}
	}
	if sync {
		send()
		return
	}
	s.refused.Add(1)
	go func() {
		defer s.refused.Done()
		send()
	}()
}

// writeFresh writes a line to a connection just accepted, in one
// non-blocking write(2): its send buffer is empty, so the line goes at once
// and nothing can block the caller (the accept loop, when shedding). No
// deadline is involved: one set first and passed while the goroutine was
// held up (a GC pause, a loaded CPU) made the write fail untried, and the
// client read the close without a word.
func writeFresh(c net.Conn, line string) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		c.SetWriteDeadline(time.Now().Add(refuseGrace))
		io.WriteString(c, line)
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	rc.Write(func(fd uintptr) bool {
		syscall.Write(int(fd), []byte(line))
		return true // one try: never wait in the poller
	})
}

// shed accepts one waiting client while out of descriptors, using the
// descriptor held in reserve for exactly this, refuses it, and takes the
// reserve back.
func (s *Server) shed(l *listener) bool {
	s.reserveMu.Lock()
	defer s.reserveMu.Unlock()
	if s.reserve != nil {
		s.reserve.Close()
		s.reserve = nil
	}
	c, err := l.ln.Accept()
	if err == nil {
		s.refuse(c, l.cur.Load(), "the proxy is out of file descriptors; try again later", true)
	}
	s.reserve, _ = os.Open(os.DevNull)
	return err == nil
}

// Listeners reports what is listening, sorted by section.
func (s *Server) Listeners() []ListenerInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ListenerInfo, 0, len(s.listeners))
	for _, l := range s.listeners {
		lc := l.cur.Load()
		out = append(out, ListenerInfo{
			Section:  l.section,
			Protocol: lc.srv.Protocol,
			Address:  l.ln.Addr().String(),
			TLS:      lc.implicitTLS(),
			StartTLS: lc.offerStartTLS(),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Section < out[j].Section })
	return out
}

// ActiveSessions is the number of client connections being served.
func (s *Server) ActiveSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Shutdown stops accepting, lets running sessions finish until ctx is done,
// then closes the rest. It returns nil when every session ended by itself,
// else an error wrapping ctx.Err() that says how many were cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	s.closing = true
	ls := make([]*listener, 0, len(s.listeners))
	for name, l := range s.listeners {
		ls = append(ls, l)
		delete(s.listeners, name)
	}
	s.mu.Unlock()
	for _, l := range ls {
		s.stopListener(l, "stopping")
	}
	s.acceptWG.Wait()
	s.refused.Wait()
	s.reserveMu.Lock()
	if s.reserve != nil {
		s.reserve.Close()
		s.reserve = nil
	}
	s.reserveMu.Unlock()

	done := make(chan struct{})
	go func() { s.sessWG.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
	}
	s.cancel()
	s.mu.Lock()
	n := len(s.sessions)
	for sess := range s.sessions {
		sess.closeAll()
	}
	s.mu.Unlock()
	<-done
	if n == 0 {
		return nil
	}
	return fmt.Errorf("proxy shutdown: %d session(s) still open at the drain deadline were closed: %w", n, ctx.Err())
}
