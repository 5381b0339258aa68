package assertion

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

// maxKeyFile bounds what we read from a certificate, key or JSON key file: a
// real one is a few kilobytes, and a path pointing at a huge file by mistake
// should fail fast instead of filling memory.
const maxKeyFile = 1 << 20

func readSmallFile(path, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, what, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s %s: %w", ErrConfig, what, path, err)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("%w: %s %s is larger than %d bytes; it cannot be a PEM file", ErrConfig, what, path, maxKeyFile)
	}
	return b, nil
}

// loadCertificateCredential reads the certificate and its private key and
// checks that they belong together and that the certificate is in force,
// because the provider would otherwise refuse with a far vaguer message.
func loadCertificateCredential(certPath, keyPath string, now time.Time) (*x509.Certificate, *rsa.PrivateKey, error) {
	certPEM, err := readSmallFile(certPath, "jwt_certificate_path")
	if err != nil {
		return nil, nil, err
	}
	cert, err := parseCertificate(certPEM, certPath)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := readSmallFile(keyPath, "jwt_key_path")
	if err != nil {
		return nil, nil, err
	}
	key, err := parseRSAKey(keyPEM, "jwt_key_path "+keyPath)
	if err != nil {
		return nil, nil, err
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, nil, fmt.Errorf("%w: jwt_certificate_path %s holds a %s certificate; certificate credentials are signed with RS256, which needs an RSA certificate", ErrConfig, certPath, cert.PublicKeyAlgorithm)
	}
	if !pub.Equal(&key.PublicKey) {
		return nil, nil, fmt.Errorf("%w: the private key in jwt_key_path %s does not belong to the certificate in jwt_certificate_path %s; point both at the same key pair", ErrConfig, keyPath, certPath)
	}
	if now.After(cert.NotAfter) {
		return nil, nil, fmt.Errorf("%w: the certificate in jwt_certificate_path %s expired on %s; create a new one and upload it to the app registration", ErrConfig, certPath, cert.NotAfter.UTC().Format(time.DateOnly))
	}
	if now.Before(cert.NotBefore) {
		return nil, nil, fmt.Errorf("%w: the certificate in jwt_certificate_path %s is not valid before %s; check the system clock", ErrConfig, certPath, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	return cert, key, nil
}

// parseCertificate takes the first CERTIFICATE block, so a file holding the
// certificate followed by its chain (or by the key) works too.
func parseCertificate(data []byte, path string) (*x509.Certificate, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: jwt_certificate_path %s: the CERTIFICATE block does not parse: %w", ErrConfig, path, err)
		}
		return cert, nil
	}
	return nil, fmt.Errorf("%w: jwt_certificate_path %s holds no PEM CERTIFICATE block; it must be the PEM (Base64, -----BEGIN CERTIFICATE-----) form of the certificate uploaded to the app registration", ErrConfig, path)
}

// parseRSAKey accepts PKCS #8 ("PRIVATE KEY") and PKCS #1 ("RSA PRIVATE
// KEY") blocks. where names the source for messages; nothing of the key's
// content ever goes into an error.
func parseRSAKey(data []byte, where string) (*rsa.PrivateKey, error) {
	rest := data
	sawOther := ""
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch block.Type {
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("%w: %s holds an encrypted private key; store it unencrypted (for example `openssl pkcs8 -topk8 -nocrypt`) in a file only the proxy's user can read", ErrConfig, where)
		case "RSA PRIVATE KEY":
			if _, encrypted := block.Headers["Proc-Type"]; encrypted {
				return nil, fmt.Errorf("%w: %s holds a passphrase-protected private key; store it unencrypted (for example `openssl rsa`) in a file only the proxy's user can read", ErrConfig, where)
			}
			k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: the RSA PRIVATE KEY block is damaged (%s)", ErrConfig, where, keyErrorKind(err))
			}
			return k, nil
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: the PRIVATE KEY block is damaged (%s)", ErrConfig, where, keyErrorKind(err))
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("%w: %s holds a %T key; RS256 needs an RSA key", ErrConfig, where, k)
			}
			return rk, nil
		case "EC PRIVATE KEY", "OPENSSH PRIVATE KEY":
			sawOther = block.Type
		}
	}
	if sawOther != "" {
		return nil, fmt.Errorf("%w: %s holds an %s; RS256 needs an RSA key in PEM (PKCS #8 or PKCS #1) form", ErrConfig, where, sawOther)
	}
	return nil, fmt.Errorf("%w: %s holds no PEM private key (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)", ErrConfig, where)
}

// keyErrorKind keeps a parser's complaint but not anything it might quote.
// The x509 package's messages are fixed strings today; cutting at a colon
// keeps us safe should one ever append detail.
func keyErrorKind(err error) string {
	s := err.Error()
	if i := strings.Index(s, ":"); i >= 0 && i < len(s)-1 {
		s = s[:i]
	}
	return s
}

// serviceAccountKey is the part of a Google service account JSON key we use.
type serviceAccountKey struct {
	Type         string `json:"type"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`

	rsa    *rsa.PrivateKey
	source string // for messages: "key file /path" or "the JSON key in client_secret"
}

func loadServiceAccountKey(acct config.Account) (*serviceAccountKey, error) {
	var data []byte
	var source string
	switch strings.ToLower(acct.ClientID) {
	case "file":
		if acct.ClientSecret == "" {
			return nil, fmt.Errorf("%w for [%s]: client_id is \"file\" but client_secret is empty; set client_secret to the path of the service account's JSON key file", ErrConfig, acct.Section)
		}
		source = "service account key file " + acct.ClientSecret
		b, err := readSmallFile(acct.ClientSecret, "service account key file (client_secret)")
		if err != nil {
			return nil, err
		}
		data = b
	case "key":
		if acct.ClientSecret == "" {
			return nil, fmt.Errorf("%w for [%s]: client_id is \"key\" but client_secret is empty; set client_secret to the service account's JSON key", ErrConfig, acct.Section)
		}
		source = "the JSON key in client_secret"
		data = []byte(acct.ClientSecret)
	default:
		return nil, fmt.Errorf("%w for [%s]: with oauth2_flow = service_account, client_id must be \"file\" (client_secret is the path of the JSON key file) or \"key\" (client_secret is the JSON key itself)", ErrConfig, acct.Section)
	}
	var k serviceAccountKey
	if err := json.Unmarshal(data, &k); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("%w for [%s]: %s is not valid JSON (error at byte %d); download the key again from the Google Cloud console", ErrConfig, acct.Section, source, se.Offset)
		}
		return nil, fmt.Errorf("%w for [%s]: %s is not a service account key (a JSON object with type, client_email, private_key and token_uri)", ErrConfig, acct.Section, source)
	}
	k.source = source
	if k.Type != "" && k.Type != "service_account" {
		return nil, fmt.Errorf("%w for [%s]: %s is a %q credential, not a service_account key; create a key for a service account", ErrConfig, acct.Section, source, k.Type)
	}
	var missing []string
	if k.ClientEmail == "" {
		missing = append(missing, "client_email")
	}
	if k.PrivateKey == "" {
		missing = append(missing, "private_key")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w for [%s]: %s has no %s", ErrConfig, acct.Section, source, strings.Join(missing, " and no "))
	}
	key, err := parseRSAKey([]byte(k.PrivateKey), "the private_key of "+source+" for ["+acct.Section+"]")
	if err != nil {
		return nil, err
	}
	k.rsa = key
	k.PrivateKey = ""
	return &k, nil
}
