package tokens

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/renameio/v2"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

func newTestStore(t testing.TB, path string, c *Codec) *FileStore {
	t.Helper()
	if c == nil {
		c = fastCodec()
	}
	return NewFileStore(path, WithCodec(c), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
}

// parseCache reads a cache file the way the store does.
func parseCache(t testing.TB, data string) *snapshot {
	t.Helper()
	c, err := config.Parse([]byte(data), "cache")
	if err != nil {
		t.Fatalf("the cache file is not configparser INI: %v\n%s", err, data)
	}
	return &snapshot{ini: c}
}

// cacheWith is a cache file holding one entry, written as the store writes.
func cacheWith(t testing.TB, account string, e Sealed) []byte {
	t.Helper()
	out, err := config.Edit(nil, "cache", func(ed *config.Editor) error { return setEntry(ed, account, e) })
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustRead(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFileStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "state", "email-oauth2-proxy")
	path := filepath.Join(dir, "tokens.cache")
	s := newTestStore(t, path, nil)

	if _, err := s.Get(ctx, "alice@example.com", "pw"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get on a missing file = %v, want ErrNotFound", err)
	}
	rec := sampleRecord()
	// Long enough that random base64 cannot contain it by chance (a
	// two-letter "pw" sometimes appeared inside the ciphertext).
	const pw = "round-trip-password-4c1d"
	if err := s.Put(ctx, "alice@example.com", pw, rec); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "alice@example.com", pw)
	if err != nil || !sameRecord(got, rec) {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if _, err := s.Get(ctx, "bob@example.com", pw); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of another account = %v, want ErrNotFound", err)
	}

	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, %v; want 0600", fi.Mode(), err)
	}
	di, err := os.Stat(dir)
	if err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v, %v; want 0700", di.Mode(), err)
	}
	text := mustRead(t, path)
	for _, secret := range []string{rec.AccessToken, rec.RefreshToken, rec.ClientSecret, pw} {
		if strings.Contains(text, secret) {
			t.Errorf("file holds %q in the clear:\n%s", secret, text)
		}
	}
	for _, want := range []string{"[alice@example.com]\n", "token_salt = ", "token_iterations = 2000\n",
		"access_token = gAAAAA", "access_token_expiry = 1900000000\n", "refresh_token = gAAAAA",
		"last_activity = 1800000000\n", "client_secret_encrypted = gAAAAA"} {
		if !strings.Contains(text, want) {
			t.Errorf("file lacks %q:\n%s", want, text)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "tokens.cache" && e.Name() != "tokens.cache.lock" {
			t.Errorf("stray file %s left in the store directory", e.Name())
		}
	}
}

func TestFileStoreWrongPasswordChangesNothing(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tokens.cache")
	s := newTestStore(t, path, nil)
	if err := s.Put(ctx, "a@x", "right", sampleRecord()); err != nil {
		t.Fatal(err)
	}
	before := mustRead(t, path)
	_, err := s.Get(ctx, "a@x", "wrong")
	if !errors.Is(err, ErrBadPassword) {
		t.Fatalf("Get with a wrong password = %v", err)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "a@x") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("error should name file and account, never the password: %v", err)
	}
	if mustRead(t, path) != before {
		t.Error("a failed Get changed the file")
	}
}

func TestFileStoreSaltFollowsPassword(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tokens.cache")
	c := fastCodec()
	s := newTestStore(t, path, c)
	saltOf := func() string {
		return own(parseCache(t, mustRead(t, path)), "a@x", keySalt)
	}
	if err := s.Put(ctx, "a@x", "pw", sampleRecord()); err != nil {
		t.Fatal(err)
	}
	first := saltOf()
	derivations := c.Keys.Derivations()
	rec := sampleRecord()
	rec.AccessToken = "refreshed"
	if err := s.Put(ctx, "a@x", "pw", rec); err != nil {
		t.Fatal(err)
	}
	if saltOf() != first {
		t.Error("a Put with the same password changed the salt")
	}
	if c.Keys.Derivations() != derivations {
		t.Errorf("a Put with the same password paid %d derivations", c.Keys.Derivations()-derivations)
	}
	if err := s.Put(ctx, "a@x", "new password", rec); err != nil {
		t.Fatal(err)
	}
	if saltOf() == first {
		t.Error("a Put with a new password kept the old salt")
	}
	if _, err := s.Get(ctx, "a@x", "pw"); !errors.Is(err, ErrBadPassword) {
		t.Errorf("old password after a change: %v", err)
	}
	if got, err := s.Get(ctx, "a@x", "new password"); err != nil || got.AccessToken != "refreshed" {
		t.Errorf("new password: %+v, %v", got, err)
	}
}

