package systemd

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/senhasegura/orbit/internal/journallog"
	"github.com/senhasegura/orbit/pkg/emailproxy/events"
)

// The test binary doubles as the service the sandbox tests run: started as
// "<bin> email-oauth2-proxy serve --config FILE" (the unit's real command
// line) it behaves like a tiny engine, and as "<bin> simple-engine
// --config-file FILE" like a foreign engine that knows nothing of sd_notify.
func TestMain(m *testing.M) {
	switch {
	case len(os.Args) > 2 && os.Args[1] == "email-oauth2-proxy" && os.Args[2] == "serve":
		os.Exit(serviceMain(os.Args[3:], true))
	case len(os.Args) > 1 && os.Args[1] == "simple-engine":
		os.Exit(serviceMain(os.Args[2:], false))
	case len(os.Args) > 1 && os.Args[1] == "tick":
		os.Exit(tickMain())
	}
	os.Exit(m.Run())
}

// Facts the fake engine logs, which the sandbox test checks.
const (
	testAccount  = "alice@example.com"
	testAuthURL  = "https://login.example.com/authorize?client_id=c&login_hint=alice%40example.com"
	testPassword = "hunter2-not-for-logs"
)

func serviceMain(args []string, notify bool) int {
	log := slog.New(journallog.New(journallog.Options{}))
	var config string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--config" || args[i] == "--config-file" {
			config = args[i+1]
		}
	}
	data, err := os.ReadFile(config)
	if err != nil {
		log.Error("cannot read the configuration: "+err.Error(), journallog.MessageIDKey, events.Lifecycle, events.FieldState, "failed")
		return 1
	}
	if strings.Contains(string(data), "broken") {
		log.Error(fmt.Sprintf("configuration error in %s: line 1: broken is not a section", config),
			journallog.MessageIDKey, events.Lifecycle, events.FieldState, "failed")
		return 1
	}

	// What the hardening allows: the configuration directory is writable,
	// the rest of /etc is not.
	probe := func(path string) string {
		if err := os.WriteFile(path, []byte("probe"), 0o600); err != nil {
			return "denied"
		}
		os.Remove(path)
		return "ok"
	}
	log.Info("started",
		journallog.MessageIDKey, events.Lifecycle,
		events.FieldState, "started",
		"uid", strconv.Itoa(os.Getuid()),
		"config_write", probe(filepath.Join(filepath.Dir(config), ".probe")),
		"etc_write", probe("/etc/orbit-sandbox-probe"),
		"log_mode", journallog.Detect().String(),
		"argv", strings.Join(os.Args, "|"))
	log.Info(fmt.Sprintf(events.AuthURLText, testAccount, testAuthURL),
		journallog.MessageIDKey, events.AuthURL,
		events.FieldAccount, testAccount,
		events.FieldAuthURL, testAuthURL,
		// Must be dropped by the handler's guard, never reach the journal.
		"password", testPassword)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	var tick <-chan time.Time
	if notify {
		if ok, err := daemon.SdNotify(false, daemon.SdNotifyReady); !ok || err != nil {
			log.Error(fmt.Sprintf("sd_notify READY: sent=%v err=%v", ok, err))
		}
		if interval, err := daemon.SdWatchdogEnabled(false); err == nil && interval > 0 {
			tick = time.NewTicker(interval / 3).C
		}
	}
	for {
		select {
		case <-tick:
			daemon.SdNotify(false, daemon.SdNotifyWatchdog)
		case s := <-sigs:
			if s == syscall.SIGUSR1 {
				// The test's "browser" finished the authorisation.
				log.Info("authorised "+testAccount, journallog.MessageIDKey, events.AuthSucceeded, events.FieldAccount, testAccount)
				continue
			}
			log.Info("stopping", journallog.MessageIDKey, events.Lifecycle, events.FieldState, "stopping")
			return 0
		}
	}
}
