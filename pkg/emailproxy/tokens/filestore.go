package tokens

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofrs/flock"
	"github.com/google/renameio/v2"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

// DefaultPath is where orbit keeps the token cache file. The directory is
// the proxy's own state directory; the file has the format of the Python
// proxy's `--cache-store FILE`, so either engine can be pointed at it.
const DefaultPath = "/var/lib/orbit/email-oauth2-proxy/tokens.cache"

// The cache-file keys, as the Python proxy names them. managedKeys is every
// key a Put or Delete owns; others in a section are left alone.
const (
	keySalt         = "token_salt"
	keyIterations   = "token_iterations"
	keyAccess       = "access_token"
	keyAccessExpiry = "access_token_expiry"
	keyRefresh      = "refresh_token"
	keyLastActivity = "last_activity"
	keyClientSecret = "client_secret_encrypted"
)

var managedKeys = []string{keySalt, keyIterations, keyAccess, keyAccessExpiry, keyRefresh, keyLastActivity, keyClientSecret}

// lockRetry is how often a writer polls a lock held by another process.
const lockRetry = 20 * time.Millisecond

// FileStore is the token cache file: an INI file with one [user@domain]
// section per account holding only the written-back token keys.
//
// Writers take an exclusive flock on the lock file, re-read the file under
// it, change only their account's section and replace the file atomically
// (write a temporary file, fsync, rename), so two processes never lose each
// other's update and a crash leaves either the old or the new file. Readers
// take no lock: the rename means they always see one whole file.
//
// The expensive key derivation happens before the lock is taken, so a
// writer holds the lock for milliseconds, not for PBKDF2.
type FileStore struct {
	path     string
	lockPath string
	codec    *Codec
	log      *slog.Logger
	now      func() time.Time
	// writeFile replaces the file; tests swap it to simulate a crash.
	writeFile func(path string, data []byte) error

	// mu orders this process's writers so they queue on a mutex instead of
	// polling the flock; the flock orders processes.
	mu sync.Mutex

	// pending holds, per account, the newest entry whose write failed
	// (disk full, read-only state directory). It overlays the file for
	// Get, is written first by every later write, and is retried on a
	// timer until a write succeeds, so a rotated refresh token is not lost
	// with the login that received it. Changed under mu and pmu; read
	// under pmu.
	pmu        sync.Mutex
	pending    map[string]Sealed
	retry      *time.Timer
	retryDelay time.Duration
	// retryMin and retryMax bound the retry back-off (tests shorten them).
	retryMin, retryMax time.Duration
}

// Retry back-off of unsaved entries: doubling from DefaultRetryMin to
// DefaultRetryMax.
const (
	DefaultRetryMin = 5 * time.Second
	DefaultRetryMax = 5 * time.Minute
)

var _ Store = (*FileStore)(nil)

// Option configures a FileStore.
type Option func(*FileStore)

// WithLockPath sets the lock file (default: the store's path + ".lock").
// Pass the config writer's lock path to make token writes and config
// writes exclude each other. Never call a store method while holding that
// same lock yourself: flock locks of two descriptors in one process
// exclude each other, so it would wait for itself until ctx ends.
func WithLockPath(p string) Option { return func(s *FileStore) { s.lockPath = p } }

// WithCodec sets the codec (default: the zero Codec, i.e. the real
// iteration counts and the process-wide key cache).
func WithCodec(c *Codec) Option { return func(s *FileStore) { s.codec = c } }

// WithLogger sets where the store reports problems it does not return, such
// as a failed re-encryption of legacy tokens (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *FileStore) { s.log = l } }

