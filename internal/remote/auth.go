package remote

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/senhasegura/orbit/internal/exitcode"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// DefaultIdentities are tried, in order, under ~/.ssh when --ssh-identity
// is not given (as OpenSSH's ssh does).
var DefaultIdentities = []string{"id_ed25519", "id_ecdsa", "id_rsa"}

// keyring is what the client offers the server: ssh-agent's keys first,
// then the identity files', and notes on keys that could not be offered,
// for the error when the server refuses all the others.
type keyring struct {
	signers []ssh.Signer
	offered []string // where the signers came from, for messages
	notes   []string
	agent   net.Conn
}

func (k *keyring) Close() {
	if k.agent != nil {
		k.agent.Close()
	}
}

func (o *Options) loadKeys(e *endpoint) (*keyring, error) {
	k := &keyring{}
	if sock := o.getenv("SSH_AUTH_SOCK"); sock != "" {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			k.notes = append(k.notes, fmt.Sprintf("ssh-agent at SSH_AUTH_SOCK=%s is unreachable (%v)", sock, err))
		} else {
			k.agent = conn
			s, err := agent.NewClient(conn).Signers()
			if err != nil {
				k.notes = append(k.notes, fmt.Sprintf("ssh-agent at SSH_AUTH_SOCK=%s: %v", sock, err))
			}
			for range s {
				k.offered = append(k.offered, "ssh-agent")
			}
			k.signers = append(k.signers, s...)
		}
	}

	explicit := e.explicitID
	files := e.Identities
	if len(files) == 0 {
		home, err := o.home()
		if err == nil {
			for _, n := range DefaultIdentities {
				files = append(files, filepath.Join(home, ".ssh", n))
			}
		}
	}
	for _, file := range files {
		file = o.expand(file)
		pem, err := os.ReadFile(file)
		if err != nil {
			if !explicit && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			code := exitcode.Usage
			if errors.Is(err, fs.ErrPermission) {
				code = exitcode.Permission
			}
			return k, exitcode.Withf(code, "reading the SSH identity --ssh-identity %s: %w", file, err)
		}
		s, err := ssh.ParsePrivateKey(pem)
		var pe *ssh.PassphraseMissingError
		switch {
		case errors.As(err, &pe):
			if pe.PublicKey != nil && k.hasKey(pe.PublicKey) {
				continue // ssh-agent already offers this key, unlocked
			}
			msg := fmt.Sprintf("the SSH key %s is protected by a passphrase, which orbit does not ask for: load it into ssh-agent (eval \"$(ssh-agent)\"; ssh-add %s) and run orbit again with SSH_AUTH_SOCK set", file, file)
			if explicit {
				k.Close()
				return nil, exitcode.Withf(exitcode.Permission, "%s", msg)
			}
			k.notes = append(k.notes, msg)
		case err != nil:
			if explicit {
				k.Close()
				return nil, exitcode.Withf(exitcode.Usage, "%s is not a usable SSH private key: %w", file, err)
			}
			k.notes = append(k.notes, fmt.Sprintf("%s skipped: %v", file, err))
		default:
			k.signers = append(k.signers, s)
			k.offered = append(k.offered, file)
		}
	}
	if len(k.signers) == 0 {
		k.Close()
		msg := "no SSH key to log in with: start ssh-agent and add a key (ssh-add), or name a key file with --ssh-identity"
		switch {
		case !explicit && len(e.Identities) > 0:
			msg += " (looked for the IdentityFile of ~/.ssh/config: " + strings.Join(e.Identities, ", ") + ")"
		case !explicit:
			msg += " (looked for ~/.ssh/" + DefaultIdentities[0] + ", " + DefaultIdentities[1] + ", " + DefaultIdentities[2] + ")"
		}
		for _, n := range k.notes {
			msg += "\n  " + n
		}
		return nil, exitcode.Withf(exitcode.Permission, "%s", msg)
	}
	return k, nil
}

func (k *keyring) hasKey(pub ssh.PublicKey) bool {
	for _, s := range k.signers {
		if bytes.Equal(s.PublicKey().Marshal(), pub.Marshal()) {
			return true
		}
	}
	return false
}
