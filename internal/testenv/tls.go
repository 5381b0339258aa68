package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/renameio/v2"
)

// TLSFiles is a throwaway certificate authority and one ECDSA P-256 server
// certificate it signed, written as PEM files.
type TLSFiles struct {
	Dir string
	// CAFile holds only the CA certificate: pass it as SSL_CERT_FILE (Go's
	// crypto/x509 and OpenSSL honour it), curl --cacert, or Python's
	// ssl.create_default_context(cafile=...).
	CAFile string
	// CertFile holds the server certificate followed by the CA certificate.
	CertFile string
	// KeyFile holds the server's private key (PKCS#8, mode 0600).
	KeyFile string
	// Hosts are the names and addresses the server certificate is valid for.
	Hosts []string

	CA   *x509.Certificate
	Pool *x509.CertPool
}

// DefaultTLSHosts are what a loopback server answers as.
var DefaultTLSHosts = []string{"127.0.0.1", "::1", "localhost"}

// NewTLS writes a fresh CA and server certificate for DefaultTLSHosts into a
// directory of t (readable by Dovecot's unprivileged processes) and returns
// the paths.
func NewTLS(t testing.TB) *TLSFiles {
	t.Helper()
	f, err := WriteTLS(filepath.Join(SharedDir(t), "tls"), DefaultTLSHosts...)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// WriteTLS creates dir (mode 0755) and writes ca.crt, server.crt and
// server.key into it: a CA valid for a day and a server certificate for
// hosts (IP addresses and DNS names; DefaultTLSHosts when empty).
func WriteTLS(dir string, hosts ...string) (*TLSFiles, error) {
	if len(hosts) == 0 {
		hosts = DefaultTLSHosts
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the test CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "orbit test CA", Organization: []string{"orbit testenv"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("signing the test CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("parsing the test CA certificate: %w", err)
	}

	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the test server key: %w", err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: hosts[0], Organization: []string{"orbit testenv"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			srvTmpl.IPAddresses = append(srvTmpl.IPAddresses, ip)
		} else {
			srvTmpl.DNSNames = append(srvTmpl.DNSNames, h)
		}
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("signing the test server certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		return nil, fmt.Errorf("encoding the test server key: %w", err)
	}

	f := &TLSFiles{
		Dir:      dir,
		CAFile:   filepath.Join(dir, "ca.crt"),
		CertFile: filepath.Join(dir, "server.crt"),
		KeyFile:  filepath.Join(dir, "server.key"),
		Hosts:    append([]string(nil), hosts...),
		CA:       ca,
		Pool:     x509.NewCertPool(),
	}
	f.Pool.AddCert(ca)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}), caPEM...)
	writes := []struct {
		path string
		data []byte
		mode uint32
	}{
		{f.CAFile, caPEM, 0o644},
		{f.CertFile, chain, 0o644},
		{f.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600},
	}
	for _, w := range writes {
		if err := renameio.WriteFile(w.path, w.data, os.FileMode(w.mode)); err != nil {
			return nil, fmt.Errorf("writing %s: %w", w.path, err)
		}
	}
	return f, nil
}

// ServerConfig is a TLS 1.2+ server configuration with the certificate, for
// Go servers in tests (the fake provider over HTTPS, a fake upstream).
func (f *TLSFiles) ServerConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading %s and %s: %w", f.CertFile, f.KeyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// ClientConfig trusts only the test CA.
func (f *TLSFiles) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: f.Pool, MinVersion: tls.VersionTLS12}
}

// Env is the environment entry that makes Go, OpenSSL-based tools and
// Python trust the test CA (and nothing else).
func (f *TLSFiles) Env() string { return "SSL_CERT_FILE=" + f.CAFile }

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return n
}
