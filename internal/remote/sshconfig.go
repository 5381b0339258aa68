package remote

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
	"github.com/senhasegura/orbit/internal/exitcode"
)

// Where ssh(1) reads its client configuration, in order: the first value
// found for a keyword wins.
const (
	DefaultSSHConfig = "~/.ssh/config"
	SystemSSHConfig  = "/etc/ssh/ssh_config"
)

// sshConfig is the client configuration of ssh(1): the user's file, then
// the system's (or only the file named by --ssh-config, as ssh -F).
type sshConfig struct {
	files []*ssh_config.Config
	paths []string
}

func (o *Options) loadSSHConfig() (*sshConfig, error) {
	c := &sshConfig{}
	paths := []string{o.expand(DefaultSSHConfig), SystemSSHConfig}
	explicit := o.SSHConfig != ""
	if explicit {
		if o.SSHConfig == "none" {
			return c, nil
		}
		paths = []string{o.expand(o.SSHConfig)}
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) && !explicit {
			continue
		}
		if err != nil {
			return nil, exitcode.Withf(exitcode.Usage, "reading the SSH client configuration: %w\nName a readable file with --ssh-config, or --ssh-config none to use none.", err)
		}
		cfg, err := ssh_config.Decode(bytes.NewReader(skipUnsupportedMatch(b)))
		if err != nil {
			return nil, exitcode.Withf(exitcode.Usage, "reading the SSH client configuration %s: %w\nFix the line, or name another file with --ssh-config (none: use no file).", p, err)
		}
		c.files = append(c.files, cfg)
		c.paths = append(c.paths, p)
	}
	return c, nil
}

// skipUnsupportedMatch turns Match blocks whose criteria the parser does
// not evaluate (exec, user, originalhost, ...) into blocks that match no
// host, instead of failing on the whole file: their settings are ignored,
// as ssh ignores them when the condition is false. Match host and Match
// all stay.
func skipUnsupportedMatch(b []byte) []byte {
	lines := bytes.Split(b, []byte("\n"))
	for i, line := range lines {
		f := strings.Fields(strings.ReplaceAll(string(line), "=", " "))
		if len(f) == 0 || !strings.EqualFold(f[0], "Match") {
			continue
		}
		if len(f) > 1 && (strings.EqualFold(f[1], "host") || (strings.EqualFold(f[1], "all") && len(f) == 2)) {
			continue
		}
		lines[i] = []byte("Host !*")
	}
	return bytes.Join(lines, []byte("\n"))
}

// get is the first value of key in a Host (or Match host) block matching
// alias, as ssh(1) takes it; "" when none is set.
func (c *sshConfig) get(alias, key string) string {
	for _, f := range c.files {
		if v, err := f.Get(alias, key); err == nil && v != "" {
			return v
		}
	}
	return ""
}

// getAll is every value of a keyword that accumulates (IdentityFile).
func (c *sshConfig) getAll(alias, key string) []string {
	var out []string
	for _, f := range c.files {
		if v, err := f.GetAll(alias, key); err == nil {
			out = append(out, v...)
		}
	}
	return out
}

func (c *sshConfig) where() string {
	if len(c.paths) == 0 {
		return "the SSH client configuration"
	}
	return strings.Join(c.paths, " or ")
}

// endpoint is one SSH server to log in to, with everything resolved: the
// address to dial, the user, the keys to offer, the known_hosts files its
// key must be in, and the jump hosts to go through first.
type endpoint struct {
	Name       string // as given: an alias, a name or an address
	Host       string // what to dial and look up in known_hosts
	Port       int
	User       string
	Identities []string // key files; explicit ones must exist
	explicitID bool
	KnownHosts []string
	defaultKH  bool // KnownHosts is ssh's default, so fixes need no -f
	Jumps      []*endpoint
}

func (e *endpoint) addr() string { return joinHostPort(e.Host, e.Port) }

func joinHostPort(h string, p int) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]:" + strconv.Itoa(p)
	}
	return h + ":" + strconv.Itoa(p)
}

