package assertion

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
)

var (
	keyOnce sync.Once
	keyA    *rsa.PrivateKey
	keyB    *rsa.PrivateKey
)

// testKeys generates two RSA keys once per test binary: generation is the
// slow part and the tests only need distinct keys.
func testKeys(t testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	keyOnce.Do(func() {
		var err error
		if keyA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if keyB, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return keyA, keyB
}

var fixedNow = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

func makeCert(t testing.TB, key crypto.Signer, notBefore, notAfter time.Time) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "orbit test"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func writePEM(t testing.TB, dir, name, typ string, der []byte, headers map[string]string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Headers: headers, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func pkcs8(t testing.TB, k any) []byte {
	t.Helper()
	b, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeJWT verifies an RS256 compact JWS with pub and returns its parts.
func decodeJWT(t *testing.T, token string, pub *rsa.PublicKey) (map[string]any, map[string]any) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("JWT has %d parts, want 3", len(parts))
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatalf("signature is not unpadded base64url: %v", err)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
		t.Fatalf("signature does not verify with the test's public key: %v", err)
	}
	var header, claims map[string]any
	for i, dst := range []*map[string]any{&header, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("part %d is not unpadded base64url: %v", i, err)
		}
		d := json.NewDecoder(strings.NewReader(string(raw)))
		d.UseNumber()
		if err := d.Decode(dst); err != nil {
			t.Fatalf("part %d is not JSON: %v", i, err)
		}
	}
	return header, claims
}

func num(t *testing.T, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("claim %v (%T) is not a number", v, v)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func TestClientAssertion(t *testing.T) {
	key, _ := testKeys(t)
	dir := t.TempDir()
	der := makeCert(t, key, fixedNow.Add(-time.Hour), fixedNow.Add(365*24*time.Hour))
	certPath := writePEM(t, dir, "cert.pem", "CERTIFICATE", der, nil)
	keyPath := writePEM(t, dir, "key.pem", "PRIVATE KEY", pkcs8(t, key), nil)
	acct := config.Account{
		Name: "alice@example.com", Section: "@", ClientID: "0d5c-client",
		TokenURL:           "https://login.example.test/tenant/oauth2/v2.0/token",
		JWTCertificatePath: certPath, JWTKeyPath: keyPath,
	}
	s := &Signer{Now: func() time.Time { return fixedNow }}
	tok, err := s.ClientAssertion(acct)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	header, claims := decodeJWT(t, tok, cert.PublicKey.(*rsa.PublicKey))

	thumb := sha256.Sum256(der)
	wantHeader := map[string]any{"alg": "RS256", "typ": "JWT", "x5t#S256": base64.RawURLEncoding.EncodeToString(thumb[:])}
	for k, v := range wantHeader {
		if header[k] != v {
			t.Errorf("header %s = %v, want %v", k, header[k], v)
		}
	}
	for k, v := range map[string]string{"aud": acct.TokenURL, "iss": acct.ClientID, "sub": acct.ClientID} {
		if claims[k] != v {
			t.Errorf("claim %s = %v, want %v", k, claims[k], v)
		}
	}
	if got := num(t, claims["iat"]); got != fixedNow.Unix() {
		t.Errorf("iat = %d, want %d", got, fixedNow.Unix())
	}
	if got := num(t, claims["nbf"]); got != fixedNow.Unix() {
		t.Errorf("nbf = %d, want %d", got, fixedNow.Unix())
	}
	if got := num(t, claims["exp"]); got != fixedNow.Add(DefaultClientAssertionLifetime).Unix() {
		t.Errorf("exp = %d, want now+%s", got, DefaultClientAssertionLifetime)
	}
	jti, _ := claims["jti"].(string)
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(jti) {
		t.Errorf("jti = %q, want a random UUID", jti)
	}
	tok2, err := s.ClientAssertion(acct)
	if err != nil {
		t.Fatal(err)
	}
	if _, c2 := decodeJWT(t, tok2, &key.PublicKey); c2["jti"] == jti {
		t.Error("two assertions share a jti; it must be unique per assertion")
	}

	// PKCS #1 keys and combined files (certificate and key in one) work too.
	both := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})...)
	combined := filepath.Join(dir, "both.pem")
	if err := os.WriteFile(combined, both, 0o600); err != nil {
		t.Fatal(err)
	}
	acct.JWTCertificatePath, acct.JWTKeyPath = combined, combined
	tok3, err := s.ClientAssertion(acct)
	if err != nil {
		t.Fatalf("combined PEM file: %v", err)
	}
	if h, _ := decodeJWT(t, tok3, &key.PublicKey); h["x5t#S256"] != wantHeader["x5t#S256"] {
		t.Error("combined file gives a different thumbprint")
	}
}

