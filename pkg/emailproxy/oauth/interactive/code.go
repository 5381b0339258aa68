package interactive

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/errcatalog"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
)

// checkCodeAccount reports what an authorization code account lacks.
func checkCodeAccount(a config.Account) error {
	var missing []string
	for _, f := range []struct{ key, val string }{
		{"permission_url", a.PermissionURL}, {"token_url", a.TokenURL},
		{"redirect_uri", a.RedirectURI}, {"client_id", a.ClientID},
	} {
		if strings.TrimSpace(f.val) == "" {
			missing = append(missing, f.key)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: section [%s] has no %s; the authorization code flow needs them", ErrConfig, a.Section, strings.Join(missing, ", "))
	}
	_, _, err := listenTarget(a)
	return err
}

// listenTarget is where the redirect listener binds (host:port) and which
// paths it answers. redirect_listen_address wins over redirect_uri for the
// socket, because a reverse proxy usually sits in between; both paths are
// answered, because reverse proxies differ in whether they strip the
// public prefix (the senhasegura docs forward /email-oauth2-proxy-authorize/
// to http://127.0.0.1:8801/).
func listenTarget(a config.Account) (addr string, paths []string, err error) {
	ru, err := url.Parse(strings.TrimSpace(a.RedirectURI))
	if err != nil || (ru.Scheme != "http" && ru.Scheme != "https") || ru.Host == "" {
		return "", nil, fmt.Errorf("%w: redirect_uri %q of [%s] is not an absolute http(s) URL such as http://127.0.0.1:8801/email-oauth2-proxy-authorize/", ErrConfig, a.RedirectURI, a.Section)
	}
	paths = []string{ru.Path}
	src, what := ru, "redirect_uri"
	if la := strings.TrimSpace(a.RedirectListenAddress); la != "" {
		if !strings.Contains(la, "://") {
			la = "http://" + la
		}
		lu, err := url.Parse(la)
		if err != nil || lu.Host == "" {
			return "", nil, fmt.Errorf("%w: redirect_listen_address %q of [%s] is not a URL or host:port such as http://127.0.0.1:8801/", ErrConfig, a.RedirectListenAddress, a.Section)
		}
		if lu.Scheme != "http" {
			return "", nil, fmt.Errorf("%w: redirect_listen_address %q of [%s] must be plain http://: the listener speaks HTTP, and TLS belongs to the web server in front of it", ErrConfig, a.RedirectListenAddress, a.Section)
		}
		if lu.Path != "" {
			paths = append(paths, lu.Path)
		}
		src, what = lu, "redirect_listen_address"
	}
	host, port := src.Hostname(), src.Port()
	if host == "" {
		return "", nil, fmt.Errorf("%w: the %s of [%s] names no host to listen on", ErrConfig, what, a.Section)
	}
	if port == "" {
		port = "80"
		if src.Scheme == "https" {
			port = "443"
		}
	}
	for i, p := range paths {
		paths[i] = normalPath(p)
	}
	return net.JoinHostPort(host, port), paths, nil
}

// normalPath makes "/a/" and "/a" the same route; "" is the root.
func normalPath(p string) string {
	p = strings.TrimRight(p, "/")
	if p == "" {
		return "/"
	}
	return p
}

// randomToken is n random bytes as unpadded base64url: states and PKCE
// verifiers (RFC 7636 4.1 wants 43 to 128 characters; 32 bytes give 43).
func randomToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// pkceChallenge is the S256 code_challenge of a verifier (RFC 7636 4.2).
func pkceChallenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// AuthorizationURL builds the URL a person opens: permission_url with the
// query in the Python proxy's order (client_id, redirect_uri, scope,
// response_type, access_type, login_hint, state, then code_challenge and
// code_challenge_method when challenge is set), spaces as %20.
func AuthorizationURL(a config.Account, username, state, challenge string) string {
	params := [][2]string{
		{"client_id", a.ClientID},
		{"redirect_uri", a.RedirectURI},
		{"scope", strings.Join(strings.Fields(a.Scope), " ")},
		{"response_type", "code"},
		{"access_type", "offline"},
		{"login_hint", username},
		{"state", state},
	}
	if challenge != "" {
		params = append(params, [2]string{"code_challenge", challenge}, [2]string{"code_challenge_method", "S256"})
	}
	var b strings.Builder
	b.WriteString(strings.TrimSpace(a.PermissionURL))
	sep := "?"
	if strings.Contains(a.PermissionURL, "?") {
		sep = "&"
	}
	for _, p := range params {
		b.WriteString(sep)
		sep = "&"
		b.WriteString(p[0])
		b.WriteByte('=')
		// QueryEscape writes a space as '+' and a literal '+' as %2B, so
		// every '+' left is a space.
		b.WriteString(strings.ReplaceAll(url.QueryEscape(p[1]), "+", "%20"))
	}
	return b.String()
}

// startCode makes a new authorization code request, announces it, and
// waits for it like any other login.
func (s *Server) startCode(ctx context.Context, key, name string, acct config.Account) (oauth.TokenResponse, error) {
	addr, paths, err := listenTarget(acct)
	if err != nil {
		return oauth.TokenResponse{}, fmt.Errorf("account %s: %w", name, err)
	}
	// Listen before announcing: a URL whose redirect nobody will take is
	// worse than no URL.
	if err := s.ensureListener(addr, paths, acct.Section); err != nil {
		return oauth.TokenResponse{}, fmt.Errorf("account %s: %w", name, err)
	}
	state, err := randomToken(32)
	if err != nil {
		return oauth.TokenResponse{}, err
	}
	r := &request{
		key: key, account: name, flow: config.FlowAuthorizationCode, acct: acct,
		created: s.now(), state: state, listenAddr: addr, done: make(chan struct{}),
	}
	challenge := ""
	if acct.UsePKCE {
		if r.verifier, err = randomToken(32); err != nil {
			return oauth.TokenResponse{}, err
		}
		challenge = pkceChallenge(r.verifier)
	}
	r.url = AuthorizationURL(acct, name, state, challenge)
	got, fresh, err := s.register(r)
	if err != nil {
		return oauth.TokenResponse{}, err
	}
	if fresh {
		s.mu.Lock()
		r.announced = true
		s.mu.Unlock()
	}
	s.announce(got)
	return s.wait(ctx, got)
}

// listener is one redirect server, shared by every account whose redirect
// arrives at its address.
type listener struct {
	addr  string
	srv   *http.Server
	paths map[string]bool // guarded by Server.mu
}

func (s *Server) ensureListener(addr string, paths []string, section string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if l := s.listeners[addr]; l != nil {
		for _, p := range paths {
			l.paths[p] = true
		}
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot listen for the authorisation redirect on %s (redirect_listen_address, else redirect_uri, of [%s]): %w; free that port or change the setting", addr, section, err)
	}
	l := &listener{addr: addr, paths: map[string]bool{}}
	for _, p := range paths {
		l.paths[p] = true
	}
	l.srv = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serveRedirect(w, r, l) }),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      s.opts.ExchangeTimeout + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.listeners[addr] = l
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := l.srv.Serve(ln)
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error(fmt.Sprintf("the authorisation redirect listener on %s stopped: %v; the next authorisation request starts it again", addr, err),
				"address", addr, "reason", err.Error())
		}
		s.mu.Lock()
		if s.listeners[addr] == l {
			delete(s.listeners, addr)
		}
		s.mu.Unlock()
	}()
	s.log.Info(fmt.Sprintf("Listening for authorisation redirects on %s", ln.Addr()), "address", ln.Addr().String())
	return nil
}

