// Package assertion signs the JSON Web Tokens that stand in for a client
// secret or a user's consent: the certificate client assertion
// (jwt_certificate_path + jwt_key_path, Microsoft's "certificate
// credentials") and the Google service account's JWT bearer grant.
//
// Only the standard library's crypto is used. Errors name the file and what
// is wrong with it; they never carry key material, and neither do the
// assertions' claims.
package assertion

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

// Form values defined by RFC 7521/7523.
const (
	// ClientAssertionType is sent as client_assertion_type alongside
	// client_assertion.
	ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// JWTBearerGrantType is the grant_type of a service account request.
	JWTBearerGrantType = "urn:ietf:params:oauth:grant-type:jwt-bearer"
)

// Lifetimes of what the Signer issues. A client assertion is used at once,
// so five minutes covers clock skew and nothing more (Microsoft accepts at
// most ten); Google caps a service account assertion at one hour.
const (
	DefaultClientAssertionLifetime = 5 * time.Minute
	DefaultServiceAccountLifetime  = time.Hour
)

// ErrConfig marks an assertion that cannot be made because of the account's
// settings or the files they name; the wrapped message says which and why.
var ErrConfig = errors.New("cannot make a JWT assertion")

// Signer makes assertions for accounts. The zero value is ready to use.
// Keys are read from disk on every call, so a replaced certificate or key
// file takes effect at the next token request without a restart.
type Signer struct {
	// Now is the clock; nil means time.Now. Tests pin it.
	Now func() time.Time
	// ClientAssertionLifetime and ServiceAccountLifetime override the
	// defaults when positive.
	ClientAssertionLifetime time.Duration
	ServiceAccountLifetime  time.Duration
}

// ClientAssertion is the certificate credential for acct: an RS256 JWT whose
// header names the certificate by its SHA-256 thumbprint (x5t#S256) and
// whose claims say the client (iss = sub = client_id) is calling token_url
// (aud). Send it as client_assertion with client_assertion_type
// ClientAssertionType (see AddClientAssertion); the Python proxy does so
// only when the account has no client_secret.
func (s *Signer) ClientAssertion(acct config.Account) (string, error) {
	if acct.JWTCertificatePath == "" || acct.JWTKeyPath == "" {
		return "", fmt.Errorf("%w for [%s]: set both jwt_certificate_path and jwt_key_path", ErrConfig, acct.Section)
	}
	if acct.ClientID == "" {
		return "", fmt.Errorf("%w for [%s]: client_id is empty; it is the assertion's issuer", ErrConfig, acct.Section)
	}
	if acct.TokenURL == "" {
		return "", fmt.Errorf("%w for [%s]: token_url is empty; it is the assertion's audience", ErrConfig, acct.Section)
	}
	now := s.now()
	cert, key, err := loadCertificateCredential(acct.JWTCertificatePath, acct.JWTKeyPath, now)
	if err != nil {
		return "", err
	}
	thumb := sha256.Sum256(cert.Raw)
	header := map[string]string{
		"alg":      "RS256",
		"typ":      "JWT",
		"x5t#S256": base64.RawURLEncoding.EncodeToString(thumb[:]),
	}
	jti, err := newUUID()
	if err != nil {
		return "", err
	}
	life := s.ClientAssertionLifetime
	if life <= 0 {
		life = DefaultClientAssertionLifetime
	}
	claims := map[string]any{
		"aud": acct.TokenURL,
		"iss": acct.ClientID,
		"sub": acct.ClientID,
		"jti": jti,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(life).Unix(),
	}
	return sign(header, claims, key)
}

// ServiceAccountGrant is a ready service account token request.
type ServiceAccountGrant struct {
	// TokenURL is where to post Form: the key's token_uri, which is also
	// the assertion's audience (Google's client library posts there, not to
	// token_url); token_url when the key has none.
	TokenURL string
	// Assertion is the signed JWT.
	Assertion string
	// KeyFile is the key file's path when client_id is "file", for messages.
	KeyFile string
}

