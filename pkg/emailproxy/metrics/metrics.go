// Package metrics exposes the proxy's state to Prometheus (OpenMetrics
// text, github.com/prometheus/client_golang): logins, token requests,
// refresh failures, token expiry, open sessions, pending authorisations and
// the build.
//
// The hot paths keep plain atomic counters (proxy.Server.Stats,
// oauth.TokenRequestCounts); this package reads them only when scraped, so
// an engine without --metrics-listen pays nothing. No metric carries a
// secret or anything derived from a password, and label values come from
// bounded sets: accounts are labelled only when they have a section of
// their own in the file, so login names that clients invent through a
// catch-all section add nothing.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
	"github.com/senhasegura/orbit/pkg/emailproxy/proxy"
)

const namespace = "orbit_emailproxy"

// OtherAccount is the account label of everything without a section of
// its own.
const OtherAccount = "_other"

// Sources are what the collector reads at each scrape.
type Sources struct {
	Proxy      func() proxy.Stats
	Accounts   func() map[string]oauth.AccountStatus
	OwnSection func(name string) bool
	Requests   func() []oauth.TokenRequestCount
	// Guard reads the login guard's counters (oauth.Manager.GuardStats).
	Guard   func() oauth.GuardStats
	Version string
	Commit  string
	Now     func() time.Time
}

// Metrics is the registry and the counters fed by events.
type Metrics struct {
	reg            *prometheus.Registry
	src            Sources
	refreshFailed  *prometheus.CounterVec
	tokensRevoked  *prometheus.CounterVec
	collectorDescs collectorDescs
}

type collectorDescs struct {
	logins, requests, sessions, maxSessions, expiry, accounts, pending, bytes  *prometheus.Desc
	guardRefused, guardDelayed, guardPaused, guardDelayedAddrs, failedLastHour *prometheus.Desc
}

// New builds the registry: the proxy's metrics, Go's runtime and process
// metrics, and build info.
func New(src Sources) *Metrics {
	if src.Now == nil {
		src.Now = time.Now
	}
	m := &Metrics{reg: prometheus.NewRegistry(), src: src}
	m.refreshFailed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "refresh_failures_total",
		Help: "Token requests the provider refused for good, by account (own section, else _other) and error class (the provider error catalogue's ID or the OAuth error code).",
	}, []string{"account", "class"})
	m.tokensRevoked = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "tokens_revoked_total",
		Help: "Access tokens the mail server refused before their expiry, by account (own section, else _other).",
	}, []string{"account"})
	d := &m.collectorDescs
	d.logins = prometheus.NewDesc(namespace+"_logins_total", "Mailer logins by protocol and result.", []string{"protocol", "result"}, nil)
	d.requests = prometheus.NewDesc(namespace+"_token_requests_total", "Token requests sent to providers by grant type and result (ok, refused, unavailable).", []string{"grant", "result"}, nil)
	d.sessions = prometheus.NewDesc(namespace+"_sessions_open", "Client sessions open now, by listener section.", []string{"section", "protocol"}, nil)
	d.maxSessions = prometheus.NewDesc(namespace+"_sessions_max", "The listener's max_sessions.", []string{"section", "protocol"}, nil)
	d.expiry = prometheus.NewDesc(namespace+"_token_expiry_seconds", "Seconds until the account's access token expires (negative: expired), for authorised accounts with a section of their own.", []string{"account"}, nil)
	d.accounts = prometheus.NewDesc(namespace+"_accounts", "Accounts known to the engine by state (authorised, waiting, failing).", []string{"state"}, nil)
	d.bytes = prometheus.NewDesc(namespace+"_piped_bytes_total", "Bytes piped after login by protocol and direction (upstream: from mailers to the mail server; client: back).", []string{"protocol", "direction"}, nil)
	d.pending = prometheus.NewDesc(namespace+"_pending_authorisations", "Interactive authorisations waiting for a person.", nil, nil)
	d.guardRefused = prometheus.NewDesc(namespace+"_guard_refused_total", "Logins the login guard refused without checking the password, by reason: queue (too many waiting from one client address), relay (a new password not sent to the provider, which had just refused one).", []string{"reason"}, nil)
	d.guardDelayed = prometheus.NewDesc(namespace+"_guard_delayed_logins_total", "Logins that waited out a back-off after failed logins from their client address.", nil, nil)
	d.guardPaused = prometheus.NewDesc(namespace+"_guard_paused_derivations_total", "Key derivations paused so that a trusted client address's login went first.", nil, nil)
	d.guardDelayedAddrs = prometheus.NewDesc(namespace+"_guard_delayed_addresses", "Client addresses whose next login waits out a back-off now.", nil, nil)
	d.failedLastHour = prometheus.NewDesc(namespace+"_failed_logins_last_hour", "Failed logins (wrong passwords and logins the guard refused) in the last hour, by account (own section, else _other), as status shows them.", []string{"account"}, nil)

	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info", Help: "orbit's version and commit; always 1.",
		ConstLabels: prometheus.Labels{"version": src.Version, "commit": src.Commit},
	})
	build.Set(1)
	m.reg.MustRegister(m.refreshFailed, m.tokensRevoked, build, (*collector)(m),
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(heapLive)), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// heapLive adds go_gc_heap_live_bytes to the default Go metrics: the heap
// the last GC found reachable. Unlike go_memstats_heap_alloc_bytes it holds
// no garbage, so a rising floor over days is a leak rather than GC timing
// (the soak test, docs/soak.md, compares it before and after).
var heapLive = collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)}

