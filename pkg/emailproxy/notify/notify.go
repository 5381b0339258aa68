// Package notify tells an admin when an account needs them, before the
// mailer's users notice: an authorisation to complete (with the URL or the
// device code), one completed, a refresh the provider refused for good, a
// token the mail server revoked, and a reminder while an authorisation
// stays pending.
//
// Two channels, either or both: a command run without a shell
// (notify_command) and a JSON POST (notify_url). Neither ever receives a
// secret: events carry the account name, the public authorisation URL or
// device code and the reason text the status file shows. Deliveries for one
// account run one at a time, in order; different accounts do not wait for
// each other. Delivery never blocks the proxy: Notify queues and returns.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Kind names an event; it is ORBIT_EVENT for the command and "event" in
// the JSON document.
type Kind string

const (
	// AuthNeeded: a login is waiting for a person to open AuthURL (or to
	// enter UserCode at AuthURL for the device flow).
	AuthNeeded Kind = "auth_needed"
	// AuthReminder: the authorisation of AuthNeeded is still pending.
	AuthReminder Kind = "auth_reminder"
	// AuthCompleted: the account holds tokens again.
	AuthCompleted Kind = "auth_completed"
	// RefreshFailed: the provider refused a token request for good (a dead
	// refresh token, a wrong or expired client secret...); Reason says
	// what it answered and what to do.
	RefreshFailed Kind = "refresh_failed"
	// TokenRevoked: the mail server refused an access token before its
	// expiry (revoked at the provider); the next login gets a new one.
	TokenRevoked Kind = "token_revoked"
)

// Kinds lists every event kind, for documentation and validation.
var Kinds = []Kind{AuthNeeded, AuthReminder, AuthCompleted, RefreshFailed, TokenRevoked}

