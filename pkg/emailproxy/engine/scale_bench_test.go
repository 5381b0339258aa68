package engine

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// freePort is a loopback port nobody listens on right now.
func freePort(tb testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// bigConfig writes a file with n accounts behind one IMAP server on a free
// loopback port. inline adds the tokens the Python proxy keeps in the file.
func bigConfig(tb testing.TB, dir string, n int, inline bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[emailproxy]\n\n[IMAP-%d]\nserver_address = outlook.office365.com\nserver_port = 993\nlocal_address = 127.0.0.1\n\n", freePort(tb))
	for i := range n {
		fmt.Fprintf(&b, "[user%d@example.com]\npermission_url = https://login.microsoftonline.com/common/oauth2/v2.0/authorize\n"+
			"token_url = https://login.microsoftonline.com/common/oauth2/v2.0/token\n"+
			"oauth2_scope = https://outlook.office365.com/IMAP.AccessAsUser.All offline_access\n"+
			"redirect_uri = http://localhost\nclient_id = 00000000-0000-0000-0000-%012d\nclient_secret = secret-%d\n", i, i, i)
		if inline {
			fmt.Fprintf(&b, "token_salt = c2FsdHNhbHRzYWx0c2FsdA==\ntoken_iterations = 1200000\naccess_token = gAAAAABtoken%d\n"+
				"access_token_expiry = 1760000000\nrefresh_token = gAAAAABrefresh%d\nlast_activity = 1760000000\n", i, i)
		}
		b.WriteString("\n")
	}
	path := filepath.Join(dir, "emailproxy.config")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkServeStartScale is `serve` start with 2,000 and 20,000
// accounts whose tokens live in the token store (orbit's own layout): load
// and validate the file, build the engine, open the listener, shut down.
// Target (issue 11): under a second for 20,000, and linear (the 20,000 run
// reports linearity, its CPU cost per account over the 2,000 run's; 1.0 is
// linear). cpu-s/start is the figure to trust on a busy machine.
func BenchmarkServeStartScale(b *testing.B) {
	var perAccount2k float64
	for _, n := range []int{2000, 20000} {
		b.Run(fmt.Sprintf("accounts=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			path := bigConfig(b, dir, n, false)
			start, cpu0 := time.Now(), cpuTime()
			for b.Loop() {
				e, err := New(Options{ConfigPath: path, TokenPath: filepath.Join(dir, "tokens"), StatusPath: "-"})
				if err != nil {
					b.Fatal(err)
				}
				if err := e.Start(context.Background()); err != nil {
					b.Fatal(err)
				}
				if err := e.Shutdown(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			per := time.Since(start) / time.Duration(b.N)
			cpu := (cpuTime() - cpu0) / time.Duration(b.N)
			perAccount := float64(cpu.Nanoseconds()) / 1e3 / float64(n)
			b.ReportMetric(per.Seconds(), "s/start")
			b.ReportMetric(cpu.Seconds(), "cpu-s/start")
			b.ReportMetric(perAccount, "cpu-us/account")
			if n == 2000 {
				perAccount2k = perAccount
			} else if perAccount2k > 0 {
				b.ReportMetric(perAccount/perAccount2k, "linearity")
			}
		})
	}
}

// BenchmarkServeStartInlineTokens is `serve` start on a Python-written
// config that keeps every account's tokens inline, with 2,000 and 20,000
// accounts. first is the start that imports them all into an empty token
// store; later is every start after it (the store already holds them, so
// nothing is written). Targets as BenchmarkServeStartScale: under a second
// for 20,000, and linear (linearity: CPU cost per account over the 2,000
// run's; 1.0 is linear).
func BenchmarkServeStartInlineTokens(b *testing.B) {
	for _, kind := range []string{"first", "later"} {
		b.Run(kind, func(b *testing.B) {
			var perAccount2k float64
			for _, n := range []int{2000, 20000} {
				b.Run(fmt.Sprintf("accounts=%d", n), func(b *testing.B) {
					dir := b.TempDir()
					path := bigConfig(b, dir, n, true)
					store := filepath.Join(dir, "tokens")
					start1 := func() {
						e, err := New(Options{ConfigPath: path, TokenPath: store, StatusPath: "-"})
						if err != nil {
							b.Fatal(err)
						}
						if err := e.Start(context.Background()); err != nil {
							b.Fatal(err)
						}
						if err := e.Shutdown(context.Background()); err != nil {
							b.Fatal(err)
						}
					}
					if kind == "later" {
						start1() // the first start's import, not measured
					}
					if _, err := os.Stat(store); kind == "later" && err != nil {
						b.Fatalf("the first start wrote no token store: %v", err)
					}
					var wall, cpu time.Duration
					for b.Loop() {
						if kind == "first" {
							if err := os.Remove(store); err != nil && !os.IsNotExist(err) {
								b.Fatal(err)
							}
						}
						t0, c0 := time.Now(), cpuTime()
						start1()
						wall += time.Since(t0)
						cpu += cpuTime() - c0
					}
					per := wall / time.Duration(b.N)
					cpuPer := cpu / time.Duration(b.N)
					perAccount := float64(cpuPer.Nanoseconds()) / 1e3 / float64(n)
					b.ReportMetric(per.Seconds(), "s/start")
					b.ReportMetric(cpuPer.Seconds(), "cpu-s/start")
					b.ReportMetric(perAccount, "cpu-us/account")
					if n == 2000 {
						perAccount2k = perAccount
					} else if perAccount2k > 0 {
						b.ReportMetric(perAccount/perAccount2k, "linearity")
					}
				})
			}
		})
	}
}
