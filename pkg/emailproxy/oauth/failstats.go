package oauth

import (
	"sync"
	"time"
)

// failureWindow is how far back the status file counts failed logins: an
// hour, so `status --check` can warn about a storm while it lasts and stop
// an hour after it ends. Counts start with the engine (nothing carries over
// a restart), so right after one they cover less.
const failureWindow = time.Hour

// failureSlot is the window's resolution: the count is kept per minute.
const failureSlot = time.Minute

const failureSlots = int(failureWindow / failureSlot)

// Bounds of what the failed-login counts keep. Entries exist only for
// names the engine knows (a status entry, stored tokens, a section of
// their own) and for catch-all sections, so maxFailureEntries (the status
// file's own bound) is rarely reached; per entry, the distinct client
// addresses (and, for a catch-all section, login names) counted are capped,
// and a count at the cap means at least that many.
const (
	maxFailureEntries = maxStatusAccounts
	maxFailureAddrs   = 64
	maxFailureNames   = 64
)

// FailedLogins sums up the failed logins of one account (Status.FailedLogins)
// or of the unknown names of one catch-all section
// (Status.CatchAllFailedLogins) over the hour before the file was written.
// A failed login is a wrong password, or a login the guard refused before
// checking it (Refused). It never changes the account's state.
type FailedLogins struct {
	// LastHour is how many failed logins there were in the last hour.
	LastHour int `json:"last_hour"`
	// Refused is how many of them the guard refused without checking the
	// password: too many waiting from one address, or a new password not
	// relayed because the provider refused one moments before.
	Refused int `json:"refused,omitempty"`
	// Addresses is how many distinct client addresses they came from
	// (AddressesCapped: at least that many; only maxFailureAddrs are told
	// apart).
	Addresses       int  `json:"addresses"`
	AddressesCapped bool `json:"addresses_capped,omitempty"`
	// Names (catch-all sections only): how many distinct login names,
	// capped the same way (NamesCapped).
	Names       int  `json:"names,omitempty"`
	NamesCapped bool `json:"names_capped,omitempty"`
	// LastAddress and Last: the most recent failed login.
	LastAddress string    `json:"last_address"`
	Last        time.Time `json:"last"`
	// DelayedUntil: until when the guard delays the next attempts of the
	// addresses that failed (absent when it delays none). A reader compares
	// it with its own clock: it holds however stale the file is.
	DelayedUntil time.Time `json:"delayed_until,omitzero"`
}

// failureRecord is one entry's counts.
type failureRecord struct {
	slots    [failureSlots]failureSlotCount
	addrs    map[string]time.Time // last failure per address
	names    map[string]time.Time // catch-all entries: last failure per name
	addrMore time.Time            // last failure from an address not told apart
	nameMore time.Time
	lastAddr string
	last     time.Time
	// written: when a failure-driven write of the status file last carried
	// this record (zero: never).
	written time.Time
}

type failureSlotCount struct {
	minute     int64 // which minute (Unix minutes) the counts are of
	n, refused int
}

// failureBook keeps the failed-login counts the status file shows, per
// account and per catch-all section.
type failureBook struct {
	mu       sync.Mutex
	accts    map[string]*failureRecord
	catchAll map[string]*failureRecord
}

func newFailureBook() *failureBook {
	return &failureBook{accts: map[string]*failureRecord{}, catchAll: map[string]*failureRecord{}}
}