// Registry is for tests and embedders.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

func (m *Metrics) accountLabel(name string) string {
	if m.src.OwnSection != nil && m.src.OwnSection(name) {
		return name
	}
	return OtherAccount
}

// RefreshFailed counts a permanent refusal.
func (m *Metrics) RefreshFailed(account, class string) {
	if class == "" {
		class = "refused"
	}
	m.refreshFailed.WithLabelValues(m.accountLabel(account), class).Inc()
}

// TokenRevoked counts an access token the mail server refused.
func (m *Metrics) TokenRevoked(account string) {
	m.tokensRevoked.WithLabelValues(m.accountLabel(account)).Inc()
}

// collector reads the sources at scrape time.
type collector Metrics

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	d := c.collectorDescs
	for _, x := range []*prometheus.Desc{d.logins, d.requests, d.sessions, d.maxSessions, d.expiry, d.accounts, d.pending, d.bytes,
		d.guardRefused, d.guardDelayed, d.guardPaused, d.guardDelayedAddrs, d.failedLastHour} {
		ch <- x
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	d := c.collectorDescs
	if c.src.Proxy != nil {
		st := c.src.Proxy()
		for _, l := range st.Logins {
			ch <- prometheus.MustNewConstMetric(d.logins, prometheus.CounterValue, float64(l.N), string(l.Protocol), string(l.Result))
		}
		for _, b := range st.Bytes {
			ch <- prometheus.MustNewConstMetric(d.bytes, prometheus.CounterValue, float64(b.N), string(b.Protocol), b.Direction)
		}
		for _, l := range st.Listeners {
			ch <- prometheus.MustNewConstMetric(d.sessions, prometheus.GaugeValue, float64(l.Active), l.Section, string(l.Protocol))
			ch <- prometheus.MustNewConstMetric(d.maxSessions, prometheus.GaugeValue, float64(l.MaxSessions), l.Section, string(l.Protocol))
		}
	}
	if c.src.Requests != nil {
		for _, r := range c.src.Requests() {
			ch <- prometheus.MustNewConstMetric(d.requests, prometheus.CounterValue, float64(r.N), r.Grant, r.Result)
		}
	}
	if c.src.Accounts != nil {
		now := c.src.Now()
		states := map[oauth.State]int{oauth.StateAuthorised: 0, oauth.StateWaiting: 0, oauth.StateFailing: 0}
		for name, a := range c.src.Accounts() {
			states[a.State]++
			if a.State == oauth.StateAuthorised && !a.TokenExpiry.IsZero() && c.src.OwnSection != nil && c.src.OwnSection(name) {
				ch <- prometheus.MustNewConstMetric(d.expiry, prometheus.GaugeValue, a.TokenExpiry.Sub(now).Seconds(), name)
			}
		}
		for s, n := range states {
			ch <- prometheus.MustNewConstMetric(d.accounts, prometheus.GaugeValue, float64(n), string(s))
		}
		ch <- prometheus.MustNewConstMetric(d.pending, prometheus.GaugeValue, float64(states[oauth.StateWaiting]))
	}
	if c.src.Guard != nil {
		g := c.src.Guard()
		ch <- prometheus.MustNewConstMetric(d.guardRefused, prometheus.CounterValue, float64(g.RefusedQueue), "queue")
		ch <- prometheus.MustNewConstMetric(d.guardRefused, prometheus.CounterValue, float64(g.RefusedRelay), "relay")
		ch <- prometheus.MustNewConstMetric(d.guardDelayed, prometheus.CounterValue, float64(g.Delayed))
		ch <- prometheus.MustNewConstMetric(d.guardPaused, prometheus.CounterValue, float64(g.Paused))
		ch <- prometheus.MustNewConstMetric(d.guardDelayedAddrs, prometheus.GaugeValue, float64(g.DelayedAddresses))
		// The same label rule as the other account metrics: names that
		// clients invent through a catch-all section share _other.
		byLabel := map[string]int{OtherAccount: g.CatchAllFailedLastHour}
		for name, n := range g.FailedLastHour {
			byLabel[(*Metrics)(c).accountLabel(name)] += n
		}
		for label, n := range byLabel {
			ch <- prometheus.MustNewConstMetric(d.failedLastHour, prometheus.GaugeValue, float64(n), label)
		}
	}
}

