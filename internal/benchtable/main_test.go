package main

import (
	"strings"
	"testing"
)

// TestTable: metrics from `go test -bench` output land in their rows, the
// median of several runs is used, verdicts follow the goals, and a target
// whose benchmark did not run says so.
func TestTable(t *testing.T) {
	in := `goos: linux
pkg: github.com/senhasegura/orbit/internal/e2ebench
BenchmarkFetch200x1MiB-2   	       1	9030881192 ns/op	       300.0 direct-MB/s	         1.2 proxy-CPU-s/GB	       280.0 proxy-MB/s	         0.93 ratio
BenchmarkIdleSessions/n=1000-2   1	1 ns/op	        26.0 RSS-KiB/session	 1000 sessions
BenchmarkIdleSessions/n=10000-2  1	1 ns/op	        26.4 RSS-KiB/session	 9950 sessions
BenchmarkLoginStoredToken-2   	       1	1 ns/op	         0.5 delta-p50-ms	         9.0 direct-p50-ms	        9.5 proxy-p50-ms
BenchmarkLoginStoredToken-2   	       1	1 ns/op	         3.0 delta-p50-ms	         9.0 direct-p50-ms	        12 proxy-p50-ms
BenchmarkLoginStoredToken-2   	       1	1 ns/op	         0.7 delta-p50-ms	         9.0 direct-p50-ms	        9.7 proxy-p50-ms
BenchmarkFirstLogins200-2     	       1	1 ns/op	       200.0 logins	         2.000 token-requests
--- BENCH: BenchmarkIdleSessions/n=10000-2
    bench_test.go:255: the descriptor limit allows 9950 sessions
PASS
`
	r, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	write(&b, r)
	rows := map[string]string{}
	for _, l := range strings.Split(b.String(), "\n") {
		for _, tg := range targets {
			if strings.HasPrefix(l, tg.measure) {
				rows[tg.measure] = strings.Join(strings.Fields(l[len(tg.measure):]), " ")
			}
		}
	}
	for _, tc := range []struct{ row, want string }{
		{"IMAP FETCH 200 x 1 MiB, proxy / direct throughput", ">= 0.90 0.93 (280 MB/s) 300 MB/s yes"},
		{"proxy CPU per GB piped (TLS decrypt + copy)", "1.20 CPU-s/GB - yes"},
		{"RSS per idle authenticated IMAP session, 1,000 sessions", "26.0 KiB (1000 sessions) - yes"},
		{"RSS per idle authenticated IMAP session, 10,000 sessions", "26.4 KiB (9950 sessions) - NO: only 9950 sessions held (descriptor limit?)"},
		// the median of 0.5, 3.0 and 0.7
		{"login with a stored token, proxy - direct, p50", "<= +2 ms +0.70 ms (proxy 9.7 ms) 9.0 ms yes"},
		{"200 simultaneous first logins of one account: token requests", "1 2 - NO"},
		{"orbit version", "< 20 ms not run (BenchmarkStartup/version) - -"},
	} {
		got, ok := rows[tc.row]
		if !ok {
			t.Errorf("no row %q in\n%s", tc.row, b.String())
			continue
		}
		if !strings.HasSuffix(got, tc.want) {
			t.Errorf("row %q = %q, want it to end with %q", tc.row, got, tc.want)
		}
	}
}
