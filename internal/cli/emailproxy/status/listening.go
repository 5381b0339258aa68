package status

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// Socket is a TCP socket in the LISTEN state.
type Socket struct {
	IP   net.IP
	Port int
}

// ReadListening lists this network namespace's listening TCP sockets from
// /proc/net/tcp and /proc/net/tcp6. Status prefers this to connecting:
// a connection to the proxy's port is a client to the proxy, which may dial
// the provider upstream and log a session, just because someone asked for
// the status.
func ReadListening() ([]Socket, error) {
	var out []Socket
	found := false
	for _, p := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		socks, err := readListenFile(p)
		if err != nil {
			if os.IsNotExist(err) {
				continue // no IPv6 in this kernel
			}
			return nil, err
		}
		found = true
		out = append(out, socks...)
	}
	if !found {
		return nil, fmt.Errorf("no /proc/net/tcp: is /proc mounted?")
	}
	return out, nil
}

func readListenFile(path string) ([]Socket, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Socket
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "0A" { // TCP_LISTEN
			continue
		}
		s, err := parseProcAddr(fields[1])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// parseProcAddr reads "0100007F:0BB9": the address as 32-bit words in the
// kernel's byte order, then the port in hex.
func parseProcAddr(s string) (Socket, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return Socket{}, fmt.Errorf("address %q has no port", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return Socket{}, fmt.Errorf("address %q: %w", s, err)
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return Socket{}, fmt.Errorf("address %q is not an IPv4 or IPv6 address", s)
	}
	ip := make(net.IP, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.BigEndian.PutUint32(ip[i:], binary.NativeEndian.Uint32(raw[i:]))
	}
	return Socket{IP: ip, Port: int(port)}, nil
}

// listensFor reports whether one of socks accepts connections meant for a
// listener configured on addr:port: the same address, or a wildcard bind
// of the same family (IPv6's also takes IPv4 unless the socket is
// v6-only, which the proxy's is not). A wildcard or host name in the
// configuration matches on the port alone.
func listensFor(socks []Socket, addr string, port int) bool {
	want := net.ParseIP(strings.Trim(addr, "[]"))
	for _, s := range socks {
		if s.Port != port {
			continue
		}
		switch {
		case want == nil, want.IsUnspecified(), s.IP.Equal(want), s.IP.Equal(net.IPv6unspecified):
			return true
		case s.IP.Equal(net.IPv4zero) && want.To4() != nil:
			return true
		}
	}
	return false
}
