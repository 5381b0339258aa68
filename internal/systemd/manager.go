package systemd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// ErrNoSystemd means there is no systemd to talk to here: PID 1 is
// something else (a container, a chroot) or its D-Bus sockets do not
// answer. Errors wrapping it say which.
var ErrNoSystemd = errors.New("systemd is not running here")

// DefaultRunDir is where a booted systemd keeps its runtime state.
const DefaultRunDir = "/run/systemd"

// connectTimeout bounds connecting even when the caller's context has no
// deadline: a wedged bus must not hang the CLI.
const connectTimeout = 5 * time.Second

// settlePoll is how often a unit's state is read while it settles.
const settlePoll = 50 * time.Millisecond

// ConnectOptions tune Connect; the zero value is right for the running
// system.
type ConnectOptions struct {
	// RunDir replaces /run/systemd (where "system" marks a booted systemd
	// and "private" is its direct socket); tests point it elsewhere.
	RunDir string
	// NoSystemBus skips the fallback to the system bus when the private
	// socket cannot be used.
	NoSystemBus bool
}

// Manager controls units over D-Bus. Close it when done.
type Manager struct {
	conn   *sddbus.Conn
	cancel context.CancelFunc
	// Via is how it is connected: the private socket's path or "system bus".
	Via string
}

// Connect reaches systemd: first its private socket (root only, works
// without dbus-daemon), then the system bus. Without systemd it fails
// within milliseconds with an error wrapping ErrNoSystemd; a permission
// problem also wraps fs.ErrPermission.
func Connect(ctx context.Context, opts ConnectOptions) (*Manager, error) {
	runDir := opts.RunDir
	if runDir == "" {
		runDir = DefaultRunDir
	}
	// sd_booted(3): the directory exists only when systemd is PID 1.
	if _, err := os.Stat(filepath.Join(runDir, "system")); err != nil {
		return nil, fmt.Errorf("%w: %s does not exist, so PID 1 is %s, not systemd", ErrNoSystemd, filepath.Join(runDir, "system"), pid1Name())
	}
	private := filepath.Join(runDir, "private")
	m, perr := connectWith(ctx, private, func(connCtx context.Context) (*sddbus.Conn, error) {
		return sddbus.NewConnection(func() (*dbus.Conn, error) { return dialPrivate(connCtx, private) })
	})
	if perr == nil {
		return m, nil
	}
	if opts.NoSystemBus {
		return nil, noSystemd(perr, private)
	}
	m, serr := connectWith(ctx, "system bus", func(connCtx context.Context) (*sddbus.Conn, error) {
		return sddbus.NewSystemConnectionContext(connCtx)
	})
	if serr == nil {
		return m, nil
	}
	return nil, noSystemd(errors.Join(perr, serr), private+" and the system bus")
}

func noSystemd(err error, where string) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("connecting to systemd over %s: %w", where, err)
	}
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
		return fmt.Errorf("%w: cannot connect to %s: %w (run as root)", ErrNoSystemd, where, errors.Join(fs.ErrPermission, err))
	}
	return fmt.Errorf("%w: cannot connect to %s: %w", ErrNoSystemd, where, err)
}

// connectWith runs dial in the background so that the caller's context
// bounds it even where go-systemd and godbus do not look at one (the
// authentication handshake, the AddMatch call). The connection itself
// lives on its own context, cancelled by Close, because godbus closes a
// connection when the context it was made with ends.
func connectWith(ctx context.Context, via string, dial func(context.Context) (*sddbus.Conn, error)) (*Manager, error) {
	connCtx, cancel := context.WithCancel(context.Background())
	type result struct {
		c   *sddbus.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := dial(connCtx)
		ch <- result{c, err}
	}()
	timer := time.NewTimer(connectTimeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			cancel()
			return nil, r.err
		}
		return &Manager{conn: r.c, cancel: cancel, Via: via}, nil
	case <-ctx.Done():
		cancel()
		return nil, ctx.Err()
	case <-timer.C:
		cancel()
		return nil, fmt.Errorf("no answer within %v", connectTimeout)
	}
}

