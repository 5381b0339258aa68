package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"
)

// TrustFileName is the file, beside the status file in the state
// directory, where the guard keeps the client addresses that logged in to
// each account with its password (see guard), so the mailer's first login
// after a restart still goes ahead of guesses.
const TrustFileName = "trusted-clients.json"

// TrustVersion is the trust file's schema version.
const TrustVersion = 1

// trustFileMode: the file names accounts and client addresses, which
// nobody but the service needs to read.
const trustFileMode = 0o600

// Bounds of the trusted addresses. An entry needs a correct password to
// appear, so they only bound what an unusual installation (many mailers,
// changing addresses) accumulates.
const (
	maxTrustPerAccount = 16
	maxTrustPairs      = 4096
	// trustUnused: a pair without a success for this long is forgotten.
	trustUnused = 90 * 24 * time.Hour
	// trustRefresh: a success rewrites the file for a known pair only when
	// its recorded time is older than this, so logins do not each cost a
	// write.
	trustRefresh = 24 * time.Hour
)

// trustFile is the JSON document:
//
//	{
//	  "version": 1,
//	  "trusted": [
//	    {"account": "alice@example.com", "address": "127.0.0.1",
//	     "last_success": "2025-05-01T10:00:00Z"},
//	    {"account": "bob@example.com", "address": "192.0.2.7",
//	     "last_success": "2025-04-30T08:00:00Z", "failed_since": true}
//	  ]
//	}
//
// failed_since: a login from the address failed for the account after that
// success; it is not trusted until its next success.
type trustFile struct {
	Version int          `json:"version"`
	Trusted []trustEntry `json:"trusted"`
}

type trustEntry struct {
	Account     string    `json:"account"`
	Address     string    `json:"address"`
	LastSuccess time.Time `json:"last_success"`
	FailedSince bool      `json:"failed_since,omitempty"`
}

type trustPair struct{ account, addr string }

type trustState struct {
	last   time.Time
	failed bool
}

// trustStore persists the guard's trusted pairs. The guard owns the map
// (under its mutex) and hands snapshots here to write.
type trustStore struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex // serialises writes
	written uint64     // generation of the last snapshot written
}

// load reads path. A missing file is no trust; an unreadable or corrupt
// one is no trust and one warning, never an error: the file only orders
// logins, it decides none.
func (s *trustStore) load(now time.Time) map[trustPair]*trustState {
	out := map[trustPair]*trustState{}
	if s.path == "" {
		return out
	}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return out
	}
	var f trustFile
	if err == nil {
		err = json.Unmarshal(data, &f)
		if err == nil && f.Version != TrustVersion {
			err = fmt.Errorf("version %d, this orbit reads version %d", f.Version, TrustVersion)
		}
	}
	if err != nil {
		s.log.Warn(fmt.Sprintf("cannot read the trusted client addresses in %s: %v; starting with none (the mailer's first login per account is ranked like any other until it succeeds, and the file is rewritten then)", s.path, err),
			"path", s.path, "reason", err.Error())
		return out
	}
	for _, e := range f.Trusted {
		if e.Account == "" || e.Address == "" || now.Sub(e.LastSuccess) > trustUnused {
			continue
		}
		out[trustPair{e.Account, e.Address}] = &trustState{last: e.LastSuccess, failed: e.FailedSince}
	}
	bound(out, now)
	return out
}

// bound drops pairs unused for trustUnused, then the oldest beyond
// maxTrustPerAccount per account and maxTrustPairs in all.
func bound(m map[trustPair]*trustState, now time.Time) {
	type kv struct {
		p trustPair
		s *trustState
	}
	var all []kv
	for p, s := range m {
		if now.Sub(s.last) > trustUnused {
			delete(m, p)
			continue
		}
		all = append(all, kv{p, s})
	}
	if len(all) <= maxTrustPerAccount && len(all) <= maxTrustPairs {
		return
	}
	// Newest first: what is kept is the head.
	slices.SortFunc(all, func(x, y kv) int { return y.s.last.Compare(x.s.last) })
	per := map[string]int{}
	kept := 0
	for _, e := range all {
		per[e.p.account]++
		if per[e.p.account] > maxTrustPerAccount || kept >= maxTrustPairs {
			delete(m, e.p)
			continue
		}
		kept++
	}
}

// snapshot is the file's content for m, sorted so that equal states write
// equal files.
func snapshot(m map[trustPair]*trustState) trustFile {
	f := trustFile{Version: TrustVersion, Trusted: []trustEntry{}}
	for p, s := range m {
		f.Trusted = append(f.Trusted, trustEntry{Account: p.account, Address: p.addr, LastSuccess: s.last.UTC().Truncate(time.Second), FailedSince: s.failed})
	}
	slices.SortFunc(f.Trusted, func(x, y trustEntry) int {
		if x.Account != y.Account {
			if x.Account < y.Account {
				return -1
			}
			return 1
		}
		if x.Address < y.Address {
			return -1
		}
		if x.Address > y.Address {
			return 1
		}
		return 0
	})
	return f
}

// write stores f (generation gen; older generations than the last written
// are dropped) atomically at mode 0600 whatever the old file's mode. A
// failure is logged: it costs only the ranking after the next restart.
func (s *trustStore) write(f trustFile, gen uint64) {
	if s.path == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen <= s.written {
		return
	}
	if err := writeStateFile(s.path, f, trustFileMode); err != nil {
		s.log.Warn(fmt.Sprintf("cannot write the trusted client addresses to %s: %v; after a restart the mailer's first login per account is ranked like any other", s.path, err),
			"path", s.path, "reason", err.Error())
		return
	}
	s.written = gen
}
