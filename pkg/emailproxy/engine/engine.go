// Package engine assembles the proxy from its parts: the configuration, the
// token store, the token manager with its interactive authoriser, and the
// listeners. It owns the lifecycle (start, reload, drain) so that `serve`
// is a thin skin over it and tests can run a whole proxy in-process.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/control"
	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/emailproxy/metrics"
	"github.com/senhasegura/orbit/pkg/emailproxy/notify"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth/assertion"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth/interactive"
	"github.com/senhasegura/orbit/pkg/emailproxy/proxy"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
	"github.com/senhasegura/orbit/pkg/emailproxy/untrusted"
)

// ErrInvalidConfig wraps a configuration that must not be served; its text
// lists every problem.
var ErrInvalidConfig = errors.New("invalid configuration")

// Options configure an Engine. Zero values take the documented defaults.
type Options struct {
	ConfigPath string // the proxy's INI file (config.DefaultPath)
	TokenPath  string // the token cache file (tokens.DefaultPath)
	StatusPath string // the secret-free status file for `status` (oauth.DefaultStatusFile); "-" keeps it in memory only
	// ControlPath is the control socket `authorize` uses; empty puts it
	// beside the status file, "-" turns it off.
	ControlPath string
	// MetricsListen serves Prometheus metrics there (loopback or unix:/path);
	// empty takes [emailproxy] metrics_listen, "-" turns them off.
	MetricsListen string
	// Version and Commit label orbit_emailproxy_build_info.
	Version, Commit string
	Logger          *slog.Logger
	HTTPClient      *http.Client // token requests; nil: a client with sane timeouts
	// AuthTimeout is how long a client's login waits for an admin to
	// complete an interactive authorisation (default 600 s).
	AuthTimeout time.Duration
	Debug       bool // trace protocol lines, credentials redacted
	// RefreshMargin replaces oauth.RefreshMargin (tests with seconds-long
	// tokens); zero keeps it.
	RefreshMargin time.Duration
	// CredentialsDir is systemd's $CREDENTIALS_DIRECTORY: with the
	// orbit-background-refresh credential there, background_refresh = True
	// keeps sealed copies beside the token store.
	CredentialsDir string
}

// Engine is one running proxy.
type Engine struct {
	opts    Options
	log     *slog.Logger
	current atomic.Pointer[loaded]
	store   *tokens.FileStore
	manager *oauth.Manager
	auth    *interactive.Server
	proxy   *proxy.Server

	// notifier delivers notify_command / notify_url events; replaced when a
	// reload changes those settings.
	notifier       atomic.Pointer[notify.Notifier]
	notifySettings config.Notify

	control *control.Server
	subs    subscribers

	metrics       *metrics.Metrics
	metricsServer *metrics.Server
	// stopKeepAlive ends the keep-alive loop; keepAliveDone closes when it
	// has returned.
	stopKeepAlive context.CancelFunc
	keepAliveDone chan struct{}

	reloadMu sync.Mutex
	// stopped: Shutdown began, so a reload must not open the control
	// socket again. Guarded by reloadMu.
	stopped bool
}

// loaded is a configuration in force with the account sections it
// disables, swapped as one on reload.
type loaded struct {
	cfg      *config.Config
	disabled config.Disabled
}

// Load reads and validates the configuration file the way the engine does
// at start and reload: a file that will not parse, or has an error outside
// the account sections, is refused with every such problem listed. Errors
// confined to account sections do not refuse the file (see Check).
func Load(path string) (*config.Config, error) {
	cfg, _, err := Check(path)
	return cfg, err
}

// Check is Load that also returns the account sections the engine would
// disable: those with errors of their own, whose logins are refused with
// the reason while every other account is served. A file whose every
// account would be disabled is refused (config.ServeErrors).
func Check(path string) (*config.Config, config.Disabled, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	fatal, disabled := cfg.ServeErrors(cfg.Validate())
	if len(fatal) > 0 {
		return nil, nil, fmt.Errorf("%w: %s: %w", ErrInvalidConfig, path, config.Err(fatal))
	}
	return cfg, disabled, nil
}

