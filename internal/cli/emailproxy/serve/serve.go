// Package serve is `orbit email-oauth2-proxy serve`: the proxy daemon that
// the systemd unit runs (Type=notify), also usable in the foreground.
package serve

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/senhasegura/orbit/internal/buildinfo"
	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/journallog"
	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/engine"
	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth/interactive"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// Options are serve's inputs.
type Options struct {
	IO *iostreams.IOStreams

	ConfigPath    string
	TokenPath     string
	StatusPath    string
	ControlPath   string
	MetricsListen string
	AuthTimeout   time.Duration
	DrainTimeout  time.Duration
	Debug         bool
	LogFormat     string
	// RefreshMargin is the hidden --refresh-margin, for tests with
	// seconds-long tokens only.
	RefreshMargin time.Duration

	// Notify reports state to systemd (sd_notify); nil uses the real one,
	// which does nothing outside a unit.
	Notify func(state string) error
	// Ready, when set, is called once listeners are up (tests).
	Ready func(*engine.Engine)
}

// New builds the command; runF replaces Run when not nil (tests).
func New(f *factory.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	opts := &Options{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the proxy (what the systemd unit runs; works in the foreground too)",
		Long: `Run the email OAuth 2.0 proxy: listen on every [IMAP-n], [POP-n] and [SMTP-n]
section of the file, take the mailer's plain login, obtain OAuth 2.0 tokens and
log in upstream with SASL XOAUTH2.

Under systemd it reports readiness and watchdog pings (Type=notify) and logs
structured journal entries; in a terminal it logs to standard error.

Signals: SIGHUP reloads the file (listeners are added, changed and removed;
running sessions continue; an invalid file is refused and the old one stays).
SIGTERM and SIGINT stop accepting and let sessions finish for --drain-timeout.

Exits 78 (EX_CONFIG) when the file is invalid or missing: systemd shows
status=78/CONFIG and does not restart the unit (RestartPreventExitStatus), so
the reason stays at the end of the journal. 10 means a file could not be read
(permission), 2 a bad flag; see docs/exit-codes.md.`,
		Example: `  # In the foreground, for a first test or where systemd is not running
  orbit email-oauth2-proxy serve --config /etc/orbit/email-oauth2-proxy/emailproxy.config`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(c.Context(), opts)
			}
			return Run(c.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.ConfigPath, "config", config.DefaultPath, "the proxy's configuration file")
	fl.StringVar(&opts.TokenPath, "token-cache", tokens.DefaultPath, "the encrypted token store")
	fl.StringVar(&opts.StatusPath, "status-file", oauth.DefaultStatusFile, "per-account state that orbit's status command reads (no secrets); - to keep it in memory")
	fl.StringVar(&opts.ControlPath, "control-socket", "", "the control socket `authorize` uses (default: control.sock beside --status-file; - for none)")
	fl.StringVar(&opts.MetricsListen, "metrics-listen", "", "serve Prometheus metrics at ADDR/metrics: 127.0.0.1:PORT, [::1]:PORT or unix:/PATH (default: [emailproxy] metrics_listen; - for none)")
	fl.DurationVar(&opts.AuthTimeout, "auth-timeout", interactive.DefaultTimeout, "how long a login waits for an admin to complete an authorisation")
	fl.DurationVar(&opts.DrainTimeout, "drain-timeout", 10*time.Second, "on SIGTERM, how long running sessions may take to finish")
	fl.BoolVar(&opts.Debug, "debug", false, "trace protocol lines (credentials redacted)")
	fl.StringVar(&opts.LogFormat, "log-format", "auto", "auto, journal, plain or text")
	// For tests only (hidden): providers issue tokens for an hour, and the
	// 600 s margin must stay in production; end-to-end tests of the
	// keep-alive use tokens that live seconds.
	fl.DurationVar(&opts.RefreshMargin, "refresh-margin", 0, "for tests only: renew access tokens with less than this left (default 600s)")
	_ = fl.MarkHidden("refresh-margin")
	_ = cmd.MarkFlagFilename("config")
	_ = cmd.RegisterFlagCompletionFunc("log-format", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"auto", "journal", "plain", "text"}, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

func logMode(s string) (journallog.Mode, error) {
	switch s {
	case "auto", "":
		return journallog.ModeAuto, nil
	case "journal":
		return journallog.ModeJournal, nil
	case "plain":
		return journallog.ModePlain, nil
	case "text":
		return journallog.ModeTerminal, nil
	}
	return 0, exitcode.Withf(exitcode.Usage, "--log-format %q: use auto, journal, plain or text", s)
}

// Run serves until ctx ends (SIGTERM/SIGINT in the real process).
func Run(ctx context.Context, o *Options) error {
	if err := o.checkFlags(); err != nil {
		return err
	}
	mode, err := logMode(o.LogFormat)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if o.Debug {
		level = slog.LevelDebug
	}
	log := slog.New(journallog.New(journallog.Options{Mode: mode, Level: level, Writer: o.IO.ErrOut}))
	notify := o.Notify
	if notify == nil {
		notify = func(state string) error { _, err := daemon.SdNotify(false, state); return err }
	}

	handover := newStateHandover(log, o.TokenPath, o.StatusPath)
	handover.run(ctx)
	// Also when serve stops: what the engine wrote meanwhile (the token
	// store, its lock, the status file) is root's.
	defer handover.run(ctx)

	eng, err := engine.New(engine.Options{
		ConfigPath:    o.ConfigPath,
		TokenPath:     o.TokenPath,
		StatusPath:    o.StatusPath,
		ControlPath:   o.ControlPath,
		MetricsListen: o.MetricsListen,
		Version:       buildinfo.Get().Version,
		Commit:        buildinfo.Get().Commit,
		Logger:        log,
		AuthTimeout:   o.AuthTimeout,
		Debug:         o.Debug,
		RefreshMargin: o.RefreshMargin,
		// systemd's LoadCredentialEncrypted= (background_refresh)
		CredentialsDir: os.Getenv("CREDENTIALS_DIRECTORY"),
	})
	if err != nil {
		return startError(o.ConfigPath, err)
	}
	// SIGHUP is caught before listeners open so that an early reload
	// request cannot kill the process (Go's default for SIGHUP is to exit).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	if err := eng.Start(ctx); err != nil {
		return exitcode.With(exitcode.Error, fmt.Errorf("cannot listen: %w", err))
	}
	log.Info("email OAuth 2.0 proxy started with "+o.ConfigPath, "message_id", events.Lifecycle, "state", "started")
	_ = notify(daemon.SdNotifyReady + "\nSTATUS=serving")
	if o.Ready != nil {
		o.Ready(eng)
	}

	var watchdog <-chan time.Time
	if d, err := daemon.SdWatchdogEnabled(false); err == nil && d > 0 {
		t := time.NewTicker(d / 2)
		defer t.Stop()
		watchdog = t.C
	}

	for {
		select {
		case <-ctx.Done():
			_ = notify(daemon.SdNotifyStopping)
			log.Info("stopping: no new connections; running sessions may finish", "message_id", events.Lifecycle, "state", "stopping")
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.DrainTimeout)
			err := eng.Shutdown(dctx)
			cancel()
			if err != nil {
				log.Warn("stopped with sessions cut short: "+err.Error(), "message_id", events.Lifecycle, "state", "stopped")
			} else {
				log.Info("stopped", "message_id", events.Lifecycle, "state", "stopped")
			}
			return nil
		case <-hup:
			_ = notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
			_ = eng.Reload(ctx) // logged inside; a bad file keeps the old one
			_ = notify(daemon.SdNotifyReady)
		case <-watchdog:
			_ = notify(daemon.SdNotifyWatchdog)
		}
	}
}

