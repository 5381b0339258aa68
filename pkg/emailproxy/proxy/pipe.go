package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
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
//
// A bulk transfer (a FETCH of large messages) costs the proxy per wake-up,
// not per byte: a profile of serve piping 1 GB from Dovecot spent most of
// its CPU time in the scheduler — the pipe woke for every 4-10 KB that
// arrived, and every wake-up also woke the Go runtime's sysmon thread,
// which then polled every 20 µs — and about 5% in AES-GCM and copies.
// Two things keep the wake-ups few:
//
//   - An IMAP server announces each literal's size ("{n}" at the end of a
//     line) before sending it, so the bytes still to come are known. While
//     a large literal is in flight the pipe raises the upstream socket's
//     SO_RCVLOWAT, and the kernel wakes it once lowatMax bytes (or the
//     literal's rest) are there, not for every segment. The end of a
//     literal is never waited for, so no reply is delayed; a wait that
//     takes longer than lowatTimeout (a slow link, or a server that does
//     not send what it announced) reads what is there and asks for less.
//   - The system calls of the pipe's copy loop (non-blocking reads, the
//     readiness look, writes) are raw: none of them can block, and a raw
//     call does not tell the runtime it entered the kernel, which would
//     wake sysmon from its idle sleep on every burst.

// pipeBufSize is the pooled copy buffer: four full TLS records, so a burst
// from a TLS upstream goes to the client in a quarter of the writes.
const pipeBufSize = 64 << 10

const (
	// lowatMax is the most a wait asks the kernel to gather before
	// waking the pipe: a quarter of a megabyte per wake-up, within the
	// receive buffer Linux grows a fast loopback or LAN connection to.
	lowatMax = 256 << 10
	// lowatMin: below this a raised SO_RCVLOWAT saves too little to be
	// worth its system call.
	lowatMin = 8 << 10
	// lowatTimeout bounds a raised wait: it ends, and the bytes that are
	// there move on, when the rest does not come in time.
	lowatTimeout = 50 * time.Millisecond
	// tlsRecordPlain is the most plaintext one TLS record carries: when a
	// read through crypto/tls would block, at most that much of the
	// literal may sit in a partly received record.
	tlsRecordPlain = 16 << 10
)

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
	// lowat is the socket's SO_RCVLOWAT as last set (0 and 1: the
	// kernel's default), want what the current wait asks for, lowatCap
	// the most a wait may ask for now (halved by each wait that timed out).
	lowat, want, lowatCap int
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
	countFn  func(uintptr) bool
	peekByte [1]byte

	// The same for one raw write, which the other direction's goroutine
	// makes: separate fields, so the two never share memory.
	wp      []byte
	wn      int
	werr    error
	writeFn func(uintptr) bool
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
	nc.countFn = nc.rawCount
	nc.writeFn = nc.rawWrite
	return nc
}

