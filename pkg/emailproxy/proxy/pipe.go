package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

// After login a session is a byte pipe, and most sessions of a mail proxy
// are idle most of the time (IMAP IDLE, a mailer between polls). The pipe
// is built so that an idle session holds no copy buffer and no goroutine
// with a grown stack:
//
//   - each direction waits for its socket to become readable with a
//     zero-copy readiness wait (netpoll through syscall.RawConn and a
//     one-byte MSG_PEEK), holding no buffer;
//   - only then does it take a buffer from a pool, read everything that is
//     ready without blocking (through crypto/tls when that side is TLS:
//     the socket under it reads non-blocking during the pipe, see nbConn),
//     write it on in as few writes as the buffer allows, and put the
//     buffer back as soon as a read would block;
//   - the session's own goroutine, whose stack grew during the TLS
//     handshake and login, ends: two fresh goroutines, one per direction,
//     carry the pipe and end the session.
//
// The line readers (bufio) of the login phase are dropped once the bytes
// they still hold have been passed on.

// pipeBufSize is the pooled copy buffer: four full TLS records, so a burst
// from a TLS upstream goes to the client in a quarter of the writes.
const pipeBufSize = 64 << 10

var pipeBufs = sync.Pool{New: func() any { b := make([]byte, pipeBufSize); return &b }}

// errWouldBlock is what a non-blocking read returns when nothing is ready.
// It is a temporary net.Error, which crypto/tls treats as "try again
// later": the connection stays usable and a partly read record is kept.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "read would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// nbConn is a TCP connection whose reads can be switched to non-blocking
// for the pipe. Before that it is the plain *net.TCPConn (deadlines and
// blocking reads, as the login phase needs).
type nbConn struct {
	*net.TCPConn
	rc       syscall.RawConn
	nonblock bool // set by pipe before its goroutines start; read only by the reading one
	// short: the last socket read returned less than asked, so the socket
	// is most likely empty: the next non-blocking read reports
	// errWouldBlock without a system call (the readiness wait that follows
	// looks at the socket anyway).
	short bool
	woken bool // the readiness wait parked once: the socket is readable
	// ahead holds bytes read from the socket and not yet taken: crypto/tls
	// asks for at most a record at a time, so without it a burst would
	// cost a system call per record. It is a pooled buffer, held only
	// while it has bytes.
	ahead              *[]byte
	aheadOff, aheadEnd int

	// State of one raw read, kept here so the callbacks passed to rc.Read
	// are bound once and do not allocate per read.
	p        []byte
	n        int
	err      error
	readFn   func(uintptr) bool
	peekFn   func(uintptr) bool
	peekByte [1]byte
}

// newNBConn wraps c when it is TCP; anything else is returned unchanged
// and piped the ordinary way.
func newNBConn(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	nc := &nbConn{TCPConn: tc, rc: rc}
	nc.readFn = nc.rawRead
	nc.peekFn = nc.rawPeek
	return nc
}

func (c *nbConn) Read(p []byte) (int, error) {
	if !c.nonblock {
		return c.TCPConn.Read(p)
	}
	return c.readNow(p)
}

// readNow reads what the socket holds now, or returns errWouldBlock.
func (c *nbConn) readNow(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.ahead != nil {
		n := copy(p, (*c.ahead)[c.aheadOff:c.aheadEnd])
		c.aheadOff += n
		if c.aheadOff == c.aheadEnd {
			pipeBufs.Put(c.ahead)
			c.ahead = nil
		}
		return n, nil
	}
	if c.short {
		c.short = false
		return 0, errWouldBlock
	}
	if len(p) >= pipeBufSize {
		return c.sysRead(p)
	}
	bp := pipeBufs.Get().(*[]byte)
	n, err := c.sysRead(*bp)
	if n == 0 {
		pipeBufs.Put(bp)
		return 0, err
	}
	m := copy(p, (*bp)[:n])
	if m < n {
		c.ahead, c.aheadOff, c.aheadEnd = bp, m, n
	} else {
		pipeBufs.Put(bp)
	}
	return m, nil
}

// sysRead is one non-blocking read(2).
func (c *nbConn) sysRead(p []byte) (int, error) {
	c.p, c.n, c.err = p, 0, nil
	if err := c.rc.Read(c.readFn); err != nil {
		c.p = nil
		return 0, err
	}
	n, err := c.n, c.err
	c.p, c.err = nil, nil
	return n, err
}

func (c *nbConn) rawRead(fd uintptr) bool {
	n, err := syscall.Read(int(fd), c.p)
	for err == syscall.EINTR {
		n, err = syscall.Read(int(fd), c.p)
	}
	switch {
	case err == syscall.EAGAIN:
		c.n, c.err = 0, errWouldBlock
	case err != nil:
		c.n, c.err = 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	case n == 0:
		c.n, c.err = 0, io.EOF
	default:
		c.n = n
		c.short = n < len(c.p)
	}
	return true // never park: the caller decides when to wait
}

