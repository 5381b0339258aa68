package interactive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
)

func checkDeviceAccount(a config.Account) error {
	var missing []string
	for _, f := range []struct{ key, val string }{
		{"permission_url", a.PermissionURL}, {"token_url", a.TokenURL}, {"client_id", a.ClientID},
	} {
		if strings.TrimSpace(f.val) == "" {
			missing = append(missing, f.key)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: section [%s] has no %s; the device flow needs them (permission_url is the device authorisation endpoint)", ErrConfig, a.Section, strings.Join(missing, ", "))
	}
	return nil
}

// deviceAuthorization is the device authorisation answer (RFC 8628 3.2).
// Google calls the verification URI verification_url.
type deviceAuthorization struct {
	DeviceCode              string        `json:"device_code"`
	UserCode                string        `json:"user_code"`
	VerificationURI         string        `json:"verification_uri"`
	VerificationURL         string        `json:"verification_url"`
	VerificationURIComplete string        `json:"verification_uri_complete"`
	ExpiresIn               oauth.Seconds `json:"expires_in"`
	Interval                oauth.Seconds `json:"interval"`
}

// startDevice registers a device request and starts its poller; the
// caller then waits like any other login. The device code is asked for in
// the background so that the request exists (and later logins join it)
// before the provider answers.
func (s *Server) startDevice(ctx context.Context, key, name string, acct config.Account) (oauth.TokenResponse, error) {
	pctx, cancel := context.WithCancel(context.Background())
	r := &request{
		key: key, account: name, flow: config.FlowDevice, acct: acct,
		created: s.now(), cancel: cancel, done: make(chan struct{}),
	}
	got, fresh, err := s.register(r)
	if err != nil {
		cancel()
		return oauth.TokenResponse{}, err
	}
	if !fresh {
		cancel()
		s.mu.Lock()
		announced := got.announced
		s.mu.Unlock()
		if announced {
			s.announce(got)
		}
		return s.wait(ctx, got)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tok, err := s.runDevice(pctx, r, acct)
		if pctx.Err() != nil && err != nil {
			return // withdrawn or shut down: whoever cancelled finished r
		}
		s.finish(r, tok, err)
	}()
	return s.wait(ctx, r)
}

// runDevice asks for a device code, announces it and polls until the
// provider answers with tokens or a final error.
func (s *Server) runDevice(ctx context.Context, r *request, acct config.Account) (oauth.TokenResponse, error) {
	// RFC 8628 3.1: a confidential client authenticates here as it does
	// at the token endpoint, so the request carries what the polls carry.
	form := url.Values{}
	if err := oauth.SetClientAuth(form, acct, s.opts.Signer); err != nil {
		return oauth.TokenResponse{}, err
	}
	form.Set("scope", strings.Join(strings.Fields(acct.Scope), " "))
	rctx, cancel := context.WithTimeout(ctx, s.opts.ExchangeTimeout)
	da, err := s.requestDeviceCode(rctx, acct.PermissionURL, form)
	cancel()
	if err != nil {
		return oauth.TokenResponse{}, fmt.Errorf("account %s: asking permission_url for a device code: %w", r.account, err)
	}
	uri := da.VerificationURIComplete
	if uri == "" {
		uri = da.VerificationURI
	}
	if uri == "" {
		uri = da.VerificationURL
	}
	if da.DeviceCode == "" || da.UserCode == "" || uri == "" {
		return oauth.TokenResponse{}, fmt.Errorf("%w: account %s: permission_url answered without device_code, user_code or verification_uri; is it the device authorisation endpoint (…/devicecode)?", oauth.ErrProviderRefused, r.account)
	}
	s.mu.Lock()
	r.url, r.userCode, r.announced = uri, da.UserCode, true
	s.mu.Unlock()
	s.announce(r)

	// Bounded: a provider's absurd interval must not park the poller.
	interval := da.Interval.Duration(time.Minute)
	if interval <= 0 {
		interval = DefaultDeviceInterval
	}
	var deadline time.Time
	if d := da.ExpiresIn.Duration(24 * time.Hour); d > 0 {
		deadline = s.now().Add(d)
	}
	warned := false
	for {
		if err := s.sleep(ctx, interval); err != nil {
			return oauth.TokenResponse{}, err
		}
		if !deadline.IsZero() && s.now().After(deadline) {
			return oauth.TokenResponse{}, fmt.Errorf("%w: the device code for account %s expired before anyone entered it at %s; log in again for a new code", oauth.ErrNeedsAuthorization, r.account, uri)
		}
		s.mu.Lock()
		acct = r.acct // a joining login may bring a fresh client secret
		s.mu.Unlock()
		poll := url.Values{}
		if err := oauth.SetClientAuth(poll, acct, s.opts.Signer); err != nil {
			return oauth.TokenResponse{}, err
		}
		poll.Set("device_code", da.DeviceCode)
		poll.Set("grant_type", DeviceCodeGrant)
		pctx, cancel := context.WithTimeout(ctx, s.opts.ExchangeTimeout)
		tok, err := oauth.PostToken(pctx, s.hc, acct.TokenURL, poll)
		cancel()
		if err == nil {
			return tok, nil
		}
		if ctx.Err() != nil {
			return oauth.TokenResponse{}, ctx.Err()
		}
		var pe *oauth.ProviderError
		switch {
		case errors.As(err, &pe) && pe.Code == "authorization_pending":
		case errors.As(err, &pe) && pe.Code == "slow_down":
			interval += SlowDownStep
		case errors.As(err, &pe) && pe.Code == "expired_token":
			return oauth.TokenResponse{}, fmt.Errorf("%w: the device code for account %s expired before anyone entered it at %s; log in again for a new code", oauth.ErrNeedsAuthorization, r.account, uri)
		case errors.As(err, &pe) && (pe.Code == "access_denied" || pe.Code == "authorization_declined"):
			return oauth.TokenResponse{}, fmt.Errorf("%w: the user declined the device authorisation of account %s (%s); log in again for a new code", oauth.ErrNeedsAuthorization, r.account, providerText(pe.Code, pe.Description))
		case errors.Is(err, oauth.ErrProviderUnavailable):
			// The code stays valid while the provider recovers; keep
			// polling until it expires, and say so once.
			if !warned {
				warned = true
				s.log.Warn(fmt.Sprintf("Polling the token endpoint for account %s failed; retrying: %v", r.account, err),
					"account", r.account, "reason", err.Error())
			}
		default:
			return oauth.TokenResponse{}, fmt.Errorf("account %s: polling token_url for the device authorisation: %w", r.account, err)
		}
	}
}

func (s *Server) sleep(ctx context.Context, d time.Duration) error {
	if s.opts.Sleep != nil {
		return s.opts.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// maxDeviceAnswer bounds the device authorisation answer like PostToken
// bounds a token answer.
const maxDeviceAnswer = 1 << 20

// requestDeviceCode posts the device authorisation request. oauth.PostToken
// cannot serve here: it insists on an access_token in the answer.
func (s *Server) requestDeviceCode(ctx context.Context, endpoint string, form url.Values) (deviceAuthorization, error) {
	var da deviceAuthorization
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return da, fmt.Errorf("%w: permission_url is not a usable URL", ErrConfig)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", oauth.UserAgent)
	resp, err := oauth.NoRedirects(s.hc).Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return da, fmt.Errorf("%w: %v", oauth.ErrProviderUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDeviceAnswer))
	if err != nil {
		return da, fmt.Errorf("%w: reading the answer: %v", oauth.ErrProviderUnavailable, err)
	}
	if err := oauth.RedirectRefused("permission_url", endpoint, resp); err != nil {
		return da, err
	}
	if resp.StatusCode != http.StatusOK {
		pe := &oauth.ProviderError{Status: resp.StatusCode}
		var e struct {
			Code        string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(body, &e) == nil {
			pe.Code, pe.Description = e.Code, truncate(firstLine(e.Description), 300)
		}
		return da, pe
	}
	if err := json.Unmarshal(body, &da); err != nil {
		return da, fmt.Errorf("%w: the answer is not JSON", oauth.ErrProviderUnavailable)
	}
	return da, nil
}

func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}