// CheckAddress validates a metrics listen address: loopback TCP
// (127.0.0.1:9101, [::1]:9101, localhost:9101) or a Unix socket
// (unix:/path or an absolute path). The endpoint has no authentication, so
// it is never offered to the network.
func CheckAddress(addr string) error {
	if path, ok := unixPath(addr); ok {
		if !filepath.IsAbs(path) {
			return fmt.Errorf("metrics_listen %s: a Unix socket path must be absolute", addr)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return fmt.Errorf("metrics_listen %s is not HOST:PORT or unix:/PATH (e.g. 127.0.0.1:9101)", addr)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("metrics_listen %s is not a loopback address: the metrics endpoint has no authentication, so it listens on 127.0.0.1, [::1] or a Unix socket only (scrape it through an SSH tunnel or a local agent)", addr)
	}
	return nil
}

func unixPath(addr string) (string, bool) {
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		return p, true
	}
	if strings.HasPrefix(addr, "/") {
		return addr, true
	}
	return "", false
}

// Server serves /metrics until Close.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	wg   sync.WaitGroup
	addr string
}

// Listen validates addr, binds it and serves the registry at /metrics.
func Listen(addr string, m *Metrics, log *slog.Logger) (*Server, error) {
	if err := CheckAddress(addr); err != nil {
		return nil, err
	}
	var ln net.Listener
	var err error
	if path, ok := unixPath(addr); ok {
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return nil, fmt.Errorf("metrics socket %s: %w", path, rerr)
		}
		// Readable by the service's group (a local agent), not by others.
		old := syscall.Umask(0o117)
		ln, err = net.Listen("unix", path)
		syscall.Umask(old)
	} else {
		ln, err = net.Listen("tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("metrics_listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "metrics are at /metrics", http.StatusNotFound)
	})
	s := &Server{ln: ln, addr: ln.Addr().String(), srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
	}}
	if log != nil {
		s.srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// Addr is the bound address (the port chosen for ":0").
func (s *Server) Addr() string { return s.addr }

// Close stops serving.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	s.wg.Wait()
	return err
}
