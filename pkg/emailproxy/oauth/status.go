package oauth

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

// DefaultStatusFile is where `serve` keeps the per-account status that
// `orbit email-oauth2-proxy status` reads (the unit's StateDirectory).
const DefaultStatusFile = "/var/lib/orbit/email-oauth2-proxy/status.json"

// StatusVersion is the schema version written in Status.Version. Readers
// refuse a file with a higher major version rather than misreading it.
const StatusVersion = 1

// statusFileMode lets the service's group (the operator's CLI) read the
// file; it holds no secret, but nothing else needs it.
const statusFileMode = 0o640

// activityWriteInterval bounds how often a login that changes nothing but
// last_activity rewrites the status file, so a busy mailer does not turn
// every login into an fsync.
const activityWriteInterval = time.Minute

// lazyWriteInterval bounds how often changes of names without a section of
// their own (catch-all logins) rewrite the status file. Each write is the
// whole file (up to maxStatusAccounts entries, about half a megabyte) and
// an fsync; written at once, a client inventing login names from many
// addresses (the guard only slows each address) made every refused name
// cost one, hundreds a second. Changes of configured accounts are still
// written at once, and the catch-all ones follow within this interval.
const lazyWriteInterval = time.Second

// maxStatusAccounts bounds how many accounts the status keeps. With
// catch-all sections every login name that reaches the listener gets an
// entry, so without a bound anyone who can connect could grow the map and
// the file at will; 1000 is far beyond one appliance's mailboxes.
const maxStatusAccounts = 1000

// State is an account's condition as `status` shows it.
type State string

const (
	// StateAuthorised: the proxy holds an access token valid until
	// TokenExpiry (it is refreshed without anyone's help when possible).
	StateAuthorised State = "authorised"
	// StateWaiting: an interactive authorisation is pending; AuthURL (and
	// UserCode for the device flow) say what a person must open.
	StateWaiting State = "waiting"
	// StateFailing: the last attempt to get a token failed; Reason says why.
	StateFailing State = "failing"
)

// Status is the JSON document of the status file (schema version 1):
//
//	{
//	  "version": 1,
//	  "pid": 4242,
//	  "updated": "2025-01-02T03:04:05Z",
//	  "accounts": {
//	    "alice@example.com": {
//	      "state": "authorised",          // authorised | waiting | failing
//	      "flow": "client_credentials",   // the flow that really runs
//	      "since": "...",                 // when the account entered this state
//	      "token_expiry": "...",          // authorised only
//	      "auth_url": "https://...",      // waiting only
//	      "user_code": "ABCD-EFGH",       // waiting, device flow only
//	      "reason": "...",                // failing only; safe to show
//	      "last_activity": "..."          // last login, to the minute
//	    }
//	  },
//	  "failed_logins": {                  // absent when none in the last hour
//	    "alice@example.com": {"last_hour": 57, "refused": 12, "addresses": 3,
//	      "last_address": "203.0.113.9", "last": "...", "delayed_until": "..."}
//	  },
//	  "catch_all_failed_logins": {        // unknown names, by catch-all section
//	    "@example.com": {"last_hour": 9, "addresses": 1, "names": 9, ...}
//	  }
//	}
//
// Times are RFC 3339 in UTC; absent fields are omitted. Only accounts that
// have been used since the engine started (or were authorised in the
// previous run's file) appear: the CLI lists configured accounts that are
// missing as "not used yet". The file never holds a password, token or
// client secret; auth_url holds only the public authorisation request.
//
// At most 1000 accounts are kept, because with catch-all sections ([@] or
// [@domain]) any login name a client invents would otherwise add one. When
// a new name would exceed that, the entries dropped first are those least
// recently active (last_activity, else since) that are not waiting and have
// no [user@domain] section of their own; then the oldest with their own
// section; a waiting entry only when nothing else is left. A dropped
// account reappears on its next login. Changes of accounts with a section
// of their own are written at once; those of catch-all names at most once
// a second (the file may lag them by that much).
type Status struct {
	Version  int                      `json:"version"`
	PID      int                      `json:"pid"`
	Updated  time.Time                `json:"updated"`
	Accounts map[string]AccountStatus `json:"accounts"`
	// FailedLogins: the accounts with failed logins in the hour before
	// Updated, by name; names that have no status entry, tokens or section
	// of their own count under their catch-all section in
	// CatchAllFailedLogins instead, so invented names add no entries.
	// Both are absent when there were none; neither changes an account's
	// state or last_activity. Added compatibly within version 1: a reader
	// that does not know them ignores them.
	FailedLogins         map[string]FailedLogins `json:"failed_logins,omitempty"`
	CatchAllFailedLogins map[string]FailedLogins `json:"catch_all_failed_logins,omitempty"`
}

