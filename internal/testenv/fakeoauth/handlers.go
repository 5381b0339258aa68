package fakeoauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

func (p *Provider) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(EndpointAuthorize, p.counted(EndpointAuthorize, p.handleAuthorize))
	mux.HandleFunc(EndpointToken, p.counted(EndpointToken, p.handleToken))
	mux.HandleFunc(EndpointDeviceCode, p.counted(EndpointDeviceCode, p.handleDeviceCode))
	mux.HandleFunc(EndpointDevice, p.counted(EndpointDevice, p.handleDevicePage))
	mux.HandleFunc(EndpointIntrospect, p.counted(EndpointIntrospect, p.handleIntrospect))
	return mux
}

func (p *Provider) counted(endpoint string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.counts[endpoint]++
		p.mu.Unlock()
		h(w, r)
	}
}

// oauthError is an RFC 6749 section 5.2 error body.
type oauthError struct {
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// --- /authorize ---

var loginPage = template.Must(template.New("login").Parse(`<!DOCTYPE html>
<html><head><title>Sign in - fake OAuth 2.0 provider</title></head>
<body>
<h1>Sign in</h1>
<p>{{.ClientID}} asks for: {{.Scope}}</p>
{{if .Error}}<p class="error">{{.Error}}</p>{{end}}
<form method="post" action="/authorize">
<input type="hidden" name="request_id" value="{{.RequestID}}">
<label>Username <input type="text" name="username" value="{{.LoginHint}}"></label>
<label>Password <input type="password" name="password"></label>
<button type="submit" name="consent" value="allow">Accept</button>
<button type="submit" name="consent" value="deny">Cancel</button>
</form>
</body></html>
`))

type loginData struct {
	RequestID, ClientID, Scope, LoginHint, Error string
}

func (p *Provider) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		p.authorizeForm(w, r)
	case http.MethodPost:
		p.authorizeSubmit(w, r)
	default:
		http.Error(w, "use GET or POST", http.StatusMethodNotAllowed)
	}
}

func (p *Provider) authorizeForm(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	clientID, redirectURI := q.Get("client_id"), q.Get("redirect_uri")
	p.mu.Lock()
	c, ok := p.clients[clientID]
	p.mu.Unlock()
	// Errors about the client or redirect_uri must not redirect (RFC 6749
	// 4.1.2.1): the redirect target is not trusted yet.
	if !ok {
		http.Error(w, fmt.Sprintf("unknown client_id %q", clientID), http.StatusBadRequest)
		return
	}
	if !redirectAllowed(c, redirectURI) {
		http.Error(w, fmt.Sprintf("redirect_uri %q is not registered for client %q", redirectURI, clientID), http.StatusBadRequest)
		return
	}
	redirectErr := func(code, desc string) {
		http.Redirect(w, r, withQuery(redirectURI, url.Values{"error": {code}, "error_description": {desc}, "state": {q.Get("state")}}), http.StatusFound)
	}
	if q.Get("response_type") != "code" {
		redirectErr("unsupported_response_type", "only response_type=code is supported")
		return
	}
	method := q.Get("code_challenge_method")
	challenge := q.Get("code_challenge")
	if challenge != "" && method == "" {
		method = "plain"
	}
	if challenge != "" && method != "S256" && method != "plain" {
		redirectErr("invalid_request", "code_challenge_method must be S256 or plain")
		return
	}
	if challenge == "" && c.RequirePKCE {
		redirectErr("invalid_request", "this client must use PKCE (code_challenge)")
		return
	}
	id := randomToken(16)
	p.mu.Lock()
	p.pending[id] = &authRequest{
		clientID: clientID, redirectURI: redirectURI, scope: q.Get("scope"), state: q.Get("state"),
		challenge: challenge, method: method, loginHint: q.Get("login_hint"),
		expires: time.Now().Add(DefaultCodeLifetime),
	}
	p.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = loginPage.Execute(w, loginData{RequestID: id, ClientID: clientID, Scope: q.Get("scope"), LoginHint: q.Get("login_hint")})
}