// New loads the configuration and builds the engine without opening any
// listener yet.
func New(opts Options) (*Engine, error) {
	if opts.ConfigPath == "" {
		opts.ConfigPath = config.DefaultPath
	}
	if opts.TokenPath == "" {
		opts.TokenPath = tokens.DefaultPath
	}
	if opts.StatusPath == "" {
		opts.StatusPath = oauth.DefaultStatusFile
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 60 * time.Second}
	}
	cfg, disabled, err := Check(opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	// Files other users can change or read are refused before anything
	// is served from them (`config validate` reports the same).
	perms := config.CheckPermissions(opts.ConfigPath, cfg, opts.TokenPath)
	if config.HasErrors(perms) {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, config.Err(perms))
	}
	for _, d := range perms {
		opts.Logger.Warn(d.String())
	}
	e := &Engine{opts: opts, log: opts.Logger}
	e.current.Store(&loaded{cfg: cfg, disabled: disabled})
	e.configureNotifier(cfg)

	e.store = tokens.NewFileStore(opts.TokenPath, tokens.WithLogger(opts.Logger))
	e.auth = interactive.New(interactive.Options{
		Logger:     opts.Logger,
		HTTPClient: opts.HTTPClient,
		Signer:     assertion.Default,
		Timeout:    opts.AuthTimeout,
	})
	statusFile, trustFile := opts.StatusPath, ""
	if statusFile == "-" {
		statusFile = ""
	} else {
		// The login guard's trusted client addresses live beside it.
		trustFile = filepath.Join(filepath.Dir(statusFile), oauth.TrustFileName)
	}
	// An unreadable credential costs background_refresh, never the proxy.
	bgKey, haveKey, err := oauth.ReadBackgroundKey(opts.CredentialsDir)
	switch {
	case err != nil && cfg.Global.BackgroundRefresh:
		opts.Logger.Error("background_refresh = True, but the credential " + oauth.BackgroundCredential + " cannot be used: " + err.Error() +
			"; tokens are kept alive only while the engine runs")
	case err != nil:
	case cfg.Global.BackgroundRefresh && !haveKey:
		opts.Logger.Warn("background_refresh = True, but the unit has no credential " + oauth.BackgroundCredential +
			": tokens are kept alive only while the engine runs; see docs/background-refresh.md")
	case cfg.Global.BackgroundRefresh:
		opts.Logger.Info("background_refresh on: tokens are renewed after a restart too, from copies sealed with the credential " + oauth.BackgroundCredential)
	}
	e.manager, err = oauth.NewManager(oauth.Options{
		Accounts:                oauth.ConfigSource(e.Config),
		Store:                   e.store,
		HTTPClient:              opts.HTTPClient,
		Logger:                  opts.Logger,
		Interactive:             e.auth,
		Assertions:              assertion.Default,
		StatusFile:              statusFile,
		TrustFile:               trustFile,
		OnClientSecretEncrypted: e.dropPlainClientSecret,
		OnEvent:                 e.notifyEvent,
		RefreshMargin:           opts.RefreshMargin,
		BackgroundKey:           bgKey,
		BackgroundFile:          BackgroundFile(opts.TokenPath),
	})
	if err != nil {
		return nil, err
	}
	e.auth.SetReporter(e.manager)
	e.proxy = proxy.New(proxy.Options{
		Authenticator:        gate{e},
		Logger:               opts.Logger,
		AuthorizationTimeout: authorizationWait(opts.AuthTimeout),
		Debug:                opts.Debug,
	})
	return e, nil
}

// BackgroundFile is where background_refresh keeps its sealed copies: beside
// the token store, in the service's state directory.
func BackgroundFile(tokenPath string) string {
	return filepath.Join(filepath.Dir(tokenPath), "background-refresh.json")
}

// authorizationWait is how long a login may wait for its token for an
// AuthTimeout: a login may wait that long for an administrator, and then
// still needs the code exchange, so the wait must not be cut short. Only
// logins waiting for a token get it; other clients before login have the
// proxy's normal pre-login deadline.
func authorizationWait(auth time.Duration) time.Duration {
	if auth == 0 {
		auth = interactive.DefaultTimeout
	}
	if auth < 0 {
		return 0
	}
	return auth + time.Minute
}

// loginTimeout bounds a sign-in without a mailer (authorize): the
// authorisation wait, and never less than the proxy's pre-login deadline.
func loginTimeout(auth time.Duration) time.Duration {
	return max(proxy.DefaultLoginTimeout, authorizationWait(auth))
}

