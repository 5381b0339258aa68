package status

import (
	"net"
	"testing"
)

func TestParseProcAddr(t *testing.T) {
	tests := []struct {
		in   string
		ip   string
		port int
	}{
		{"0100007F:0BB1", "127.0.0.1", 2993},
		{"00000000:09A1", "0.0.0.0", 2465},
		{"00000000000000000000000000000000:0BB1", "::", 2993},
		{"00000000000000000000000001000000:0BB1", "::1", 2993},
		{"0000000000000000FFFF00000100007F:0BB1", "127.0.0.1", 2993},
	}
	for _, tt := range tests {
		s, err := parseProcAddr(tt.in)
		if err != nil || !s.IP.Equal(net.ParseIP(tt.ip)) || s.Port != tt.port {
			t.Errorf("parseProcAddr(%q) = %v:%d, %v; want %s:%d", tt.in, s.IP, s.Port, err, tt.ip, tt.port)
		}
	}
	for _, bad := range []string{"0100007F", "0100007F:zz", "01007F:0BB1"} {
		if _, err := parseProcAddr(bad); err == nil {
			t.Errorf("parseProcAddr(%q) succeeded", bad)
		}
	}
}

func TestListensFor(t *testing.T) {
	sock := func(ip string, port int) Socket { return Socket{IP: net.ParseIP(ip), Port: port} }
	tests := []struct {
		socks []Socket
		addr  string
		port  int
		want  bool
	}{
		{[]Socket{sock("127.0.0.1", 2993)}, "127.0.0.1", 2993, true},
		{[]Socket{sock("127.0.0.1", 2993)}, "127.0.0.1", 2465, false},
		{[]Socket{sock("127.0.0.2", 2993)}, "127.0.0.1", 2993, false},
		{[]Socket{sock("0.0.0.0", 2993)}, "127.0.0.1", 2993, true},
		{[]Socket{sock("::", 2993)}, "127.0.0.1", 2993, true},
		{[]Socket{sock("::1", 2993)}, "::1", 2993, true},
		{[]Socket{sock("0.0.0.0", 2993)}, "::1", 2993, false},
		{[]Socket{sock("127.0.0.1", 2993)}, "localhost", 2993, true},
		{nil, "127.0.0.1", 2993, false},
	}
	for _, tt := range tests {
		if got := listensFor(tt.socks, tt.addr, tt.port); got != tt.want {
			t.Errorf("listensFor(%v, %s, %d) = %v, want %v", tt.socks, tt.addr, tt.port, got, tt.want)
		}
	}
}