func (p *Provider) authorizeSubmit(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "malformed form: "+err.Error(), http.StatusBadRequest)
		return
	}
	id := r.PostForm.Get("request_id")
	user, password := r.PostForm.Get("username"), r.PostForm.Get("password")
	p.mu.Lock()
	req, ok := p.pending[id]
	if !ok || time.Now().After(req.expires) {
		p.mu.Unlock()
		http.Error(w, "this sign-in request is unknown or expired: start again from the application", http.StatusBadRequest)
		return
	}
	if r.PostForm.Get("consent") == "deny" {
		delete(p.pending, id)
		p.mu.Unlock()
		http.Redirect(w, r, withQuery(req.redirectURI, url.Values{"error": {"access_denied"}, "error_description": {"the user declined to authorise the application"}, "state": {req.state}}), http.StatusFound)
		return
	}
	want, known := p.users[user]
	if !known || subtle.ConstantTimeCompare([]byte(want), []byte(password)) != 1 {
		p.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		_ = loginPage.Execute(w, loginData{RequestID: id, ClientID: req.clientID, Scope: req.scope, LoginHint: user, Error: "Your account or password is incorrect."})
		return
	}
	delete(p.pending, id)
	if p.refuseAuthz > 0 {
		p.refuseAuthz--
		p.mu.Unlock()
		http.Redirect(w, r, withQuery(req.redirectURI, url.Values{"error": {"access_denied"}, "error_description": {"the administrator has not allowed this application"}, "state": {req.state}}), http.StatusFound)
		return
	}
	code := randomToken(24)
	p.codes[code] = &authCode{
		clientID: req.clientID, redirectURI: req.redirectURI, scope: req.scope, user: user,
		challenge: req.challenge, method: req.method, expires: time.Now().Add(DefaultCodeLifetime),
	}
	p.mu.Unlock()
	q := url.Values{"code": {code}}
	if req.state != "" {
		q.Set("state", req.state)
	}
	http.Redirect(w, r, withQuery(req.redirectURI, q), http.StatusFound)
}

func redirectAllowed(c Client, uri string) bool {
	if uri == "" {
		return false
	}
	if len(c.RedirectURIs) == 0 {
		u, err := url.Parse(uri)
		return err == nil && u.Scheme == "http" && isLoopbackURL(uri)
	}
	return slices.Contains(c.RedirectURIs, uri)
}

func withQuery(base string, q url.Values) string {
	for k, v := range q {
		if len(v) == 1 && v[0] == "" {
			delete(q, k)
		}
	}
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	merged := u.Query()
	for k, v := range q {
		merged[k] = v
	}
	u.RawQuery = merged.Encode()
	return u.String()
}

// parsePost admits a POSTed form to an OAuth endpoint; otherwise it
// answers invalid_request as a real provider does and returns false.
func parsePost(w http.ResponseWriter, r *http.Request, endpoint string) bool {
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusMethodNotAllowed, oauthError{"invalid_request", endpoint + " takes POST"})
		return false
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, oauthError{"invalid_request", "malformed form body"})
		return false
	}
	return true
}

// --- /token ---

