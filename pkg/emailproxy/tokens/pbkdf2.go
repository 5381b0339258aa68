package tokens

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"hash"
)

// checkpointEvery is how many PBKDF2 iterations run between two calls of
// the checkpoint: about 1.5 ms at 1,200,000 iterations in 0.4 s, so a
// pause takes effect that fast, and ~300 calls per derivation cost far
// less than 1 % of it (BenchmarkPBKDF2 compares with crypto/pbkdf2).
const checkpointEvery = 4096

// Checkpoint is called every few thousand PBKDF2 iterations of a key
// derivation (see WithCheckpoint). It may block, to pause the derivation
// while something more urgent uses the CPU; an error stops the derivation,
// and the derivation returns it.
type Checkpoint func(ctx context.Context) error

type checkpointKey struct{}

// checkpoint gives a Checkpoint an identity, so KeyCache can tell whose
// checkpoint stopped a shared derivation.
type checkpoint struct{ fn Checkpoint }

// WithCheckpoint makes the key derivations run for ctx (KeyCache.Key,
// Codec, FileStore.Get) call cp between rounds. The token layer's
// admission guard uses it to pause a guess's derivation while a trusted
// client's runs, and to drop a paused one whose client has left.
func WithCheckpoint(ctx context.Context, cp Checkpoint) context.Context {
	return context.WithValue(ctx, checkpointKey{}, &checkpoint{fn: cp})
}

func checkpointHolder(ctx context.Context) *checkpoint {
	cp, _ := ctx.Value(checkpointKey{}).(*checkpoint)
	return cp
}

func checkpointOf(ctx context.Context) Checkpoint {
	if cp := checkpointHolder(ctx); cp != nil {
		return cp.fn
	}
	return nil
}

// pbkdf2SHA256 is PBKDF2-HMAC-SHA256 (RFC 8018 §5.2) for a key of one
// SHA-256 block (32 bytes, all a Fernet key needs), with cp called every
// checkpointEvery iterations. It is not crypto/pbkdf2 because that runs a
// derivation start to end in one call: ~0.4 s of CPU that nothing can
// pause, so a guess that started first kept its core while the mailer's
// correct login waited. The loop is the one crypto/pbkdf2 runs (HMAC over
// the previous U, XORed into T); TestPBKDF2MatchesTheStandardLibrary
// checks both agree.
func pbkdf2SHA256(ctx context.Context, password, salt []byte, iterations int, cp Checkpoint) ([sha256.Size]byte, error) {
	prf := hmac.New(sha256.New, password)
	// U1 = PRF(P, S || INT(1)): one block, so the block index is always 1.
	prf.Write(salt)
	prf.Write([]byte{0, 0, 0, 1})
	var u [sha256.Size]byte
	prf.Sum(u[:0])
	t := u
	for n := 1; n < iterations; {
		// Up to the next checkpoint.
		end := min(iterations, n+checkpointEvery)
		rounds(prf, &u, &t, end-n)
		n = end
		if cp != nil && n < iterations {
			if err := cp(ctx); err != nil {
				return [sha256.Size]byte{}, err
			}
		}
	}
	return t, nil
}

// rounds runs k iterations: U = PRF(P, U); T ^= U.
func rounds(prf hash.Hash, u, t *[sha256.Size]byte, k int) {
	for range k {
		prf.Reset()
		prf.Write(u[:])
		prf.Sum(u[:0])
		// As crypto/pbkdf2 does: a byte loop here made the derivation ~5 %
		// slower than the standard library's.
		subtle.XORBytes(t[:], t[:], u[:])
	}
}