// waitReadable returns when the socket has bytes, an end of file or an
// error to report, without reading anything. It looks first (MSG_PEEK):
// the runtime forgets earlier readiness when a wait begins, so bytes that
// came since the last read would otherwise not wake it. After a wake-up it
// trusts the notification; a rare stale one costs one read that would
// block.
func (c *nbConn) waitReadable() error {
	c.woken = false
	return c.rc.Read(c.peekFn)
}

func (c *nbConn) rawPeek(fd uintptr) bool {
	if c.woken {
		return true
	}
	c.woken = true
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.peekByte[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if e != syscall.EINTR {
			return e != syscall.EAGAIN // park until readable, then look again
		}
	}
}

// pipeEnd is one side of the pipe as the copy loop reads it.
type pipeEnd struct {
	sock *nbConn                   // the socket, for readiness
	read func([]byte) (int, error) // non-blocking read (through TLS when that side is TLS)
}

// endOf returns the non-blocking form of c, or false when c is not built
// on an nbConn (then the pipe falls back to blocking copies).
func endOf(c net.Conn) (pipeEnd, bool) {
	switch v := c.(type) {
	case *nbConn:
		return pipeEnd{sock: v, read: v.readNow}, true
	case *tls.Conn:
		if nc, ok := v.NetConn().(*nbConn); ok {
			return pipeEnd{sock: nc, read: v.Read}, true
		}
	}
	return pipeEnd{}, false
}

// copyPipe copies src to dst until src ends (nil) or either fails, adding
// what it wrote to n.
func copyPipe(dst io.Writer, src pipeEnd, n *atomic.Uint64) error {
	for {
		if err := src.sock.waitReadable(); err != nil {
			return err
		}
		src.sock.short = false
		bp := pipeBufs.Get().(*[]byte)
		err := burst(dst, src.read, *bp, n)
		pipeBufs.Put(bp)
		switch {
		case err == errWouldBlock:
		case errors.Is(err, io.EOF):
			return nil
		default:
			return err
		}
	}
}

// burst moves what is ready: it fills buf with every read that does not
// block, writes it, and goes on until a read would block (errWouldBlock),
// the source ends (io.EOF) or something fails.
func burst(dst io.Writer, read func([]byte) (int, error), buf []byte, count *atomic.Uint64) error {
	for {
		n := 0
		var rerr error
		for n < len(buf) {
			m, err := read(buf[n:])
			n += m
			if err != nil {
				rerr = err
				break
			}
		}
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return err
			}
			count.Add(uint64(n))
		}
		if rerr != nil {
			return rerr
		}
	}
}

// blockingCopy is the fallback for a side that is not an nbConn.
func blockingCopy(dst io.Writer, src io.Reader, count *atomic.Uint64) error {
	bp := pipeBufs.Get().(*[]byte)
	defer pipeBufs.Put(bp)
	n, err := io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *bp)
	count.Add(uint64(n))
	return err
}

// pipe hands the session over to two goroutines that copy bytes both ways,
// and returns at once; they end the session. When the upstream ends, the
// client is closed at once: mail servers end sessions (LOGOUT, QUIT,
// timeouts) and nothing more can come. When the client half-closes, that
// is passed on upstream and the upstream's last replies still flow back
// for up to halfCloseLinger. An error in either direction closes both.
func (s *session) pipe() {
	s.client.SetDeadline(time.Time{})
	s.up.SetDeadline(time.Time{})
	// Bytes the line readers already hold go first (a client may pipeline
	// commands after LOGIN); then the readers are dropped.
	if err := flushBuffered(s.up, s.cr); err != nil {
		return
	}
	if err := flushBuffered(s.client, s.ur); err != nil {
		return
	}
	s.cr, s.ur = nil, nil

	cEnd, cOK := endOf(s.client)
	uEnd, uOK := endOf(s.up)
	if cOK {
		cEnd.sock.nonblock = true
	}
	if uOK {
		uEnd.sock.nonblock = true
	}
	s.piping = true
	clientDone := make(chan struct{})
	toUp, toClient := s.srv.bytes.of(config.Protocol(s.proto))
	go func() {
		defer close(clientDone)
		var err error
		if cOK {
			err = copyPipe(s.up, cEnd, toUp)
		} else {
			err = blockingCopy(s.up, s.client, toUp)
		}
		if err != nil {
			s.closeAll()
			return
		}
		if cw, ok := s.up.(closeWriter); ok {
			cw.CloseWrite()
		}
		// The upstream's last replies may still come; closeAll wakes the
		// other direction when they take too long.
		t := time.AfterFunc(s.srv.halfCloseLinger, s.closeAll)
		s.mu.Lock()
		s.linger = t
		s.mu.Unlock()
	}()
	go func() {
		if uOK {
			copyPipe(s.client, uEnd, toClient)
		} else {
			blockingCopy(s.client, s.up, toClient)
		}
		s.closeAll()
		<-clientDone
		s.mu.Lock()
		if s.linger != nil {
			s.linger.Stop()
		}
		s.mu.Unlock()
		s.end()
	}()
}

// flushBuffered writes what r has buffered to w.
func flushBuffered(w io.Writer, r *bufio.Reader) error {
	if r == nil || r.Buffered() == 0 {
		return nil
	}
	b, _ := r.Peek(r.Buffered())
	_, err := w.Write(b)
	return err
}