// Event is one thing to tell the admin. It never holds a secret.
type Event struct {
	Kind     Kind      `json:"event"`
	Account  string    `json:"account"`
	AuthURL  string    `json:"auth_url,omitempty"`
	UserCode string    `json:"user_code,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Time     time.Time `json:"time"`
	// Since is when the pending authorisation began (reminders).
	Since time.Time `json:"since,omitzero"`
	Host  string    `json:"host,omitempty"`
	// Text is the event in one sentence, for chat webhooks that show a
	// "text" field as the message (Slack-compatible ones do).
	Text string `json:"text"`
}

// Defaults.
const (
	DefaultReminder = time.Hour
	DefaultTimeout  = 30 * time.Second
	// maxQueue bounds the events waiting per account: a delivery that
	// hangs until its timeout must not let a flapping account queue
	// without bound. The oldest waiting event is dropped first.
	maxQueue = 16
	// maxOutput bounds what is kept of a command's output for the log.
	maxOutput = 4 << 10
)

// Options configure a Notifier. With neither Command nor URL it does
// nothing.
type Options struct {
	// Command is the absolute path of an executable, run without a shell
	// and without arguments, the event in its environment (ORBIT_*).
	Command string
	// URL receives each event as a JSON POST.
	URL string
	// Reminder is how often AuthReminder repeats while an authorisation
	// stays pending; it also keeps an unchanged RefreshFailed from being
	// repeated sooner. Zero means DefaultReminder; negative turns
	// reminders off.
	Reminder time.Duration
	// Timeout bounds each delivery (the command's run, the POST); zero
	// means DefaultTimeout.
	Timeout    time.Duration
	Logger     *slog.Logger
	HTTPClient *http.Client
	// Hostname names this appliance in events; empty means os.Hostname.
	Hostname string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Notifier delivers events. It is safe for concurrent use.
type Notifier struct {
	opts Options
	log  *slog.Logger
	hc   *http.Client

	mu       sync.Mutex
	accounts map[string]*accountState
	closed   bool
	wg       sync.WaitGroup
}

type accountState struct {
	queue   []Event
	running bool
	// pending is the AuthNeeded being reminded of; reminder its timer.
	pending  *Event
	reminder *time.Timer
	// last delivered reason per kind, and when, to skip repeats.
	lastReason map[Kind]string
	lastAt     map[Kind]time.Time
}

// New returns a Notifier; Enabled reports whether it will deliver anything.
func New(opts Options) *Notifier {
	if opts.Reminder == 0 {
		opts.Reminder = DefaultReminder
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Hostname == "" {
		opts.Hostname, _ = os.Hostname()
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	// An event is not worth following a redirect for, and a POST body must
	// not be re-sent wherever a Location points.
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Notifier{opts: opts, log: opts.Logger, hc: &c, accounts: map[string]*accountState{}}
}

// Enabled reports whether any channel is configured.
func (n *Notifier) Enabled() bool {
	return n != nil && (n.opts.Command != "" || n.opts.URL != "")
}

// Notify queues ev for delivery and returns at once. Reminders for a
// pending authorisation start with AuthNeeded and stop with the account's
// next AuthCompleted or RefreshFailed.
func (n *Notifier) Notify(ev Event) {
	if !n.Enabled() {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = n.opts.Now()
	}
	ev.Time = ev.Time.UTC()
	ev.Host = n.opts.Hostname
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	st := n.account(ev.Account)
	switch ev.Kind {
	case AuthNeeded:
		if st.pending != nil && st.pending.AuthURL == ev.AuthURL && st.pending.UserCode == ev.UserCode {
			return // the same request announced again for another login
		}
		ev.Since = ev.Time
		p := ev
		st.pending = &p
		n.arm(ev.Account, st)
	case AuthCompleted, RefreshFailed:
		wasPending := st.pending != nil
		st.pending = nil
		if st.reminder != nil {
			st.reminder.Stop()
			st.reminder = nil
		}
		if ev.Kind == AuthCompleted && !wasPending {
			// Tokens refreshed without anyone's help are not news.
			return
		}
	}
	if ev.Kind == RefreshFailed || ev.Kind == TokenRevoked {
		// The same failure on every login of a mailer that keeps trying
		// is one event per reminder interval, not one per login.
		if st.lastReason[ev.Kind] == ev.Reason && ev.Time.Sub(st.lastAt[ev.Kind]) < n.repeatAfter() {
			return
		}
		st.lastReason[ev.Kind], st.lastAt[ev.Kind] = ev.Reason, ev.Time
	}
	n.enqueue(ev.Account, st, ev)
}

func (n *Notifier) repeatAfter() time.Duration {
	if n.opts.Reminder < 0 {
		return DefaultReminder
	}
	return n.opts.Reminder
}

// account returns the account's state; n.mu is held.
func (n *Notifier) account(name string) *accountState {
	st, ok := n.accounts[name]
	if !ok {
		st = &accountState{lastReason: map[Kind]string{}, lastAt: map[Kind]time.Time{}}
		n.accounts[name] = st
	}
	return st
}

// arm (re)starts the account's reminder timer; n.mu is held.
func (n *Notifier) arm(name string, st *accountState) {
	if st.reminder != nil {
		st.reminder.Stop()
		st.reminder = nil
	}
	if n.opts.Reminder < 0 {
		return
	}
	pending := st.pending
	st.reminder = time.AfterFunc(n.opts.Reminder, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.closed || st.pending != pending {
			return
		}
		ev := *pending
		ev.Kind, ev.Time = AuthReminder, n.opts.Now().UTC()
		n.enqueue(name, st, ev)
		n.arm(name, st)
	})
}

// enqueue adds ev to the account's queue and starts its worker; n.mu is
// held.
func (n *Notifier) enqueue(name string, st *accountState, ev Event) {
	ev.Text = text(ev)
	if len(st.queue) >= maxQueue {
		n.log.Warn(fmt.Sprintf("notification for %s dropped: %d are already waiting", st.queue[0].Account, maxQueue),
			"account", name, "event", string(st.queue[0].Kind))
		st.queue = st.queue[1:]
	}
	st.queue = append(st.queue, ev)
	if st.running {
		return
	}
	st.running = true
	n.wg.Add(1)
	go n.drain(name, st)
}

// drain delivers the account's events one at a time.
func (n *Notifier) drain(name string, st *accountState) {
	defer n.wg.Done()
	for {
		n.mu.Lock()
		if len(st.queue) == 0 {
			st.running = false
			n.mu.Unlock()
			return
		}
		ev := st.queue[0]
		st.queue = st.queue[1:]
		n.mu.Unlock()
		n.deliver(ev)
	}
}

func (n *Notifier) deliver(ev Event) {
	if n.opts.Command != "" {
		if err := n.runCommand(ev); err != nil {
			n.log.Warn(fmt.Sprintf("notify_command failed for %s (%s): %v", ev.Account, ev.Kind, err),
				"account", ev.Account, "event", string(ev.Kind), "reason", err.Error())
		} else {
			n.log.Info(fmt.Sprintf("notify_command told of %s for %s", ev.Kind, ev.Account),
				"account", ev.Account, "event", string(ev.Kind))
		}
	}
	if n.opts.URL != "" {
		if err := n.post(ev); err != nil {
			n.log.Warn(fmt.Sprintf("notify_url failed for %s (%s): %v", ev.Account, ev.Kind, err),
				"account", ev.Account, "event", string(ev.Kind), "reason", err.Error())
		} else {
			n.log.Info(fmt.Sprintf("notify_url told of %s for %s", ev.Kind, ev.Account),
				"account", ev.Account, "event", string(ev.Kind))
		}
	}
}

// Environment is what the command receives: a fixed PATH and the event,
// never the engine's own environment (which may hold
// ORBIT_OAUTH2_CLIENT_SECRET or a proxy's credentials).
func Environment(ev Event) []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8",
		"ORBIT_EVENT=" + string(ev.Kind),
		"ORBIT_ACCOUNT=" + ev.Account,
		"ORBIT_AUTH_URL=" + ev.AuthURL,
		"ORBIT_USER_CODE=" + ev.UserCode,
		"ORBIT_REASON=" + ev.Reason,
		"ORBIT_TIME=" + ev.Time.Format(time.RFC3339),
		"ORBIT_HOST=" + ev.Host,
		"ORBIT_TEXT=" + ev.Text,
	}
	if !ev.Since.IsZero() {
		env = append(env, "ORBIT_SINCE="+ev.Since.Format(time.RFC3339))
	}
	return env
}

func (n *Notifier) runCommand(ev Event) error {
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.opts.Command)
	cmd.Env = Environment(ev)
	cmd.Dir = "/"
	var out limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, so a timeout ends what it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("%s did not finish within %s and was killed", n.opts.Command, n.opts.Timeout)
	}
	if err != nil {
		if last := lastLine(out.String()); last != "" {
			return fmt.Errorf("%s: %w: %s", n.opts.Command, err, last)
		}
		return fmt.Errorf("%s: %w", n.opts.Command, err)
	}
	return nil
}

func (n *Notifier) post(ev Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.opts.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "orbit-email-oauth2-proxy")
	resp, err := n.hc.Do(req)
	if err != nil {
		// *url.Error repeats the URL, query included; keep the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("POST %s: %w", redact(n.opts.URL), err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("POST %s answered %s: %s", redact(n.opts.URL), resp.Status, lastLine(string(snippet)))
	}
	return nil
}

// Close stops reminders and waits, until ctx ends, for deliveries under
// way; events queued after Close are dropped.
func (n *Notifier) Close(ctx context.Context) error {
	if n == nil {
		return nil
	}
	n.mu.Lock()
	n.closed = true
	for _, st := range n.accounts {
		if st.reminder != nil {
			st.reminder.Stop()
			st.reminder = nil
		}
	}
	n.mu.Unlock()
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// text is the event in one sentence.
func text(ev Event) string {
	switch ev.Kind {
	case AuthNeeded, AuthReminder:
		prefix := "Authorisation needed"
		if ev.Kind == AuthReminder {
			prefix = "Still waiting for authorisation"
		}
		if ev.UserCode != "" {
			return fmt.Sprintf("%s for %s on %s: visit %s and enter the code %s", prefix, ev.Account, ev.Host, ev.AuthURL, ev.UserCode)
		}
		return fmt.Sprintf("%s for %s on %s: open %s and sign in as %s", prefix, ev.Account, ev.Host, ev.AuthURL, ev.Account)
	case AuthCompleted:
		return fmt.Sprintf("Authorisation completed for %s on %s", ev.Account, ev.Host)
	case RefreshFailed:
		return fmt.Sprintf("Token request refused for %s on %s: %s", ev.Account, ev.Host, ev.Reason)
	case TokenRevoked:
		return fmt.Sprintf("The mail server refused the access token of %s on %s (revoked at the provider); the next login gets a new one", ev.Account, ev.Host)
	}
	return fmt.Sprintf("%s for %s on %s", ev.Kind, ev.Account, ev.Host)
}

// redact drops a URL's query and user info from messages: a webhook URL's
// query often holds its access key.
func redact(raw string) string {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i]
	}
	if scheme, rest, ok := strings.Cut(raw, "://"); ok {
		if at := strings.LastIndex(strings.SplitN(rest, "/", 2)[0], "@"); at >= 0 {
			rest = rest[at+1:]
		}
		raw = scheme + "://" + rest
	}
	return raw
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return strings.TrimSpace(s)
}

// limitedBuffer keeps the first maxOutput bytes written and discards the
// rest, so a chatty command cannot grow the engine's memory.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := maxOutput - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
