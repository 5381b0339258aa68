// Package servicetest has in-memory stand-ins for the service manager, the
// unit installer and the journal, for the tests of start, stop, restart,
// status, logs and register's hook. The real ones are exercised in the
// systemd sandbox test.
package servicetest

import (
	"context"
	"fmt"
	"io/fs"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/senhasegura/orbit/internal/cli/emailproxy/service"
	"github.com/senhasegura/orbit/internal/systemd"
	"github.com/senhasegura/orbit/pkg/journal"
)

// Manager is a service manager that keeps one unit's state in memory and
// records every call.
type Manager struct {
	mu    sync.Mutex
	Props systemd.Properties
	// Fail makes the named operation ("start", "stop", "restart", "enable",
	// "daemon-reload", "properties") return this error.
	Fail map[string]error
	// Block makes the named operation wait until its context ends.
	Block map[string]bool
	Calls []string
	// NextPID is the main PID a start or restart gives the unit.
	NextPID uint32
	Closed  bool
}

// NewManager returns a manager whose unit is installed and inactive.
func NewManager() *Manager {
	return &Manager{
		Props:   systemd.Properties{Name: service.DefaultUnit, LoadState: "loaded", ActiveState: "inactive", SubState: "dead", UnitFileState: "disabled"},
		NextPID: 4242,
	}
}

func (m *Manager) call(ctx context.Context, op string) error {
	m.mu.Lock()
	m.Calls = append(m.Calls, op)
	err, block := m.Fail[op], m.Block[op]
	m.mu.Unlock()
	if block {
		<-ctx.Done()
		return fmt.Errorf("%s: gave up waiting for the job: %w", op, ctx.Err())
	}
	return err
}

// CallList returns the calls so far, in order.
func (m *Manager) CallList() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.Calls...)
}

func (m *Manager) DaemonReload(ctx context.Context) error {
	if err := m.call(ctx, "daemon-reload"); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Props.NeedDaemonReload = false
	if m.Props.LoadState == "not-found" {
		m.Props.LoadState = "loaded"
		m.Props.ActiveState, m.Props.SubState = "inactive", "dead"
	}
	return nil
}