// Start imports tokens a Python-written file carries inline and opens every
// listener. An error leaves nothing listening.
func (e *Engine) Start(ctx context.Context) error {
	cur := e.current.Load()
	cfg := cur.cfg
	e.logDisabled(cur)
	e.importInlineTokens(ctx, cfg)
	if err := e.proxy.Apply(ctx, cfg.Servers); err != nil {
		_ = e.proxy.Shutdown(ctx)
		return err
	}
	e.openControl()
	if err := e.openMetrics(cfg); err != nil {
		e.closeControl()
		_ = e.proxy.Shutdown(ctx)
		return err
	}
	e.manager.PublishStatus()
	e.startKeepAlive(ctx)
	return nil
}

// startKeepAlive runs the token keep-alive until Shutdown; it does nothing
// while keep_alive is off (reloads may turn it on and off).
func (e *Engine) startKeepAlive(ctx context.Context) {
	kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.stopKeepAlive, e.keepAliveDone = cancel, make(chan struct{})
	go func() {
		defer close(e.keepAliveDone)
		e.manager.RunKeepAlive(kctx)
	}()
}

// Reload re-reads the configuration file. An invalid file is refused and
// the running configuration stays; listeners are added, changed and removed
// without touching running sessions.
func (e *Engine) Reload(ctx context.Context) error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	cfg, disabled, err := Check(e.opts.ConfigPath)
	if err != nil {
		e.log.Error("reload refused; still serving the previous configuration: "+err.Error(),
			"message_id", events.Lifecycle, "state", "reload-failed")
		return err
	}
	cur := &loaded{cfg: cfg, disabled: disabled}
	e.current.Store(cur)
	e.configureNotifier(cfg)
	e.logDisabled(cur)
	e.importInlineTokens(ctx, cfg)
	err = e.proxy.Apply(ctx, cfg.Servers)
	state, msg := "reloaded", "configuration reloaded from "+e.opts.ConfigPath
	if n := len(disabled); n > 0 {
		msg += fmt.Sprintf(" with %d account section(s) disabled", n)
	}
	if err != nil {
		state = "reloaded-with-errors"
		msg += "; some listeners could not be opened: " + err.Error()
	}
	e.restoreStateFiles()
	e.log.Info(msg, "message_id", events.Lifecycle, "state", state)
	return err
}

// restoreStateFiles brings back the control socket and the status file
// when they are gone from the state directory (removed under the running
// engine), so that a reload is enough to make `authorize` and `status`
// work again. e.reloadMu is held.
func (e *Engine) restoreStateFiles() {
	if e.stopped {
		return
	}
	path := e.opts.controlPath()
	if path == "" {
		return
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return
	}
	e.log.Warn("the control socket " + path + " was gone (was the state directory removed?); opening it again, and rewriting the status file")
	e.closeControl()
	e.control = nil
	e.openControl()
	e.manager.PublishStatus()
}

// Shutdown ends the logins that wait for a person, stops accepting, lets
// running sessions finish until ctx ends, then closes what is left.
func (e *Engine) Shutdown(ctx context.Context) error {
	// Waiting logins go first, with a reply saying the authorisation is
	// still needed: nobody completes one during the drain, and otherwise
	// each of them would hold every stop and restart for the whole drain
	// time-out and then be cut off without a reply.
	e.reloadMu.Lock()
	e.stopped = true
	e.reloadMu.Unlock()
	e.closeControl()
	if e.metricsServer != nil {
		_ = e.metricsServer.Close(ctx)
	}
	if e.stopKeepAlive != nil {
		// A background request under way finishes (its answer may carry
		// the only copy of a rotated refresh token) within the drain.
		e.stopKeepAlive()
		select {
		case <-e.keepAliveDone:
		case <-ctx.Done():
		}
	}
	aerr := e.auth.Shutdown(ctx)
	err := e.proxy.Shutdown(ctx)
	if err == nil {
		err = aerr
	}
	// Deliveries under way may finish within the drain; none start now.
	_ = e.notifier.Load().Close(ctx)
	// Tokens whose save failed live only in memory: one last try.
	if unsaved := e.store.Unsaved(); len(unsaved) > 0 {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if ferr := e.store.Flush(fctx); ferr != nil {
			e.log.Error("token store: tokens kept in memory after failed saves are lost at exit; these accounts may need a new authorisation: "+ferr.Error(),
				"accounts", strings.Join(unsaved, ","))
		}
	}
	return err
}

