// Package remote runs an orbit command on other appliances over SSH, for
// `orbit --host [USER@]HOST[:PORT] ...`: the same command line, minus the
// connection flags and with secrets moved to standard input, runs there
// with this process's standard streams, and its exit status becomes this
// process's. With several hosts (a fleet) it runs on all of them in
// parallel and sums up.
//
// Addresses and ~/.ssh/config are read as ssh(1) reads them (HostName,
// Port, User, IdentityFile, UserKnownHostsFile, ProxyJump, Host patterns).
// Every host key, of jump hosts too, is checked against known_hosts; an
// unknown or changed key is refused with its fingerprint and the command
// that would accept it.
package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/charmbracelet/x/term"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"golang.org/x/crypto/ssh"
)

// Defaults of the connection flags.
const (
	DefaultUser        = "mt4adm"
	DefaultPort        = 59022
	DefaultKnownHosts  = "~/.ssh/known_hosts"
	DefaultRemoteOrbit = "orbit"
	DefaultTimeout     = 15 * time.Second
	DefaultSudo        = SudoAuto
	DefaultParallel    = 8
)

// --ssh-sudo values: run the remote command through `sudo -n` when the
// login user is not root (auto), always, or never.
const (
	SudoAuto   = "auto"
	SudoAlways = "always"
	SudoNever  = "never"
)

// SudoModes lists the --ssh-sudo values, for help and completion.
var SudoModes = []string{SudoAuto, SudoAlways, SudoNever}

// Options say how to connect. Zero values mean "not given": the address,
// ~/.ssh/config and the defaults above fill them.
type Options struct {
	User        string   // --ssh-user: wins over the address and ~/.ssh/config
	Port        int      // --ssh-port: wins over the address and ~/.ssh/config
	Identities  []string // --ssh-identity: private key files
	KnownHosts  string   // --ssh-known-hosts: wins over UserKnownHostsFile
	SSHConfig   string   // --ssh-config: ssh_config file, or "none"; "" = ~/.ssh/config then /etc/ssh/ssh_config
	RemoteOrbit string   // the orbit program on the remote host
	Timeout     time.Duration
	Sudo        string // SudoAuto, SudoAlways or SudoNever
	Parallel    int    // hosts at once in a fleet run

	// Getenv and Home default to the process's; tests replace them.
	Getenv func(string) string
	Home   func() (string, error)
}

func (o *Options) getenv(k string) string {
	if o.Getenv != nil {
		return o.Getenv(k)
	}
	return os.Getenv(k)
}

func (o *Options) home() (string, error) {
	if o.Home != nil {
		return o.Home()
	}
	return os.UserHomeDir()
}

// expand replaces a leading ~/ with the home directory.
func (o *Options) expand(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if h, err := o.home(); err == nil {
			return filepath.Join(h, rest)
		}
	}
	return p
}