// startError gives each way the engine can fail to start its exit code and
// a fix (EX_CONFIG, 78, for a file that is invalid or missing: that is the
// code systemd names 78/CONFIG in the journal): a file that cannot be read is not an invalid file, and sending the
// admin to config validate for it would not help.
func startError(path string, err error) error {
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrPermission) && errors.As(err, &pe):
		return exitcode.Withf(exitcode.Permission, "cannot read %s: permission denied; run as root (as the unit does), or give --config, --token-cache and --status-file paths this user may use", pe.Path)
	case errors.Is(err, fs.ErrPermission):
		return exitcode.With(exitcode.Permission, fmt.Errorf("%w; run as root (as the unit does)", err))
	case errors.Is(err, fs.ErrNotExist) && errors.As(err, &pe) && pe.Path == path:
		return exitcode.Withf(exitcode.Config, "cannot read %s: %v; write it with `orbit email-oauth2-proxy register`, or name another file with --config", path, pe.Err)
	case errors.Is(err, engine.ErrInvalidConfig):
		return exitcode.With(exitcode.Config, fmt.Errorf("%w\nFix the file (orbit email-oauth2-proxy config validate %s shows every problem), then start again", err, path))
	}
	return err
}

// checkFlags refuses values that would make the engine misbehave rather
// than fail: a zero or negative wait.
func (o *Options) checkFlags() error {
	for _, d := range []struct {
		flag string
		val  time.Duration
	}{{"auth-timeout", o.AuthTimeout}, {"drain-timeout", o.DrainTimeout}} {
		if d.val <= 0 {
			return exitcode.Withf(exitcode.Usage, "--%s %s: use a positive duration such as 30s or 10m", d.flag, d.val)
		}
	}
	return nil
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, which systemd wants
// with RELOADING=1 to tell this reload from an earlier one.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1e3
}
