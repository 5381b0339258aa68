// Package accountstate tells each account's state by merging what the
// engine, the token stores and the configuration know: the engine's status
// file first (while the engine that wrote it runs), then the token stores'
// plain timestamps, then the accounts the configuration names that no
// login has used yet. It is the domain half of `orbit email-oauth2-proxy
// status`, usable by anything that reports on the proxy.
package accountstate

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
)

// States besides the status file's authorised, waiting, failing.
const (
	// StateExpired: the token store holds only an access token that has
	// expired and no refresh token; the next login authorises again.
	StateExpired = "expired"
	// StateNotUsed: configured, but no login has used it yet.
	StateNotUsed = "not-used"
	// StateDisabled: the configuration file has errors in the section that
	// serves this account, so the engine refuses its logins (and serves
	// every other account); Reason lists the errors.
	StateDisabled = "disabled"
)

// Where an account's state came from.
const (
	SourceStatusFile = "status-file"
	SourceTokenStore = "token-store"
	SourceConfig     = "config"
)

// Account is one account's state.
type Account struct {
	Name         string     `json:"name"`
	State        string     `json:"state"`
	Source       string     `json:"source"`
	Flow         string     `json:"flow,omitempty"`
	Since        *time.Time `json:"since,omitempty"`
	TokenExpiry  *time.Time `json:"token_expiry,omitempty"`
	AuthURL      string     `json:"auth_url,omitempty"`
	UserCode     string     `json:"user_code,omitempty"`
	Reason       string     `json:"reason,omitempty"`
	LastActivity *time.Time `json:"last_activity,omitempty"`
	// FailedLogins: the account's failed logins in the last hour, from
	// the engine's status file; absent when none (or no engine runs).
	FailedLogins *FailedLogins `json:"failed_logins,omitempty"`
}

// FailedLogins sums up failed logins in the hour before the engine wrote
// its status file (oauth.FailedLogins): wrong passwords, and logins the
// login guard refused before checking them (Refused).
type FailedLogins struct {
	LastHour        int        `json:"last_hour"`
	Refused         int        `json:"refused,omitempty"`
	Addresses       int        `json:"addresses"`
	AddressesCapped bool       `json:"addresses_capped,omitempty"`
	Names           int        `json:"names,omitempty"`
	NamesCapped     bool       `json:"names_capped,omitempty"`
	LastAddress     string     `json:"last_address"`
	Last            *time.Time `json:"last,omitempty"`
	// DelayedUntil: the failing addresses' attempts wait until then; absent
	// once that has passed.
	DelayedUntil *time.Time `json:"delayed_until,omitempty"`
}

// CatchAllFailedLogins are the failed logins of names a catch-all section
// serves that nobody uses (no status entry, tokens or section of their
// own), counted together so that invented names add no entries.
type CatchAllFailedLogins struct {
	Section string `json:"section"`
	FailedLogins
}

// failedLoginsOf keeps what the engine counted unless its last failure is
// over an hour before now (the file was not rewritten since the storm).
func failedLoginsOf(f oauth.FailedLogins, now time.Time) (FailedLogins, bool) {
	if f.LastHour <= 0 || now.Sub(f.Last) >= time.Hour {
		return FailedLogins{}, false
	}
	out := FailedLogins{LastHour: f.LastHour, Refused: f.Refused, Addresses: f.Addresses, AddressesCapped: f.AddressesCapped,
		Names: f.Names, NamesCapped: f.NamesCapped, LastAddress: f.LastAddress, Last: tp(f.Last)}
	if f.DelayedUntil.After(now) {
		out.DelayedUntil = tp(f.DelayedUntil)
	}
	return out, true
}

// StatusFile says what the engine's status file held.
type StatusFile struct {
	Path    string     `json:"path"`
	Updated *time.Time `json:"updated,omitempty"`
	PID     int        `json:"pid,omitempty"`
	// Stale: written by an engine that no longer runs (not the unit's main
	// process, not a foreground serve); its account states are then not
	// reported as current.
	Stale bool   `json:"stale"`
	Error string `json:"error,omitempty"`
}

// Sources are the places Merge reads.
type Sources struct {
	// StatusFile is the engine's status file ("" for none).
	StatusFile string
	// TokenCache is the token cache file ("" for none).
	TokenCache string
	// ConfigPath is the configuration file, which may hold tokens too (the
	// Python proxy's default); Config is it loaded, nil when it could not
	// be, in which case the caller reports why and Merge does not repeat it.
	ConfigPath string
	Config     *config.Config
	// EnginePID is the running engine's process (0: none runs); Known says
	// whether the caller could tell what runs at all. The status file's
	// states count only while the engine that wrote it runs.
	EnginePID int
	Known     bool
	Now       time.Time
}

// Result is the merged state.
type Result struct {
	Accounts []Account
	// CatchAllFailedLogins: by catch-all section, sorted.
	CatchAllFailedLogins []CatchAllFailedLogins
	StatusFile           StatusFile
	// Unreadable lists files that could not be read for lack of
	// permission: the result is incomplete, and root can read them.
	Unreadable []string
	// Errors are the other failures to read a source (a damaged token
	// cache, say): the accounts it holds are missing from Accounts.
	Errors []error
}

