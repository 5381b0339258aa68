// Command benchtable prints the performance targets of issue 11 as a table
// (target, measured, direct baseline, met?) from `go test -bench` output,
// using the metrics the benchmarks report with b.ReportMetric. `make bench`
// runs the benchmarks into bench.txt and this over it:
//
//	go run ./internal/benchtable bench.txt   (or on stdin)
//
// A target whose benchmark did not run (not root, no Dovecot, skipped) is
// listed as "not run". With several runs of a benchmark (-count) the
// median of each metric is used. The exit status is 0 even when a target
// is missed: the table is a report, bench.txt the data.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

func main() {
	in := io.Reader(os.Stdin)
	if len(os.Args) > 1 {
		f, err := os.Open(os.Args[1])
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchtable: %v\n", err)
			os.Exit(1)
		}
		defer f.Close()
		in = f
	}
	res, err := parse(in)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchtable: %v\n", err)
		os.Exit(1)
	}
	write(os.Stdout, res)
}

// results maps a benchmark name (without the -GOMAXPROCS suffix) to its
// metrics by unit, every value of every run.
type results map[string]map[string][]float64

// get is the median of unit's values for bench.
func (r results) get(bench, unit string) (float64, bool) {
	vs := r[bench][unit]
	if len(vs) == 0 {
		return 0, false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return s[len(s)/2], true
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

// parse reads benchmark result lines: name, iterations, then value-unit
// pairs. Everything else (headers, logs, PASS) is skipped.
func parse(r io.Reader) (results, error) {
	res := results{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := procsSuffix.ReplaceAllString(f[0], "")
		if res[name] == nil {
			res[name] = map[string][]float64{}
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			res[name][f[i+1]] = append(res[name][f[i+1]], v)
		}
	}
	return res, sc.Err()
}

// target is one row of the table.
type target struct {
	measure string
	bench   string
	unit    string  // the measured metric
	cmp     string  // how it must compare with goal: <=, <, >=, ==
	goal    float64 // in unit
	goalTxt string
	// show formats the measured cell; direct the baseline cell; extra
	// checks beyond the main comparison (and says why it fails).
	show   func(r results, v float64) string
	direct func(r results) string
	extra  func(r results) (ok bool, why string)
}

func f(format string) func(results, float64) string {
	return func(_ results, v float64) string { return fmt.Sprintf(format, v) }
}

func metric(bench, unit, format string) func(results) string {
	return func(r results) string {
		if v, ok := r.get(bench, unit); ok {
			return fmt.Sprintf(format, v)
		}
		return "-"
	}
}

const (
	fetch    = "BenchmarkFetch200x1MiB"
	idle1k   = "BenchmarkIdleSessions/n=1000"
	idle10k  = "BenchmarkIdleSessions/n=10000"
	login    = "BenchmarkLoginStoredToken"
	first    = "BenchmarkFirstLogins200"
	authURL  = "BenchmarkLogsJournal/auth-url"
	since    = "BenchmarkLogsJournal/since-1h-n50"
	cfgScale = "BenchmarkConfigScale/accounts=20000"
	start    = "BenchmarkServeStartScale/accounts=20000"
	inlineA  = "BenchmarkServeStartInlineTokens/first/accounts=20000"
	inlineB  = "BenchmarkServeStartInlineTokens/later/accounts=20000"
	version  = "BenchmarkStartup/version"
	help     = "BenchmarkStartup/email-oauth2-proxy-help"
)

var targets = []target{
	{measure: "IMAP FETCH 200 x 1 MiB, proxy / direct throughput", bench: fetch, unit: "ratio", cmp: ">=", goal: 0.90, goalTxt: ">= 0.90",
		show: func(r results, v float64) string {
			p, _ := r.get(fetch, "proxy-MB/s")
			return fmt.Sprintf("%.2f (%.0f MB/s)", v, p)
		},
		direct: metric(fetch, "direct-MB/s", "%.0f MB/s")},
	{measure: "proxy CPU per GB piped (TLS decrypt + copy)", bench: fetch, unit: "proxy-CPU-s/GB", cmp: "<=", goal: 1.5, goalTxt: "<= 1.5 CPU-s/GB",
		show: f("%.2f CPU-s/GB"), direct: func(results) string { return "-" }},
	{measure: "RSS per idle authenticated IMAP session, 1,000 sessions", bench: idle1k, unit: "RSS-KiB/session", cmp: "<=", goal: 32, goalTxt: "<= 32 KiB",
		show: idleShow(idle1k), direct: func(results) string { return "-" }, extra: idleHeld(idle1k, 1000)},
	{measure: "RSS per idle authenticated IMAP session, 10,000 sessions", bench: idle10k, unit: "RSS-KiB/session", cmp: "<=", goal: 32, goalTxt: "<= 32 KiB, 10,000 held",
		show: idleShow(idle10k), direct: func(results) string { return "-" }, extra: idleHeld(idle10k, 10000)},
	{measure: "login with a stored token, proxy - direct, p50", bench: login, unit: "delta-p50-ms", cmp: "<=", goal: 2, goalTxt: "<= +2 ms",
		show: func(r results, v float64) string {
			p, _ := r.get(login, "proxy-p50-ms")
			return fmt.Sprintf("%+.2f ms (proxy %.1f ms)", v, p)
		},
		direct: metric(login, "direct-p50-ms", "%.1f ms")},
	{measure: "200 simultaneous first logins of one account: token requests", bench: first, unit: "token-requests", cmp: "==", goal: 1, goalTxt: "1",
		show: f("%.0f"), direct: func(results) string { return "-" }},
	{measure: "logs --auth-url, 100,000 unit + 1,000,000 other entries", bench: authURL, unit: "s", cmp: "<", goal: 0.3, goalTxt: "< 0.3 s",
		show: f("%.3f s"), direct: metric(authURL, "direct-s", "%.3f s")},
	{measure: "logs --since 1h -n 50, same journal", bench: since, unit: "s", cmp: "<", goal: 0.3, goalTxt: "< 0.3 s",
		show: f("%.3f s"), direct: metric(since, "direct-s", "%.3f s")},
	{measure: "config validate, 20,000 accounts (CPU time)", bench: cfgScale, unit: "cpu-s/load", cmp: "<", goal: 1, goalTxt: "< 1 s, linear",
		show: scaleShow(cfgScale, "s/load"), direct: func(results) string { return "-" }},
	{measure: "serve start, 20,000 accounts (CPU time)", bench: start, unit: "cpu-s/start", cmp: "<", goal: 1, goalTxt: "< 1 s, linear",
		show: scaleShow(start, "s/start"), direct: func(results) string { return "-" }},
	{measure: "serve start, 20,000 accounts, tokens inline, first start: import (CPU time)", bench: inlineA, unit: "cpu-s/start", cmp: "<", goal: 1, goalTxt: "< 1 s, linear",
		show: scaleShow(inlineA, "s/start"), direct: func(results) string { return "-" }},
	{measure: "serve start, 20,000 accounts, tokens inline, later start (CPU time)", bench: inlineB, unit: "cpu-s/start", cmp: "<", goal: 1, goalTxt: "< 1 s, linear",
		show: scaleShow(inlineB, "s/start"), direct: func(results) string { return "-" }},
	{measure: "orbit version", bench: version, unit: "ms", cmp: "<", goal: 20, goalTxt: "< 20 ms",
		show: f("%.1f ms"), direct: metric(version, "direct-ms", "%.1f ms")},
	{measure: "orbit email-oauth2-proxy --help", bench: help, unit: "ms", cmp: "<", goal: 20, goalTxt: "< 20 ms",
		show: f("%.1f ms"), direct: metric(help, "direct-ms", "%.1f ms")},
}

func idleShow(bench string) func(results, float64) string {
	return func(r results, v float64) string {
		n, _ := r.get(bench, "sessions")
		return fmt.Sprintf("%.1f KiB (%.0f sessions)", v, n)
	}
}

func idleHeld(bench string, want float64) func(results) (bool, string) {
	return func(r results) (bool, string) {
		n, _ := r.get(bench, "sessions")
		if n < want {
			return false, fmt.Sprintf("only %.0f sessions held (descriptor limit?)", n)
		}
		return true, ""
	}
}

func scaleShow(bench, wallUnit string) func(results, float64) string {
	return func(r results, v float64) string {
		s := fmt.Sprintf("%.2f CPU-s", v)
		if w, ok := r.get(bench, wallUnit); ok {
			s += fmt.Sprintf(", wall %.2f s", w)
		}
		if l, ok := r.get(bench, "linearity"); ok {
			s += fmt.Sprintf(", linearity %.2f", l)
		}
		return s
	}
}

func met(cmp string, v, goal float64) bool {
	switch cmp {
	case "<=":
		return v <= goal
	case "<":
		return v < goal
	case ">=":
		return v >= goal
	case "==":
		return v == goal
	}
	return false
}

func write(w io.Writer, r results) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tgoal\tmeasured\tdirect baseline\tmet?")
	for _, t := range targets {
		v, ok := r.get(t.bench, t.unit)
		if !ok {
			fmt.Fprintf(tw, "%s\t%s\tnot run (%s)\t-\t-\n", t.measure, t.goalTxt, t.bench)
			continue
		}
		verdict := "yes"
		if !met(t.cmp, v, t.goal) {
			verdict = "NO"
		}
		if t.extra != nil {
			if ok, why := t.extra(r); !ok {
				verdict = "NO: " + why
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.measure, t.goalTxt, t.show(r, v), t.direct(r), verdict)
	}
	tw.Flush()
}