// A file in the Python proxy's layout, with things a careless writer would
// lose: comments, other accounts, unknown keys and sections, odd spacing.
const pythonStyleFile = `# token cache, written by hand and by the Python proxy
; another comment style

[bob@example.com]
token_salt = %s
token_iterations = 2000
access_token = %s
access_token_expiry = 1700000000
last_activity = 1690000000
x_unknown_key=kept as is

[not-an-account]
Something: else
  continued line

[alice@example.com]
# alice's comment
access_token = gAAAAAstale
TOKEN_SALT = old
custom = stays
`

func TestFileStoreChangesOnlyItsSection(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tokens.cache")
	c := fastCodec()
	bob, err := c.Seal(ctx, "bob@example.com", "bobpw", Record{AccessToken: "bob-token"}, "")
	if err != nil {
		t.Fatal(err)
	}
	original := fmt.Sprintf(pythonStyleFile, bob.Salt, bob.AccessToken)
	if err := os.WriteFile(path, []byte(original), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newTestStore(t, path, c)
	if err := s.Put(ctx, "alice@example.com", "alicepw", Record{RefreshToken: "alice-refresh"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "carol@example.com", "carolpw", Record{RefreshToken: "carol-refresh"}); err != nil {
		t.Fatal(err)
	}
	after := mustRead(t, path)
	// Everything before alice's section is byte-identical.
	cut := strings.Index(original, "[alice@example.com]")
	if !strings.HasPrefix(after, original[:cut]) {
		t.Errorf("lines outside the account's section changed:\n%s", after)
	}
	alice := after[cut:strings.Index(after, "[carol@example.com]")]
	for _, want := range []string{"# alice's comment\n", "custom = stays\n", "refresh_token = gAAAAA", "token_iterations = 2000\n"} {
		if !strings.Contains(alice, want) {
			t.Errorf("alice's section lacks %q:\n%s", want, alice)
		}
	}
	for _, gone := range []string{"gAAAAAstale", "TOKEN_SALT = old"} {
		if strings.Contains(alice, gone) {
			t.Errorf("alice's section still has %q:\n%s", gone, alice)
		}
	}
	if strings.Count(after, "token_salt") != 3 {
		t.Errorf("want one token_salt per account:\n%s", after)
	}
	if !strings.Contains(after, "\n\n[carol@example.com]\n") {
		t.Errorf("new section not set off by a blank line:\n%s", after)
	}
	for acct, pw := range map[string]string{"bob@example.com": "bobpw", "alice@example.com": "alicepw", "carol@example.com": "carolpw"} {
		if _, err := s.Get(ctx, acct, pw); err != nil {
			t.Errorf("%s: %v", acct, err)
		}
	}
	accts, err := s.Accounts()
	if err != nil || strings.Join(accts, ",") != "alice@example.com,bob@example.com,carol@example.com" {
		t.Errorf("Accounts = %v, %v", accts, err)
	}
}

func TestFileStoreDelete(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tokens.cache")
	s := newTestStore(t, path, nil)
	for _, a := range []string{"a@x", "b@x"} {
		if err := s.Put(ctx, a, "pw", sampleRecord()); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "a@x"); err != nil {
		t.Fatal(err)
	}
	text := mustRead(t, path)
	if strings.Contains(text, "[a@x]") {
		t.Errorf("emptied section left behind:\n%s", text)
	}
	if _, err := s.Get(ctx, "a@x", "pw"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete = %v", err)
	}
	if _, err := s.Get(ctx, "b@x", "pw"); err != nil {
		t.Errorf("other account after Delete: %v", err)
	}
	if err := s.Delete(ctx, "nobody@x"); err != nil {
		t.Errorf("deleting a missing account: %v", err)
	}
	// A section with keys of its own loses only the token keys.
	if err := os.WriteFile(path, []byte("[c@x]\nnote = keep\ntoken_salt = AAAAAAAAAAAAAAAAAAAAAA==\nrefresh_token = gAAAAAx\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "c@x"); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, path); got != "[c@x]\nnote = keep\n" {
		t.Errorf("after Delete: %q", got)
	}
}

func TestFileStoreLegacyEntryIsRotated(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tokens.cache")
	c := fastCodec()
	legacy := &Codec{Keys: NewKeyCache(0), Iterations: 500} // the legacy count of fastCodec
	old, err := legacy.Seal(ctx, "a@x", "pw", sampleRecord(), "")
	if err != nil {
		t.Fatal(err)
	}
	old.Iterations = 0 // written before token_iterations existed
	if err := os.WriteFile(path, cacheWith(t, "a@x", old), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newTestStore(t, path, c)
	if sum, _ := s.Summary("a@x"); sum.Iterations != LegacyIterations {
		t.Errorf("summary of an entry without token_iterations says %d", sum.Iterations)
	}
	got, err := s.Get(ctx, "a@x", "pw")
	if err != nil || !sameRecord(got, sampleRecord()) {
		t.Fatalf("legacy Get = %+v, %v", got, err)
	}
	rotated, err := entryOf(parseCache(t, mustRead(t, path)), "a@x")
	if err != nil {
		t.Fatal(err)
	}
	if rotated.Iterations != 2000 || rotated.Salt != old.Salt || rotated.RefreshToken == old.RefreshToken {
		t.Fatalf("after Get: count %d, salt kept %v, re-encrypted %v", rotated.Iterations, rotated.Salt == old.Salt, rotated.RefreshToken != old.RefreshToken)
	}
	k, _ := DeriveKey("pw", old.Salt, 2000)
	for _, v := range []string{rotated.AccessToken, rotated.RefreshToken, rotated.ClientSecretEncrypted} {
		if _, err := FernetDecrypt(k, v); err != nil {
			t.Errorf("rotated value does not open at the new count: %v", err)
		}
	}
	before := mustRead(t, path)
	if _, err := s.Get(ctx, "a@x", "pw"); err != nil {
		t.Fatal(err)
	}
	if mustRead(t, path) != before {
		t.Error("a Get of an up-to-date entry rewrote the file")
	}
}

func TestFileStoreUnreadableEntries(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := fastCodec()
	good, _ := c.Seal(ctx, "a@x", "pw", Record{RefreshToken: "r"}, "")
	tests := []struct {
		name string
		file string
		want error
	}{
		{"empty file", "", ErrNotFound},
		{"binary garbage", "\x00\xff\xfe[[[\n\x01=\x02\n", ErrNotFound},
		{"section without tokens", "[a@x]\naccess_token_expiry = 5\n", ErrNotFound},
		{"torn value", "[a@x]\ntoken_salt = " + good.Salt + "\nrefresh_token = " + good.RefreshToken[:25] + "\n", ErrCorrupt},
		{"torn file, section cut short", "[a@x]\ntoken_salt = " + good.Salt[:7], ErrNotFound},
		{"iterations not a number", "[a@x]\ntoken_salt = " + good.Salt + "\ntoken_iterations = many\nrefresh_token = " + good.RefreshToken + "\n", ErrCorrupt},
		{"iterations zero", "[a@x]\ntoken_salt = " + good.Salt + "\ntoken_iterations = 0\nrefresh_token = " + good.RefreshToken + "\n", ErrCorrupt},
		{"no salt", "[a@x]\nrefresh_token = " + good.RefreshToken + "\n", ErrCorrupt},
		{"garbage expiry is only unknown", "[a@x]\ntoken_salt = " + good.Salt + "\ntoken_iterations = 2000\naccess_token_expiry = soon\nrefresh_token = " + good.RefreshToken + "\n", nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strconv.Itoa(i))
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			s := newTestStore(t, path, c)
			_, err := s.Get(ctx, "a@x", "pw")
			if !errors.Is(err, tt.want) {
				t.Fatalf("Get = %v, want %v", err, tt.want)
			}
			if errors.Is(err, ErrCorrupt) && !strings.Contains(err.Error(), "authorise the account again") {
				t.Errorf("corrupt-entry error does not say how to recover: %v", err)
			}
			// Whatever the file held, a Put repairs the entry.
			if err := s.Put(ctx, "a@x", "pw", Record{RefreshToken: "new"}); err != nil {
				t.Fatal(err)
			}
			if got, err := s.Get(ctx, "a@x", "pw"); err != nil || got.RefreshToken != "new" {
				t.Errorf("after Put: %+v, %v", got, err)
			}
		})
	}
}

// TestFileStoreUnreadableFileIsKeptAside: a file configparser refuses (so
// the Python proxy cannot use it either) reads as "no tokens" with the line
// named, a Delete leaves it alone, and the next save keeps it aside byte for
// byte before starting a file both engines read.
func TestFileStoreUnreadableFileIsKeptAside(t *testing.T) {
	ctx := context.Background()
	tests := []struct{ name, file, line string }{
		{"torn by a non-atomic writer mid-header", "[a@x]\ntoken_salt = AAAAAAAAAAAAAAAAAAAAAA==\nrefresh_token = gAAAAAx\n\n[b@ex", ":5:"},
		{"section twice", "[a@x]\nrefresh_token = gAAAAAx\n[a@x]\naccess_token = gAAAAAy\n", ":3:"},
		{"key before any section", "refresh_token = gAAAAAsecret\n[a@x]\n", ":1:"},
		{"not UTF-8", "[a@x]\nrefresh_token = \xff\n", ":2:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokens.cache")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			s := NewFileStore(path, WithCodec(fastCodec()), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			_, err := s.Get(ctx, "a@x", "pw")
			if !errors.Is(err, ErrNotFound) || !errors.Is(err, config.ErrSyntax) || !strings.Contains(err.Error(), tt.line) {
				t.Errorf("Get = %v, want ErrNotFound naming line %s", err, tt.line)
			}
			if _, err := s.Accounts(); !errors.Is(err, config.ErrSyntax) {
				t.Errorf("Accounts = %v, want the syntax error", err)
			}
			if err := s.Delete(ctx, "a@x"); err != nil || mustRead(t, path) != tt.file {
				t.Errorf("Delete on an unreadable file: %v; the file changed", err)
			}
			if err := s.Put(ctx, "a@x", "pw", Record{RefreshToken: "new"}); err != nil {
				t.Fatal(err)
			}
			aside, _ := filepath.Glob(path + ".unreadable-*")
			if len(aside) != 1 || mustRead(t, aside[0]) != tt.file {
				t.Fatalf("old file not kept aside as it was: %v", aside)
			}
			if fi, err := os.Stat(aside[0]); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("kept-aside file: %v, %v", fi.Mode(), err)
			}
			if _, err := config.Parse([]byte(mustRead(t, path)), path); err != nil {
				t.Errorf("new file is not configparser INI: %v", err)
			}
			if got, err := s.Get(ctx, "a@x", "pw"); err != nil || got.RefreshToken != "new" {
				t.Errorf("after Put: %+v, %v", got, err)
			}
			if !strings.Contains(logs.String(), aside[0]) || strings.Contains(logs.String(), "gAAAAA") {
				t.Errorf("warning does not name the kept file, or carries a token: %s", logs.String())
			}
		})
	}
}