// Merge reads the sources and merges them; it never fails as a whole, but
// says in Result what it could not read.
func Merge(s Sources) Result {
	r := Result{StatusFile: StatusFile{Path: s.StatusFile}}
	byName := map[string]Account{}
	failed := map[string]FailedLogins{}
	if s.StatusFile != "" {
		st, err := oauth.ReadStatus(s.StatusFile)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			r.StatusFile.Error = "the engine has not written it yet"
		case errors.Is(err, fs.ErrPermission):
			r.StatusFile.Error = "permission denied (run as root)"
			r.Unreadable = append(r.Unreadable, s.StatusFile)
		case err != nil:
			r.StatusFile.Error = err.Error()
		default:
			up := st.Updated.UTC()
			r.StatusFile.Updated, r.StatusFile.PID = &up, st.PID
			r.StatusFile.Stale = s.Known && (s.EnginePID == 0 || st.PID != s.EnginePID)
			if r.StatusFile.Stale {
				// An engine that no longer runs: what it last wrote is
				// history, not the state of anything now.
				break
			}
			for name, a := range st.Accounts {
				byName[name] = Account{
					Name: name, State: string(a.State), Source: SourceStatusFile, Flow: string(a.Flow),
					Since: tp(a.Since), TokenExpiry: tp(a.TokenExpiry), AuthURL: a.AuthURL,
					UserCode: a.UserCode, Reason: a.Reason, LastActivity: tp(a.LastActivity),
				}
			}
			for name, f := range st.FailedLogins {
				if fl, ok := failedLoginsOf(f, s.Now); ok {
					failed[name] = fl
				}
			}
			for sec, f := range st.CatchAllFailedLogins {
				if fl, ok := failedLoginsOf(f, s.Now); ok {
					r.CatchAllFailedLogins = append(r.CatchAllFailedLogins, CatchAllFailedLogins{Section: sec, FailedLogins: fl})
				}
			}
			sort.Slice(r.CatchAllFailedLogins, func(i, j int) bool { return r.CatchAllFailedLogins[i].Section < r.CatchAllFailedLogins[j].Section })
		}
	}
	// Token summaries: the cache file, and tokens written back into the
	// configuration file itself.
	summaries := map[string]tokens.Summary{}
	for _, p := range []string{s.TokenCache, s.ConfigPath} {
		if p == "" {
			continue
		}
		isConfig := p == s.ConfigPath
		if _, err := os.Stat(p); err != nil {
			switch {
			case errors.Is(err, fs.ErrPermission):
				r.Unreadable = append(r.Unreadable, p)
			case errors.Is(err, fs.ErrNotExist):
				// No tokens stored yet; the configuration's own absence is
				// the caller's to report.
			case !isConfig:
				r.Errors = append(r.Errors, fmt.Errorf("token cache: %w", err))
			}
			continue
		}
		list, err := tokens.NewFileStore(p).Summaries()
		if err != nil {
			switch {
			case isConfig && s.Config == nil:
				// The caller could not load the configuration and says why.
			case errors.Is(err, fs.ErrPermission):
				if !isConfig {
					r.Unreadable = append(r.Unreadable, p)
				}
			case isConfig:
				r.Errors = append(r.Errors, fmt.Errorf("tokens in the configuration file: %w", err))
			default:
				r.Errors = append(r.Errors, fmt.Errorf("token cache: %w", err))
			}
			continue
		}
		for _, sm := range list {
			if cur, ok := summaries[sm.Account]; !ok || sm.LastActivity.After(cur.LastActivity) {
				summaries[sm.Account] = sm
			}
		}
	}
	for name, sm := range summaries {
		if _, ok := byName[name]; ok {
			continue
		}
		a := Account{Name: name, Source: SourceTokenStore, State: string(oauth.StateAuthorised),
			TokenExpiry: tp(sm.AccessTokenExpiry), LastActivity: tp(sm.LastActivity)}
		if !sm.HasRefreshToken && (!sm.HasAccessToken || (!sm.AccessTokenExpiry.IsZero() && sm.AccessTokenExpiry.Before(s.Now))) {
			a.State = StateExpired
		}
		byName[name] = a
	}
	if cfg := s.Config; cfg != nil {
		for _, sec := range cfg.AccountSections() {
			if _, ok := byName[sec]; ok {
				continue
			}
			if config.IsCatchAllSection(sec) && len(byName) > 0 {
				continue // its accounts are listed by name
			}
			a := Account{Name: sec, State: StateNotUsed, Source: SourceConfig}
			if acct, ok := cfg.Account(sec); ok {
				a.Flow = string(acct.EffectiveFlow())
			} else if acct, ok := cfg.Account("user" + sec); ok && config.IsCatchAllSection(sec) {
				a.Flow = string(acct.EffectiveFlow())
			}
			byName[sec] = a
		}
	}
	markDisabled(s.Config, byName)
	r.Accounts = make([]Account, 0, len(byName))
	for _, a := range byName {
		if f, ok := failed[a.Name]; ok {
			a.FailedLogins = &f
		}
		r.Accounts = append(r.Accounts, a)
	}
	sort.Slice(r.Accounts, func(i, j int) bool { return r.Accounts[i].Name < r.Accounts[j].Name })
	return r
}

// markDisabled gives the accounts that the file's errors disable (as the
// engine judges them: config.ServeErrors) that state, whatever the status
// file or the token store say: their tokens may be fine, but no login for
// them succeeds until the file is fixed and reloaded. A file that is
// refused as a whole disables nothing here; the caller reports it.
func markDisabled(cfg *config.Config, byName map[string]Account) {
	if cfg == nil {
		return
	}
	fatal, disabled := cfg.ServeErrors(cfg.Validate())
	if len(fatal) > 0 || len(disabled) == 0 {
		return
	}
	for name, a := range byName {
		sec, off := disabled.For(cfg, name)
		if !off {
			if _, own := disabled[name]; !own {
				continue
			}
			sec = name
		}
		a.State, a.Reason = StateDisabled, fmt.Sprintf("[%s] has errors, so its logins are refused: %s", sec, disabled.Reason(sec))
		a.AuthURL, a.UserCode = "", ""
		byName[name] = a
	}
}

func tp(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
