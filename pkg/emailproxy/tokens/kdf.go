package tokens

import (
	"container/list"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/singleflight"
)

const (
	// Iterations is the PBKDF2 count written with every value sealed here,
	// the same as the Python proxy writes.
	Iterations = 1_200_000
	// LegacyIterations is the count of values written before token_iterations
	// existed; it is assumed when the key is absent.
	LegacyIterations = 100_000
	// SaltBytes is the length of a fresh token_salt before base64.
	SaltBytes = 16
	// DefaultKeyCacheSize bounds the derived keys kept per process. Each
	// entry is ~150 bytes; the bound only matters against a flood of
	// distinct wrong passwords, which would otherwise grow memory forever.
	DefaultKeyCacheSize = 1024
)

// NewSalt returns a fresh token_salt: standard base64 (padded) of 16 random
// bytes.
func NewSalt() (string, error) {
	var b [SaltBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("reading random salt: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b[:]), nil
}

// decodeSalt turns a stored token_salt into the PBKDF2 salt bytes. Python
// decodes it with base64.b64decode, so standard base64 is the format; being
// lenient about padding costs nothing.
func decodeSalt(salt string) ([]byte, error) {
	s := strings.TrimSpace(salt)
	if s == "" {
		return nil, errors.New("token_salt is empty")
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	if b, err := base64.RawStdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return nil, errors.New("token_salt is not standard base64")
}

// DeriveKey computes the Fernet key for password and a stored token_salt:
// PBKDF2-HMAC-SHA256(UTF-8 password, base64-decoded salt, iterations, 32
// bytes). It costs 0.2-0.6 s at 1,200,000 iterations; use a KeyCache.
func DeriveKey(password, salt string, iterations int) (FernetKey, error) {
	return DeriveKeyContext(context.Background(), password, salt, iterations)
}

// DeriveKeyContext is DeriveKey calling ctx's checkpoint (WithCheckpoint)
// every few thousand iterations; a checkpoint's error stops it.
func DeriveKeyContext(ctx context.Context, password, salt string, iterations int) (FernetKey, error) {
	var k FernetKey
	if iterations < 1 {
		return k, fmt.Errorf("token_iterations must be a positive number, not %d", iterations)
	}
	sb, err := decodeSalt(salt)
	if err != nil {
		return k, err
	}
	raw, err := pbkdf2SHA256(ctx, []byte(password), sb, iterations, checkpointOf(ctx))
	if err != nil {
		return k, err
	}
	return FernetKey(raw), nil
}

// KeyCache remembers derived keys in memory so that each (account,
// password, salt, iterations) pays PBKDF2 at most once per process while it
// stays among the most recently used entries. It never stores the password:
// entries are indexed by an HMAC-SHA256 of the inputs under a random key
// made with the cache, so the index means nothing outside this process and
// the plain password is not kept around for a heap dump or a core file to
// show. Concurrent first uses of one entry derive once.
type KeyCache struct {
	max     int
	idxKey  [32]byte
	derive  func(ctx context.Context, password, salt string, iterations int) (FernetKey, error)
	flights singleflight.Group

	mu      sync.Mutex
	order   *list.List // of *cacheEntry, most recent first
	entries map[cacheIndex]*list.Element
	derived uint64 // PBKDF2 runs, for tests and benchmarks

	waiting atomic.Int32 // callers waiting on a flight, for tests
}

type cacheIndex [sha256.Size]byte

type cacheEntry struct {
	idx cacheIndex
	key FernetKey
}

// NewKeyCache makes a cache holding at most max keys (DefaultKeyCacheSize
// when max <= 0).
func NewKeyCache(max int) *KeyCache {
	if max <= 0 {
		max = DefaultKeyCacheSize
	}
	c := &KeyCache{
		max:     max,
		derive:  DeriveKeyContext,
		order:   list.New(),
		entries: make(map[cacheIndex]*list.Element),
	}
	if _, err := rand.Read(c.idxKey[:]); err != nil {
		// crypto/rand does not fail on supported platforms; a fixed index
		// key would quietly weaken the "no password in memory" property.
		panic("tokens: crypto/rand failed: " + err.Error())
	}
	return c
}

var defaultKeyCache = NewKeyCache(DefaultKeyCacheSize)

// DefaultKeyCache is the process-wide cache that stores use unless told
// otherwise, so every store in the process shares one derivation per key.
func DefaultKeyCache() *KeyCache { return defaultKeyCache }

func (c *KeyCache) index(account, password, salt string, iterations int) cacheIndex {
	m := hmac.New(sha256.New, c.idxKey[:])
	// Length-prefix each field so that no two different tuples collide.
	var n [8]byte
	for _, f := range []string{account, password, salt} {
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		m.Write(n[:])
		m.Write([]byte(f))
	}
	binary.BigEndian.PutUint64(n[:], uint64(iterations))
	m.Write(n[:])
	var idx cacheIndex
	m.Sum(idx[:0])
	return idx
}

// Key returns the Fernet key for the inputs, deriving it on first use. If
// ctx ends while a derivation runs, Key returns ctx.Err() at once; the
// derivation finishes in the background and is cached for the next caller.
//
// The derivation calls the checkpoint of the caller that started it
// (WithCheckpoint); callers that join it share that one. A derivation its
// checkpoint stopped is not cached, and a joined caller whose own context
// is still live starts it again under its own checkpoint, so one client's
// leaving never fails another's login.
func (c *KeyCache) Key(ctx context.Context, account, password, salt string, iterations int) (FernetKey, error) {
	idx := c.index(account, password, salt, iterations)
	for {
		if k, ok := c.lookup(idx); ok {
			return k, nil
		}
		// The flight runs on its own goroutine: it keeps the starter's
		// values (the checkpoint), not its cancellation.
		flightCtx := context.WithoutCancel(ctx)
		ch := c.flights.DoChan(string(idx[:]), func() (any, error) {
			// Another flight may have finished between lookup and here.
			if k, ok := c.lookup(idx); ok {
				return k, nil
			}
			k, err := c.derive(flightCtx, password, salt, iterations)
			if err != nil {
				return nil, &stoppedError{err: err, by: checkpointHolder(flightCtx)}
			}
			c.store(idx, k)
			return k, nil
		})
		c.waiting.Add(1)
		var r singleflight.Result
		select {
		case r = <-ch:
			c.waiting.Add(-1)
		case <-ctx.Done():
			c.waiting.Add(-1)
			return FernetKey{}, ctx.Err()
		}
		if r.Err == nil {
			return r.Val.(FernetKey), nil
		}
		var se *stoppedError
		if !errors.As(r.Err, &se) {
			return FernetKey{}, r.Err
		}
		if se.by != nil && se.by != checkpointHolder(ctx) && ctx.Err() == nil {
			continue // another caller's checkpoint stopped it: derive again
		}
		return FernetKey{}, se.err
	}
}

// stoppedError is a derivation that ended in an error; by is the
// checkpoint it ran under (nil for none), whose error it may be.
type stoppedError struct {
	err error
	by  *checkpoint
}

func (e *stoppedError) Error() string { return e.err.Error() }
func (e *stoppedError) Unwrap() error { return e.err }

// Cached reports whether the key for the inputs is in the cache, without
// deriving it.
func (c *KeyCache) Cached(account, password, salt string, iterations int) bool {
	_, ok := c.lookup(c.index(account, password, salt, iterations))
	return ok
}

// Derivations is how many PBKDF2 runs this cache has made.
func (c *KeyCache) Derivations() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.derived
}

// Len is the number of keys held.
func (c *KeyCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

func (c *KeyCache) lookup(idx cacheIndex) (FernetKey, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[idx]
	if !ok {
		return FernetKey{}, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*cacheEntry).key, true
}

func (c *KeyCache) store(idx cacheIndex, k FernetKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.derived++
	if el, ok := c.entries[idx]; ok {
		c.order.MoveToFront(el)
		return
	}
	c.entries[idx] = c.order.PushFront(&cacheEntry{idx: idx, key: k})
	for c.order.Len() > c.max {
		old := c.order.Back()
		e := c.order.Remove(old).(*cacheEntry)
		delete(c.entries, e.idx)
		// Drop the key bytes rather than leave them for the GC to find.
		e.key = FernetKey{}
	}
}