func TestFileStoreConcurrentPutsLoseNothing(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tokens.cache")
	s := newTestStore(t, path, nil)
	const accounts, rounds = 30, 4
	var wg sync.WaitGroup
	errs := make(chan error, accounts*rounds)
	for a := range accounts {
		for r := range rounds {
			wg.Go(func() {
				acct := fmt.Sprintf("user%02d@example.com", a)
				rec := Record{AccessToken: fmt.Sprintf("at-%d-%d", a, r), RefreshToken: fmt.Sprintf("rt-%d", a)}
				if err := s.Put(ctx, acct, "pw"+strconv.Itoa(a), rec); err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for a := range accounts {
		acct := fmt.Sprintf("user%02d@example.com", a)
		got, err := s.Get(ctx, acct, "pw"+strconv.Itoa(a))
		if err != nil || got.RefreshToken != fmt.Sprintf("rt-%d", a) || !strings.HasPrefix(got.AccessToken, fmt.Sprintf("at-%d-", a)) {
			t.Errorf("%s: %+v, %v", acct, got, err)
		}
	}
	if accts, _ := s.Accounts(); len(accts) != accounts {
		t.Errorf("%d accounts in the file, want %d", len(accts), accounts)
	}
}

// Two stores on one file stand for two processes: each has its own lock
// descriptor, mutex and key cache, so only the flock orders them.
func TestFileStoreTwoInstancesLoseNothing(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tokens.cache")
	stores := []*FileStore{newTestStore(t, path, fastCodec()), newTestStore(t, path, fastCodec())}
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() {
			for n := range 25 {
				acct := fmt.Sprintf("s%d-%02d@x", i, n)
				if err := s.Put(ctx, acct, "pw", Record{RefreshToken: acct}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for i := range stores {
		for n := range 25 {
			acct := fmt.Sprintf("s%d-%02d@x", i, n)
			if got, err := stores[1-i].Get(ctx, acct, "pw"); err != nil || got.RefreshToken != acct {
				t.Errorf("%s seen from the other store: %+v, %v", acct, got, err)
			}
		}
	}
}

// TestHelperProcessPut is not a test: TestFileStoreTwoProcessesLoseNothing
// runs the test binary again with this one selected to get a second real
// process writing the same file.
func TestHelperProcessPut(t *testing.T) {
	path := os.Getenv("ORBIT_TOKENS_HELPER_PATH")
	if path == "" {
		t.Skip("helper process for TestFileStoreTwoProcessesLoseNothing")
	}
	prefix := os.Getenv("ORBIT_TOKENS_HELPER_PREFIX")
	s := newTestStore(t, path, fastCodec())
	for n := range 20 {
		acct := fmt.Sprintf("%s-%02d@x", prefix, n)
		if err := s.Put(context.Background(), acct, "pw", Record{RefreshToken: acct}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFileStoreTwoProcessesLoseNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.cache")
	var wg sync.WaitGroup
	for _, prefix := range []string{"p1", "p2", "p3"} {
		wg.Go(func() {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcessPut$", "-test.count=1")
			cmd.Env = append(os.Environ(), "ORBIT_TOKENS_HELPER_PATH="+path, "ORBIT_TOKENS_HELPER_PREFIX="+prefix)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("helper %s: %v\n%s", prefix, err, out)
			}
		})
	}
	wg.Wait()
	s := newTestStore(t, path, nil)
	accts, err := s.Accounts()
	if err != nil || len(accts) != 60 {
		t.Fatalf("%d accounts after three processes wrote 20 each (%v)", len(accts), err)
	}
	for _, a := range accts {
		if got, err := s.Get(context.Background(), a, "pw"); err != nil || got.RefreshToken != a {
			t.Errorf("%s: %+v, %v", a, got, err)
		}
	}
}

func TestFileStoreLockIsShared(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	lock := filepath.Join(dir, "emailproxy.config.lock")
	s := NewFileStore(filepath.Join(dir, "tokens.cache"), WithCodec(fastCodec()), WithLockPath(lock))
	if s.LockPath() != lock {
		t.Fatalf("LockPath = %s", s.LockPath())
	}
	// Another process (the config writer) holds the lock: a Put waits for
	// it and gives up when its context ends.
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("flock(1) from util-linux is not installed; it plays the other lock holder")
	}
	// cat holds the lock until its stdin closes.
	cmd := exec.Command("flock", "--exclusive", lock, "cat")
	release, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = release.Close(); _ = cmd.Wait() }()
	// Wait until the other process really holds the lock.
	for exec.Command("flock", "--nonblock", lock, "true").Run() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	short, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
	defer cancel()
	err = s.Put(short, "a@x", "pw", Record{RefreshToken: "r"})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), lock) {
		t.Fatalf("Put under a foreign lock = %v; want a deadline error naming the lock", err)
	}
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Error("Put wrote without the lock")
	}
	_ = release.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "a@x", "pw", Record{RefreshToken: "r"}); err != nil {
		t.Fatalf("Put after the lock was released: %v", err)
	}
}

// A crash or an I/O error in the middle of a write must leave the previous
// file as it was: the new content goes to a temporary file that only a
// rename makes visible.
func TestFileStoreFailedWriteKeepsOldFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.cache")
	s := newTestStore(t, path, nil)
	if err := s.Put(ctx, "a@x", "pw", sampleRecord()); err != nil {
		t.Fatal(err)
	}
	before := mustRead(t, path)

	t.Run("dies half way through the temporary file", func(t *testing.T) {
		s.writeFile = func(p string, data []byte) error {
			f, err := renameio.NewPendingFile(p, renameio.WithTempDir(filepath.Dir(p)), renameio.WithStaticPermissions(0o600))
			if err != nil {
				return err
			}
			defer f.Cleanup()
			if _, err := f.Write(data[:len(data)/2]); err != nil {
				return err
			}
			// Readers running now see the old file, not this half.
			if got := mustRead(t, p); got != before {
				t.Error("a reader saw a partial write")
			}
			return errors.New("simulated crash before rename")
		}
		defer func() { s.writeFile = writeAtomic }()
		err := s.Put(ctx, "b@x", "pw", sampleRecord())
		if err == nil || !strings.Contains(err.Error(), "previous file is unchanged") {
			t.Fatalf("Put = %v", err)
		}
	})

	t.Run("directory not writable", func(t *testing.T) {
		if os.Geteuid() == 0 {
			// root ignores mode bits; the immutable flag stops root too.
			chattr, err := exec.LookPath("chattr")
			if err != nil {
				t.Skip("running as root and chattr(1) is missing, so the directory cannot be made unwritable")
			}
			if out, err := exec.Command(chattr, "+i", dir).CombinedOutput(); err != nil {
				t.Skipf("running as root and this filesystem refuses chattr +i (%v: %s)", err, out)
			}
			t.Cleanup(func() { _ = exec.Command(chattr, "-i", dir).Run() })
		} else {
			if err := os.Chmod(dir, 0o500); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
		}
		// The lock file is already there, so only the write itself fails.
		if err := s.Put(ctx, "b@x", "pw", sampleRecord()); err == nil {
			t.Fatal("Put into an unwritable directory succeeded")
		}
	})

	if got := mustRead(t, path); got != before {
		t.Fatalf("old file changed after failed writes:\n%s", got)
	}
	if got, err := s.Get(ctx, "a@x", "pw"); err != nil || !sameRecord(got, sampleRecord()) {
		t.Errorf("old entry after failed writes: %+v, %v", got, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "tokens.cache" && e.Name() != "tokens.cache.lock" {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func TestFileStoreRotationFailureStillLogsIn(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tokens.cache")
	legacy := &Codec{Keys: NewKeyCache(0), Iterations: 500}
	old, _ := legacy.Seal(ctx, "a@x", "pw", Record{RefreshToken: "r"}, "")
	if err := os.WriteFile(path, cacheWith(t, "a@x", old), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s := NewFileStore(path, WithCodec(fastCodec()), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	s.writeFile = func(string, []byte) error { return errors.New("disk full") }
	got, err := s.Get(ctx, "a@x", "pw")
	if err != nil || got.RefreshToken != "r" {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if !strings.Contains(logs.String(), "re-encrypt") || !strings.Contains(logs.String(), "disk full") || strings.Contains(logs.String(), "pw ") {
		t.Errorf("log: %s", logs.String())
	}
}

func TestFileStoreImport(t *testing.T) {
	ctx := context.Background()
	c := fastCodec()
	sealed, err := c.Seal(ctx, "a@x", "pw", Record{AccessToken: "inline-at", RefreshToken: "inline-rt", ClientSecret: "cs",
		AccessTokenExpiry: time.Unix(2000, 0), LastActivity: time.Unix(1000, 0)}, "")
	if err != nil {
		t.Fatal(err)
	}
	inline := config.InlineTokens{TokenSalt: sealed.Salt, TokenIterations: sealed.Iterations, AccessToken: sealed.AccessToken,
		AccessTokenExpiry: sealed.AccessTokenExpiry, RefreshToken: sealed.RefreshToken, LastActivity: sealed.LastActivity}

	t.Run("empty store imports", func(t *testing.T) {
		s := newTestStore(t, filepath.Join(t.TempDir(), "tokens.cache"), c)
		res, err := s.Import(ctx, "a@x", inline, sealed.ClientSecretEncrypted)
		if err != nil || res != Imported {
			t.Fatalf("Import = %v, %v", res, err)
		}
		got, err := s.Get(ctx, "a@x", "pw")
		if err != nil || got.RefreshToken != "inline-rt" || got.ClientSecret != "cs" || got.AccessTokenExpiry.Unix() != 2000 {
			t.Fatalf("imported entry: %+v, %v", got, err)
		}
		if res, _ := s.Import(ctx, "a@x", inline, sealed.ClientSecretEncrypted); res != ImportSame {
			t.Errorf("second Import = %v, want %v", res, ImportSame)
		}
	})
	t.Run("newer store data is kept", func(t *testing.T) {
		s := newTestStore(t, filepath.Join(t.TempDir(), "tokens.cache"), c)
		if err := s.Put(ctx, "a@x", "pw", Record{RefreshToken: "store-rt", LastActivity: time.Unix(5000, 0)}); err != nil {
			t.Fatal(err)
		}
		res, err := s.Import(ctx, "a@x", inline, "")
		if err != nil || res != ImportStoreNewer {
			t.Fatalf("Import = %v, %v", res, err)
		}
		if got, _ := s.Get(ctx, "a@x", "pw"); got.RefreshToken != "store-rt" {
			t.Errorf("store data overwritten: %+v", got)
		}
	})
	t.Run("older store data is replaced", func(t *testing.T) {
		s := newTestStore(t, filepath.Join(t.TempDir(), "tokens.cache"), c)
		if err := s.Put(ctx, "a@x", "pw", Record{RefreshToken: "store-rt", LastActivity: time.Unix(10, 0)}); err != nil {
			t.Fatal(err)
		}
		if res, err := s.Import(ctx, "a@x", inline, ""); err != nil || res != Imported {
			t.Fatalf("Import = %v, %v", res, err)
		}
		if got, _ := s.Get(ctx, "a@x", "pw"); got.RefreshToken != "inline-rt" {
			t.Errorf("older store data kept: %+v", got)
		}
	})
	t.Run("nothing inline", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "tokens.cache")
		s := newTestStore(t, path, c)
		if res, err := s.Import(ctx, "a@x", config.InlineTokens{TokenSalt: sealed.Salt, LastActivity: 5}, ""); err != nil || res != ImportNone {
			t.Fatalf("Import = %v, %v", res, err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Error("an empty import wrote the file")
		}
	})
	t.Run("tokens without salt are an error, not dropped silently", func(t *testing.T) {
		s := newTestStore(t, filepath.Join(t.TempDir(), "tokens.cache"), c)
		bad := inline
		bad.TokenSalt = ""
		_, err := s.Import(ctx, "a@x", bad, "")
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "[a@x]") {
			t.Fatalf("Import = %v", err)
		}
	})
	t.Run("legacy inline tokens rotate on first Get", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "tokens.cache")
		s := newTestStore(t, path, c)
		legacy := &Codec{Keys: c.Keys, Iterations: 500}
		old, _ := legacy.Seal(ctx, "a@x", "pw", Record{RefreshToken: "old-rt"}, "")
		res, err := s.Import(ctx, "a@x", config.InlineTokens{TokenSalt: old.Salt, RefreshToken: old.RefreshToken}, "")
		if err != nil || res != Imported {
			t.Fatalf("Import = %v, %v", res, err)
		}
		if got, err := s.Get(ctx, "a@x", "pw"); err != nil || got.RefreshToken != "old-rt" {
			t.Fatalf("Get = %+v, %v", got, err)
		}
		if sum, _ := s.Summary("a@x"); sum.Iterations != 2000 {
			t.Errorf("after Get the count is %d, want 2000", sum.Iterations)
		}
	})
}

func TestFileStoreSummary(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tokens.cache")
	s := newTestStore(t, path, nil)
	if err := s.Put(ctx, "a@x", "pw", Record{RefreshToken: "r", AccessToken: "a", AccessTokenExpiry: time.Unix(1900000000, 0), LastActivity: time.Unix(1800000000, 0)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "b@x", "pw", Record{ClientSecret: "s"}); err != nil {
		t.Fatal(err)
	}
	sum, err := s.Summary("a@x")
	if err != nil {
		t.Fatal(err)
	}
	want := Summary{Account: "a@x", HasAccessToken: true, HasRefreshToken: true, AccessTokenExpiry: time.Unix(1900000000, 0), LastActivity: time.Unix(1800000000, 0), Iterations: 2000}
	if sum != want {
		t.Errorf("Summary = %+v\nwant      %+v", sum, want)
	}
	if _, err := s.Summary("zed@x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Summary of a missing account = %v", err)
	}
	all, err := s.Summaries()
	if err != nil || len(all) != 2 || all[0].Account != "a@x" || all[1].Account != "b@x" || !all[1].HasClientSecret || all[1].LastActivity.IsZero() {
		t.Errorf("Summaries = %+v, %v", all, err)
	}
	if text := fmt.Sprintf("%+v", all); strings.Contains(text, "gAAAAA") {
		t.Errorf("summary carries encrypted values: %s", text)
	}
}

func TestDefaultPath(t *testing.T) {
	if s := NewFileStore(""); s.Path() != DefaultPath || s.LockPath() != DefaultPath+".lock" {
		t.Errorf("NewFileStore(\"\") = %s, %s", s.Path(), s.LockPath())
	}
}

// FuzzCacheFile feeds arbitrary file contents to the store's write path:
// nothing panics; a file configparser reads keeps every byte before the
// account's section and every other section's values, and the entry reads
// back; a file it refuses is kept aside byte for byte and replaced by one
// holding the entry.
func FuzzCacheFile(f *testing.F) {
	f.Add(fmt.Sprintf(pythonStyleFile, "AAAAAAAAAAAAAAAAAAAAAA==", "gAAAAAx"))
	f.Add("[fuzz@x]\ntoken_salt=\n\trefresh_token: gAAAA\n  cont\n[b@x]\nK = v\n")
	f.Add("[a@x]\ntoken_salt=\n\trefresh_token: gAAAA\n  cont\n[a@x]\n")
	f.Add("[]\n[[a@x]]\n=\n:\n; c\n")
	f.Add("\ufeff[a@x]\r\nrefresh_token = r\r\n[fuzz@x]\r\nx = 1")
	f.Add("[DEFAULT]\naccess_token = d\n[fuzz@x]\n# keep\n")
	want := Sealed{Salt: "AQIDBAUGBwgJCgsMDQ4PEA==", Iterations: 7, AccessToken: "gAAAAAat", AccessTokenExpiry: 99,
		RefreshToken: "gAAAAArt", LastActivity: 98, ClientSecretEncrypted: "gAAAAAcs"}
	const acct = "fuzz@x"
	f.Fuzz(func(t *testing.T, data string) {
		dir := t.TempDir()
		path := filepath.Join(dir, "tokens.cache")
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		before, parseErr := config.Parse([]byte(data), path)
		s := newTestStore(t, path, nil)
		err := s.update(context.Background(), func(e *config.Editor) (bool, error) { return true, setEntry(e, acct, want) })
		if err != nil {
			t.Fatalf("update: %v", err)
		}
		out := mustRead(t, path)
		after := parseCache(t, out)
		if got, err := entryOf(after, acct); err != nil || got != want {
			t.Fatalf("entry read back as %+v, %v", got, err)
		}
		aside, _ := filepath.Glob(path + ".unreadable-*")
		if parseErr != nil {
			if len(aside) != 1 || mustRead(t, aside[0]) != data {
				t.Fatalf("unreadable file not kept aside as it was: %v", aside)
			}
			return
		}
		if len(aside) != 0 {
			t.Fatalf("a readable file was set aside: %v", aside)
		}
		// The writer spells every line end the way the file does (\r\n if
		// any line has it), so bytes are kept when the file's line ends
		// agree; a lone \r or a mix is normalised.
		crlf := strings.Count(data, "\r\n")
		if crlf == strings.Count(data, "\r") && (crlf == 0 || crlf == strings.Count(data, "\n")) {
			keep := data
			if n := before.Line(acct, ""); n > 0 {
				lines := strings.SplitAfter(data, "\n")
				keep = strings.Join(lines[:n-1], "")
			}
			if !strings.HasPrefix(out, keep) {
				t.Fatalf("bytes before [%s] changed:\n%q\n%q", acct, keep, out)
			}
		}
		for _, name := range before.Sections() {
			if name == acct {
				continue
			}
			for _, k := range before.Keys(name) {
				if v, _ := before.Get(name, k); own(after, name, k) != v {
					t.Fatalf("[%s] %s changed from %q to %q", name, k, v, own(after, name, k))
				}
			}
		}
	})
}