func TestClientAssertionErrors(t *testing.T) {
	key, other := testKeys(t)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	dir := t.TempDir()
	good := writePEM(t, dir, "cert.pem", "CERTIFICATE", makeCert(t, key, fixedNow.Add(-time.Hour), fixedNow.Add(time.Hour)), nil)
	expired := writePEM(t, dir, "expired.pem", "CERTIFICATE", makeCert(t, key, fixedNow.Add(-48*time.Hour), fixedNow.Add(-24*time.Hour)), nil)
	ecCert := writePEM(t, dir, "ec-cert.pem", "CERTIFICATE", makeCert(t, ec, fixedNow.Add(-time.Hour), fixedNow.Add(time.Hour)), nil)
	keyDER := pkcs8(t, key)
	goodKey := writePEM(t, dir, "key.pem", "PRIVATE KEY", keyDER, nil)
	otherKey := writePEM(t, dir, "other.pem", "PRIVATE KEY", pkcs8(t, other), nil)
	ecKey := writePEM(t, dir, "ec.pem", "PRIVATE KEY", pkcs8(t, ec), nil)
	encKey := writePEM(t, dir, "enc.pem", "ENCRYPTED PRIVATE KEY", []byte("not really"), nil)
	procKey := writePEM(t, dir, "proc.pem", "RSA PRIVATE KEY", []byte("x"), map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"})
	damaged := writePEM(t, dir, "damaged.pem", "PRIVATE KEY", keyDER[:len(keyDER)/2], nil)
	notPEM := filepath.Join(dir, "plain.txt")
	os.WriteFile(notPEM, []byte("hello"), 0o600)

	base := config.Account{Section: "alice@example.com", ClientID: "cid", TokenURL: "https://t.example.test/token"}
	tests := []struct {
		name      string
		cert, key string
		mutate    func(*config.Account)
		wantInErr []string
	}{
		{"no key path", good, "", nil, []string{"jwt_certificate_path and jwt_key_path"}},
		{"no client id", good, goodKey, func(a *config.Account) { a.ClientID = "" }, []string{"client_id is empty"}},
		{"no token url", good, goodKey, func(a *config.Account) { a.TokenURL = "" }, []string{"token_url is empty"}},
		{"missing cert file", filepath.Join(dir, "nope.pem"), goodKey, nil, []string{"jwt_certificate_path", "nope.pem", "no such file"}},
		{"cert not PEM", notPEM, goodKey, nil, []string{"plain.txt", "no PEM CERTIFICATE"}},
		{"key not PEM", good, notPEM, nil, []string{"plain.txt", "no PEM private key"}},
		{"mismatched key", good, otherKey, nil, []string{"does not belong", "other.pem", "cert.pem"}},
		{"expired", expired, goodKey, nil, []string{"expired on", "expired.pem"}},
		{"EC certificate", ecCert, goodKey, nil, []string{"ECDSA certificate", "RSA"}},
		{"EC key", good, ecKey, nil, []string{"ec.pem", "RSA key"}},
		{"encrypted PKCS8", good, encKey, nil, []string{"enc.pem", "encrypted"}},
		{"passphrase PKCS1", good, procKey, nil, []string{"proc.pem", "passphrase"}},
		{"damaged key", good, damaged, nil, []string{"damaged.pem", "damaged"}},
	}
	s := &Signer{Now: func() time.Time { return fixedNow }}
	keyB64 := base64.StdEncoding.EncodeToString(keyDER)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := base
			a.JWTCertificatePath, a.JWTKeyPath = tc.cert, tc.key
			if tc.mutate != nil {
				tc.mutate(&a)
			}
			_, err := s.ClientAssertion(a)
			wantConfigError(t, err, tc.wantInErr)
			if strings.Contains(err.Error(), keyB64[40:80]) {
				t.Errorf("error leaks key material: %q", err)
			}
		})
	}
}

func serviceAccountJSON(t testing.TB, key *rsa.PrivateKey, tokenURI string) string {
	t.Helper()
	b, _ := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "orbit-test",
		"private_key_id": "kid-1234",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8(t, key)})),
		"client_email":   "mailer@orbit-test.iam.gserviceaccount.test",
		"client_id":      "1234567890",
		"token_uri":      tokenURI,
	})
	return string(b)
}