// serveRedirect answers the provider's redirect: it finds the request by
// state, exchanges the code and tells the browser the outcome.
func (s *Server) serveRedirect(w http.ResponseWriter, hr *http.Request, l *listener) {
	// Not even HEAD: a link checker's probe would spend the state.
	if hr.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writePage(w, http.StatusMethodNotAllowed, page{
			Failed: true, Heading: "Method not allowed",
			What: "This address only takes the provider's redirect, which is a GET request.",
		})
		return
	}
	s.mu.Lock()
	known := l.paths[normalPath(hr.URL.Path)]
	s.mu.Unlock()
	if !known {
		writePage(w, http.StatusNotFound, page{
			Failed: true, Heading: "Not found",
			What: "This is the Email OAuth 2.0 Proxy's authorisation listener; it only answers the redirect at the path of redirect_uri (or redirect_listen_address).",
			Todo: "Open the full URL from the proxy's log, not this address.",
		})
		return
	}
	q := hr.URL.Query()
	state := q.Get("state")
	if state == "" {
		writePage(w, http.StatusBadRequest, page{
			Failed: true, Heading: "Email OAuth 2.0 authentication failed",
			What: "The request carries no state, so it cannot be matched to an authorisation request.",
			Todo: "Open the URL from `orbit email-oauth2-proxy logs` (\"Please visit the following URL to authenticate account ...\") and log in from there.",
		})
		return
	}
	s.mu.Lock()
	r := s.byState[state]
	if r != nil && r.listenAddr == l.addr {
		// Take the state at once: a second redirect with it, even a
		// concurrent one, is refused.
		delete(s.byState, state)
		s.markSpent(state, spentUsed)
	} else {
		r = nil
	}
	why := s.spent[state]
	var acct config.Account
	if r != nil {
		acct = r.acct
	}
	s.mu.Unlock()
	if r == nil {
		p := page{Failed: true, Heading: "Email OAuth 2.0 authentication failed"}
		switch why {
		case spentUsed:
			p.What = "This authorisation link has already been used."
			p.Todo = "If the account is still not authorised, have the mail client log in again and open the new URL from `orbit email-oauth2-proxy logs`."
		case spentExpired:
			p.What = "This authorisation request expired: no mail client login was waiting for it any more."
			p.Todo = "Have the mail client log in again, then open the new URL from `orbit email-oauth2-proxy logs` soon."
		default:
			p.What = "This authorisation request is unknown to the proxy: it was not made by this proxy, or the proxy restarted since."
			p.Todo = "Have the mail client log in again, then open the new URL from `orbit email-oauth2-proxy logs`."
		}
		writePage(w, http.StatusBadRequest, p)
		return
	}

	if code := q.Get("error"); code != "" {
		err := &RedirectError{Account: r.account, Code: code, Description: q.Get("error_description")}
		s.finish(r, oauth.TokenResponse{}, err)
		status := http.StatusBadRequest
		if code == "access_denied" {
			status = http.StatusForbidden
		}
		writePage(w, status, page{
			Failed: true, Heading: "Email OAuth 2.0 authentication failed", Account: r.account,
			What:     "The provider did not authorise the account. It answered:",
			Provider: providerText(code, q.Get("error_description")),
			Todo: catalogueFix(errcatalog.Authorization, code, q.Get("error_description"),
				"Nothing was stored. Check that you logged in as the right user and granted the requested permissions (an administrator may have to consent for the organisation), then have the mail client log in again and open the new URL from `orbit email-oauth2-proxy logs`."),
		})
		return
	}
	code := q.Get("code")
	if code == "" {
		err := fmt.Errorf("%w: the redirect for account %s carried neither a code nor an error", oauth.ErrNeedsAuthorization, r.account)
		s.finish(r, oauth.TokenResponse{}, err)
		writePage(w, http.StatusBadRequest, page{
			Failed: true, Heading: "Email OAuth 2.0 authentication failed", Account: r.account,
			What: "The redirect carries no authorisation code.",
			Todo: "Have the mail client log in again and open the new URL from `orbit email-oauth2-proxy logs`.",
		})
		return
	}

	// The code is single use: finish the exchange even if the browser
	// goes away meanwhile.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(hr.Context()), s.opts.ExchangeTimeout)
	defer cancel()
	tok, err := s.exchange(ctx, acct, r.verifier, code)
	if err != nil {
		err = fmt.Errorf("account %s: exchanging the authorisation code at token_url: %w", r.account, err)
		s.finish(r, oauth.TokenResponse{}, err)
		status, todo := http.StatusBadRequest, "Check client_id, client_secret (or the certificate), redirect_uri and token_url in the proxy's configuration against the app registration, then have the mail client log in again and open the new URL."
		var pe *oauth.ProviderError
		if errors.Is(err, oauth.ErrProviderUnavailable) {
			status, todo = http.StatusBadGateway, "The provider's token endpoint could not be reached or failed. Have the mail client log in again in a moment and open the new URL."
		}
		p := page{Failed: true, Heading: "Email OAuth 2.0 authentication failed", Account: r.account,
			What: "You logged in, but the proxy could not exchange the authorisation code for tokens.", Todo: todo}
		if errors.As(err, &pe) {
			p.Provider = providerText(pe.Code, pe.Description)
			p.Todo = catalogueFix(errcatalog.TokenEndpoint, pe.Code, pe.Description, p.Todo)
		}
		writePage(w, status, p)
		return
	}
	s.finish(r, tok, nil)
	writePage(w, http.StatusOK, page{
		Heading: "Email OAuth 2.0 authentication succeeded", Account: r.account,
		What: "The proxy now holds tokens for this account; mail clients can log in through it. You can close this window.",
	})
}

