package remote

import (
	"fmt"
	"path"
	"strings"

	"github.com/senhasegura/orbit/internal/exitcode"
	"golang.org/x/crypto/ssh"
)

// sudoError explains a failure of `sudo -n` itself (not of orbit behind
// it): sudo's own message is already on standard error, this says what it
// means and the sudoers line that fixes it. It returns nil when the
// command failed for another reason. head is the start of the remote
// standard error.
func (o *Options) sudoError(client *ssh.Client, e *endpoint, code int, head string) error {
	var said string
	for line := range strings.Lines(head) {
		line = strings.TrimSpace(line)
		// sudo warns "unable to resolve host" and goes on; skip such lines.
		if strings.HasPrefix(line, "sudo: ") && !strings.Contains(line, "unable to resolve host") {
			said = line
			break
		}
		if strings.HasPrefix(line, "Sorry, user ") {
			said = line
			break
		}
		if strings.Contains(line, "sudo: not found") || strings.Contains(line, "sudo: command not found") {
			said = line
			break
		}
	}
	if said == "" {
		return nil
	}
	who := e.User + "@" + e.Name
	switch {
	case code == 127 && !strings.HasPrefix(said, "sudo: "):
		return exitcode.Withf(exitcode.Permission, "%s is not root and sudo is not installed there (%q), so orbit cannot run as root.\nLog in as root (--ssh-user root), install sudo there, or run commands that need no root with --ssh-sudo never.", who, said)
	case strings.Contains(said, "command not found"):
		return exitcode.Withf(exitcode.Error, "sudo on %s cannot find %q (%s): it looks only in its secure_path.\nName orbit's full path with --remote-orbit (e.g. --remote-orbit /usr/local/bin/orbit).", e.Name, o.RemoteOrbit, said)
	case code != 1:
		return nil
	}
	why := "may not run orbit as root without a password"
	switch {
	case strings.Contains(said, "password is required"):
		why = "may not run orbit as root without a password (sudo asks for one, and orbit runs it with -n: it never types passwords)"
	case strings.Contains(said, "is not allowed"), strings.Contains(said, "not in the sudoers"), strings.Contains(said, "may not run sudo"):
		why = "is not allowed to run orbit as root with sudo"
	}
	line := fmt.Sprintf("%s ALL=(root) NOPASSWD: %s", e.User, o.remoteOrbitPath(client))
	return exitcode.Withf(exitcode.Permission, "%s %s (sudo -n said: %s).\n"+
		"To allow it, add this line on %s, as root, with visudo -f /etc/sudoers.d/orbit:\n  %s\n"+
		"or log in as root (--ssh-user root); commands that need no root also run with --ssh-sudo never.",
		who, why, said, e.Name, line)
}

// remoteOrbitPath is the full path of the remote orbit, for a sudoers
// line: --remote-orbit when it is one, else what the login shell finds.
func (o *Options) remoteOrbitPath(client *ssh.Client) string {
	if path.IsAbs(o.RemoteOrbit) {
		return o.RemoteOrbit
	}
	fallback := "/usr/bin/" + o.RemoteOrbit + "   (the full path of orbit there: command -v " + o.RemoteOrbit + ")"
	sess, err := client.NewSession()
	if err != nil {
		return fallback
	}
	defer sess.Close()
	out, err := sess.Output("command -v " + Quote(o.RemoteOrbit))
	p := strings.TrimSpace(string(out))
	if err != nil || !path.IsAbs(p) || strings.ContainsAny(p, " \t\n") {
		return fallback
	}
	return p
}