// Listeners reports what is listening.
func (e *Engine) Listeners() []proxy.ListenerInfo { return e.proxy.Listeners() }

// Config is the configuration in force.
func (e *Engine) Config() *config.Config { return e.current.Load().cfg }

// Disabled is the account sections the configuration in force disables.
func (e *Engine) Disabled() config.Disabled { return e.current.Load().disabled }

func (e *Engine) logDisabled(cur *loaded) {
	for _, sec := range cur.disabled.Sections() {
		reason := cur.disabled.Reason(sec)
		e.log.Error(fmt.Sprintf("account [%s] disabled: %s; its logins are refused until the file is fixed (orbit email-oauth2-proxy config validate %s) and reloaded; other accounts are served",
			sec, reason, e.opts.ConfigPath),
			"message_id", events.AccountDisabled, "account", sec, "reason", reason)
	}
}

// ErrAccountDisabled is the cause of a login refused because the account's
// section has errors of its own (see Check).
var ErrAccountDisabled = errors.New("account disabled by configuration errors")

// accountDisabledError is the reply to such a login: it names the section
// and the problems, so the admin reading the mailer's error knows the fix.
type accountDisabledError struct {
	user, section, path, reason string
}

func (e *accountDisabledError) Error() string {
	return fmt.Sprintf("Login failed for account %s - its configuration section [%s] is disabled: %s; fix %s and reload the proxy",
		printable(e.user), e.section, e.reason, e.path)
}

func (e *accountDisabledError) Unwrap() error { return ErrAccountDisabled }

// gate is the proxy's Authenticator: logins served by a disabled section
// are refused here, every other login goes to the token manager.
type gate struct{ e *Engine }

func (g gate) AccessToken(ctx context.Context, username, password string) (string, error) {
	cur := g.e.current.Load()
	if sec, ok := cur.disabled.For(cur.cfg, username); ok {
		return "", &accountDisabledError{user: username, section: sec, path: g.e.opts.ConfigPath, reason: cur.disabled.Reason(sec)}
	}
	return g.e.manager.AccessToken(ctx, username, password)
}

// TokenRejected passes the proxy's report on to the manager.
func (g gate) TokenRejected(username, token string) { g.e.manager.TokenRejected(username, token) }

// printable keeps a client-supplied name from smuggling line breaks into
// replies and logs, and bounds its length.
func printable(s string) string { return untrusted.Printable(s) }

// importInlineTokens moves tokens that the Python proxy wrote into the
// config file itself into the token store, so switching engines needs no
// new authorisation. The store never loses newer data to an older file.
// One batch: an import per account re-read and rewrote the whole store
// each time, which made a start with 20,000 accounts take an hour.
func (e *Engine) importInlineTokens(ctx context.Context, cfg *config.Config) {
	var items []tokens.InlineImport
	for _, name := range cfg.AccountSections() {
		if config.IsCatchAllSection(name) {
			continue
		}
		acct, ok := cfg.Account(name)
		if !ok || acct.Tokens.TokenSalt == "" && acct.Tokens.AccessToken == "" && acct.Tokens.RefreshToken == "" {
			continue
		}
		encSecret, _ := cfg.Get(name, "client_secret_encrypted")
		items = append(items, tokens.InlineImport{Account: name, Tokens: acct.Tokens, ClientSecretEncrypted: encSecret})
	}
	if len(items) == 0 {
		return
	}
	for _, o := range e.store.ImportAll(ctx, items) {
		if o.Err != nil {
			e.log.Warn("could not import the tokens stored in the configuration file for "+o.Account+": "+o.Err.Error(), "account", o.Account)
			continue
		}
		if o.Result == tokens.Imported {
			e.log.Info("imported the tokens stored in the configuration file for "+o.Account+" into "+e.store.Path(), "account", o.Account)
		}
	}
}