func TestServiceAccountAssertion(t *testing.T) {
	key, _ := testKeys(t)
	dir := t.TempDir()
	keyJSON := serviceAccountJSON(t, key, "http://127.0.0.1:1/token")
	keyFile := filepath.Join(dir, "sa.json")
	if err := os.WriteFile(keyFile, []byte(keyJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Signer{Now: func() time.Time { return fixedNow }}
	for _, tc := range []struct {
		name, clientID, secret, wantKeyFile string
	}{
		{"file", "file", keyFile, keyFile},
		{"key", "key", keyJSON, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acct := config.Account{
				Name: "bob@example.com", Section: "@example.com", Flow: config.FlowServiceAccount,
				ClientID: tc.clientID, ClientSecret: tc.secret,
				Scope: "https://mail.google.com/", TokenURL: "https://ignored.example.test/token",
			}
			g, err := s.ServiceAccountGrant(acct, "bob@example.com")
			if err != nil {
				t.Fatal(err)
			}
			if g.TokenURL != "http://127.0.0.1:1/token" {
				t.Errorf("TokenURL = %q, want the key's token_uri", g.TokenURL)
			}
			if g.KeyFile != tc.wantKeyFile {
				t.Errorf("KeyFile = %q, want %q", g.KeyFile, tc.wantKeyFile)
			}
			header, claims := decodeJWT(t, g.Assertion, &key.PublicKey)
			if header["alg"] != "RS256" || header["kid"] != "kid-1234" {
				t.Errorf("header = %v, want alg RS256 and kid from private_key_id", header)
			}
			want := map[string]string{
				"iss": "mailer@orbit-test.iam.gserviceaccount.test", "scope": "https://mail.google.com/",
				"aud": "http://127.0.0.1:1/token", "sub": "bob@example.com",
			}
			for k, v := range want {
				if claims[k] != v {
					t.Errorf("claim %s = %v, want %v", k, claims[k], v)
				}
			}
			if iat, exp := num(t, claims["iat"]), num(t, claims["exp"]); iat != fixedNow.Unix() || exp != iat+3600 {
				t.Errorf("iat, exp = %d, %d; want %d and one hour later", iat, exp, fixedNow.Unix())
			}
			if jwt, err := s.ServiceAccountAssertion(acct, "bob@example.com"); err != nil || strings.Count(jwt, ".") != 2 {
				t.Errorf("ServiceAccountAssertion = %q, %v", jwt, err)
			}
			f := g.Form()
			if f.Get("grant_type") != JWTBearerGrantType || f.Get("assertion") != g.Assertion {
				t.Errorf("Form() = %v", f)
			}
		})
	}
}

func TestServiceAccountErrors(t *testing.T) {
	key, _ := testKeys(t)
	dir := t.TempDir()
	good := serviceAccountJSON(t, key, "http://127.0.0.1:1/token")
	var m map[string]string
	json.Unmarshal([]byte(good), &m)
	variant := func(edit func(map[string]string)) string {
		c := map[string]string{}
		for k, v := range m {
			c[k] = v
		}
		edit(c)
		b, _ := json.Marshal(c)
		return string(b)
	}
	secretPart := m["private_key"][100:160]
	tests := []struct {
		name, clientID, secret, scope string
		wantInErr                     []string
	}{
		{"client_id not file/key", "1234.apps", good, "s", []string{`"file"`, `"key"`}},
		{"file empty", "file", "", "s", []string{"path of the service account's JSON key file"}},
		{"file missing", "file", filepath.Join(dir, "gone.json"), "s", []string{"gone.json", "no such file"}},
		{"key not JSON", "key", "{not json" + secretPart, "s", []string{"not valid JSON", "client_secret"}},
		{"wrong type", "key", variant(func(c map[string]string) { c["type"] = "authorized_user" }), "s", []string{`"authorized_user"`, "not a service_account key"}},
		{"no client_email", "key", variant(func(c map[string]string) { delete(c, "client_email") }), "s", []string{"has no client_email"}},
		{"no private_key", "key", variant(func(c map[string]string) { delete(c, "private_key") }), "s", []string{"no private_key"}},
		{"bad private_key", "key", variant(func(c map[string]string) {
			c["private_key"] = "-----BEGIN PRIVATE KEY-----\n" + secretPart + "\n-----END PRIVATE KEY-----\n"
		}), "s", []string{"private_key of the JSON key in client_secret"}},
		{"no token uri anywhere", "key", variant(func(c map[string]string) { delete(c, "token_uri") }), "s", []string{"no token_uri and token_url is empty"}},
		{"no scope", "key", good, "", []string{"oauth2_scope is empty"}},
	}
	s := &Signer{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			acct := config.Account{Name: "bob@example.com", Section: "bob@example.com", ClientID: tc.clientID, ClientSecret: tc.secret, Scope: tc.scope}
			_, err := s.ServiceAccountAssertion(acct, "")
			wantConfigError(t, err, tc.wantInErr)
			if strings.Contains(err.Error(), secretPart) || strings.Contains(err.Error(), "PRIVATE KEY-----\n") {
				t.Errorf("error leaks key material: %q", err)
			}
		})
	}
}

func BenchmarkClientAssertion(b *testing.B) {
	key, _ := testKeys(b)
	dir := b.TempDir()
	now := time.Now()
	acct := config.Account{
		Section: "@", ClientID: "cid", TokenURL: "https://t.example.test/token",
		JWTCertificatePath: writePEM(b, dir, "c.pem", "CERTIFICATE", makeCert(b, key, now.Add(-time.Hour), now.Add(time.Hour)), nil),
		JWTKeyPath:         writePEM(b, dir, "k.pem", "PRIVATE KEY", pkcs8(b, key), nil),
	}
	for b.Loop() {
		if _, err := Default.ClientAssertion(acct); err != nil {
			b.Fatal(err)
		}
	}
}

// The token manager holds a Signer through its own interface; this breaks
// the build if the two drift apart.
var _ oauth.AssertionSigner = (*Signer)(nil)

// wantConfigError fails t unless err wraps ErrConfig and mentions every
// string in want.
func wantConfigError(t *testing.T, err error, want []string) {
	t.Helper()
	if err == nil {
		t.Fatal("want an error")
	}
	if !errors.Is(err, ErrConfig) {
		t.Errorf("error does not wrap ErrConfig: %v", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}
