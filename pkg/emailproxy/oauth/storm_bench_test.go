package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
)

// BenchmarkStormCorrectLogin: the first correct login after a restart
// (no key cached: one real PBKDF2 at 1,200,000 iterations) while 30
// clients keep sending random passwords for the same account. Each
// iteration is a fresh process state; the metrics are the correct login's
// latency (p50, p99, max over the iterations), the same as a multiple of a
// quiet restart's login measured just before (x-quiet: what the storm
// adds, whatever the machine's load), and how many PBKDF2 runs completed
// while it waited. Sub-benchmarks say where the storm comes from and
// whether the mailer's address is trusted: "trusted" = the quiet login
// before the restart recorded its success in the trust file, which the
// restarted Manager reads (the usual case: the mailer logged in before);
// "first-login" = no trust file (the very first login of an
// installation, or one from a new address).
//
//	go test -run '^$' -bench StormCorrectLogin -benchtime 20x ./pkg/emailproxy/oauth/
func BenchmarkStormCorrectLogin(b *testing.B) {
	oneOther := func(int) string { return "127.0.0.2:1" }
	thirty := func(i int) string { return fmt.Sprintf("127.0.1.%d:1", i+1) }
	// Someone else on the mailer's host: the same address as the mailer.
	mailers := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", 40000+i) }
	for _, bc := range []struct {
		name    string
		trusted bool
		storm   func(i int) string // client address of storm client i
	}{
		{"trusted/storm-from-one-other-address", true, oneOther},
		{"trusted/storm-from-30-addresses", true, thirty},
		{"trusted/storm-from-the-mailers-address", true, mailers},
		{"trusted/no-storm", true, nil},
		{"first-login/storm-from-one-other-address", false, oneOther},
		{"first-login/storm-from-30-addresses", false, thirty},
	} {
		b.Run(bc.name, func(b *testing.B) { benchStorm(b, bc.storm, bc.trusted) })
	}
}

func benchStorm(b *testing.B, stormAddr func(int) string, trusted bool) {
	dir := b.TempDir()
	path := filepath.Join(dir, "tokens.cache")
	trustFile := ""
	if trusted {
		trustFile = filepath.Join(dir, TrustFileName)
	}
	quiet := tokens.WithLogger(slog.New(slog.DiscardHandler))
	seed := tokens.NewFileStore(path, tokens.WithCodec(&tokens.Codec{Keys: tokens.NewKeyCache(0)}), quiet)
	if err := seed.Put(context.Background(), alice, secretPassword, tokens.Record{
		AccessToken: "AT-stored", AccessTokenExpiry: time.Now().Add(24 * time.Hour), RefreshToken: "RT-stored",
	}); err != nil {
		b.Fatal(err)
	}
	newManager := func(store tokens.Store, trustFile string) *Manager {
		m, err := NewManager(Options{Accounts: newSource(config.Global{}, ccAccount(alice)), Store: store, TrustFile: trustFile})
		if err != nil {
			b.Fatal(err)
		}
		return m
	}
	var lat []time.Duration
	var ratios []float64
	var derivs uint64
	refused := 0
	stormFromMailer := stormAddr != nil && strings.HasPrefix(stormAddr(0), "127.0.0.1:")
	// coldLogin is the same correct login on a quiet restart: the direct
	// path the storm's latency is compared with, measured in the same
	// iteration because the machine's load moves the absolute numbers.
	coldLogin := func() time.Duration {
		m := newManager(tokens.NewFileStore(path, tokens.WithCodec(&tokens.Codec{Keys: tokens.NewKeyCache(0)}), quiet), trustFile)
		start := time.Now()
		if _, err := m.AccessToken(WithClientAddr(context.Background(), "127.0.0.1:50000"), alice, secretPassword); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		quiet0 := coldLogin()
		// A restart: a new key cache, store and Manager.
		keys := tokens.NewKeyCache(0)
		// The restarted process reads what the quiet one wrote; its own
		// writes go to a copy, so that guesses of this iteration still
		// deriving after it ends (flights outlive their clients) cannot
		// touch the next iteration's file.
		stormTrust := ""
		if trusted {
			data, err := os.ReadFile(trustFile)
			if err != nil {
				b.Fatal(err)
			}
			stormTrust = trustFile + ".storm"
			if err := os.WriteFile(stormTrust, data, 0o600); err != nil {
				b.Fatal(err)
			}
		}
		m := newManager(tokens.NewFileStore(path, tokens.WithCodec(&tokens.Codec{Keys: keys}), quiet), stormTrust)
		if trusted != m.guard.trusted(alice, "127.0.0.1") {
			b.Fatalf("the restarted Manager trusts the mailer's address: %v, want %v", !trusted, trusted)
		}
		stormCtx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		if stormAddr != nil {
			for i := range 30 {
				ctx := WithClientAddr(stormCtx, stormAddr(i))
				wg.Go(func() {
					for n := 0; stormCtx.Err() == nil; n++ {
						_, err := m.AccessToken(ctx, alice, fmt.Sprintf("guess-%d-%d", i, n))
						if errors.Is(err, ErrTooManyAttempts) {
							// A reply and the next command cost a client
							// at least a round trip.
							time.Sleep(5 * time.Millisecond)
						}
					}
				})
			}
			// Let the storm fill the queue first.
			time.Sleep(200 * time.Millisecond)
		}
		b.StartTimer()
		start, d0 := time.Now(), keys.Derivations()
		tok, err := m.AccessToken(WithClientAddr(context.Background(), "127.0.0.1:50000"), alice, secretPassword)
		took, during := time.Since(start), keys.Derivations()-d0
		b.StopTimer()
		stop()
		wg.Wait()
		switch {
		case errors.Is(err, ErrTooManyAttempts) && stormFromMailer:
			// A storm from the mailer's own address fills that address's
			// queue: the mailer gets the temporary "retry in N s" at once
			// (the latency is then that answer's), and gets in only once
			// the storm stops or slows.
			refused++
		case err != nil || tok != "AT-stored":
			b.Fatalf("correct login during the storm: %q, %v", tok, err)
		}
		lat = append(lat, took)
		ratios = append(ratios, float64(took)/float64(quiet0))
		if testing.Verbose() {
			b.Logf("quiet %v, during the storm %v, %d derivations meanwhile", quiet0, took, during)
		}
		derivs += during
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		i := int(float64(len(lat))*p+0.999999) - 1
		return float64(lat[max(0, min(i, len(lat)-1))].Milliseconds())
	}
	slices.Sort(ratios)
	b.ReportMetric(ratios[len(ratios)/2], "p50-x-quiet")
	b.ReportMetric(ratios[max(0, min(int(float64(len(ratios))*0.99+0.999999)-1, len(ratios)-1))], "p99-x-quiet")
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Milliseconds()), "max-ms")
	// PBKDF2 runs completed while the correct login waited, its own
	// included: 1 means no wrong password was derived ahead of it.
	b.ReportMetric(float64(derivs)/float64(b.N), "derivations/login")
	if stormFromMailer {
		b.ReportMetric(float64(refused)/float64(b.N), "refused/login")
	}
}
