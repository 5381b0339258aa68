package config

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
)

// MetricsListen is [emailproxy] metrics_listen (an orbit extension): where
// `serve` offers Prometheus metrics; "" is off.
func (c *Config) MetricsListen() string { return c.str(GlobalSection, "metrics_listen") }

// checkMetricsListen accepts loopback TCP or a Unix socket only: the
// endpoint has no authentication. (pkg/emailproxy/metrics checks the same
// when it binds.)
func checkMetricsListen(l loc, v string) []Diagnostic {
	if v == "" {
		return nil
	}
	if p, ok := strings.CutPrefix(v, "unix:"); ok || strings.HasPrefix(v, "/") {
		if !ok {
			p = v
		}
		if !filepath.IsAbs(p) {
			return []Diagnostic{l.diag(Error, fmt.Sprintf("%s = %s: a Unix socket path must be absolute", l.name(), v), "write unix:/run/orbit/metrics.sock")}
		}
		return nil
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil || port == "" {
		return []Diagnostic{l.diag(Error, fmt.Sprintf("%s = %s is not HOST:PORT or unix:/PATH", l.name(), v), "write 127.0.0.1:9101")}
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return []Diagnostic{l.diag(Error, fmt.Sprintf("%s = %s is not a loopback address; the metrics endpoint has no authentication", l.name(), v),
			"listen on 127.0.0.1, [::1] or a Unix socket, and scrape through a local agent or an SSH tunnel")}
	}
	return nil
}