// NewFileStore opens (lazily: nothing is touched until the first call) the
// cache file at path; DefaultPath when path is empty.
func NewFileStore(path string, opts ...Option) *FileStore {
	if path == "" {
		path = DefaultPath
	}
	s := &FileStore{path: path, codec: &Codec{}, now: time.Now, pending: map[string]Sealed{},
		retryMin: DefaultRetryMin, retryMax: DefaultRetryMax}
	for _, o := range opts {
		o(s)
	}
	if s.lockPath == "" {
		s.lockPath = path + ".lock"
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.codec == nil {
		s.codec = &Codec{}
	}
	if s.writeFile == nil {
		s.writeFile = writeAtomic
	}
	return s
}

// Path is the cache file.
func (s *FileStore) Path() string { return s.path }

// LockPath is the lock file writers take.
func (s *FileStore) LockPath() string { return s.lockPath }

// Get decrypts the account's tokens. Values that only open under a legacy
// iteration count are re-encrypted at Iterations and written back before
// Get returns; if that write fails the tokens are still returned and the
// failure is logged, since the login itself can go on.
func (s *FileStore) Get(ctx context.Context, account, password string) (Record, error) {
	if cur, ok := s.pendingEntry(account); ok {
		// Newer than anything on disk: this process's last save of the
		// account failed and is still being retried.
		rec, _, err := s.codec.Open(ctx, account, password, cur)
		if err != nil {
			return Record{}, s.wrap(account, err)
		}
		return rec, nil
	}
	snap, err := s.read()
	if err != nil {
		return Record{}, err
	}
	if snap.bad != nil {
		// Treated as no tokens, so that the engine authorises again and
		// the save that follows replaces the file (keeping it aside).
		return Record{}, fmt.Errorf("%w: %w", ErrNotFound, s.badFile(snap.bad))
	}
	cur, err := entryOf(snap, account)
	if err != nil {
		return Record{}, s.wrap(account, err)
	}
	rec, rotate, err := s.codec.Open(ctx, account, password, cur)
	if err != nil {
		return Record{}, s.wrap(account, err)
	}
	if rotate {
		if err := s.rotate(ctx, account, password, cur, rec); err != nil {
			s.log.Warn(fmt.Sprintf("token store %s: could not re-encrypt the legacy tokens of %s: %v; they stay readable and the next login tries again", s.path, account, err),
				"account", account, "path", s.path, "iterations", s.codec.writeIterations(), "error", err)
		}
	}
	return rec, nil
}

func (s *FileStore) rotate(ctx context.Context, account, password string, old Sealed, rec Record) error {
	fresh, err := s.codec.Seal(ctx, account, password, rec, old.Salt)
	if err != nil {
		return err
	}
	return s.update(ctx, func(e *config.Editor) (bool, error) {
		now, err := entryOf(e, account)
		if err != nil || now != old {
			// Someone wrote the entry since we read it; theirs is newer.
			return false, nil
		}
		return true, setEntry(e, account, fresh)
	})
}

// Put encrypts rec with password and stores it as the account's entry,
// replacing all its token keys. The salt is kept when password is the one
// the entry was sealed with (and its key is cached); a new password gets a
// new salt. A zero rec.LastActivity is stored as now.
func (s *FileStore) Put(ctx context.Context, account, password string, rec Record) error {
	if account == "" {
		return errors.New("token store: Put needs an account name")
	}
	if rec.LastActivity.IsZero() {
		rec.LastActivity = s.now()
	}
	salt := ""
	if cur, ok := s.pendingEntry(account); ok {
		salt = s.codec.reusableSalt(account, password, cur)
	} else if snap, err := s.read(); err == nil {
		if cur, err := entryOf(snap, account); err == nil {
			salt = s.codec.reusableSalt(account, password, cur)
		}
	}
	sealed, err := s.codec.Seal(ctx, account, password, rec, salt)
	if err != nil {
		return s.wrap(account, err)
	}
	// One write replaces every token key of the account (salt included),
	// so replacing another password's tokens needs no Delete first and a
	// crash leaves either the old entry or the new one.
	return s.updateKeeping(ctx, account, sealed, func(e *config.Editor) (bool, error) {
		return true, setEntry(e, account, sealed)
	})
}

// ErrSaveDeferred is wrapped by a Put whose write failed: the entry is kept
// in memory (Get returns it) and written by the next write that succeeds,
// retried in the background until then.
var ErrSaveDeferred = errors.New("kept in memory and retried until a save succeeds")

// NeedsKeyDerivation reports whether Get(account, password) would run
// PBKDF2: false when the account has no entry (nothing to open) or every
// key Get may try is already in the key cache. The token layer uses it to
// send only expensive logins through its admission control.
func (s *FileStore) NeedsKeyDerivation(account, password string) bool {
	cur, ok := s.pendingEntry(account)
	if !ok {
		snap, err := s.read()
		if err != nil || snap.bad != nil {
			return false // Get fails without deriving
		}
		if cur, err = entryOf(snap, account); err != nil {
			return false
		}
	}
	if !cur.HasSecrets() || cur.Salt == "" {
		return false
	}
	for _, n := range s.codec.candidates(cur.Iterations) {
		if !s.codec.keys().Cached(account, password, cur.Salt, n) {
			return true
		}
	}
	return false
}

// Unsaved lists the accounts whose newest entry is only in memory.
func (s *FileStore) Unsaved() []string {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	out := make([]string, 0, len(s.pending))
	for a := range s.pending {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// Flush writes the entries kept in memory after failed saves now; nil when
// there are none or the write succeeded. The engine calls it before exit.
func (s *FileStore) Flush(ctx context.Context) error {
	if len(s.Unsaved()) == 0 {
		return nil
	}
	return s.update(ctx, func(*config.Editor) (bool, error) { return false, nil })
}

func (s *FileStore) pendingEntry(account string) (Sealed, bool) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	e, ok := s.pending[account]
	return e, ok
}

// scheduleRetryLocked arms the retry timer (s.pmu held).
func (s *FileStore) scheduleRetryLocked() {
	if s.retry != nil || len(s.pending) == 0 {
		return
	}
	if s.retryDelay == 0 {
		s.retryDelay = s.retryMin
	}
	delay := s.retryDelay
	s.retryDelay = min(2*s.retryDelay, s.retryMax)
	s.retry = time.AfterFunc(delay, func() {
		s.pmu.Lock()
		s.retry = nil
		s.pmu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Flush(ctx); err != nil {
			s.log.Warn(fmt.Sprintf("token store %s: still cannot save the tokens of %s kept in memory: %v; retrying", s.path, strings.Join(s.Unsaved(), ", "), err),
				"path", s.path, "accounts", strings.Join(s.Unsaved(), ","), "error", err)
		} else {
			s.log.Info(fmt.Sprintf("token store %s: saved the tokens that were kept in memory after a failed save", s.path), "path", s.path)
		}
	})
}

// Delete removes the account's token keys, salt and iteration count (and
// the section, when nothing else is left in it). Deleting an account that
// has no entry is not an error.
func (s *FileStore) Delete(ctx context.Context, account string) error {
	// The caller wants the account's tokens gone, including any that only
	// live in memory.
	s.mu.Lock()
	s.pmu.Lock()
	delete(s.pending, account)
	s.pmu.Unlock()
	s.mu.Unlock()
	return s.update(ctx, func(e *config.Editor) (bool, error) {
		changed := false
		for _, k := range managedKeys {
			changed = e.Delete(account, k) || changed
		}
		if e.HasSection(account) && len(e.Keys(account)) == 0 {
			changed = e.DeleteSection(account) || changed
		}
		return changed, nil
	})
}

// ImportResult says what Import did with inline tokens.
type ImportResult int

const (
	// ImportNone: there were no inline tokens to import.
	ImportNone ImportResult = iota
	// Imported: the inline tokens are now the store's entry.
	Imported
	// ImportSame: the store already holds exactly these values.
	ImportSame
	// ImportStoreNewer: the store holds an entry at least as recent
	// (by last_activity, then access_token_expiry); it was kept and the
	// inline tokens were not used.
	ImportStoreNewer
)

func (r ImportResult) String() string {
	switch r {
	case ImportNone:
		return "no inline tokens"
	case Imported:
		return "imported"
	case ImportSame:
		return "already in the store"
	case ImportStoreNewer:
		return "store has newer tokens"
	}
	return "ImportResult(" + strconv.Itoa(int(r)) + ")"
}

// Import seeds the store with tokens a Python proxy wrote inline into its
// config file (clientSecretEncrypted is the account's
// client_secret_encrypted, sealed with the same salt). The values are copied
// as they are (no password is needed; a legacy count is rotated at the next
// Get). They are imported when the store has no readable entry for the
// account or an older one; the result says which case applied, so a caller
// can log it instead of dropping the tokens silently.
func (s *FileStore) Import(ctx context.Context, account string, t config.InlineTokens, clientSecretEncrypted string) (ImportResult, error) {
	o := s.ImportAll(ctx, []InlineImport{{Account: account, Tokens: t, ClientSecretEncrypted: clientSecretEncrypted}})[0]
	return o.Result, o.Err
}

func newer(a, b Sealed) bool {
	if a.LastActivity != b.LastActivity {
		return a.LastActivity > b.LastActivity
	}
	return a.AccessTokenExpiry > b.AccessTokenExpiry
}

// Summary is what `status` shows about an account without any password:
// which tokens exist and their plain timestamps. It holds no secret.
type Summary struct {
	Account           string
	HasAccessToken    bool
	HasRefreshToken   bool
	HasClientSecret   bool
	AccessTokenExpiry time.Time // zero when unknown
	LastActivity      time.Time // zero when unknown
	// Iterations is the stored count (LegacyIterations when absent); lower
	// than Iterations means the next login re-encrypts.
	Iterations int
}

// Summary describes one account's entry; ErrNotFound when it has none.
func (s *FileStore) Summary(account string) (Summary, error) {
	snap, err := s.read()
	if err != nil {
		return Summary{}, err
	}
	if snap.bad != nil {
		return Summary{}, s.badFile(snap.bad)
	}
	e, err := entryOf(snap, account)
	if err != nil {
		return Summary{}, s.wrap(account, err)
	}
	return summarise(account, e), nil
}

// Summaries describes every account that has an entry, sorted by name.
// Unreadable entries are skipped here; Summary(account) reports why.
func (s *FileStore) Summaries() ([]Summary, error) {
	snap, err := s.read()
	if err != nil {
		return nil, err
	}
	if snap.bad != nil {
		return nil, s.badFile(snap.bad)
	}
	names := accountsIn(snap)
	out := make([]Summary, 0, len(names))
	for _, n := range names {
		if e, err := entryOf(snap, n); err == nil {
			out = append(out, summarise(n, e))
		}
	}
	return out, nil
}

// Accounts lists the accounts whose sections hold encrypted tokens, sorted.
func (s *FileStore) Accounts() ([]string, error) {
	snap, err := s.read()
	if err != nil {
		return nil, err
	}
	if snap.bad != nil {
		return nil, s.badFile(snap.bad)
	}
	return accountsIn(snap), nil
}

func accountsIn(snap *snapshot) []string {
	var names []string
	for _, name := range snap.ini.Sections() {
		if !config.IsAccountSection(name) {
			continue
		}
		if own(snap, name, keyAccess) != "" || own(snap, name, keyRefresh) != "" || own(snap, name, keyClientSecret) != "" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

func summarise(account string, e Sealed) Summary {
	n := e.Iterations
	if n == 0 {
		n = LegacyIterations
	}
	return Summary{
		Account:           account,
		HasAccessToken:    e.AccessToken != "",
		HasRefreshToken:   e.RefreshToken != "",
		HasClientSecret:   e.ClientSecretEncrypted != "",
		AccessTokenExpiry: fromEpoch(e.AccessTokenExpiry),
		LastActivity:      fromEpoch(e.LastActivity),
		Iterations:        n,
	}
}

// wrap puts the store and account in front of an error, with a way out for
// the errors a person has to act on.
func (s *FileStore) wrap(account string, err error) error {
	if errors.Is(err, ErrCorrupt) {
		return fmt.Errorf("token store %s, account %s: %w (remove the [%s] section's token keys, or the whole section, and authorise the account again)", s.path, account, err, account)
	}
	return fmt.Errorf("token store %s, account %s: %w", s.path, account, err)
}

// snapshot is the cache file as one lock-free read saw it. The file is read
// with the config package's reader, the one reader of configparser's
// dialect in orbit, so it means the same to both engines.
type snapshot struct {
	ini *config.Config
	// bad is set when the Python proxy's configparser would refuse the file
	// too (a torn write of its non-atomic writer, a hand edit gone wrong);
	// ini is then empty.
	bad error

	// keysOf and keys remember the last section's key list, since an
	// entry is read key by key from one section.
	keysOf string
	keys   []string
}

// Get returns a section's own value for key. [DEFAULT] is not consulted:
// the cache file holds per-account keys only, and the editor that writes
// it sees own keys only, so reads and writes agree on what a section holds.
func (p *snapshot) Get(section, key string) (string, bool) {
	if p.keys == nil || p.keysOf != section {
		p.keysOf, p.keys = section, p.ini.Keys(section)
	}
	if !slices.Contains(p.keys, key) {
		return "", false
	}
	return p.ini.Get(section, key)
}

// sectionReader is what an entry is read from: a snapshot, or the editor
// of a write under the lock.
type sectionReader interface {
	Get(section, key string) (string, bool)
}

func own(r sectionReader, section, key string) string {
	v, _ := r.Get(section, key)
	return v
}

// read loads the file without locking; a missing file is an empty store.
func (s *FileStore) read() (*snapshot, error) {
	data, err := os.ReadFile(s.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading token store: %w (the proxy needs read access to it; check its owner and mode)", err)
	}
	c, err := config.Parse(data, s.path)
	if err != nil {
		empty, _ := config.Parse(nil, s.path)
		return &snapshot{ini: empty, bad: err}, nil
	}
	return &snapshot{ini: c}, nil
}

// badFile explains a cache file that cannot be read and what happens next.
func (s *FileStore) badFile(err error) error {
	return fmt.Errorf("token store %s cannot be read as an INI file (%w); its tokens count as missing and the next token save moves it aside to %s.unreadable-<time> and starts a new one (or fix the lines named)", s.path, err, s.path)
}

// update runs change on the file's current content under the write lock
// and, when change reports a modification, replaces the file atomically.
// The editor changes only the lines change asks it to; every other byte of
// the file is written back as it was.
func (s *FileStore) update(ctx context.Context, change func(*config.Editor) (bool, error)) error {
	return s.updateKeeping(ctx, "", Sealed{}, change)
}

// updateKeeping is update that, when the write fails, keeps entry as the
// account's pending entry (account "" keeps nothing). Entries pending from
// earlier failures are written first, whatever change does.
func (s *FileStore) updateKeeping(ctx context.Context, account string, entry Sealed, change func(*config.Editor) (bool, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pmu.Lock()
	pend := maps.Clone(s.pending)
	s.pmu.Unlock()
	if len(pend) > 0 {
		inner := change
		change = func(e *config.Editor) (bool, error) {
			changed := false
			for _, a := range slices.Sorted(maps.Keys(pend)) {
				if a == account {
					continue // superseded by this write's entry
				}
				if err := setEntry(e, a, pend[a]); err != nil {
					return false, err
				}
				changed = true
			}
			c, err := inner(e)
			return changed || c, err
		}
	}
	err := s.writeLocked(ctx, change)
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if err != nil {
		if account != "" {
			s.pending[account] = entry
			err = fmt.Errorf("%w; the new tokens are %w", err, ErrSaveDeferred)
		}
		s.scheduleRetryLocked()
		return err
	}
	// Written: what was pending when the write began is on disk now.
	for a, e := range pend {
		if cur, ok := s.pending[a]; ok && cur == e {
			delete(s.pending, a)
		}
	}
	if account != "" {
		delete(s.pending, account)
	}
	if len(s.pending) == 0 {
		s.retryDelay = 0
		if s.retry != nil {
			s.retry.Stop()
			s.retry = nil
		}
	}
	return nil
}

// writeLocked is update's read-change-write under the flock (s.mu held).
func (s *FileStore) writeLocked(ctx context.Context, change func(*config.Editor) (bool, error)) error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("creating the token store directory: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(s.lockPath), 0o700); err != nil {
		return fmt.Errorf("creating the token store lock directory: %w", err)
	}
	fl := flock.New(s.lockPath, flock.SetPermissions(0o600))
	locked, err := fl.TryLockContext(ctx, lockRetry)
	if err != nil || !locked {
		if err == nil {
			err = errors.New("lock not acquired")
		}
		return fmt.Errorf("waiting for the token store lock %s: %w (another orbit process may be writing; if none is running, the lock file can be removed)", s.lockPath, err)
	}
	defer fl.Unlock()
	data, err := os.ReadFile(s.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading token store: %w (the proxy needs read access to it; check its owner and mode)", err)
	}
	changed, ran := false, false
	edit := func(e *config.Editor) error {
		ran = true
		var err error
		changed, err = change(e)
		return err
	}
	out, err := config.Edit(data, s.path, edit)
	var bad error
	if err != nil && !ran {
		// Not one section of the file can be told from another, so none
		// can be changed alone: start afresh, keeping the old file aside.
		bad = err
		out, err = config.Edit(nil, s.path, edit)
	}
	if err != nil {
		return fmt.Errorf("updating token store %s: %w", s.path, err)
	}
	if !changed {
		return nil
	}
	if bad != nil {
		aside := s.path + ".unreadable-" + s.now().UTC().Format("20060102T150405.000000000Z")
		// A hard link, so the store itself is only ever replaced by the
		// atomic rename below and a crash in between loses nothing.
		if err := os.Link(s.path, aside); err != nil {
			return fmt.Errorf("token store %s cannot be read (%w) and could not be kept aside before starting a new one: %w", s.path, bad, err)
		}
		// It may still hold encrypted tokens: private, like the store.
		_ = os.Chmod(aside, 0o600)
		s.log.Warn(fmt.Sprintf("token store %s could not be read as INI (%v); it was kept aside as %s and a new one started, so accounts in it must be authorised again", s.path, bad, aside),
			"path", s.path, "kept_as", aside, "error", bad)
	}
	if err := s.writeFile(s.path, out); err != nil {
		return fmt.Errorf("writing token store %s: %w (the previous file is unchanged)", s.path, err)
	}
	return nil
}

// writeAtomic replaces path with data, mode 0600 whatever the old file's
// mode was. renameio.WriteFile is not used: it copies an existing file's
// mode (WithExistingPermissions), so a store once left at 0644 would stay
// readable by every local user.
func writeAtomic(path string, data []byte) error {
	pf, err := renameio.NewPendingFile(path,
		renameio.WithPermissions(0o600),
		renameio.WithStaticPermissions(0o600),
		// The temporary file holds secrets too: keep it beside the store,
		// in the store's private directory, not in $TMPDIR.
		renameio.WithTempDir(filepath.Dir(path)))
	if err != nil {
		return err
	}
	defer pf.Cleanup()
	if _, err := pf.Write(data); err != nil {
		return err
	}
	return pf.CloseAtomicallyReplace()
}

// entryOf reads an account's section. ErrNotFound when there is none or it
// holds no encrypted value; ErrCorrupt when token_iterations is not a
// positive number.
func entryOf(r sectionReader, account string) (Sealed, error) {
	e := Sealed{
		Salt:                  own(r, account, keySalt),
		AccessToken:           own(r, account, keyAccess),
		RefreshToken:          own(r, account, keyRefresh),
		ClientSecretEncrypted: own(r, account, keyClientSecret),
		AccessTokenExpiry:     epochValue(own(r, account, keyAccessExpiry)),
		LastActivity:          epochValue(own(r, account, keyLastActivity)),
	}
	if !e.HasSecrets() {
		return Sealed{}, ErrNotFound
	}
	if it := own(r, account, keyIterations); it != "" {
		n, err := strconv.Atoi(it)
		if err != nil || n <= 0 {
			return Sealed{}, fmt.Errorf("%w: token_iterations is %q, not a positive whole number", ErrCorrupt, it)
		}
		e.Iterations = n
	}
	return e, nil
}

// epochValue reads a timestamp leniently: a value we cannot read is
// "unknown", which at worst makes the engine refresh a token early.
func epochValue(v string) int64 {
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) && math.Abs(f) < 1e15 {
		return int64(f)
	}
	return 0
}

// setEntry gives the account's section exactly e's token keys: each one in
// place when present, new ones after the section's last key, absent ones
// removed. The section's other keys and comments stay.
func setEntry(ed *config.Editor, account string, e Sealed) error {
	vals := [...]struct{ key, value string }{
		{keySalt, e.Salt},
		{keyIterations, positive(int64(e.Iterations))},
		{keyAccess, e.AccessToken},
		{keyAccessExpiry, nonZero(e.AccessTokenExpiry)},
		{keyRefresh, e.RefreshToken},
		{keyLastActivity, nonZero(e.LastActivity)},
		{keyClientSecret, e.ClientSecretEncrypted},
	}
	for _, kv := range vals {
		if kv.value == "" {
			ed.Delete(account, kv.key)
			continue
		}
		if err := ed.Set(account, kv.key, kv.value); err != nil {
			return fmt.Errorf("account %s: %w", account, err)
		}
	}
	return nil
}

func positive(n int64) string {
	if n <= 0 {
		return ""
	}
	return strconv.FormatInt(n, 10)
}

func nonZero(n int64) string {
	if n == 0 {
		return ""
	}
	return strconv.FormatInt(n, 10)
}