// resolve fills an endpoint for a --host address: an explicit --ssh-user
// or --ssh-port wins, then what the address names, then ~/.ssh/config,
// then orbit's defaults (mt4adm, 59022). Jump hosts are SSH servers of
// their own, not appliances: their defaults are ssh's (the local user, 22).
func (o *Options) resolve(a Address, cfg *sshConfig, jump bool) (*endpoint, error) {
	e := &endpoint{Name: a.Host}
	alias := a.Host
	e.Host = alias
	if hn := cfg.get(alias, "HostName"); hn != "" {
		e.Host = expandTokens(hn, map[byte]string{'h': alias, 'n': alias})
	}

	portStr := cfg.get(alias, "Port")
	switch {
	case !jump && o.Port != 0:
		e.Port = o.Port
	case a.Port != 0:
		e.Port = a.Port
	case portStr != "":
		p, err := strconv.Atoi(portStr)
		if err != nil || p < 1 || p > 65535 {
			return nil, exitcode.Withf(exitcode.Usage, "%s: Port %q for %s is not a port number; fix it there", cfg.where(), portStr, alias)
		}
		e.Port = p
	case jump:
		e.Port = 22
	default:
		e.Port = DefaultPort
	}

	cfgUser := cfg.get(alias, "User")
	switch {
	case !jump && o.User != "":
		e.User = o.User
	case a.User != "":
		e.User = a.User
	case cfgUser != "":
		e.User = cfgUser
	case jump:
		e.User = o.localUser()
	default:
		e.User = DefaultUser
	}

	tokens := map[byte]string{'h': e.Host, 'n': alias, 'p': strconv.Itoa(e.Port), 'r': e.User, 'u': o.localUser()}
	if h, err := o.home(); err == nil {
		tokens['d'] = h
	}
	expand := func(p string) string { return o.expand(expandTokens(p, tokens)) }

	switch ids := cfg.getAll(alias, "IdentityFile"); {
	case len(o.Identities) > 0:
		for _, id := range o.Identities {
			e.Identities = append(e.Identities, o.expand(id))
		}
		e.explicitID = true
	case len(ids) > 0:
		for _, id := range ids {
			e.Identities = append(e.Identities, expand(id))
		}
	}

	switch kh := cfg.get(alias, "UserKnownHostsFile"); {
	case o.KnownHosts != "":
		e.KnownHosts = []string{o.expand(o.KnownHosts)}
		e.defaultKH = o.KnownHosts == DefaultKnownHosts
	case kh != "" && kh != "none":
		for _, f := range strings.Fields(kh) {
			e.KnownHosts = append(e.KnownHosts, expand(f))
		}
	default:
		e.KnownHosts = []string{o.expand(DefaultKnownHosts)}
		e.defaultKH = true
	}

	if jump {
		// A jump host's own ProxyJump is not followed: list every hop in
		// the ProxyJump of the appliance, in order.
		return e, nil
	}
	if pj := cfg.get(alias, "ProxyJump"); pj != "" && pj != "none" {
		for _, hop := range strings.Split(pj, ",") {
			ja, err := ParseAddress(strings.TrimSpace(hop))
			if err != nil {
				return nil, exitcode.Withf(exitcode.Usage, "%s: ProxyJump %q for %s: %v", cfg.where(), pj, alias, err)
			}
			j, err := o.resolve(ja, cfg, true)
			if err != nil {
				return nil, err
			}
			e.Jumps = append(e.Jumps, j)
		}
	}
	return e, nil
}

// expandTokens replaces ssh_config's %x tokens that orbit knows; %% is a
// percent sign; unknown tokens stay as they are.
func expandTokens(s string, tokens map[byte]string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i == len(s)-1 {
			b.WriteByte(s[i])
			continue
		}
		i++
		if s[i] == '%' {
			b.WriteByte('%')
		} else if v, ok := tokens[s[i]]; ok {
			b.WriteString(v)
		} else {
			b.WriteByte('%')
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func (o *Options) localUser() string {
	if u := o.getenv("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "root"
}
