// Package remote runs an orbit command on another appliance over SSH, for
// `orbit --host HOST[:PORT] ...`: the same command line, minus the
// connection flags, runs there with this process's standard streams, and
// its exit status becomes this process's.
//
// The host key is always checked against known_hosts; an unknown or changed
// key is refused with its fingerprint and the command that would accept it.
package remote

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
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
)

// Options say where and how to connect.
type Options struct {
	Target      string   // HOST or HOST:PORT ([v6addr]:PORT)
	User        string   // login user; DefaultUser when empty
	Port        int      // used when Target has no port; DefaultPort when 0
	Identities  []string // private key files; DefaultIdentities under ~/.ssh when empty
	KnownHosts  string   // known_hosts file; DefaultKnownHosts when empty
	RemoteOrbit string   // the orbit program on the remote host; DefaultRemoteOrbit when empty
	Timeout     time.Duration

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

// SplitTarget parses HOST, HOST:PORT, [IPv6]:PORT or a bare IPv6 address;
// defPort applies when no port is given.
func SplitTarget(target string, defPort int) (string, int, error) {
	fix := "\n--host takes HOST or HOST:PORT (e.g. vault.example.com or vault.example.com:59022); the user goes in --ssh-user."
	if target == "" {
		return "", 0, exitcode.Withf(exitcode.Usage, "--host is empty%s", fix)
	}
	if strings.Contains(target, "@") {
		return "", 0, exitcode.Withf(exitcode.Usage, "--host %q names a user%s", target, fix)
	}
	host, portStr, err := net.SplitHostPort(target)
	if err != nil {
		// No port: a name, an IPv4 address, or an IPv6 address (which has
		// colons of its own), possibly in brackets.
		if strings.Count(target, ":") == 1 && !strings.HasPrefix(target, "[") {
			return "", 0, exitcode.Withf(exitcode.Usage, "--host %q: %v%s", target, err, fix)
		}
		host, portStr = strings.TrimSuffix(strings.TrimPrefix(target, "["), "]"), ""
	} else if portStr == "" {
		return "", 0, exitcode.Withf(exitcode.Usage, "--host %q ends with a colon but names no port%s", target, fix)
	}
	if host == "" || strings.ContainsAny(host, " \t/[]") {
		return "", 0, exitcode.Withf(exitcode.Usage, "--host %q is not a host name or address%s", target, fix)
	}
	port := defPort
	if portStr != "" {
		port, err = strconv.Atoi(portStr)
		if err != nil || port < 1 || port > 65535 {
			return "", 0, exitcode.Withf(exitcode.Usage, "--host %q: the port must be a number from 1 to 65535%s", target, fix)
		}
	}
	return host, port, nil
}

// Run connects and runs `RemoteOrbit args...` remotely with io's streams.
// It returns nil when the remote command exits 0, an *exitcode.ExitError
// carrying the remote status otherwise (already reported by the remote
// command, so silent), and an error with an exit code of orbit's table
// when the connection fails.
func Run(ctx context.Context, o Options, args []string, io *iostreams.IOStreams) error {
	if o.User == "" {
		o.User = DefaultUser
	}
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if o.RemoteOrbit == "" {
		o.RemoteOrbit = DefaultRemoteOrbit
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	khf := o.KnownHosts
	if khf == "" {
		khf = DefaultKnownHosts
	}
	defaultKHF := khf == DefaultKnownHosts
	khf = o.expand(khf)

	host, port, err := SplitTarget(o.Target, o.Port)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))

	if SecretInArgs(args) {
		fmt.Fprintln(io.ErrOut, "orbit: warning: --oauth2-client-secret puts the secret in the process list of "+host+" (and in shell history); pipe it instead: --oauth2-client-secret-file - < FILE")
	}

	hostKey, algos, err := hostKeyCheck(khf, defaultKHF, o.User, host, port)
	if err != nil {
		return err
	}
	keys, err := o.loadKeys()
	if err != nil {
		return err
	}
	defer keys.Close()

	cfg := &ssh.ClientConfig{
		User:              o.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(keys.signers...)},
		HostKeyCallback:   hostKey,
		HostKeyAlgorithms: algos,
		Timeout:           o.Timeout,
	}
	client, err := dial(ctx, addr, cfg, o.Timeout)
	if err != nil {
		return connectError(ctx, err, o, addr, keys)
	}
	defer client.Close()

	return runSession(ctx, client, CommandLine(o.RemoteOrbit, args), o, host, io)
}

// dial connects within timeout, and gives up at once when ctx ends (the
// handshake itself has no context).
func dial(ctx context.Context, addr string, cfg *ssh.ClientConfig, timeout time.Duration) (*ssh.Client, error) {
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
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

func connectError(ctx context.Context, err error, o Options, addr string, keys *keyring) error {
	if ctx.Err() != nil {
		return exitcode.Withf(exitcode.Interrupted, "connecting to %s: interrupted", addr)
	}
	var hk *HostKeyError
	if errors.As(err, &hk) {
		return exitcode.With(exitcode.Permission, hk)
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return exitcode.Withf(exitcode.Error, "connecting to %s: no answer within %v: check the host name, the port (--ssh-port, default %d) and any firewall in between", addr, o.Timeout, DefaultPort)
	}
	if strings.Contains(err.Error(), "unable to authenticate") {
		msg := fmt.Sprintf("%s@%s refused every key offered (%s)\nAdd your public key to ~%s/.ssh/authorized_keys on the appliance, or name the right key with --ssh-identity (or the user with --ssh-user).", o.User, addr, strings.Join(uniq(keys.offered), ", "), o.User)
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

func runSession(ctx context.Context, client *ssh.Client, cmdline string, o Options, host string, io *iostreams.IOStreams) error {
	sess, err := client.NewSession()
	if err != nil {
		return exitcode.Withf(exitcode.Error, "opening an SSH session on %s: %w", host, err)
	}
	defer sess.Close()
	sess.Stdin, sess.Stdout, sess.Stderr = io.In, io.Out, io.ErrOut

	// A terminal at both ends gets one remotely too, so remote panels,
	// colours and prompts behave as they would in an ssh login.
	if io.IsStdinTTY() && io.IsStdoutTTY() {
		restore, err := startPTY(sess, io, o.getenv("TERM"))
		if err != nil {
			return exitcode.Withf(exitcode.Error, "setting up the terminal for %s: %w", host, err)
		}
		defer restore()
	}

	if err := sess.Start(cmdline); err != nil {
		return exitcode.Withf(exitcode.Error, "starting %q on %s: %w", cmdline, host, err)
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
		if code == 127 {
			fmt.Fprintf(io.ErrOut, "orbit: exit status 127 from %s: is %q installed there, on the PATH of %s? --remote-orbit names its full path.\n", host, o.RemoteOrbit, o.User)
		}
		return exitcode.Silent(exitcode.Code(code))
	}
	var me *ssh.ExitMissingError
	if errors.As(err, &me) {
		return exitcode.Withf(exitcode.Error, "the connection to %s ended without the remote command's exit status", host)
	}
	return exitcode.Withf(exitcode.Error, "running orbit on %s: %w", host, err)
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