// dropPlainClientSecret is encrypt_client_secret_on_first_use's file half:
// the secret now lives encrypted in the token store, so the plain copy
// leaves the account's own section (never a catch-all, which other
// accounts still read).
func (e *Engine) dropPlainClientSecret(ctx context.Context, acct config.Account) error {
	if acct.Section != acct.Name {
		return nil
	}
	path := e.opts.ConfigPath
	unlock, err := config.Lock(ctx, path)
	if err != nil {
		return err
	}
	defer unlock()
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := config.Edit(data, path, func(ed *config.Editor) error {
		ed.Delete(acct.Section, "client_secret")
		return nil
	})
	if err != nil {
		return err
	}
	if err := config.WriteFileLocked(path, out); err != nil {
		return err
	}
	// The backup would keep the very plain secret this option removes.
	if err := os.Remove(path + ".bak"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// configureNotifier starts a notifier for cfg's notification settings,
// replacing (and closing) the previous one when they changed.
func (e *Engine) configureNotifier(cfg *config.Config) {
	settings := cfg.Notify()
	if old := e.notifier.Load(); old != nil && settings == e.notifySettings {
		return
	}
	e.notifySettings = settings
	n := notify.New(notify.Options{
		Command:    settings.Command,
		URL:        settings.URL,
		Reminder:   settings.Reminder,
		Timeout:    settings.Timeout,
		Logger:     e.log,
		HTTPClient: e.opts.HTTPClient,
	})
	if old := e.notifier.Swap(n); old != nil {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = old.Close(ctx)
		}()
	}
	if n.Enabled() {
		e.log.Info("notifications on: " + notifyTargets(settings))
	}
}

func notifyTargets(s config.Notify) string {
	var t []string
	if s.Command != "" {
		t = append(t, "notify_command "+s.Command)
	}
	if s.URL != "" {
		t = append(t, "notify_url (a JSON POST per event)")
	}
	return strings.Join(t, " and ")
}

// notifyEvent turns what the token manager reports into notifications.
func (e *Engine) notifyEvent(ev oauth.Event) {
	e.subs.publish(ev)
	if e.metrics != nil {
		switch {
		case ev.Rejected:
			e.metrics.TokenRevoked(ev.Account)
		case ev.Refused:
			e.metrics.RefreshFailed(ev.Account, ev.Class)
		}
	}
	n := e.notifier.Load()
	if !n.Enabled() {
		return
	}
	now, prev := ev.Status, ev.Previous
	switch {
	case ev.Rejected:
		n.Notify(notify.Event{Kind: notify.TokenRevoked, Account: ev.Account})
	case ev.Refused:
		n.Notify(notify.Event{Kind: notify.RefreshFailed, Account: ev.Account, Reason: now.Reason})
	case now.State == oauth.StateWaiting && now.AuthURL != "":
		n.Notify(notify.Event{Kind: notify.AuthNeeded, Account: ev.Account, AuthURL: now.AuthURL, UserCode: now.UserCode})
	case now.State == oauth.StateAuthorised && prev.State != oauth.StateAuthorised:
		n.Notify(notify.Event{Kind: notify.AuthCompleted, Account: ev.Account})
	}
}

// openMetrics serves Prometheus metrics where --metrics-listen or
// metrics_listen says; a bad or busy address fails the start, since the
// admin asked for it and monitoring would otherwise silently see nothing.
func (e *Engine) openMetrics(cfg *config.Config) error {
	addr := e.opts.MetricsListen
	if addr == "" {
		addr = cfg.MetricsListen()
	}
	if addr == "" || addr == "-" {
		return nil
	}
	e.metrics = metrics.New(metrics.Sources{
		Proxy:      e.proxy.Stats,
		Accounts:   e.manager.Statuses,
		OwnSection: e.manager.HasOwnSection,
		Requests:   oauth.TokenRequestCounts,
		Guard:      e.manager.GuardStats,
		Version:    e.opts.Version,
		Commit:     e.opts.Commit,
	})
	s, err := metrics.Listen(addr, e.metrics, e.log)
	if err != nil {
		return err
	}
	e.metricsServer = s
	e.log.Info("metrics on http://" + s.Addr() + "/metrics")
	return nil
}

// MetricsAddr is where metrics are served ("" when off).
func (e *Engine) MetricsAddr() string {
	if e.metricsServer == nil {
		return ""
	}
	return e.metricsServer.Addr()
}