// AccountStatus is one account's entry in Status.
type AccountStatus struct {
	State        State       `json:"state"`
	Flow         config.Flow `json:"flow,omitempty"`
	Since        time.Time   `json:"since,omitzero"`
	TokenExpiry  time.Time   `json:"token_expiry,omitzero"`
	AuthURL      string      `json:"auth_url,omitempty"`
	UserCode     string      `json:"user_code,omitempty"`
	Reason       string      `json:"reason,omitempty"`
	LastActivity time.Time   `json:"last_activity,omitzero"`
}

// ReadStatus loads a status file written by a running (or stopped) engine.
// A missing file is reported with os.ErrNotExist in the chain so the CLI can
// say "the engine has not run yet".
func ReadStatus(path string) (Status, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Status{}, fmt.Errorf("reading proxy status: %w", err)
	}
	var st Status
	if err := json.Unmarshal(data, &st); err != nil {
		return Status{}, fmt.Errorf("proxy status file %s is not valid JSON (%v); it is rewritten on the next change, or delete it", path, err)
	}
	if st.Version < 1 || st.Version > StatusVersion {
		return Status{}, fmt.Errorf("proxy status file %s has schema version %d, this orbit reads version %d: use the orbit that runs the engine", path, st.Version, StatusVersion)
	}
	if st.Accounts == nil {
		st.Accounts = map[string]AccountStatus{}
	}
	return st, nil
}

// statusBook keeps the per-account status in memory and mirrors it to the
// status file. Writes happen on the caller's goroutine but outside the data
// lock, and a generation counter drops a write that a newer one overtook.
type statusBook struct {
	path string
	now  func() time.Time
	log  *slog.Logger
	// ownSection reports whether a name has its own [user@domain] section,
	// which makes its entry the last non-waiting one to be dropped. It is
	// called with mu held, so it must not call back into the book.
	ownSection func(name string) bool

	// onChange, when set, hears of every change of an entry's state,
	// authorisation URL or device code, outside the lock.
	onChange func(account string, before, after AccountStatus)

	// failures are the failed-login counts the file carries; delayEnd asks
	// the guard until when it delays addresses (nil: not shown).
	failures *failureBook
	delayEnd func(account string, addrs []string) time.Time
	// afterFunc schedules the write of failed-login counts held back by
	// the write-rate bound (time.AfterFunc; tests take it over).
	afterFunc func(time.Duration, func())

	mu        sync.Mutex
	accounts  map[string]AccountStatus
	gen       uint64
	lastWrite time.Time
	// flushArmed: a write of held-back failed-login counts is scheduled;
	// lastFailWrite: the last write failed logins caused.
	flushArmed    bool
	lastFailWrite time.Time
	// lazyEvery is lazyWriteInterval (shorter in tests); lazyDue says a
	// catch-all change waits for its write; lazyArmed says flushLazy is
	// scheduled. One schedule at a time: a timer per write at once
	// (configured accounts, failed logins) would each go on writing the
	// catch-all changes once a lazyEvery, in step with none of the others.
	lazyEvery time.Duration
	lazyDue   bool
	lazyArmed bool

	fileMu  sync.Mutex
	written uint64
	// fileWrites counts the files written, for tests of the write rate.
	fileWrites int
}

func newStatusBook(path string, now func() time.Time, log *slog.Logger, ownSection func(string) bool) *statusBook {
	b := &statusBook{path: path, now: now, log: log, ownSection: ownSection, accounts: map[string]AccountStatus{},
		failures: newFailureBook(), afterFunc: func(d time.Duration, f func()) { time.AfterFunc(d, f) }, lazyEvery: lazyWriteInterval}
	if path == "" {
		return b
	}
	// Carry over what the previous run knew: an authorised account stays
	// authorised (its token is in the store), a failure stays visible until
	// the next attempt. A pending authorisation died with that process, so
	// it is not carried over.
	if old, err := ReadStatus(path); err == nil {
		for name, a := range old.Accounts {
			if a.State != StateWaiting {
				b.accounts[name] = a
			}
		}
		// A file written before the bound, or edited by hand, may hold
		// more than it allows.
		b.trim("")
	}
	return b
}

