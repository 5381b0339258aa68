package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// UserAgent is sent with every token request; providers' logs show it, and
// it is the same string the Python proxy sends.
const UserAgent = "Email OAuth 2.0 Proxy"

// DefaultExpiresIn applies when a token response has no usable expires_in.
const DefaultExpiresIn = 3600 * time.Second

// MaxExpiresIn caps what expires_in may claim. Mail providers issue tokens
// for an hour (Microsoft at most a day); a bigger claim is a broken or
// hostile endpoint, and believing it (2^63-1 seconds used to overflow into
// the past) would make every login refresh, or keep a token far longer
// than the provider honours it.
const MaxExpiresIn = 7 * 24 * time.Hour

// TokenResponse is a provider's answer to a token request (RFC 6749 5.1),
// read as providers really send it: expires_in as a number or a numeric
// string ("3599", as Entra v1.0 endpoints and some gateways send), a
// missing token_type, non-string scope or token_type values and unknown
// fields are all accepted.
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token"`
	// ExpiresIn is expires_in in seconds (saturated at the int64 range);
	// 0 when absent or not a number. Use Expiry, which clamps it.
	ExpiresIn int64  `json:"expires_in"`
	Scope     string `json:"scope"`

	// expiresInSent is expires_in as sent (shortened), "" when absent;
	// expiresInNaN: it was present but no number.
	expiresInSent string
	expiresInNaN  bool
}

// UnmarshalJSON reads a token answer leniently (see TokenResponse). Only
// access_token and refresh_token must be strings when present.
func (t *TokenResponse) UnmarshalJSON(b []byte) error {
	var w struct {
		AccessToken  string          `json:"access_token"`
		RefreshToken string          `json:"refresh_token"`
		TokenType    json.RawMessage `json:"token_type"`
		ExpiresIn    json.RawMessage `json:"expires_in"`
		Scope        json.RawMessage `json:"scope"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*t = TokenResponse{AccessToken: w.AccessToken, RefreshToken: w.RefreshToken,
		TokenType: jsonString(w.TokenType), Scope: jsonString(w.Scope)}
	t.ExpiresIn, t.expiresInSent, t.expiresInNaN = parseExpiresIn(w.ExpiresIn)
	return nil
}

// Seconds is a count of seconds in a provider's JSON answer, read as a
// number or a string holding one (Entra v1.0 endpoints send strings);
// anything else reads as 0, "not given". Callers bound it before use.
type Seconds int64

// UnmarshalJSON reads a number or a numeric string and never fails.
func (s *Seconds) UnmarshalJSON(b []byte) error {
	n, _, _ := parseExpiresIn(b)
	*s = Seconds(n)
	return nil
}

// Duration is s as a time.Duration, bounded to [0, max].
func (s Seconds) Duration(max time.Duration) time.Duration {
	switch {
	case s <= 0:
		return 0
	case int64(s) > int64(max/time.Second):
		return max
	}
	return time.Duration(s) * time.Second
}

// jsonString is a raw JSON value's string, "" when it is not a string.
func jsonString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// parseExpiresIn reads expires_in as a JSON number or a string holding
// one, saturating at the int64 range. sent is the value as sent ("" when
// absent); nan means it was present but not a number.
func parseExpiresIn(raw json.RawMessage) (secs int64, sent string, nan bool) {
	v := strings.TrimSpace(string(raw))
	if v == "" || v == "null" {
		return 0, "", false
	}
	sent = v
	if len(sent) > 40 {
		sent = sent[:40] + "..."
	}
	if strings.HasPrefix(v, `"`) {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, sent, true
		}
		v = strings.TrimSpace(s)
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n, sent, false
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) || math.IsNaN(f) {
		return 0, sent, true
	}
	// A fraction, an exponent, or beyond int64 (ParseFloat gives ±Inf
	// with ErrRange): saturate.
	switch {
	case f >= math.MaxInt64:
		return math.MaxInt64, sent, false
	case f <= math.MinInt64:
		return math.MinInt64, sent, false
	}
	return int64(f), sent, false
}

// Expiry is when the access token stops being valid, counted from now:
// expires_in clamped to (0, MaxExpiresIn]; DefaultExpiresIn when it is
// absent, zero, negative or not a number.
func (t TokenResponse) Expiry(now time.Time) time.Time {
	switch {
	case t.ExpiresIn <= 0:
		return now.Add(DefaultExpiresIn)
	case t.ExpiresIn > int64(MaxExpiresIn/time.Second):
		return now.Add(MaxExpiresIn)
	}
	return now.Add(time.Duration(t.ExpiresIn) * time.Second)
}

// ExpiresInNote says what Expiry did with an expires_in it could not use
// as sent ("" when it was absent or usable), for one log line.
func (t TokenResponse) ExpiresInNote() string {
	if t.expiresInSent == "" || !t.expiresInNaN && t.ExpiresIn > 0 && t.ExpiresIn <= int64(MaxExpiresIn/time.Second) {
		return ""
	}
	used := t.Expiry(time.Time{}).Sub(time.Time{})
	return fmt.Sprintf("the token endpoint sent expires_in = %s; using %d seconds instead", t.expiresInSent, int64(used/time.Second))
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
	tr, err := postToken(ctx, hc, tokenURL, form)
	countTokenRequest(form.Get("grant_type"), err)
	return tr, err
}

func postToken(ctx context.Context, hc *http.Client, tokenURL string, form url.Values) (TokenResponse, error) {
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
