package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// UserAgent is sent with every token request; providers' logs show it, and
// it is the same string the Python proxy sends.
const UserAgent = "Email OAuth 2.0 Proxy"

// DefaultExpiresIn applies when a token response has no expires_in.
const DefaultExpiresIn = 3600 * time.Second

// TokenResponse is a provider's answer to a token request (RFC 6749 5.1).
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"`
}

// Expiry is when the access token stops being valid, counted from now.
func (t TokenResponse) Expiry(now time.Time) time.Time {
	if t.ExpiresIn <= 0 {
		return now.Add(DefaultExpiresIn)
	}
	return now.Add(time.Duration(t.ExpiresIn) * time.Second)
}

// ProviderError is an OAuth 2.0 error response (RFC 6749 5.2). It wraps
// ErrProviderRefused (4xx) or ErrProviderUnavailable (5xx), so callers pick
// the reply kind with errors.Is and show Description to the user.
type ProviderError struct {
	Status      int
	Code        string // e.g. invalid_grant, authorization_pending
	Description string
}

func (e *ProviderError) Error() string {
	msg := fmt.Sprintf("token endpoint answered HTTP %d", e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Description != "" {
		msg += ": " + e.Description
	}
	return msg
}

func (e *ProviderError) Unwrap() error {
	if e.Status >= 500 {
		return ErrProviderUnavailable
	}
	return ErrProviderRefused
}

// maxTokenResponse bounds what we read from a token endpoint: a real answer
// is a few kilobytes; anything larger is garbage or hostile.
const maxTokenResponse = 1 << 20

// PostToken sends one form-encoded token request and decodes the answer.
// Network failures wrap ErrProviderUnavailable; OAuth errors come back as
// *ProviderError. The form (which may hold secrets) never appears in errors.
func PostToken(ctx context.Context, hc *http.Client, tokenURL string, form url.Values) (TokenResponse, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return TokenResponse{}, fmt.Errorf("token_url %q: %w", redactURL(tokenURL), err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	resp, err := NoRedirects(hc).Do(req)
	if err != nil {
		// *url.Error repeats the URL; keep only the cause's text.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return TokenResponse{}, fmt.Errorf("%w: %s: %v", ErrProviderUnavailable, redactURL(tokenURL), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse))
	if err != nil {
		return TokenResponse{}, fmt.Errorf("%w: reading answer from %s: %v", ErrProviderUnavailable, redactURL(tokenURL), err)
	}
	if err := RedirectRefused("token_url", tokenURL, resp); err != nil {
		return TokenResponse{}, err
	}
	if resp.StatusCode != http.StatusOK {
		pe := &ProviderError{Status: resp.StatusCode}
		var e struct {
			Code        string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(body, &e) == nil {
			pe.Code, pe.Description = e.Code, firstLine(e.Description)
		}
		return TokenResponse{}, pe
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "" && mt != "application/json" && !strings.HasSuffix(mt, "+json") {
		return TokenResponse{}, fmt.Errorf("%w: %s answered %s, not JSON", ErrProviderUnavailable, redactURL(tokenURL), mt)
	}
	var tr TokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return TokenResponse{}, fmt.Errorf("%w: %s answered malformed JSON", ErrProviderUnavailable, redactURL(tokenURL))
	}
	if tr.AccessToken == "" {
		return TokenResponse{}, fmt.Errorf("%w: %s answered without an access_token", ErrProviderRefused, redactURL(tokenURL))
	}
	return tr, nil
}

// NoRedirects is hc with redirects turned off. A token request's body holds
// the client secret, a refresh token or a code, and Go re-sends a body on
// 307 and 308 to wherever Location points, so an endpoint that redirects
// gets an error (see RedirectRefused) instead of the secrets going on.
func NoRedirects(hc *http.Client) *http.Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// RedirectRefused is the error for a redirect answer (nil for any other):
// which setting points at an endpoint that redirects, and where to.
func RedirectRefused(setting, endpoint string, resp *http.Response) error {
	if resp.StatusCode < 300 || resp.StatusCode > 399 {
		return nil
	}
	return fmt.Errorf("%w: %s %s answered HTTP %d, a redirect to %s; requests carrying secrets are not redirected: set %s to the provider's endpoint itself",
		ErrProviderRefused, setting, redactURL(endpoint), resp.StatusCode, redactURL(resp.Header.Get("Location")), setting)
}

// redactURL drops query and user info, which could carry secrets, so a URL
// can be named in an error.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// firstLine keeps a provider's description to one line (Microsoft appends
// trace and correlation ids on later lines) so it fits a protocol reply.
func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}