func (b *statusBook) snapshot() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.statusLocked(b.now().UTC())
}

// statusLocked is the document as of now; b.mu is held.
func (b *statusBook) statusLocked(now time.Time) Status {
	st := Status{Version: StatusVersion, PID: os.Getpid(), Updated: now, Accounts: maps.Clone(b.accounts)}
	st.FailedLogins, st.CatchAllFailedLogins = b.failures.snapshot(now, b.delayEnd)
	return st
}

// failedLogin counts a failed login (failureBook.note) and mirrors the
// counts to the file without touching the account's entry. The file is
// fsynced, so a storm does not write it per guess: an entry's first
// failure is written at once, later ones at most once per
// activityWriteInterval per entry (a scheduled write carries everything
// counted meanwhile), and failure-driven writes are failureWriteGap apart
// at least, however many entries fail.
func (b *statusBook) failedLogin(account, section, addr string, refused bool) {
	now := b.now().UTC()
	written := b.failures.note(account, section, addr, refused, now)
	if b.path == "" {
		return
	}
	due := now
	if !written.IsZero() {
		due = written.Add(activityWriteInterval)
	}
	b.mu.Lock()
	if !b.lastFailWrite.IsZero() {
		due = latest(due, b.lastFailWrite.Add(failureWriteGap))
	}
	if b.flushArmed {
		b.mu.Unlock()
		return
	}
	if wait := due.Sub(now); wait > 0 {
		b.flushArmed = true
		b.afterFunc(wait, b.flush)
		b.mu.Unlock()
		return
	}
	b.writeFailuresLocked(now)
}

// failureWriteGap spaces the writes failed logins cause when many entries
// fail at once.
const failureWriteGap = 5 * time.Second

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// flush writes what failedLogin held back.
func (b *statusBook) flush() {
	b.mu.Lock()
	b.flushArmed = false
	b.writeFailuresLocked(b.now().UTC())
}

// writeFailuresLocked is writeLocked for failed logins: it records that
// the counts so far are written.
func (b *statusBook) writeFailuresLocked(now time.Time) {
	b.lastFailWrite = now
	b.failures.markWritten(now)
	b.writeLocked(now)
}

// writeLocked writes the book as of now; it is called with b.mu held and
// releases it.
func (b *statusBook) writeLocked(now time.Time) {
	// This write carries every change so far, the catch-all ones waiting
	// for flushLazy too.
	b.lazyDue = false
	b.gen++
	b.lastWrite = now
	st := b.statusLocked(now)
	gen := b.gen
	b.mu.Unlock()
	b.write(st, gen)
}

// update applies fn to the account's entry. fn reports whether anything
// beyond last_activity changed; such changes are written at once, activity
// alone at most once per activityWriteInterval.
func (b *statusBook) update(account string, fn func(a *AccountStatus) bool) {
	now := b.now().UTC()
	b.mu.Lock()
	a, known := b.accounts[account]
	prev := a
	changed := fn(&a)
	if a.State != prev.State {
		a.Since = now
		changed = true
	}
	if b.onChange != nil && (a.State != prev.State || a.AuthURL != prev.AuthURL || a.UserCode != prev.UserCode) {
		defer b.onChange(account, prev, a)
	}
	a.LastActivity = now
	b.accounts[account] = a
	if !known {
		b.trim(account)
	}
	if b.path == "" || (!changed && now.Sub(b.lastWrite) < activityWriteInterval) {
		b.mu.Unlock()
		return
	}
	if since := now.Sub(b.lastWrite); since < b.lazyEvery && b.ownSection != nil && !b.ownSection(account) {
		b.lazyDue = true
		if !b.lazyArmed {
			b.lazyArmed = true
			b.afterFunc(b.lazyEvery-since, b.flushLazy)
		}
		b.mu.Unlock()
		return
	}
	b.writeLocked(now)
}