func dialPrivate(ctx context.Context, path string) (*dbus.Conn, error) {
	conn, err := dbus.Dial("unix:path="+path, dbus.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	// EXTERNAL with the numeric uid, as systemctl does; no user name
	// lookup, which a static binary could not do through NSS anyway.
	if err := conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

func pid1Name() string {
	b, err := os.ReadFile("/proc/1/comm")
	if err != nil {
		return "unknown"
	}
	return strconv.Quote(strings.TrimSpace(string(b)))
}

// Close ends the connection.
func (m *Manager) Close() {
	m.conn.Close()
	m.cancel()
}

// DaemonReload makes systemd re-read unit files (systemctl daemon-reload);
// call it after Install reported a change.
func (m *Manager) DaemonReload(ctx context.Context) error {
	if err := m.conn.ReloadContext(ctx); err != nil {
		return fmt.Errorf("daemon-reload: %w", err)
	}
	return nil
}

// OpError is a start, stop or restart that did not end in the wanted
// state. Props is the unit's state afterwards, for the explanation.
type OpError struct {
	Op        string // "start", "stop", "restart"
	Unit      string
	JobResult string // "done", "failed", "timeout", "canceled", "dependency", "skipped", ...
	Props     Properties
}

func (e *OpError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: ", e.Op, e.Unit)
	if e.JobResult != "done" {
		fmt.Fprintf(&b, "the job ended %q", e.JobResult)
	} else {
		fmt.Fprintf(&b, "the unit is %s", e.Props.ActiveState)
	}
	if p := e.Props; p.ActiveState != "" {
		fmt.Fprintf(&b, "; state %s/%s", p.ActiveState, p.SubState)
		if p.Result != "" && p.Result != "success" {
			fmt.Fprintf(&b, ", result %s", p.Result)
		}
		if p.ExecMainCode != 0 {
			fmt.Fprintf(&b, ", main process %s", exitText(p.ExecMainCode, p.ExecMainStatus))
		}
	}
	fmt.Fprintf(&b, " (see: journalctl -u %s -n 50)", e.Unit)
	return b.String()
}

// exitText renders ExecMainCode/ExecMainStatus (CLD_* codes, waitid(2)).
func exitText(code, status int32) string {
	switch code {
	case 1: // CLD_EXITED
		return fmt.Sprintf("exited with status %d", status)
	case 2, 3: // CLD_KILLED, CLD_DUMPED
		return fmt.Sprintf("killed by signal %d", status)
	}
	return fmt.Sprintf("code %d status %d", code, status)
}

// Start starts the unit, waits for the job, then for the unit to settle,
// and fails unless it is active.
func (m *Manager) Start(ctx context.Context, name string) error {
	return m.run(ctx, "start", name, m.conn.StartUnitContext, "active")
}

// Restart restarts the unit (starting it when stopped) and fails unless it
// ends up active.
func (m *Manager) Restart(ctx context.Context, name string) error {
	return m.run(ctx, "restart", name, m.conn.RestartUnitContext, "active")
}

// Stop stops the unit and fails unless it ends up inactive (or failed,
// which is stopped too: the stop itself worked).
func (m *Manager) Stop(ctx context.Context, name string) error {
	return m.run(ctx, "stop", name, m.conn.StopUnitContext, "inactive", "failed")
}

// Reload asks the unit to re-read its configuration (its ExecReload=)
// and fails unless it is active afterwards. Whether the engine took the
// new file is the engine's to say (its journal); see the reload command.
func (m *Manager) Reload(ctx context.Context, name string) error {
	return m.run(ctx, "reload", name, m.conn.ReloadUnitContext, "active")
}

// ResetFailed clears the unit's failed state and its start-rate counter
// (systemctl reset-failed), so that a start after a unit that gave up
// (start-limit-hit) is not refused. A unit that is not loaded has nothing
// to reset; that is not an error.
func (m *Manager) ResetFailed(ctx context.Context, name string) error {
	if err := m.conn.ResetFailedUnitContext(ctx, name); err != nil {
		var de dbus.Error
		if errors.As(err, &de) && (de.Name == "org.freedesktop.systemd1.NoSuchUnit" || de.Name == "org.freedesktop.systemd1.LoadFailed") {
			return nil
		}
		return fmt.Errorf("reset-failed %s: %w", name, err)
	}
	return nil
}

type jobFunc func(ctx context.Context, name, mode string, ch chan<- string) (int, error)

func (m *Manager) run(ctx context.Context, op, name string, job jobFunc, want ...string) error {
	// Buffered: go-systemd's signal dispatcher blocks sending the result,
	// and nobody receives it once ctx has ended.
	done := make(chan string, 1)
	if _, err := job(ctx, name, "replace", done); err != nil {
		return fmt.Errorf("%s %s: %w%s", op, name, err, hintFor(err))
	}
	var result string
	select {
	case result = <-done:
	case <-ctx.Done():
		return fmt.Errorf("%s %s: gave up waiting for the job: %w", op, name, ctx.Err())
	}
	props, err := m.settle(ctx, name)
	if err != nil {
		return fmt.Errorf("%s %s: job %s, then %w", op, name, result, err)
	}
	ok := result == "done"
	if ok {
		ok = false
		for _, w := range want {
			ok = ok || props.ActiveState == w
		}
	}
	if !ok {
		return &OpError{Op: op, Unit: name, JobResult: result, Props: props}
	}
	return nil
}

func hintFor(err error) string {
	var de dbus.Error
	if errors.As(err, &de) && de.Name == "org.freedesktop.systemd1.NoSuchUnit" {
		return " (it is not installed: its family's start or register installs it)"
	}
	return ""
}

// settle waits until the unit is in no transitional state.
func (m *Manager) settle(ctx context.Context, name string) (Properties, error) {
	for {
		p, err := m.Properties(ctx, name)
		if err != nil {
			return p, err
		}
		switch {
		case p.SubState == "auto-restart":
			// Failed and waiting RestartSec to try again: as settled as a
			// failing unit gets, and waiting would only see it fail again.
			return p, nil
		case p.ActiveState == "activating", p.ActiveState == "deactivating",
			p.ActiveState == "reloading", p.ActiveState == "refreshing":
		default:
			return p, nil
		}
		select {
		case <-ctx.Done():
			return p, fmt.Errorf("gave up waiting for the unit to leave %q: %w", p.ActiveState, ctx.Err())
		case <-time.After(settlePoll):
		}
	}
}

// Enable makes the unit start at boot and reports whether anything changed.
func (m *Manager) Enable(ctx context.Context, name string) (changed bool, err error) {
	_, changes, err := m.conn.EnableUnitFilesContext(ctx, []string{name}, false, true)
	if err != nil {
		return false, fmt.Errorf("enable %s: %w%s", name, err, hintFor(err))
	}
	return len(changes) > 0, nil
}

// Disable stops the unit starting at boot and reports whether anything
// changed.
func (m *Manager) Disable(ctx context.Context, name string) (changed bool, err error) {
	changes, err := m.conn.DisableUnitFilesContext(ctx, []string{name}, false)
	if err != nil {
		return false, fmt.Errorf("disable %s: %w", name, err)
	}
	return len(changes) > 0, nil
}

// Properties is what status shows about a unit.
type Properties struct {
	Name          string
	LoadState     string // loaded, not-found, masked, error ...
	ActiveState   string // active, inactive, failed, activating, deactivating ...
	SubState      string // running, dead, exited, auto-restart ...
	UnitFileState string // enabled, disabled, static ...
	FragmentPath  string
	// NeedDaemonReload: the unit file changed on disk since systemd read it.
	NeedDaemonReload bool
	// ActiveEnterTimestamp is when it last became active; zero if never.
	ActiveEnterTimestamp time.Time
	// StateChangeTimestamp is when ActiveState last changed; zero if never.
	StateChangeTimestamp time.Time

	// Service interface.
	MainPID        uint32 // 0 when not running
	Result         string // success, exit-code, signal, timeout, watchdog ...
	NRestarts      uint32
	ExecMainCode   int32 // CLD_EXITED=1, CLD_KILLED=2, CLD_DUMPED=3; 0 if none
	ExecMainStatus int32
	// MemoryCurrent is the cgroup's memory use in bytes; MemoryKnown is
	// false when systemd does not account it.
	MemoryCurrent uint64
	MemoryKnown   bool
}

// Properties reads the unit's state. An unknown unit is not an error: its
// LoadState says "not-found".
func (m *Manager) Properties(ctx context.Context, name string) (Properties, error) {
	u, err := m.conn.GetUnitPropertiesContext(ctx, name)
	if err != nil {
		return Properties{Name: name}, fmt.Errorf("reading the properties of %s: %w", name, err)
	}
	p := Properties{
		Name:                 name,
		LoadState:            str(u["LoadState"]),
		ActiveState:          str(u["ActiveState"]),
		SubState:             str(u["SubState"]),
		UnitFileState:        str(u["UnitFileState"]),
		FragmentPath:         str(u["FragmentPath"]),
		ActiveEnterTimestamp: usecTime(u["ActiveEnterTimestamp"]),
		StateChangeTimestamp: usecTime(u["StateChangeTimestamp"]),
	}
	p.NeedDaemonReload, _ = u["NeedDaemonReload"].(bool)
	if p.LoadState != "loaded" {
		return p, nil
	}
	s, err := m.conn.GetUnitTypePropertiesContext(ctx, name, "Service")
	if err != nil {
		return p, fmt.Errorf("reading the service properties of %s: %w", name, err)
	}
	p.MainPID, _ = s["MainPID"].(uint32)
	p.Result = str(s["Result"])
	p.NRestarts, _ = s["NRestarts"].(uint32)
	p.ExecMainCode, _ = s["ExecMainCode"].(int32)
	p.ExecMainStatus, _ = s["ExecMainStatus"].(int32)
	if mem, ok := s["MemoryCurrent"].(uint64); ok && mem != math.MaxUint64 {
		p.MemoryCurrent, p.MemoryKnown = mem, true
	}
	return p, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func usecTime(v any) time.Time {
	us, ok := v.(uint64)
	if !ok || us == 0 || us > math.MaxInt64 {
		return time.Time{}
	}
	return time.UnixMicro(int64(us))
}
