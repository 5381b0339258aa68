package oauth

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

// Grant types and assertion types of the token requests (RFC 6749, 7523).
const (
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
	GrantPassword          = "password"
	GrantJWTBearer         = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	ClientAssertionTypeJWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// ErrNoAssertionSigner: an account needs a signed JWT (certificate
// credentials or a service account) and the Manager has no AssertionSigner.
var ErrNoAssertionSigner = errors.New("no JWT assertion signer")

// UsesCertificate reports whether the account authenticates its client with
// a certificate (client assertion) instead of a client secret.
func UsesCertificate(acct config.Account) bool {
	return acct.JWTCertificatePath != "" && acct.JWTKeyPath != ""
}

// SetClientAuth adds the client's credentials to a token request form:
// client_id, and either a client_assertion (certificate credentials, when
// jwt_certificate_path and jwt_key_path are set) or client_secret from
// acct.ClientSecret. An empty secret is left out, as public clients
// (common with Office 365) must not send one. Interactive flows use it for
// the code exchange and device polling, so every request authenticates the
// same way.
func SetClientAuth(form url.Values, acct config.Account, signer AssertionSigner) error {
	form.Set("client_id", acct.ClientID)
	if UsesCertificate(acct) {
		if signer == nil {
			return fmt.Errorf("%w: account %s sets jwt_certificate_path and jwt_key_path, but this engine was started without certificate support", ErrNoAssertionSigner, acct.Name)
		}
		jwt, err := signer.ClientAssertion(acct)
		if err != nil {
			return fmt.Errorf("account %s: making the client assertion from jwt_certificate_path/jwt_key_path: %w", acct.Name, err)
		}
		form.Set("client_assertion_type", ClientAssertionTypeJWT)
		form.Set("client_assertion", jwt)
		return nil
	}
	if acct.ClientSecret != "" {
		form.Set("client_secret", acct.ClientSecret)
	}
	return nil
}

// refreshForm is the spec's refresh request: client_id, client_secret,
// refresh_token, grant_type=refresh_token.
func refreshForm(acct config.Account, refreshToken string, signer AssertionSigner) (url.Values, error) {
	form := url.Values{}
	if err := SetClientAuth(form, acct, signer); err != nil {
		return nil, err
	}
	form.Set("refresh_token", refreshToken)
	form.Set("grant_type", GrantRefreshToken)
	return form, nil
}

// flowForm builds the request of a non-interactive flow. password is the
// client's login password, which the password flow forwards (it is the
// upstream credential there).
func flowForm(acct config.Account, flow config.Flow, username, password string, signer AssertionSigner) (url.Values, error) {
	form := url.Values{}
	switch flow {
	case config.FlowClientCredentials:
		if err := SetClientAuth(form, acct, signer); err != nil {
			return nil, err
		}
		form.Set("grant_type", GrantClientCredentials)
		form.Set("scope", acct.Scope)
	case config.FlowPassword:
		if err := SetClientAuth(form, acct, signer); err != nil {
			return nil, err
		}
		form.Set("grant_type", GrantPassword)
		if acct.Scope != "" {
			form.Set("scope", acct.Scope)
		}
		if acct.Resource != "" {
			form.Set("resource", acct.Resource)
		}
		form.Set("username", username)
		form.Set("password", password)
	case config.FlowServiceAccount:
		if signer == nil {
			return nil, fmt.Errorf("%w: account %s uses oauth2_flow = service_account, but this engine was started without service account support", ErrNoAssertionSigner, acct.Name)
		}
		jwt, err := signer.ServiceAccountAssertion(acct, username)
		if err != nil {
			return nil, fmt.Errorf("account %s: making the service account assertion: %w", acct.Name, err)
		}
		form.Set("grant_type", GrantJWTBearer)
		form.Set("assertion", jwt)
	default:
		return nil, fmt.Errorf("account %s: oauth2_flow %q is not a non-interactive flow", acct.Name, flow)
	}
	return form, nil
}