// flushLazy writes the catch-all changes that waited, unless a write
// since took them along; if that write was less than lazyEvery ago, the
// changes made after it wait until lazyEvery has passed since it.
func (b *statusBook) flushLazy() {
	b.mu.Lock()
	b.lazyArmed = false
	if !b.lazyDue {
		b.mu.Unlock()
		return
	}
	now := b.now().UTC()
	if since := now.Sub(b.lastWrite); since < b.lazyEvery {
		b.lazyArmed = true
		b.afterFunc(b.lazyEvery-since, b.flushLazy)
		b.mu.Unlock()
		return
	}
	b.writeLocked(now)
}

// publish writes the book as it stands, naming this process. A new engine
// does so at start: until then the file names the previous engine, which
// `status` rightly calls stale once that process is gone, and would hide
// the states this engine carried over from it.
func (b *statusBook) publish() {
	if b.path == "" {
		return
	}
	b.mu.Lock()
	b.writeLocked(b.now().UTC())
}

// trim drops entries until at most maxStatusAccounts remain, never keep
// (the entry being updated), in the order Status documents. b.mu is held.
func (b *statusBook) trim(keep string) {
	excess := len(b.accounts) - maxStatusAccounts
	if excess <= 0 {
		return
	}
	type candidate struct {
		name    string
		waiting bool
		last    time.Time
	}
	cands := make([]candidate, 0, len(b.accounts))
	for name, a := range b.accounts {
		if name == keep {
			continue
		}
		last := a.LastActivity
		if last.IsZero() {
			last = a.Since
		}
		cands = append(cands, candidate{name: name, waiting: a.State == StateWaiting, last: last})
	}
	slices.SortFunc(cands, func(x, y candidate) int {
		if c := x.last.Compare(y.last); c != 0 {
			return c
		}
		return strings.Compare(x.name, y.name)
	})
	// The section check costs a configuration lookup, so it is asked only
	// of entries about to go, oldest first, and only until enough are gone.
	var owned, waiting []string
	for _, c := range cands {
		if excess == 0 {
			return
		}
		switch {
		case c.waiting:
			waiting = append(waiting, c.name)
		case b.ownSection != nil && b.ownSection(c.name):
			owned = append(owned, c.name)
		default:
			delete(b.accounts, c.name)
			excess--
		}
	}
	for _, name := range slices.Concat(owned, waiting) {
		if excess == 0 {
			return
		}
		delete(b.accounts, name)
		excess--
	}
}

func (b *statusBook) write(st Status, gen uint64) {
	b.fileMu.Lock()
	defer b.fileMu.Unlock()
	if gen <= b.written {
		return
	}
	if err := writeStateFile(b.path, st, statusFileMode); err != nil {
		// The status file is a convenience for `status`; logins go on.
		b.log.Warn(fmt.Sprintf("cannot write the proxy status file %s: %v; `status` will show stale account states", b.path, err),
			"path", b.path, "reason", err.Error())
		return
	}
	b.written = gen
	b.fileWrites++
}

func (b *statusBook) get(account string) (AccountStatus, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, ok := b.accounts[account]
	return a, ok
}

func (b *statusBook) state(account string) State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.accounts[account].State
}

func (b *statusBook) authorised(account string, flow config.Flow, expiry time.Time) {
	b.update(account, func(a *AccountStatus) bool {
		changed := a.State != StateAuthorised || !a.TokenExpiry.Equal(expiry) || a.Flow != flow
		*a = AccountStatus{State: StateAuthorised, Flow: flow, Since: a.Since, TokenExpiry: expiry.UTC()}
		return changed
	})
}

func (b *statusBook) waiting(account string, flow config.Flow, authURL, userCode string) {
	b.update(account, func(a *AccountStatus) bool {
		changed := a.State != StateWaiting || a.AuthURL != authURL || a.UserCode != userCode
		if flow == "" {
			flow = a.Flow
		}
		*a = AccountStatus{State: StateWaiting, Flow: flow, Since: a.Since, AuthURL: authURL, UserCode: userCode}
		return changed
	})
}

func (b *statusBook) failing(account string, flow config.Flow, reason string) {
	b.update(account, func(a *AccountStatus) bool {
		changed := a.State != StateFailing || a.Reason != reason
		*a = AccountStatus{State: StateFailing, Flow: flow, Since: a.Since, Reason: reason}
		return changed
	})
}