// Form is the token request body: grant_type and assertion (RFC 7523 2.1).
func (g ServiceAccountGrant) Form() url.Values {
	return url.Values{"grant_type": {JWTBearerGrantType}, "assertion": {g.Assertion}}
}

// ServiceAccountAssertion is ServiceAccountGrant's assertion alone, the
// shape oauth.AssertionSigner asks for. The caller posts it to token_url;
// for Google that is the same endpoint as the key's token_uri, which is the
// assertion's audience.
func (s *Signer) ServiceAccountAssertion(acct config.Account, username string) (string, error) {
	g, err := s.ServiceAccountGrant(acct, username)
	return g.Assertion, err
}

// ServiceAccountGrant makes the JWT bearer grant for a Google service
// account acting as username (domain-wide delegation). Like the Python
// proxy, the account says where the key is through client_id: "file" means
// client_secret is the path of the JSON key file, "key" means client_secret
// is the JSON key itself. Claims: iss = the key's client_email, scope =
// oauth2_scope, aud = the key's token_uri, sub = username, iat, exp.
func (s *Signer) ServiceAccountGrant(acct config.Account, username string) (ServiceAccountGrant, error) {
	if username == "" {
		username = acct.Name
	}
	if username == "" {
		return ServiceAccountGrant{}, fmt.Errorf("%w for [%s]: no username to act as (the JWT subject)", ErrConfig, acct.Section)
	}
	if acct.Scope == "" {
		return ServiceAccountGrant{}, fmt.Errorf("%w for [%s]: oauth2_scope is empty; a service account must ask for a scope such as https://mail.google.com/", ErrConfig, acct.Section)
	}
	key, err := loadServiceAccountKey(acct)
	if err != nil {
		return ServiceAccountGrant{}, err
	}
	tokenURL := key.TokenURI
	if tokenURL == "" {
		tokenURL = acct.TokenURL
	}
	if tokenURL == "" {
		return ServiceAccountGrant{}, fmt.Errorf("%w for [%s]: the service account key (%s) has no token_uri and token_url is empty", ErrConfig, acct.Section, key.source)
	}
	now := s.now()
	life := s.ServiceAccountLifetime
	if life <= 0 {
		life = DefaultServiceAccountLifetime
	}
	header := map[string]string{"alg": "RS256", "typ": "JWT"}
	if key.PrivateKeyID != "" {
		header["kid"] = key.PrivateKeyID
	}
	claims := map[string]any{
		"iss":   key.ClientEmail,
		"scope": strings.Join(strings.Fields(acct.Scope), " "),
		"aud":   tokenURL,
		"sub":   username,
		"iat":   now.Unix(),
		"exp":   now.Add(life).Unix(),
	}
	jwt, err := sign(header, claims, key.rsa)
	if err != nil {
		return ServiceAccountGrant{}, err
	}
	g := ServiceAccountGrant{TokenURL: tokenURL, Assertion: jwt}
	if strings.EqualFold(acct.ClientID, "file") {
		g.KeyFile = acct.ClientSecret
	}
	return g, nil
}

// AddClientAssertion puts a client assertion into a token request form.
func AddClientAssertion(form url.Values, assertion string) {
	form.Set("client_assertion_type", ClientAssertionType)
	form.Set("client_assertion", assertion)
}

// Default is a Signer with the real clock, for callers that need no tuning.
var Default = &Signer{}

func (s *Signer) now() time.Time {
	if s != nil && s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// sign produces a compact JWS (RFC 7515) signed with RSASSA-PKCS1-v1_5 and
// SHA-256. JSON object keys come out sorted, so identical input gives an
// identical token (useful in tests; the jti and times differ in practice).
func sign(header map[string]string, claims map[string]any, key *rsa.PrivateKey) (string, error) {
	h, err := json.Marshal(header)
	if err != nil {
		return "", fmt.Errorf("encoding JWT header: %w", err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encoding JWT claims: %w", err)
	}
	signingInput := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	digest := sha256.Sum256([]byte(signingInput))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		return "", fmt.Errorf("signing JWT: %w", err)
	}
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// newUUID is a random (version 4) UUID, the form Microsoft's examples use
// for jti.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("reading random bytes for jti: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