type tokenAnswer struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    *int64 `json:"expires_in,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

func (p *Provider) handleToken(w http.ResponseWriter, r *http.Request) {
	if !parsePost(w, r, "the token endpoint") {
		return
	}
	form := r.PostForm
	grant := form.Get("grant_type")
	rec := &TokenRequest{
		GrantType: grant, ClientID: form.Get("client_id"), Scope: form.Get("scope"),
		Form: cloneValues(form), UserAgent: r.UserAgent(), At: time.Now(),
	}
	if rec.ClientID == "" {
		if id, _, ok := r.BasicAuth(); ok {
			rec.ClientID = id
		}
	}
	p.mu.Lock()
	p.grants[grant]++
	p.requests = append(p.requests, rec)
	stall := p.stall
	if stall != nil {
		p.stalled++
	}
	p.mu.Unlock()

	if stall != nil {
		select {
		case <-stall:
		case <-r.Context().Done():
		}
		p.mu.Lock()
		p.stalled--
		p.mu.Unlock()
		if r.Context().Err() != nil {
			return
		}
	}

	status, body := p.token(r, grant, form)
	p.mu.Lock()
	rec.Status = status
	if e, ok := body.(oauthError); ok {
		rec.Error = e.Code
	}
	p.mu.Unlock()
	if g, ok := body.(garbage); ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(g))
		return
	}
	writeJSON(w, status, body)
}

type garbage string

// token decides the answer to one token request.
func (p *Provider) token(r *http.Request, grant string, form url.Values) (int, any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down != 0 {
		return p.down, oauthError{"temporarily_unavailable", "the token service is down (fake provider SetDown)"}
	}
	if len(p.faults) > 0 {
		f := p.faults[0]
		p.faults = p.faults[1:]
		switch f.kind {
		case faultRefuse:
			desc := f.desc
			if desc == "" {
				desc = "the grant is invalid, expired or revoked"
			}
			code := f.code
			if code == "" {
				code = "invalid_grant"
			}
			return f.status, oauthError{code, desc}
		case faultFail:
			return f.status, oauthError{"temporarily_unavailable", "the token service failed (fake provider FailNext)"}
		case faultGarbage:
			return f.status, garbage(`{"access_token": <html><body>502 Bad Gateway`)
		}
	}

	switch grant {
	case GrantAuthorizationCode:
		return p.grantCodeLocked(r, form)
	case GrantRefreshToken:
		return p.grantRefreshLocked(r, form)
	case GrantClientCredentials:
		return p.grantClientCredentialsLocked(r, form)
	case GrantPassword:
		return p.grantPasswordLocked(r, form)
	case GrantDeviceCode:
		return p.grantDeviceLocked(r, form)
	case GrantJWTBearer:
		return p.grantJWTBearerLocked(form)
	case "":
		return http.StatusBadRequest, oauthError{"invalid_request", "grant_type is missing"}
	default:
		return http.StatusBadRequest, oauthError{"unsupported_grant_type", fmt.Sprintf("grant_type %q is not supported", grant)}
	}
}

// authenticateClientLocked checks client_assertion, HTTP Basic or form
// client_secret, whichever the request uses.
func (p *Provider) authenticateClientLocked(r *http.Request, form url.Values) (Client, int, *oauthError) {
	id := form.Get("client_id")
	secret, hasSecret := form.Get("client_secret"), form.Has("client_secret")
	if bid, bsecret, ok := r.BasicAuth(); ok {
		// RFC 6749 2.3.1: form-encoded before Basic; unescape what Basic carries.
		if u, err := url.QueryUnescape(bid); err == nil {
			bid = u
		}
		if u, err := url.QueryUnescape(bsecret); err == nil {
			bsecret = u
		}
		if id != "" && id != bid {
			return Client{}, http.StatusBadRequest, &oauthError{"invalid_request", "client_id in the body differs from HTTP Basic"}
		}
		id, secret, hasSecret = bid, bsecret, true
	}
	if at := form.Get("client_assertion_type"); at != "" || form.Has("client_assertion") {
		if at != ClientAssertionType {
			return Client{}, http.StatusBadRequest, &oauthError{"invalid_request", "client_assertion_type must be " + ClientAssertionType}
		}
		claims, err := p.verifyAssertionLocked(form.Get("client_assertion"))
		if err != nil {
			return Client{}, http.StatusUnauthorized, &oauthError{"invalid_client", "client_assertion: " + err.Error()}
		}
		if claims.Iss != claims.Sub || (id != "" && id != claims.Iss) {
			return Client{}, http.StatusUnauthorized, &oauthError{"invalid_client", "client_assertion: iss and sub must both be the client_id"}
		}
		return p.clients[claims.Iss], 0, nil
	}
	c, ok := p.clients[id]
	if !ok {
		return Client{}, http.StatusUnauthorized, &oauthError{"invalid_client", fmt.Sprintf("client_id %q is not registered", id)}
	}
	if c.Secret == "" {
		if hasSecret && secret != "" {
			return Client{}, http.StatusUnauthorized, &oauthError{"invalid_client", "a public client must not send a client_secret"}
		}
		return c, 0, nil
	}
	if !hasSecret || subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1 {
		return Client{}, http.StatusUnauthorized, &oauthError{"invalid_client", "invalid client secret"}
	}
	return c, 0, nil
}

func (p *Provider) issueLocked(c Client, user, scope string, withRefresh bool) (int, any) {
	a := tokenAnswer{AccessToken: p.newAccessLocked(user, c.ID, scope), TokenType: "Bearer", Scope: scope}
	if !p.omitExpiresIn {
		secs := int64((p.lifetime + time.Second - 1) / time.Second)
		a.ExpiresIn = &secs
	}
	if withRefresh {
		a.RefreshToken = p.newRefreshLocked(user, c.ID, scope)
	}
	q := p.quirks
	if q.ExpiresIn == "" && !q.OmitTokenType && len(q.Extra) == 0 {
		return http.StatusOK, a
	}
	m := map[string]any{"access_token": a.AccessToken, "token_type": a.TokenType}
	if a.Scope != "" {
		m["scope"] = a.Scope
	}
	if a.RefreshToken != "" {
		m["refresh_token"] = a.RefreshToken
	}
	if a.ExpiresIn != nil {
		m["expires_in"] = *a.ExpiresIn
	}
	if q.ExpiresIn != "" {
		m["expires_in"] = json.RawMessage(q.ExpiresIn)
	}
	if q.OmitTokenType {
		delete(m, "token_type")
	}
	for k, v := range q.Extra {
		m[k] = v
	}
	return http.StatusOK, m
}

func (p *Provider) grantCodeLocked(r *http.Request, form url.Values) (int, any) {
	c, st, e := p.authenticateClientLocked(r, form)
	if e != nil {
		return st, *e
	}
	code, ok := p.codes[form.Get("code")]
	switch {
	case !ok:
		return http.StatusBadRequest, oauthError{"invalid_grant", "the authorization code is unknown"}
	case code.used:
		return http.StatusBadRequest, oauthError{"invalid_grant", "the authorization code was already redeemed"}
	case time.Now().After(code.expires):
		return http.StatusBadRequest, oauthError{"invalid_grant", "the authorization code has expired"}
	case code.clientID != c.ID:
		return http.StatusBadRequest, oauthError{"invalid_grant", "the authorization code was issued to another client"}
	case form.Get("redirect_uri") != code.redirectURI:
		return http.StatusBadRequest, oauthError{"invalid_grant", "redirect_uri differs from the one in the authorisation request"}
	}
	verifier := form.Get("code_verifier")
	if code.challenge != "" {
		if verifier == "" {
			return http.StatusBadRequest, oauthError{"invalid_grant", "code_verifier is missing (the authorisation request used PKCE)"}
		}
		got := verifier
		if code.method == "S256" {
			sum := sha256.Sum256([]byte(verifier))
			got = base64.RawURLEncoding.EncodeToString(sum[:])
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(code.challenge)) != 1 {
			return http.StatusBadRequest, oauthError{"invalid_grant", "code_verifier does not match the code_challenge"}
		}
	} else if verifier != "" {
		return http.StatusBadRequest, oauthError{"invalid_grant", "code_verifier sent but the authorisation request had no code_challenge"}
	}
	code.used = true
	return p.issueLocked(c, code.user, code.scope, true)
}

func (p *Provider) grantRefreshLocked(r *http.Request, form url.Values) (int, any) {
	c, st, e := p.authenticateClientLocked(r, form)
	if e != nil {
		return st, *e
	}
	rt, ok := p.refresh[form.Get("refresh_token")]
	switch {
	case !ok:
		return http.StatusBadRequest, oauthError{"invalid_grant", "the refresh token is unknown"}
	case rt.revoked:
		return http.StatusBadRequest, oauthError{"invalid_grant", "the refresh token has been revoked; the user must sign in again"}
	case rt.clientID != c.ID:
		return http.StatusBadRequest, oauthError{"invalid_grant", "the refresh token was issued to another client"}
	}
	scope := rt.scope
	if s := form.Get("scope"); s != "" {
		scope = s
	}
	status, ans := p.issueLocked(c, rt.user, scope, p.rotate)
	return status, ans
}

func (p *Provider) grantClientCredentialsLocked(r *http.Request, form url.Values) (int, any) {
	c, st, e := p.authenticateClientLocked(r, form)
	if e != nil {
		return st, *e
	}
	if c.Secret == "" && c.AssertionKey == nil {
		return http.StatusUnauthorized, oauthError{"invalid_client", "client_credentials needs a confidential client (secret or certificate)"}
	}
	if c.ServiceUser == "" {
		return http.StatusBadRequest, oauthError{"unauthorized_client", fmt.Sprintf("client %q has no application permission to any mailbox (Client.ServiceUser)", c.ID)}
	}
	if form.Get("scope") == "" {
		return http.StatusBadRequest, oauthError{"invalid_scope", "scope is required (for example https://outlook.office365.com/.default)"}
	}
	// App-only tokens come without a refresh token, as at real providers.
	return p.issueLocked(c, c.ServiceUser, form.Get("scope"), false)
}

func (p *Provider) grantPasswordLocked(r *http.Request, form url.Values) (int, any) {
	c, st, e := p.authenticateClientLocked(r, form)
	if e != nil {
		return st, *e
	}
	user, password := form.Get("username"), form.Get("password")
	want, ok := p.users[user]
	if !ok || subtle.ConstantTimeCompare([]byte(want), []byte(password)) != 1 {
		return http.StatusBadRequest, oauthError{"invalid_grant", "Error validating credentials due to invalid username or password."}
	}
	scope := form.Get("scope")
	if scope == "" {
		scope = form.Get("resource")
	}
	return p.issueLocked(c, user, scope, true)
}

// --- device flow ---

type deviceAnswer struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int    `json:"interval"`
	Message                 string `json:"message"`
}

func (p *Provider) handleDeviceCode(w http.ResponseWriter, r *http.Request) {
	if !parsePost(w, r, "the device authorisation endpoint") {
		return
	}
	p.mu.Lock()
	if p.down != 0 {
		status := p.down
		p.mu.Unlock()
		writeJSON(w, status, oauthError{"temporarily_unavailable", "the device service is down (fake provider SetDown)"})
		return
	}
	c, st, e := p.authenticateClientLocked(r, r.PostForm)
	if e != nil {
		p.mu.Unlock()
		writeJSON(w, st, *e)
		return
	}
	d := &deviceAuth{DeviceAuthorization: DeviceAuthorization{
		UserCode: newUserCode(), DeviceCode: randomToken(32), ClientID: c.ID,
		Scope: r.PostForm.Get("scope"), Expires: time.Now().Add(DefaultDeviceCodeLifetime),
	}}
	p.devices[d.DeviceCode] = d
	p.userCodes[normalizeUserCode(d.UserCode)] = d
	interval := p.interval
	p.mu.Unlock()
	verify := p.VerificationURL()
	writeJSON(w, http.StatusOK, deviceAnswer{
		DeviceCode: d.DeviceCode, UserCode: d.UserCode,
		VerificationURI:         verify,
		VerificationURIComplete: verify + "?user_code=" + url.QueryEscape(d.UserCode),
		ExpiresIn:               int64(DefaultDeviceCodeLifetime / time.Second), Interval: interval,
		Message: fmt.Sprintf("To sign in, use a web browser to open the page %s and enter the code %s to authenticate.", verify, d.UserCode),
	})
}

func (p *Provider) grantDeviceLocked(r *http.Request, form url.Values) (int, any) {
	c, st, e := p.authenticateClientLocked(r, form)
	if e != nil {
		return st, *e
	}
	d, ok := p.devices[form.Get("device_code")]
	if !ok || d.ClientID != c.ID {
		return http.StatusBadRequest, oauthError{"invalid_grant", "the device code is unknown"}
	}
	d.lastPoll = time.Now()
	switch {
	case time.Now().After(d.Expires):
		return http.StatusBadRequest, oauthError{"expired_token", "the device code has expired"}
	case d.Denied:
		delete(p.devices, d.DeviceCode)
		delete(p.userCodes, normalizeUserCode(d.UserCode))
		return http.StatusBadRequest, oauthError{"access_denied", "the user declined the authorisation"}
	case p.slowDown > 0:
		p.slowDown--
		return http.StatusBadRequest, oauthError{"slow_down", "polling too fast"}
	case !d.Approved:
		return http.StatusBadRequest, oauthError{"authorization_pending", "the user has not finished signing in yet"}
	}
	delete(p.devices, d.DeviceCode)
	delete(p.userCodes, normalizeUserCode(d.UserCode))
	return p.issueLocked(c, d.User, d.Scope, true)
}

var devicePage = template.Must(template.New("device").Parse(`<!DOCTYPE html>
<html><head><title>Enter code - fake OAuth 2.0 provider</title></head>
<body>
<h1>Enter code</h1>
{{if .Error}}<p class="error">{{.Error}}</p>{{end}}{{if .Done}}<p class="done">{{.Done}}</p>{{end}}
<form method="post" action="/device">
<label>Code <input type="text" name="user_code" value="{{.UserCode}}"></label>
<label>Username <input type="text" name="username"></label>
<label>Password <input type="password" name="password"></label>
<button type="submit" name="consent" value="allow">Accept</button>
<button type="submit" name="consent" value="deny">Cancel</button>
</form>
</body></html>
`))

type devicePageData struct{ UserCode, Error, Done string }

// handleDevicePage is verification_uri: a person (or DeviceBrowser) enters
// the code and signs in.
func (p *Provider) handleDevicePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if r.Method == http.MethodGet {
		_ = devicePage.Execute(w, devicePageData{UserCode: r.URL.Query().Get("user_code")})
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "use GET or POST", http.StatusMethodNotAllowed)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "malformed form: "+err.Error(), http.StatusBadRequest)
		return
	}
	code, user, password := r.PostForm.Get("user_code"), r.PostForm.Get("username"), r.PostForm.Get("password")
	fail := func(status int, msg string) {
		w.WriteHeader(status)
		_ = devicePage.Execute(w, devicePageData{UserCode: code, Error: msg})
	}
	if r.PostForm.Get("consent") == "deny" {
		if err := p.DenyDevice(code); err != nil {
			fail(http.StatusBadRequest, "That code is not valid.")
			return
		}
		_ = devicePage.Execute(w, devicePageData{Done: "You declined; you can close this window."})
		return
	}
	p.mu.Lock()
	want, ok := p.users[user]
	p.mu.Unlock()
	if !ok || subtle.ConstantTimeCompare([]byte(want), []byte(password)) != 1 {
		fail(http.StatusUnauthorized, "Your account or password is incorrect.")
		return
	}
	if err := p.ApproveDevice(code, user); err != nil {
		fail(http.StatusBadRequest, "That code is not valid.")
		return
	}
	_ = devicePage.Execute(w, devicePageData{Done: "You have signed in to the application; you can close this window."})
}

// --- /introspect ---

func (p *Provider) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	var token string
	switch r.Method {
	case http.MethodPost:
		if err := r.ParseForm(); err != nil {
			writeJSON(w, http.StatusBadRequest, oauthError{"invalid_request", "malformed form body"})
			return
		}
		token = r.PostForm.Get("token")
	case http.MethodGet:
		// Dovecot's introspection_mode = get appends the token to the URL.
		token = r.URL.Query().Get("token")
		if token == "" {
			token = r.URL.Query().Get("access_token")
		}
	default:
		writeJSON(w, http.StatusMethodNotAllowed, oauthError{"invalid_request", "use POST"})
		return
	}
	if token == "" {
		if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
			token = strings.TrimPrefix(a, "Bearer ")
		}
	}
	p.mu.Lock()
	user, active := p.introspectLocked(token)
	var ans map[string]any
	if active {
		a := p.access[token]
		ans = map[string]any{
			"active": true, "username": user, "client_id": a.clientID, "scope": a.scope,
			"token_type": "Bearer", "exp": a.expires.Unix(),
		}
	} else {
		ans = map[string]any{"active": false}
	}
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, ans)
}
