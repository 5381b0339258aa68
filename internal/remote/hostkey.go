package remote

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/senhasegura/orbit/internal/exitcode"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyError is a refused host key: unknown (Known is empty) or changed
// (Known lists what known_hosts holds for the host instead).
type HostKeyError struct {
	Host       string // as given, without the port
	User       string
	Port       int
	File       string // the known_hosts file consulted
	Offered    ssh.PublicKey
	Known      []knownhosts.KnownKey
	defaultKHF bool // File is the default, so the fix needs no -o/-f option
}

func (e *HostKeyError) Error() string {
	var b strings.Builder
	addr := knownhosts.Normalize(net.JoinHostPort(e.Host, strconv.Itoa(e.Port)))
	offered := fmt.Sprintf("%s %s", e.Offered.Type(), ssh.FingerprintSHA256(e.Offered))
	scan := fmt.Sprintf("ssh-keyscan -p %d -t %s %s >> %s", e.Port, keyscanType(e.Offered.Type()), e.Host, Quote(e.File))
	if len(e.Known) == 0 {
		fmt.Fprintf(&b, "refusing to connect: the host key of %s is not in %s\n", addr, e.File)
		fmt.Fprintf(&b, "  the host offered %s\n", offered)
		b.WriteString("Check that fingerprint on the host itself (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub),\n")
		fmt.Fprintf(&b, "and only if it matches, add the key:\n  %s\n", scan)
		sshOpt := ""
		if !e.defaultKHF {
			sshOpt = " -o UserKnownHostsFile=" + Quote(e.File)
		}
		fmt.Fprintf(&b, "or connect once with ssh, which shows the fingerprint and asks: ssh -p %d%s %s@%s", e.Port, sshOpt, e.User, e.Host)
		return b.String()
	}
	fmt.Fprintf(&b, "refusing to connect: the host key of %s has CHANGED\n", addr)
	fmt.Fprintf(&b, "  the host offered %s\n", offered)
	for _, k := range e.Known {
		fmt.Fprintf(&b, "  %s:%d expects %s %s\n", k.Filename, k.Line, k.Key.Type(), ssh.FingerprintSHA256(k.Key))
	}
	b.WriteString("Someone may be intercepting the connection, or the appliance was reinstalled.\n")
	b.WriteString("If the appliance's admin confirms the new fingerprint, replace the old entry:\n")
	fmt.Fprintf(&b, "  ssh-keygen -R %s -f %s\n  %s", Quote(addr), Quote(e.Known[0].Filename), scan)
	return b.String()
}

func keyscanType(t string) string {
	switch {
	case strings.Contains(t, "ed25519"):
		return "ed25519"
	case strings.HasPrefix(t, "ecdsa-"), strings.HasPrefix(t, "sk-ecdsa-"):
		return "ecdsa"
	case strings.Contains(t, "rsa"):
		return "rsa"
	}
	return t
}

// hostKeyCheck builds the host key callback from the known_hosts file and
// the host key algorithms to ask for: those of the keys already known for
// the host, so that a server with several host keys presents the one the
// file holds instead of one that would look like a changed key.
func hostKeyCheck(khFiles []string, defaultFile bool, user, host string, port int) (ssh.HostKeyCallback, []string, error) {
	var files []string
	for _, file := range khFiles {
		if _, err := os.Stat(file); err == nil {
			files = append(files, file)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, exitcode.Withf(exitcode.Permission, "reading the known hosts file %s: %w", file, err)
		}
	}
	file := khFiles[0]
	// With no file every host is unknown, which the callback reports.
	db, err := knownhosts.New(files...)
	if err != nil {
		return nil, nil, exitcode.Withf(exitcode.Usage, "reading the known hosts file: %w\nFix or remove the broken line, or name another file with --ssh-known-hosts.", err)
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	algos := knownAlgorithms(db, addr)
	cb := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := db(hostname, remote, key)
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) {
			return &HostKeyError{Host: host, User: user, Port: port, File: file, Offered: key, Known: ke.Want, defaultKHF: defaultFile}
		}
		var re *knownhosts.RevokedError
		if errors.As(err, &re) {
			return fmt.Errorf("refusing to connect: the host key of %s (%s) is marked @revoked in %s:%d", addr, ssh.FingerprintSHA256(key), re.Revoked.Filename, re.Revoked.Line)
		}
		return err
	}
	return cb, algos, nil
}

// knownAlgorithms asks db about a throwaway key: the mismatch lists every
// key the file holds for addr.
func knownAlgorithms(db ssh.HostKeyCallback, addr string) []string {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil
	}
	probe, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil
	}
	var ke *knownhosts.KeyError
	if err := db(addr, &net.TCPAddr{}, probe); !errors.As(err, &ke) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			algos = append(algos, a)
		}
	}
	for _, k := range ke.Want {
		if t := k.Key.Type(); t == ssh.KeyAlgoRSA {
			// An RSA key signs with SHA-2 on current servers; ssh-rsa
			// (SHA-1) last, for old ones.
			add(ssh.KeyAlgoRSASHA512)
			add(ssh.KeyAlgoRSASHA256)
			add(ssh.KeyAlgoRSA)
		} else {
			add(t)
		}
	}
	return algos
}