// note counts a failed login of account from addr at now. section is the
// catch-all section the name was served by when the name is unknown (no
// status entry, tokens or section of its own): it is counted under the
// section, so names a client invents add no entries. It returns when the
// entry was last carried by a failure-driven write (zero: never).
func (fb *failureBook) note(account, section, addr string, refused bool, now time.Time) (written time.Time) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	m, key := fb.accts, account
	if section != "" {
		m, key = fb.catchAll, section
	}
	r := m[key]
	if r == nil {
		if len(m) >= maxFailureEntries {
			evictFailures(m, now)
		}
		r = &failureRecord{addrs: map[string]time.Time{}}
		if section != "" {
			r.names = map[string]time.Time{}
		}
		m[key] = r
	}
	minute := now.Unix() / int64(failureSlot/time.Second)
	s := &r.slots[minute%int64(failureSlots)]
	if s.minute != minute {
		*s = failureSlotCount{minute: minute}
	}
	s.n++
	if refused {
		s.refused++
	}
	r.last, r.lastAddr = now, addr
	if !remember(r.addrs, addr, maxFailureAddrs, now) {
		r.addrMore = now
	}
	if r.names != nil && !remember(r.names, account, maxFailureNames, now) {
		r.nameMore = now
	}
	return r.written
}

// markWritten records that the status file written at now carries every
// record's failures so far.
func (fb *failureBook) markWritten(now time.Time) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	for _, m := range []map[string]*failureRecord{fb.accts, fb.catchAll} {
		for _, r := range m {
			if r.last.After(r.written) {
				r.written = now
			}
		}
	}
}

// remember sets m[k] = now unless m is full of keys seen within the
// window; it reports whether k is counted.
func remember(m map[string]time.Time, k string, limit int, now time.Time) bool {
	if _, ok := m[k]; !ok && len(m) >= limit {
		for x, t := range m {
			if now.Sub(t) >= failureWindow {
				delete(m, x)
			}
		}
		if len(m) >= limit {
			return false
		}
	}
	m[k] = now
	return true
}

// evictFailures drops the records with nothing in the window, or else the
// one whose last failure is oldest.
func evictFailures(m map[string]*failureRecord, now time.Time) {
	var oldest string
	for k, r := range m {
		if now.Sub(r.last) >= failureWindow {
			delete(m, k)
			continue
		}
		if oldest == "" || r.last.Before(m[oldest].last) {
			oldest = k
		}
	}
	if len(m) >= maxFailureEntries && oldest != "" {
		delete(m, oldest)
	}
}

// snapshot sums up the window before now and forgets records that have
// nothing in it. delayEnd says until when the guard delays the given
// addresses' attempts for the account ("" for a catch-all entry).
func (fb *failureBook) snapshot(now time.Time, delayEnd func(account string, addrs []string) time.Time) (accts, catchAll map[string]FailedLogins) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	sum := func(m map[string]*failureRecord, catch bool) map[string]FailedLogins {
		var out map[string]FailedLogins
		for k, r := range m {
			f := r.summary(now)
			if f.LastHour == 0 {
				delete(m, k)
				continue
			}
			if delayEnd != nil {
				account := k
				if catch {
					account = ""
				}
				addrs := make([]string, 0, len(r.addrs))
				for a, t := range r.addrs {
					if now.Sub(t) < failureWindow {
						addrs = append(addrs, a)
					}
				}
				if end := delayEnd(account, addrs); end.After(now) {
					f.DelayedUntil = end.UTC()
				}
			}
			if out == nil {
				out = map[string]FailedLogins{}
			}
			out[k] = f
		}
		return out
	}
	return sum(fb.accts, false), sum(fb.catchAll, true)
}

func (r *failureRecord) summary(now time.Time) FailedLogins {
	var f FailedLogins
	minute := now.Unix() / int64(failureSlot/time.Second)
	for _, s := range r.slots {
		if s.n > 0 && minute-s.minute < int64(failureSlots) && s.minute <= minute {
			f.LastHour += s.n
			f.Refused += s.refused
		}
	}
	if f.LastHour == 0 {
		return f
	}
	count := func(m map[string]time.Time) int {
		n := 0
		for _, t := range m {
			if now.Sub(t) < failureWindow {
				n++
			}
		}
		return n
	}
	f.Addresses = count(r.addrs)
	f.AddressesCapped = now.Sub(r.addrMore) < failureWindow
	if r.names != nil {
		f.Names = count(r.names)
		f.NamesCapped = now.Sub(r.nameMore) < failureWindow
	}
	f.LastAddress, f.Last = r.lastAddr, r.last.UTC().Truncate(time.Second)
	return f
}
