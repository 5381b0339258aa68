package remote

import (
	"net"
	"strconv"
	"strings"

	"github.com/senhasegura/orbit/internal/exitcode"
)

// Address is a host as the user typed it: [user@]host[:port] or
// ssh://[user@]host[:port]. User and Port are empty and 0 when not given,
// so that --ssh-user, ~/.ssh/config and the defaults can fill them.
type Address struct {
	User string
	Host string // a name (perhaps an ~/.ssh/config alias) or an IP address, without brackets
	Port int
}

const addressForms = "\n--host takes [USER@]HOST[:PORT] or ssh://[USER@]HOST[:PORT], with an IPv6 address in brackets when a port follows (e.g. mt4adm@vault.example.com:59022, [2001:db8::5]:59022)."

// ParseAddress parses the forms ssh(1) takes: [user@]host[:port],
// ssh://[user@]host[:port], [v6addr]:port and a bare IPv6 address.
func ParseAddress(s string) (Address, error) {
	orig := s
	bad := func(why string) (Address, error) {
		return Address{}, exitcode.Withf(exitcode.Usage, "--host %q: %s%s", orig, why, addressForms)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return Address{}, exitcode.Withf(exitcode.Usage, "--host is empty%s", addressForms)
	}
	uri := false
	if rest, ok := strings.CutPrefix(s, "ssh://"); ok {
		uri = true
		s = strings.TrimSuffix(rest, "/")
		if strings.Contains(s, "/") {
			return bad("an ssh:// address names no path")
		}
	} else if strings.Contains(s, "://") {
		return bad("only ssh:// addresses are understood")
	}
	var a Address
	if i := strings.LastIndex(s, "@"); i >= 0 {
		a.User, s = s[:i], s[i+1:]
		if a.User == "" || strings.ContainsAny(a.User, " \t:/") {
			return bad("the user before @ is empty or not a user name")
		}
	}
	portStr := ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return bad("the [ of the IPv6 address is never closed")
		}
		a.Host, s = s[1:end], s[end+1:]
		if s != "" {
			p, ok := strings.CutPrefix(s, ":")
			if !ok {
				return bad("only :PORT may follow the ]")
			}
			if p == "" {
				return bad("ends with a colon but names no port")
			}
			portStr = p
		}
	case strings.Count(s, ":") == 1:
		a.Host, portStr, _ = strings.Cut(s, ":")
		if portStr == "" {
			return bad("ends with a colon but names no port")
		}
	case strings.Count(s, ":") > 1:
		// A bare IPv6 address, which has colons of its own: no port.
		if uri || net.ParseIP(s) == nil {
			return bad("an IPv6 address goes in brackets when a port follows")
		}
		a.Host = s
	default:
		a.Host = s
	}
	if a.Host == "" || strings.ContainsAny(a.Host, " \t/[]@") {
		return bad("is not a host name or address")
	}
	if portStr != "" {
		p, err := strconv.Atoi(portStr)
		if err != nil || p < 1 || p > 65535 {
			return bad("the port must be a number from 1 to 65535")
		}
		a.Port = p
	}
	return a, nil
}

// String gives the address back in the [user@]host[:port] form.
func (a Address) String() string {
	h := a.Host
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if a.Port != 0 {
		h += ":" + strconv.Itoa(a.Port)
	}
	if a.User != "" {
		h = a.User + "@" + h
	}
	return h
}
