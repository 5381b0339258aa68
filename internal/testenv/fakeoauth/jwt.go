package fakeoauth

import (
	"crypto"
	"crypto/ecdsa"
	cryptorand "crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// assertionClaims are the JWT claims the provider reads from a
// client_assertion or a jwt-bearer assertion.
type assertionClaims struct {
	Iss   string          `json:"iss"`
	Sub   string          `json:"sub"`
	Aud   json.RawMessage `json:"aud"`
	Exp   int64           `json:"exp"`
	Nbf   int64           `json:"nbf"`
	Scope string          `json:"scope"`
}

// clockSkew is how far exp/nbf may be off, as providers allow.
const clockSkew = 5 * time.Minute

// verifyAssertionLocked checks a compact JWS signed by a registered client's
// AssertionKey (RS256 or ES256), addressed to this token endpoint, and not
// expired.
func (p *Provider) verifyAssertionLocked(jwt string) (assertionClaims, error) {
	var claims assertionClaims
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return claims, errors.New("not a compact JWS (want header.payload.signature)")
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if err := decodeSegment(parts[0], &header); err != nil {
		return claims, fmt.Errorf("header: %w", err)
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return claims, fmt.Errorf("payload: %w", err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return claims, fmt.Errorf("signature is not base64url: %w", err)
	}
	c, ok := p.clients[claims.Iss]
	if !ok {
		return claims, fmt.Errorf("issuer %q is not a registered client", claims.Iss)
	}
	if c.AssertionKey == nil {
		return claims, fmt.Errorf("client %q has no registered certificate (Client.AssertionKey)", c.ID)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	switch key := c.AssertionKey.(type) {
	case *rsa.PublicKey:
		if header.Alg != "RS256" {
			return claims, fmt.Errorf("alg %q does not fit an RSA key (want RS256)", header.Alg)
		}
		if err := rsa.VerifyPKCS1v15(key, crypto.SHA256, digest[:], sig); err != nil {
			return claims, errors.New("signature does not verify with the client's key")
		}
	case *ecdsa.PublicKey:
		if header.Alg != "ES256" || len(sig) != 64 {
			return claims, fmt.Errorf("alg %q or signature length %d does not fit a P-256 key (want ES256, 64 bytes)", header.Alg, len(sig))
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(key, digest[:], r, s) {
			return claims, errors.New("signature does not verify with the client's key")
		}
	default:
		return claims, fmt.Errorf("client %q has an unsupported key type %T", c.ID, key)
	}
	if !audienceIncludes(claims.Aud, p.TokenURL()) {
		return claims, fmt.Errorf("aud must be the token endpoint %s", p.TokenURL())
	}
	now := time.Now()
	if claims.Exp == 0 || now.After(time.Unix(claims.Exp, 0).Add(clockSkew)) {
		return claims, errors.New("the assertion has expired (exp)")
	}
	if claims.Nbf != 0 && now.Add(clockSkew).Before(time.Unix(claims.Nbf, 0)) {
		return claims, errors.New("the assertion is not valid yet (nbf)")
	}
	return claims, nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return fmt.Errorf("not base64url: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return nil
}

func audienceIncludes(raw json.RawMessage, want string) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one == want
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		for _, a := range many {
			if a == want {
				return true
			}
		}
	}
	return false
}

// grantJWTBearerLocked is RFC 7523 section 2.1, as Google service accounts
// use it: iss is the client, sub the user to act as (ServiceUser when
// empty), scope from the claims or the form.
func (p *Provider) grantJWTBearerLocked(form url.Values) (int, any) {
	claims, err := p.verifyAssertionLocked(form.Get("assertion"))
	if err != nil {
		return http.StatusBadRequest, oauthError{"invalid_grant", "assertion: " + err.Error()}
	}
	c := p.clients[claims.Iss]
	user := claims.Sub
	if user == "" || user == c.ID {
		user = c.ServiceUser
	}
	if _, ok := p.users[user]; !ok && user != c.ServiceUser {
		return http.StatusBadRequest, oauthError{"invalid_grant", fmt.Sprintf("sub %q is not a user this client may act as", user)}
	}
	if user == "" {
		return http.StatusBadRequest, oauthError{"invalid_grant", "assertion has no sub and the client has no ServiceUser"}
	}
	scope := claims.Scope
	if scope == "" {
		scope = form.Get("scope")
	}
	return p.issueLocked(c, user, scope, false)
}

// SignAssertion builds a JWT assertion signed with key (*rsa.PrivateKey:
// RS256, *ecdsa.PrivateKey: ES256) for tests that play the client side:
// iss=clientID, sub (clientID for a client_assertion, the user for a
// jwt-bearer grant), aud=this provider's token URL, expiring in 10 minutes.
func (p *Provider) SignAssertion(key crypto.Signer, clientID, sub, scope string) (string, error) {
	alg := ""
	switch key.(type) {
	case *rsa.PrivateKey:
		alg = "RS256"
	case *ecdsa.PrivateKey:
		alg = "ES256"
	default:
		return "", fmt.Errorf("SignAssertion: unsupported key type %T", key)
	}
	now := time.Now()
	h, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT"})
	claims := map[string]any{"iss": clientID, "sub": sub, "aud": p.TokenURL(), "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "jti": randomToken(12)}
	if scope != "" {
		claims["scope"] = scope
	}
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	digest := sha256.Sum256([]byte(input))
	var sig []byte
	switch k := key.(type) {
	case *rsa.PrivateKey:
		s, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, digest[:])
		if err != nil {
			return "", fmt.Errorf("signing assertion: %w", err)
		}
		sig = s
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(cryptorand.Reader, k, digest[:])
		if err != nil {
			return "", fmt.Errorf("signing assertion: %w", err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}