// exchange trades the code for tokens: client_id, client_secret (or a
// client assertion), code, redirect_uri, grant_type=authorization_code and,
// with PKCE, code_verifier.
func (s *Server) exchange(ctx context.Context, acct config.Account, verifier, code string) (oauth.TokenResponse, error) {
	form := url.Values{}
	if err := oauth.SetClientAuth(form, acct, s.opts.Signer); err != nil {
		return oauth.TokenResponse{}, err
	}
	form.Set("code", code)
	form.Set("redirect_uri", acct.RedirectURI)
	form.Set("grant_type", "authorization_code")
	if verifier != "" {
		form.Set("code_verifier", verifier)
	}
	return oauth.PostToken(ctx, s.hc, acct.TokenURL, form)
}

// RedirectError is an error the provider sent back in the redirect
// (RFC 6749 4.1.2.1), typically access_denied when the user declined. It
// wraps oauth.ErrNeedsAuthorization: the account still needs a person.
type RedirectError struct {
	Account     string
	Code        string
	Description string
}

func (e *RedirectError) Error() string {
	msg := fmt.Sprintf("the provider refused to authorise account %s: %s", e.Account, providerText(e.Code, e.Description))
	if entry, ok := errcatalog.Lookup(errcatalog.Authorization, e.Code, e.Description); ok {
		msg += " - " + entry.Hint()
	}
	return msg
}

// catalogueFix is the catalogue's fix for a provider error seen at src,
// or fallback when the catalogue does not know it.
func catalogueFix(src errcatalog.Source, code, desc, fallback string) string {
	if entry, ok := errcatalog.Lookup(src, code, desc); ok {
		return entry.Fix + " Then have the mail client log in again and open the new URL from `orbit email-oauth2-proxy logs --auth-url`."
	}
	return fallback
}

func (e *RedirectError) Unwrap() error { return oauth.ErrNeedsAuthorization }

// providerText is a provider's error code and first line of description,
// short enough for a page, a log line and a protocol reply.
func providerText(code, desc string) string {
	desc, code = truncate(firstLine(desc), 300), truncate(code, 100)
	if desc == "" {
		return code
	}
	return code + " (" + desc + ")"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