func (m *Manager) run(ctx context.Context, op, name string) error {
	if err := m.call(ctx, op+" "+name); err != nil {
		m.mu.Lock()
		defer m.mu.Unlock()
		if _, ok := err.(*systemd.OpError); ok {
			m.Props.ActiveState, m.Props.SubState, m.Props.MainPID = "failed", "failed", 0
		}
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Props.LoadState != "loaded" {
		return fmt.Errorf("%s %s: unit %s not found", op, name, name)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	switch op {
	case "stop":
		m.Props.ActiveState, m.Props.SubState, m.Props.MainPID = "inactive", "dead", 0
	case "start":
		if m.Props.ActiveState == "active" {
			return nil // as systemd: a running unit is left as it is
		}
		fallthrough
	default:
		m.Props.ActiveState, m.Props.SubState, m.Props.MainPID = "active", "running", m.NextPID
		m.Props.ActiveEnterTimestamp = now
		m.NextPID++
	}
	m.Props.StateChangeTimestamp = now
	return nil
}

func (m *Manager) Start(ctx context.Context, name string) error   { return m.run(ctx, "start", name) }
func (m *Manager) Stop(ctx context.Context, name string) error    { return m.run(ctx, "stop", name) }
func (m *Manager) Restart(ctx context.Context, name string) error { return m.run(ctx, "restart", name) }

// Reload records the call; the unit's state does not change.
func (m *Manager) Reload(ctx context.Context, name string) error {
	return m.call(ctx, "reload "+name)
}

// ResetFailed records the call and turns a failed unit inactive.
func (m *Manager) ResetFailed(ctx context.Context, name string) error {
	if err := m.call(ctx, "reset-failed "+name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Props.ActiveState == "failed" {
		m.Props.ActiveState, m.Props.SubState = "inactive", "dead"
	}
	return nil
}

func (m *Manager) Disable(ctx context.Context, name string) (bool, error) {
	if err := m.call(ctx, "disable "+name); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := m.Props.UnitFileState == "enabled"
	if m.Props.LoadState == "loaded" {
		m.Props.UnitFileState = "disabled"
	}
	return changed, nil
}

func (m *Manager) Enable(ctx context.Context, name string) (bool, error) {
	if err := m.call(ctx, "enable "+name); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := m.Props.UnitFileState != "enabled"
	m.Props.UnitFileState = "enabled"
	return changed, nil
}

func (m *Manager) Properties(ctx context.Context, name string) (systemd.Properties, error) {
	m.mu.Lock()
	err := m.Fail["properties"]
	p := m.Props
	m.mu.Unlock()
	p.Name = name
	return p, err
}

func (m *Manager) Close() {
	m.mu.Lock()
	m.Closed = true
	m.mu.Unlock()
}

// Connector hands out Manager, or fails with Err.
type Connector struct {
	Manager *Manager
	Err     error
}

func (c *Connector) Connect(ctx context.Context) (service.Manager, error) {
	if c.Err != nil {
		return nil, c.Err
	}
	return c.Manager, nil
}

// ErrNoSystemd is the error Connect gives on a machine without systemd.
var ErrNoSystemd = fmt.Errorf("%w: /run/systemd/system does not exist, so PID 1 is \"sh\", not systemd", systemd.ErrNoSystemd)

// Installer keeps unit files in memory and records the user work.
type Installer struct {
	mu      sync.Mutex
	Files   map[string][]byte
	Users   []string
	Granted []string
	// Repaired records RepairStateDir calls as "user:stateDirectory".
	Repaired []string
	// Problems is what CheckStateDir reports.
	Problems []systemd.StateProblem
	// Sysusers holds the users whose sysusers.d entry exists.
	Sysusers map[string]bool
	// Purged records Purge calls.
	Purged []string
	Err    error
}

func (i *Installer) Install(ctx context.Context, u systemd.Unit) (bool, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.Err != nil {
		return false, i.Err
	}
	if i.Files == nil {
		i.Files = map[string][]byte{}
	}
	b := u.Bytes()
	if string(i.Files[u.Name]) == string(b) {
		return false, nil
	}
	i.Files[u.Name] = b
	return true, nil
}

func (i *Installer) Installed(name string) ([]byte, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	b, ok := i.Files[name]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return b, nil
}

func (i *Installer) EnsureUser(ctx context.Context, user string) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.Users = append(i.Users, user)
	return nil
}

func (i *Installer) RepairStateDir(ctx context.Context, stateDirectory, user string) ([]string, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.Repaired = append(i.Repaired, user+":"+stateDirectory)
	return nil, nil
}

func (i *Installer) CheckStateDir(stateDirectory, user string) ([]systemd.StateProblem, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.Problems, nil
}

func (i *Installer) Uninstall(ctx context.Context, unit, user string) ([]string, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	var removed []string
	if _, ok := i.Files[unit]; ok {
		delete(i.Files, unit)
		removed = append(removed, systemd.UnitPath("", unit))
	}
	if i.Sysusers[user] {
		delete(i.Sysusers, user)
		removed = append(removed, systemd.SysusersPath("", user))
	}
	return removed, nil
}

func (i *Installer) Purge(ctx context.Context, stateDirectory string) ([]string, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.Purged = append(i.Purged, stateDirectory)
	return []string{systemd.StateDirPath("", stateDirectory)}, nil
}

func (i *Installer) GrantConfigAccess(ctx context.Context, configFile, user string) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.Granted = append(i.Granted, user+":"+configFile)
	return nil
}

// Journal serves fixed entries; when following it then serves Later, one
// entry per Tick, and waits for the context to end.
type Journal struct {
	mu      sync.Mutex
	History []journal.Entry
	Later   []journal.Entry
	Tick    time.Duration
	Err     error
	Queries []journal.Query
}

// Entries implements service.JournalReader, applying the query's Units,
// MessageIDs, Matches, Since, AfterCursor, Lines and Reverse to the fixed
// entries as journalctl would.
func (j *Journal) Entries(ctx context.Context, q journal.Query) iter.Seq2[journal.Entry, error] {
	j.mu.Lock()
	j.Queries = append(j.Queries, q)
	all, later, jerr := append([]journal.Entry(nil), j.History...), append([]journal.Entry(nil), j.Later...), j.Err
	j.mu.Unlock()
	return func(yield func(journal.Entry, error) bool) {
		if jerr != nil {
			yield(journal.Entry{}, jerr)
			return
		}
		match := func(e journal.Entry) bool {
			if len(q.Units) > 0 && !contains(q.Units, e.Unit) {
				return false
			}
			if !q.Since.IsZero() && e.Time.Before(q.Since) {
				return false
			}
			if len(q.MessageIDs) > 0 && !contains(q.MessageIDs, e.MessageID) {
				return false
			}
			// Matches on one field are ORed, on different fields ANDed.
			byField := map[string][]string{}
			for _, m := range q.Matches {
				k, v, _ := strings.Cut(m, "=")
				byField[k] = append(byField[k], v)
			}
			for k, vs := range byField {
				if !contains(vs, e.Fields[k]) {
					return false
				}
			}
			return true
		}
		var sel []journal.Entry
		after := q.AfterCursor == ""
		for _, e := range all {
			if !after {
				after = e.Cursor == q.AfterCursor
				continue
			}
			if match(e) {
				sel = append(sel, e)
			}
		}
		if q.Lines > 0 && len(sel) > q.Lines {
			sel = sel[len(sel)-q.Lines:]
		}
		if q.Reverse {
			slices.Reverse(sel)
		}
		for _, e := range sel {
			if !yield(e, nil) {
				return
			}
		}
		if !q.Follow {
			return
		}
		for _, e := range later {
			select {
			case <-ctx.Done():
				yield(journal.Entry{}, ctx.Err())
				return
			case <-time.After(j.Tick):
			}
			if match(e) && !yield(e, nil) {
				return
			}
		}
		<-ctx.Done()
		yield(journal.Entry{}, ctx.Err())
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Entry builds a journal entry of the unit at t with message and extra
// fields ("MESSAGE_ID=...", "ORBIT_ACCOUNT=...").
func Entry(t time.Time, cursor, message string, fields ...string) journal.Entry {
	e := journal.Entry{Time: t, Cursor: cursor, Unit: service.DefaultUnit, Identifier: "orbit", PID: 4242,
		Priority: 6, Message: message, Fields: map[string]string{"MESSAGE": message, "__CURSOR": cursor}}
	for _, f := range fields {
		k, v, _ := strings.Cut(f, "=")
		e.Fields[k] = v
		if k == "MESSAGE_ID" {
			e.MessageID = v
		}
		if k == "SYSLOG_IDENTIFIER" {
			e.Identifier = v
		}
		if k == "UNIT" {
			e.Unit = v
		}
	}
	return e
}
