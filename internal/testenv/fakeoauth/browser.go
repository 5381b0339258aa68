package fakeoauth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// Browser plays the person at the keyboard of an interactive flow: it opens
// the authorisation URL the code under test printed, signs in on the
// provider's form, and follows the redirect to the code under test's
// redirect listener. It only ever visits loopback URLs.
type Browser struct {
	Username, Password string
	// Deny presses Cancel instead of Accept (the provider then redirects
	// with error=access_denied).
	Deny bool
	// TLS is used for https URLs (the provider WithTLS, or an https
	// redirect listener); nil trusts the system pool (SSL_CERT_FILE).
	TLS *tls.Config
}

// BrowserResult is what the browser saw.
type BrowserResult struct {
	// Redirect is where the provider sent the browser after the login, with
	// Code and State, or Error (and ErrorDescription) in its query.
	Redirect                string
	Code, State             string
	Error, ErrorDescription string
	// Status and Body are the final answer of the redirect listener.
	Status int
	Body   string
}

// ErrLoginRefused means the provider's form rejected the username or
// password.
var ErrLoginRefused = errors.New("the provider refused the username or password")

var requestIDField = regexp.MustCompile(`name="request_id" value="([^"]+)"`)

// maxPage bounds what the browser reads of any page.
const maxPage = 1 << 20

// Authorize signs in as b.Username at authorizeURL (GET shows the form, POST
// submits it) and then visits the redirect target, returning its status and
// body. An error means the browser could not get that far; a redirect
// listener that answers an error status is not an error.
func (b Browser) Authorize(ctx context.Context, authorizeURL string) (BrowserResult, error) {
	var res BrowserResult
	if !isLoopbackURL(authorizeURL) {
		return res, fmt.Errorf("browser: refusing to visit %q: not an http(s) URL on loopback", authorizeURL)
	}
	hc := b.client()
	status, body, loc, err := b.do(ctx, hc, http.MethodGet, authorizeURL, nil)
	if err != nil {
		return res, err
	}
	// A provider redirects at once, without a form, when the request itself
	// is wrong (error=invalid_request and the like).
	if status != http.StatusFound {
		if status != http.StatusOK {
			return res, fmt.Errorf("browser: the authorisation page answered HTTP %d: %s", status, firstLineOf(body))
		}
		m := requestIDField.FindStringSubmatch(body)
		if m == nil {
			return res, errors.New("browser: the authorisation page has no login form (request_id missing)")
		}
		u, _ := url.Parse(authorizeURL)
		u.RawQuery = ""
		form := url.Values{"request_id": {html.UnescapeString(m[1])}, "username": {b.Username}, "password": {b.Password}, "consent": {"allow"}}
		if b.Deny {
			form.Set("consent", "deny")
		}
		status, body, loc, err = b.do(ctx, hc, http.MethodPost, u.String(), form)
		if err != nil {
			return res, err
		}
		if status == http.StatusUnauthorized {
			return res, fmt.Errorf("browser: signing in as %q: %w", b.Username, ErrLoginRefused)
		}
		if status != http.StatusFound || loc == "" {
			return res, fmt.Errorf("browser: the login answered HTTP %d, not a redirect: %s", status, firstLineOf(body))
		}
	}
	res.Redirect = loc
	ru, err := url.Parse(loc)
	if err != nil {
		return res, fmt.Errorf("browser: the provider redirected to an unparsable URL: %w", err)
	}
	q := ru.Query()
	res.Code, res.State, res.Error, res.ErrorDescription = q.Get("code"), q.Get("state"), q.Get("error"), q.Get("error_description")
	if !isLoopbackURL(loc) {
		return res, fmt.Errorf("browser: refusing to follow the redirect to %s://%s: not loopback", ru.Scheme, ru.Host)
	}
	// Follow the listener's own redirects (say, to a "done" page) but
	// stay on loopback.
	next := loc
	for range 5 {
		res.Status, res.Body, loc, err = b.do(ctx, hc, http.MethodGet, next, nil)
		if err != nil {
			return res, fmt.Errorf("browser: visiting the redirect listener: %w", err)
		}
		if res.Status < 300 || res.Status > 399 || loc == "" {
			return res, nil
		}
		nu, err := ru.Parse(loc)
		if err != nil || !isLoopbackURL(nu.String()) {
			return res, nil
		}
		next = nu.String()
	}
	return res, nil
}

// Authorize is Browser{Username: user, Password: password}.Authorize.
func Authorize(ctx context.Context, authorizeURL, user, password string) (BrowserResult, error) {
	return Browser{Username: user, Password: password}.Authorize(ctx, authorizeURL)
}

// ApproveDevice opens verificationURI (verification_uri_complete, or
// verification_uri with userCode) and signs in to approve the code (or
// declines it with Deny).
func (b Browser) ApproveDevice(ctx context.Context, verificationURI, userCode string) error {
	if !isLoopbackURL(verificationURI) {
		return fmt.Errorf("browser: refusing to visit %q: not an http(s) URL on loopback", verificationURI)
	}
	u, err := url.Parse(verificationURI)
	if err != nil {
		return fmt.Errorf("browser: verification URI: %w", err)
	}
	if userCode == "" {
		userCode = u.Query().Get("user_code")
	}
	hc := b.client()
	if status, body, _, err := b.do(ctx, hc, http.MethodGet, verificationURI, nil); err != nil {
		return err
	} else if status != http.StatusOK {
		return fmt.Errorf("browser: the verification page answered HTTP %d: %s", status, firstLineOf(body))
	}
	u.RawQuery = ""
	form := url.Values{"user_code": {userCode}, "username": {b.Username}, "password": {b.Password}, "consent": {"allow"}}
	if b.Deny {
		form.Set("consent", "deny")
	}
	status, body, _, err := b.do(ctx, hc, http.MethodPost, u.String(), form)
	if err != nil {
		return err
	}
	switch status {
	case http.StatusOK:
		return nil
	case http.StatusUnauthorized:
		return fmt.Errorf("browser: signing in as %q: %w", b.Username, ErrLoginRefused)
	default:
		return fmt.Errorf("browser: approving code %q: HTTP %d: %s", userCode, status, firstLineOf(body))
	}
}

func (b Browser) client() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // never send loopback traffic through an HTTP proxy
	if b.TLS != nil {
		tr.TLSClientConfig = b.TLS.Clone()
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (b Browser) do(ctx context.Context, hc *http.Client, method, target string, form url.Values) (status int, body, location string, err error) {
	var rd io.Reader
	if form != nil {
		rd = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return 0, "", "", fmt.Errorf("browser: %s %s: %w", method, redact(target), err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("User-Agent", "orbit-testenv-browser")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", "", fmt.Errorf("browser: %s %s: %w", method, redact(target), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxPage))
	if err != nil {
		return resp.StatusCode, "", "", fmt.Errorf("browser: reading %s: %w", redact(target), err)
	}
	return resp.StatusCode, string(data), resp.Header.Get("Location"), nil
}

// redact keeps codes and states out of error messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.RawQuery, u.User = "", nil
	return u.String()
}

func firstLineOf(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