// rawIO is read(2) or write(2) as a raw system call (see the top of this
// file): only for a non-blocking socket, where it cannot block.
func rawIO(trap, fd uintptr, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	r, _, e := syscall.RawSyscall(trap, fd, uintptr(ptr), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// Write is the TCP connection's own Write until the pipe starts; then raw
// non-blocking writes, waiting in the netpoller while the socket is full.
func (c *nbConn) Write(p []byte) (int, error) {
	if !c.nonblock {
		return c.TCPConn.Write(p)
	}
	c.wp, c.wn, c.werr = p, 0, nil
	err := c.rc.Write(c.writeFn)
	n := c.wn
	if err == nil {
		err = c.werr
	}
	c.wp, c.werr = nil, nil
	return n, err
}

func (c *nbConn) rawWrite(fd uintptr) bool {
	for c.wn < len(c.wp) {
		n, err := rawIO(syscall.SYS_WRITE, fd, c.wp[c.wn:])
		switch {
		case err == syscall.EINTR:
		case err == syscall.EAGAIN:
			return false // wait until writable, then go on
		case err != nil:
			c.werr = &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
			return true
		default:
			c.wn += n
		}
	}
	return true
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
	n, err := rawIO(syscall.SYS_READ, fd, c.p)
	for err == syscall.EINTR {
		n, err = rawIO(syscall.SYS_READ, fd, c.p)
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
//
// want > 1 says that many bytes are sure to come (an IMAP literal): the
// wait then asks the kernel for up to that many at once (SO_RCVLOWAT;
// Linux also wakes it at an end of file, an error, or when the receive
// window is about to close), for at most lowatTimeout.
func (c *nbConn) waitReadable(want int) error {
	c.woken = false
	if c.lowatCap == 0 {
		c.lowatCap = lowatMax
	}
	if want = min(want, c.lowatCap); want < lowatMin {
		if c.lowat > 1 {
			c.setLowat(1)
		}
		return c.rc.Read(c.peekFn)
	}
	if c.lowat != want {
		c.setLowat(want)
	}
	c.want = want
	c.TCPConn.SetReadDeadline(time.Now().Add(lowatTimeout))
	err := c.rc.Read(c.countFn)
	c.TCPConn.SetReadDeadline(time.Time{})
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		// Slower than expected: move what is there, ask for less from now
		// on (until the next literal).
		c.lowatCap /= 2
		c.setLowat(1)
		return nil
	case err == nil:
		c.lowatCap = min(2*c.lowatCap, lowatMax)
	}
	return err
}

// setLowat sets SO_RCVLOWAT. Failing is harmless (the kernel wakes
// earlier, and the count check in rawCount still holds), so the error is
// not looked at.
func (c *nbConn) setLowat(v int) {
	c.lowat = v
	v32 := int32(v)
	c.rc.Control(func(fd uintptr) {
		syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, fd, syscall.SOL_SOCKET, syscall.SO_RCVLOWAT,
			uintptr(unsafe.Pointer(&v32)), unsafe.Sizeof(v32), 0)
	})
}

// rawCount is rawPeek for a raised wait: the socket is ready when it holds
// want bytes (TIOCINQ, the same request as FIONREAD and SIOCINQ).
func (c *nbConn) rawCount(fd uintptr) bool {
	if c.woken {
		return true
	}
	c.woken = true
	var n int32
	_, _, e := syscall.RawSyscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
	return e != 0 || int(n) >= c.want
}

func (c *nbConn) rawPeek(fd uintptr) bool {
	if c.woken {
		return true
	}
	c.woken = true
	for {
		_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.peekByte[0])), 1,
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
	lit  *imapLiterals             // an IMAP upstream's literals, or nil
	// held is how many plaintext bytes read may hold back when it would
	// block: a partly received TLS record, none on plain TCP.
	held int64
}

// want is how many bytes the next readiness wait can count on: the rest
// of the literal being sent, less what may already sit in a partial TLS
// record.
func (e pipeEnd) want() int {
	if e.lit == nil {
		return 1
	}
	return int(max(1, min(e.lit.left-e.held, lowatMax)))
}

// endOf returns the non-blocking form of c, or false when c is not built
// on an nbConn (then the pipe falls back to blocking copies).
func endOf(c net.Conn) (pipeEnd, bool) {
	switch v := c.(type) {
	case *nbConn:
		return pipeEnd{sock: v, read: v.readNow}, true
	case *tls.Conn:
		if nc, ok := v.NetConn().(*nbConn); ok {
			return pipeEnd{sock: nc, read: v.Read, held: tlsRecordPlain}, true
		}
	}
	return pipeEnd{}, false
}

// copyPipe copies src to dst until src ends (nil) or either fails, adding
// what it wrote to n.
func copyPipe(dst io.Writer, src pipeEnd, n *atomic.Uint64) error {
	for {
		if src.lit != nil && src.lit.fresh {
			src.lit.fresh = false
			src.sock.lowatCap = lowatMax
		}
		if err := src.sock.waitReadable(src.want()); err != nil {
			return err
		}
		src.sock.short = false
		bp := pipeBufs.Get().(*[]byte)
		err := burst(dst, src, *bp, n)
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
func burst(dst io.Writer, src pipeEnd, buf []byte, count *atomic.Uint64) error {
	for {
		n := 0
		var rerr error
		for n < len(buf) {
			m, err := src.read(buf[n:])
			if src.lit != nil {
				src.lit.feed(buf[n : n+m])
			}
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
	cEnd, cOK := endOf(s.client)
	uEnd, uOK := endOf(s.up)
	if uOK && s.proto == string(config.IMAP) {
		// The server's bytes the login reader holds start at a line: the
		// literal scanner reads them too, so it starts in step.
		uEnd.lit = new(imapLiterals)
		if s.ur != nil && s.ur.Buffered() > 0 {
			b, _ := s.ur.Peek(s.ur.Buffered())
			uEnd.lit.feed(b)
		}
	}
	if err := flushBuffered(s.client, s.ur); err != nil {
		return
	}
	s.cr, s.ur = nil, nil

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

// imapLiterals follows an IMAP server's output just far enough to know how
// many bytes of a literal are still to come: a line that ends with "{n}"
// is followed by exactly n bytes (RFC 9051, section 4.3), then the
// response goes on as a line. It keeps no more than a line's last bytes.
type imapLiterals struct {
	left  int64    // bytes of the current literal not yet passed
	fresh bool     // a literal began since the pipe last looked
	tail  [16]byte // the end of the current line: "{", 10 digits, "+}", CR
	n     int
}

func (s *imapLiterals) feed(p []byte) {
	for len(p) > 0 {
		if s.left > 0 {
			if int64(len(p)) <= s.left {
				s.left -= int64(len(p))
				return
			}
			p = p[s.left:]
			s.left = 0
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.keep(p)
			return
		}
		s.keep(p[:i])
		line := s.tail[:s.n]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if n, _, ok := literalSuffix(string(line)); ok && n > 0 {
			s.left, s.fresh = int64(n), true
		}
		s.n = 0
		p = p[i+1:]
	}
}

// keep adds p to the line's tail, keeping its last len(tail) bytes.
func (s *imapLiterals) keep(p []byte) {
	if len(p) >= len(s.tail) {
		s.n = copy(s.tail[:], p[len(p)-len(s.tail):])
		return
	}
	if over := s.n + len(p) - len(s.tail); over > 0 {
		copy(s.tail[:], s.tail[over:s.n])
		s.n -= over
	}
	s.n += copy(s.tail[s.n:], p)
}