func (o *Options) defaults() error {
	if o.RemoteOrbit == "" {
		o.RemoteOrbit = DefaultRemoteOrbit
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Parallel <= 0 {
		o.Parallel = DefaultParallel
	}
	switch o.Sudo {
	case "":
		o.Sudo = DefaultSudo
	case SudoAuto, SudoAlways, SudoNever:
	default:
		return exitcode.Withf(exitcode.Usage, "--ssh-sudo %q: use one of %s", o.Sudo, strings.Join(SudoModes, ", "))
	}
	return nil
}

// Command is what to run on each host.
type Command struct {
	Args []string // after the orbit program; quoted for the remote shell
	// Secret, when set, is sent as the first line of the session's
	// standard input instead of this process's input: Args name "-" for
	// it (see LiftSecrets), so it is never on the remote command line.
	Secret string
}

// streams are one session's standard streams; tty, when set, asks for a
// remote terminal (both local ends are one).
type streams struct {
	in          io.Reader
	out, errOut io.Writer
	tty         *iostreams.IOStreams
}

// Run connects to target ([user@]host[:port], ssh://..., or an
// ~/.ssh/config alias) and runs `RemoteOrbit cmd.Args...` there with io's
// streams. It returns nil when the remote command exits 0, an
// *exitcode.ExitError carrying the remote status otherwise (already
// reported by the remote command, so silent), and an error with an exit
// code of orbit's table when the connection fails.
func Run(ctx context.Context, o Options, target string, cmd Command, io *iostreams.IOStreams) error {
	if err := o.defaults(); err != nil {
		return err
	}
	cfg, err := o.loadSSHConfig()
	if err != nil {
		return err
	}
	st := streams{in: io.In, out: io.Out, errOut: io.ErrOut}
	if io.IsStdinTTY() && io.IsStdoutTTY() {
		st.tty = io
	}
	return o.runOn(ctx, cfg, target, cmd, st)
}

func (o *Options) runOn(ctx context.Context, cfg *sshConfig, target string, cmd Command, st streams) error {
	a, err := ParseAddress(target)
	if err != nil {
		return err
	}
	e, err := o.resolve(a, cfg, false)
	if err != nil {
		return err
	}
	client, closeAll, err := o.connect(ctx, e)
	if err != nil {
		return err
	}
	defer closeAll()
	return o.runSession(ctx, client, e, cmd, st)
}

// connect logs in to e, through its jump hosts in order: each hop's host
// key is checked against its known_hosts like the appliance's. The
// returned func closes every hop.
func (o *Options) connect(ctx context.Context, e *endpoint) (*ssh.Client, func(), error) {
	hops := append(append([]*endpoint(nil), e.Jumps...), e)
	var clients []*ssh.Client
	closeAll := func() {
		for i := len(clients) - 1; i >= 0; i-- {
			clients[i].Close()
		}
	}
	for i, h := range hops {
		via := ""
		if i < len(hops)-1 {
			via = fmt.Sprintf("jump host %s (ProxyJump of %s): ", h.Name, e.Name)
		}
		hostKey, algos, err := hostKeyCheck(h.KnownHosts, h.defaultKH, h.User, h.Host, h.Port)
		if err != nil {
			closeAll()
			return nil, nil, prefixError(via, err)
		}
		keys, err := o.loadKeys(h)
		if err != nil {
			closeAll()
			return nil, nil, prefixError(via, err)
		}
		cfg := &ssh.ClientConfig{
			User:              h.User,
			Auth:              []ssh.AuthMethod{ssh.PublicKeys(keys.signers...)},
			HostKeyCallback:   hostKey,
			HostKeyAlgorithms: algos,
			Timeout:           o.Timeout,
		}
		var prev *ssh.Client
		if i > 0 {
			prev = clients[i-1]
		}
		c, err := dial(ctx, prev, h.addr(), cfg, o.Timeout)
		keys.Close()
		if err != nil {
			closeAll()
			return nil, nil, prefixError(via, o.connectError(ctx, err, h, keys))
		}
		clients = append(clients, c)
	}
	return clients[len(clients)-1], closeAll, nil
}

// prefixError puts prefix before err's message, keeping its exit code.
func prefixError(prefix string, err error) error {
	if prefix == "" {
		return err
	}
	return exitcode.With(exitcode.Of(err), fmt.Errorf("%s%w", prefix, err))
}

// dial connects within timeout (directly, or through the jump host prev),
// and gives up at once when ctx ends (the handshake itself has no
// context).
func dial(ctx context.Context, prev *ssh.Client, addr string, cfg *ssh.ClientConfig, timeout time.Duration) (*ssh.Client, error) {
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var conn net.Conn
	var err error
	if prev == nil {
		var d net.Dialer
		conn, err = d.DialContext(dctx, "tcp", addr)
	} else {
		conn, err = prev.DialContext(dctx, "tcp", addr)
	}
	if err != nil {
		if dctx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("%w (connecting)", context.DeadlineExceeded)
		}
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(dctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	stop()
	if err != nil {
		conn.Close()
		if dctx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("%w (SSH handshake)", context.DeadlineExceeded)
		}
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

func (o *Options) connectError(ctx context.Context, err error, e *endpoint, keys *keyring) error {
	addr := e.addr()
	if ctx.Err() != nil {
		return exitcode.Withf(exitcode.Interrupted, "connecting to %s: interrupted", addr)
	}
	var hk *HostKeyError
	if errors.As(err, &hk) {
		return exitcode.With(exitcode.Permission, hk)
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return exitcode.Withf(exitcode.Error, "connecting to %s: no answer within %v (--ssh-timeout): check the host name, the port (--ssh-port, default %d) and any firewall in between", addr, o.Timeout, DefaultPort)
	}
	if strings.Contains(err.Error(), "unable to authenticate") {
		msg := fmt.Sprintf("%s@%s refused every key offered (%s)\nAdd your public key to ~%s/.ssh/authorized_keys on that host, or name the right key with --ssh-identity (or the user with --ssh-user, or IdentityFile and User in ~/.ssh/config).", e.User, addr, strings.Join(uniq(keys.offered), ", "), e.User)
		for _, n := range keys.notes {
			msg += "\n  " + n
		}
		return exitcode.With(exitcode.Permission, errors.New(msg))
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return exitcode.Withf(exitcode.Error, "connecting to %s: %w\nCheck the host name and the port (--ssh-port, default %d), and that sshd runs there.", addr, err, DefaultPort)
	}
	return exitcode.Withf(exitcode.Error, "connecting to %s: %w", addr, err)
}

func uniq(s []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// useSudo says whether the remote command runs through sudo -n.
func (o *Options) useSudo(user string) bool {
	switch o.Sudo {
	case SudoAlways:
		return true
	case SudoNever:
		return false
	}
	return user != "root"
}

func (o *Options) runSession(ctx context.Context, client *ssh.Client, e *endpoint, cmd Command, st streams) error {
	host := e.Name
	sess, err := client.NewSession()
	if err != nil {
		return exitcode.Withf(exitcode.Error, "opening an SSH session on %s: %w", host, err)
	}
	defer sess.Close()
	sess.Stdin, sess.Stdout = st.in, st.out
	if cmd.Secret != "" {
		sess.Stdin = strings.NewReader(cmd.Secret + "\n")
	}
	watch := &headWriter{w: st.errOut, max: 2048}
	sess.Stderr = watch

	// A terminal at both ends gets one remotely too, so remote panels,
	// colours and prompts behave as they would in an ssh login. Not when a
	// secret travels on standard input: the terminal would echo it.
	if st.tty != nil && cmd.Secret == "" {
		restore, err := startPTY(sess, st.tty, o.getenv("TERM"))
		if err != nil {
			return exitcode.Withf(exitcode.Error, "setting up the terminal for %s: %w", host, err)
		}
		defer restore()
	}

	sudo := o.useSudo(e.User)
	cmdline := CommandLine(o.RemoteOrbit, cmd.Args)
	if sudo {
		cmdline = "sudo -n -- " + cmdline
	}
	if err := sess.Start(cmdline); err != nil {
		return exitcode.Withf(exitcode.Error, "starting orbit on %s: %w", host, err)
	}
	// Ctrl-C without a terminal reaches this process, not the remote one:
	// pass it on, then hang up so nothing is left waiting.
	stop := context.AfterFunc(ctx, func() {
		_ = sess.Signal(ssh.SIGINT)
		sess.Close()
		client.Close()
	})
	defer stop()

	err = sess.Wait()
	if ctx.Err() != nil {
		return exitcode.Withf(exitcode.Interrupted, "interrupted: closed the session on %s", host)
	}
	var ee *ssh.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		if sig := ee.Signal(); sig != "" {
			return exitcode.Withf(signalCode(sig), "the remote command on %s was killed by SIG%s", host, sig)
		}
		code := ee.ExitStatus()
		if sudo {
			if err := o.sudoError(client, e, code, watch.head.String()); err != nil {
				return err
			}
		}
		if code == 127 {
			return exitcode.Withf(exitcode.Code(code), "exit status 127 from %s: is %q installed there, on the PATH of %s? --remote-orbit names its full path.", host, o.RemoteOrbit, e.User)
		}
		return exitcode.Silent(exitcode.Code(code))
	}
	var me *ssh.ExitMissingError
	if errors.As(err, &me) {
		return exitcode.Withf(exitcode.Error, "the connection to %s ended without the remote command's exit status", host)
	}
	return exitcode.Withf(exitcode.Error, "running orbit on %s: %w", host, err)
}

// headWriter passes everything on and keeps the first max bytes, so that
// sudo's own complaint can be recognised after the command ends.
type headWriter struct {
	w    io.Writer
	head bytes.Buffer
	max  int
}

func (h *headWriter) Write(p []byte) (int, error) {
	if room := h.max - h.head.Len(); room > 0 {
		h.head.Write(p[:min(room, len(p))])
	}
	return h.w.Write(p)
}

func signalCode(sig string) exitcode.Code {
	n := map[string]int{"HUP": 1, "INT": 2, "QUIT": 3, "ABRT": 6, "KILL": 9, "SEGV": 11, "PIPE": 13, "ALRM": 14, "TERM": 15}[sig]
	if n == 0 {
		return exitcode.Error
	}
	return exitcode.Code(128 + n)
}

type fder interface{ Fd() uintptr }

// startPTY asks for a remote terminal the size of ours, puts ours in raw
// mode (keys, Ctrl-C included, go to the remote side as typed) and follows
// window size changes. The returned func undoes it.
func startPTY(sess *ssh.Session, io *iostreams.IOStreams, termName string) (func(), error) {
	in, ok1 := io.In.(fder)
	out, ok2 := io.Out.(fder)
	if !ok1 || !ok2 {
		return func() {}, nil
	}
	w, h, err := term.GetSize(out.Fd())
	if err != nil {
		w, h = 80, 24
	}
	if termName == "" {
		termName = "xterm-256color"
	}
	modes := ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 38400, ssh.TTY_OP_OSPEED: 38400}
	if err := sess.RequestPty(termName, h, w, modes); err != nil {
		return nil, err
	}
	state, err := term.MakeRaw(in.Fd())
	if err != nil {
		return nil, err
	}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-winch:
				if w, h, err := term.GetSize(out.Fd()); err == nil {
					_ = sess.WindowChange(h, w)
				}
			}
		}
	}()
	return func() {
		signal.Stop(winch)
		close(done)
		_ = term.Restore(in.Fd(), state)
	}, nil
}
