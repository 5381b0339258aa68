package tokens

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
}

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
	s := &FileStore{path: path, codec: &Codec{}, now: time.Now}
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
	doc, err := s.read()
	if err != nil {
		return Record{}, err
	}
	cur, err := entryOf(doc, account)
	if err != nil {
		return Record{}, s.wrap(account, err)
	}
	rec, rotate, err := s.codec.Open(ctx, account, password, cur)
	if err != nil {
		return Record{}, s.wrap(account, err)
	}
	if rotate {
		if err := s.rotate(ctx, account, password, cur, rec); err != nil {
			s.log.Warn("token store: could not re-encrypt legacy tokens; they stay readable and the next login tries again",
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
	return s.update(ctx, func(doc *iniDoc) (bool, error) {
		now, err := entryOf(doc, account)
		if err != nil || now != old {
			// Someone wrote the entry since we read it; theirs is newer.
			return false, nil
		}
		setEntry(doc, account, fresh)
		return true, nil
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
	if doc, err := s.read(); err == nil {
		if cur, err := entryOf(doc, account); err == nil {
			salt = s.codec.reusableSalt(account, password, cur)
		}
	}
	sealed, err := s.codec.Seal(ctx, account, password, rec, salt)
	if err != nil {
		return s.wrap(account, err)
	}
	return s.update(ctx, func(doc *iniDoc) (bool, error) {
		setEntry(doc, account, sealed)
		return true, nil
	})
}

// Delete removes the account's token keys, salt and iteration count (and
// the section, when nothing else is left in it). Deleting an account that
// has no entry is not an error.
func (s *FileStore) Delete(ctx context.Context, account string) error {
	return s.update(ctx, func(doc *iniDoc) (bool, error) {
		if doc.section(account) == nil {
			return false, nil
		}
		doc.setKeys(account, managedKeys, nil)
		doc.removeIfEmpty(account)
		return true, nil
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
	in := Sealed{
		Salt:                  t.TokenSalt,
		Iterations:            t.TokenIterations,
		AccessToken:           t.AccessToken,
		AccessTokenExpiry:     t.AccessTokenExpiry,
		RefreshToken:          t.RefreshToken,
		LastActivity:          t.LastActivity,
		ClientSecretEncrypted: clientSecretEncrypted,
	}
	if !in.HasSecrets() {
		return ImportNone, nil
	}
	if in.Salt == "" {
		return ImportNone, fmt.Errorf("config section [%s] holds encrypted tokens but no token_salt, so no password can open them: remove its access_token/refresh_token keys and authorise the account again: %w", account, ErrCorrupt)
	}
	if _, err := decodeSalt(in.Salt); err != nil {
		return ImportNone, fmt.Errorf("config section [%s]: %w: %w", account, ErrCorrupt, err)
	}
	result := ImportNone
	err := s.update(ctx, func(doc *iniDoc) (bool, error) {
		cur, err := entryOf(doc, account)
		if err == nil {
			switch {
			case cur == in:
				result = ImportSame
				return false, nil
			case !newer(in, cur):
				result = ImportStoreNewer
				return false, nil
			}
		}
		setEntry(doc, account, in)
		result = Imported
		return true, nil
	})
	if err != nil {
		return ImportNone, err
	}
	return result, nil
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
	doc, err := s.read()
	if err != nil {
		return Summary{}, err
	}
	e, err := entryOf(doc, account)
	if err != nil {
		return Summary{}, s.wrap(account, err)
	}
	return summarise(account, e), nil
}

// Summaries describes every account that has an entry, sorted by name.
// Unreadable entries are skipped here; Summary(account) reports why.
func (s *FileStore) Summaries() ([]Summary, error) {
	doc, err := s.read()
	if err != nil {
		return nil, err
	}
	names := accountsIn(doc)
	out := make([]Summary, 0, len(names))
	for _, n := range names {
		if e, err := entryOf(doc, n); err == nil {
			out = append(out, summarise(n, e))
		}
	}
	return out, nil
}

// Accounts lists the accounts whose sections hold encrypted tokens, sorted.
func (s *FileStore) Accounts() ([]string, error) {
	doc, err := s.read()
	if err != nil {
		return nil, err
	}
	return accountsIn(doc), nil
}

func accountsIn(doc *iniDoc) []string {
	var names []string
	for _, sec := range doc.sections {
		if !config.IsAccountSection(sec.name) || slices.Contains(names, sec.name) {
			continue
		}
		v := sec.values()
		if v[keyAccess] != "" || v[keyRefresh] != "" || v[keyClientSecret] != "" {
			names = append(names, sec.name)
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

// read loads the file without locking; a missing file is an empty store.
func (s *FileStore) read() (*iniDoc, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return &iniDoc{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading token store: %w (the proxy needs read access to it; check its owner and mode)", err)
	}
	return parseINI(string(data)), nil
}

// update runs change on the file's current content under the write lock
// and, when change reports a modification, replaces the file atomically.
func (s *FileStore) update(ctx context.Context, change func(*iniDoc) (bool, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
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
	doc, err := s.read()
	if err != nil {
		return err
	}
	changed, err := change(doc)
	if err != nil || !changed {
		return err
	}
	if err := s.writeFile(s.path, doc.render()); err != nil {
		return fmt.Errorf("writing token store %s: %w (the previous file is unchanged)", s.path, err)
	}
	return nil
}

func writeAtomic(path string, data []byte) error {
	return renameio.WriteFile(path, data, 0o600,
		renameio.WithStaticPermissions(0o600),
		// The temporary file holds secrets too: keep it beside the store,
		// in the store's private directory, not in $TMPDIR.
		renameio.WithTempDir(filepath.Dir(path)))
}

// entryOf reads an account's section. ErrNotFound when there is none or it
// holds no encrypted value; ErrCorrupt when token_iterations is not a
// positive number.
func entryOf(doc *iniDoc, account string) (Sealed, error) {
	sec := doc.section(account)
	if sec == nil {
		return Sealed{}, ErrNotFound
	}
	v := sec.values()
	e := Sealed{
		Salt:                  v[keySalt],
		AccessToken:           v[keyAccess],
		RefreshToken:          v[keyRefresh],
		ClientSecretEncrypted: v[keyClientSecret],
		AccessTokenExpiry:     epochValue(v[keyAccessExpiry]),
		LastActivity:          epochValue(v[keyLastActivity]),
	}
	if !e.HasSecrets() {
		return Sealed{}, ErrNotFound
	}
	if it := v[keyIterations]; it != "" {
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

func setEntry(doc *iniDoc, account string, e Sealed) {
	set := make(map[string]string, len(managedKeys))
	put := func(k, v string) {
		if v != "" {
			set[k] = v
		}
	}
	put(keySalt, e.Salt)
	if e.Iterations > 0 {
		set[keyIterations] = strconv.Itoa(e.Iterations)
	}
	put(keyAccess, e.AccessToken)
	if e.AccessTokenExpiry != 0 {
		set[keyAccessExpiry] = strconv.FormatInt(e.AccessTokenExpiry, 10)
	}
	put(keyRefresh, e.RefreshToken)
	if e.LastActivity != 0 {
		set[keyLastActivity] = strconv.FormatInt(e.LastActivity, 10)
	}
	put(keyClientSecret, e.ClientSecretEncrypted)
	doc.setKeys(account, managedKeys, set)
}
