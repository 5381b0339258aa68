package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

// upstreamTLSConfig is the client TLS configuration for one section. The
// hook may add to it, but verification against server_address and the TLS
// 1.2 floor are imposed afterwards: there is deliberately no way to turn
// verification off.
func (s *Server) upstreamTLSConfig(srv config.Server) *tls.Config {
	cfg := &tls.Config{RootCAs: s.opts.RootCAs}
	if s.opts.UpstreamTLS != nil {
		s.opts.UpstreamTLS(cfg)
	}
	cfg.ServerName = srv.ServerAddress
	cfg.InsecureSkipVerify = false
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	return cfg
}

// dialUpstream connects to the section's upstream server, with TLS at once
// when implicitTLS. The whole connect, handshake included, is bounded by
// DialTimeout and ctx.
func (s *Server) dialUpstream(ctx context.Context, srv config.Server, implicitTLS bool) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
	defer cancel()
	d := net.Dialer{}
	c, err := d.DialContext(ctx, "tcp", hostPort(srv))
	if err != nil {
		return nil, &upstreamError{server: hostPort(srv), what: "cannot connect to the", err: err,
			hint: "check server_address and server_port, DNS and the firewall"}
	}
	// The pipe after login reads the socket non-blocking (pipe.go).
	c = newNBConn(c)
	if !implicitTLS {
		return c, nil
	}
	tc, err := s.clientTLS(ctx, c, srv)
	if err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

// clientTLS runs the TLS handshake towards the upstream server.
func (s *Server) clientTLS(ctx context.Context, c net.Conn, srv config.Server) (*tls.Conn, error) {
	tc := tls.Client(c, s.upstreamTLSConfig(srv))
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, &upstreamError{server: hostPort(srv), what: "TLS handshake failed with the", err: err, hint: tlsHint(err)}
	}
	return tc, nil
}

func tlsHint(err error) string {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	switch {
	case errors.As(err, &ua):
		return "the server's certificate is not signed by a trusted CA; add its CA to the system store or point SSL_CERT_FILE at a bundle that has it"
	case errors.As(err, &hn):
		return "the certificate does not name server_address; set server_address to a name the certificate holds"
	case errors.Is(err, context.DeadlineExceeded):
		return "the server did not complete TLS in time; is server_port a TLS port? (SMTP port 587 needs server_starttls = True)"
	}
	return ""
}
