package logs_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/cli/emailproxy/logs"
	"github.com/senhasegura/orbit/internal/cli/emailproxy/service"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/senhasegura/orbit/internal/testenv"
	"github.com/senhasegura/orbit/internal/testenv/sandbox"
	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/journal"
)

// The journal of BenchmarkLogsJournal: a mailer that polled for a few
// months (100,000 of the proxy's own entries) on a machine whose other
// units logged ten times as much, interleaved.
const (
	benchUnitEntries  = 100_000
	benchOtherEntries = 1_000_000
	benchRounds       = 100
	benchNoiseUnit    = "bench-noise.service"
	benchWaiting      = "waiting@example.com"
	benchWaitingURL   = "https://login.example/authorize?client_id=c&state=waiting"
	benchMailer       = "mailer@example.com"
	senderEnv         = "ORBIT_BENCH_JOURNAL_SENDER" // cgroup directories, ":"-separated
)

// BenchmarkLogsJournal runs `logs --auth-url` and `logs --since 1h -n N`
// on a real journal: systemd and journald in the sandbox, 100,000 entries
// attributed to the proxy unit and 1,000,000 to another unit, written
// through journald's native socket (about a minute, once per run). The
// reads go through the real journalctl on that journal's files.
//
// Metrics: s (seconds per command), target-s (issue 11: 0.3), direct-s
// (journalctl alone printing the unit's newest 50 entries, the floor for
// any reader), x-direct (s over direct-s). The sub-benchmark "before"
// (with ORBIT_BENCH_BEFORE=1) is the read the commands did before issue 11,
// the unit's whole history with every field, for the record.
func BenchmarkLogsJournal(b *testing.B) {
	if testing.Short() {
		b.Skip("fills a journal with 1.1 million entries; not with -short")
	}
	s := sandbox.Boot(b)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	fillStart := time.Now()
	fillJournal(ctx, b, s)
	b.Logf("journal filled with %d + %d entries in %v", benchUnitEntries, benchOtherEntries, time.Since(fillStart).Round(time.Second))

	r := &journal.Reader{Args: []string{"--directory=" + s.Path("/run/log/journal")}}
	unit := service.DefaultUnit
	run := func(b *testing.B, o *logs.Options) string {
		ios, _, out, errOut := iostreams.Test()
		o.IO, o.Journal, o.Unit = ios, r, unit
		if o.Output == "" {
			o.Output = output.Text
		}
		if err := logs.Run(ctx, o); err != nil {
			b.Fatalf("logs: %v\n%s", err, errOut)
		}
		return out.String()
	}
	orbit := func(string) bool { return false }

	direct := timeOf(b, 5, func() {
		if got, err := r.Collect(ctx, journal.Query{Units: []string{unit}, Lines: 50}); err != nil || len(got) != 50 {
			b.Fatalf("journalctl -u %s -n 50: %d entries, %v", unit, len(got), err)
		}
	})

	cases := []struct {
		name   string
		target float64
		opts   func() *logs.Options
		check  func(out string) error
	}{
		{"auth-url", 0.3, func() *logs.Options { return &logs.Options{AuthURL: true, PythonEngine: orbit} }, wantURL},
		{"since-1h-n50", 0.3, func() *logs.Options {
			return &logs.Options{Since: "1h", Lines: 50, LinesSet: true, PythonEngine: orbit}
		}, wantLines(50)},
		{"since-1h-n500", 0, func() *logs.Options {
			return &logs.Options{Since: "1h", Lines: 500, LinesSet: true, PythonEngine: orbit}
		}, wantLines(500)},
		// The Python proxy writes no MESSAGE_IDs, so its unit is read in
		// full since the engine started: reported, no target.
		{"auth-url-python-engine", 0, func() *logs.Options { return &logs.Options{AuthURL: true} }, wantURL},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if err := c.check(run(b, c.opts())); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			for b.Loop() {
				run(b, c.opts())
			}
			per := time.Since(start).Seconds() / float64(b.N)
			b.ReportMetric(per, "s")
			b.ReportMetric(direct, "direct-s")
			b.ReportMetric(per/direct, "x-direct")
			if c.target > 0 {
				b.ReportMetric(c.target, "target-s")
			}
		})
	}
	b.Run("before", func(b *testing.B) {
		// What --auth-url did before: every entry of the unit, all fields.
		// A minute a run on a busy 2-core machine, so only on request.
		if os.Getenv("ORBIT_BENCH_BEFORE") == "" {
			b.Skip("set ORBIT_BENCH_BEFORE=1 to measure the full read the commands did before issue 11")
		}
		for b.Loop() {
			got, err := r.Collect(ctx, journal.Query{Units: []string{unit}})
			if err != nil || len(got) < benchUnitEntries {
				b.Fatalf("%d entries, %v", len(got), err)
			}
		}
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s")
		b.ReportMetric(direct, "direct-s")
	})
}

// timeOf is the mean wall time of n calls of f, in seconds.
func timeOf(b *testing.B, n int, f func()) float64 {
	f() // warm the page cache, as every later read finds it
	start := time.Now()
	for range n {
		f()
	}
	return time.Since(start).Seconds() / float64(n)
}

func wantURL(out string) error {
	if out != benchWaitingURL+"\n" {
		return fmt.Errorf("--auth-url printed %q, want %s's URL", out, benchWaiting)
	}
	return nil
}

func wantLines(n int) func(string) error {
	return func(out string) error {
		if got := strings.Count(out, "\n"); got != n {
			return fmt.Errorf("printed %d lines, want %d", got, n)
		}
		return nil
	}
}

// fillJournal starts the proxy unit and a noise unit (both sleep) and runs
// this test binary inside the sandbox to write the entries.
func fillJournal(ctx context.Context, b *testing.B, s *sandbox.Sandbox) {
	// journald's rate limit would drop most of a sender's entries, and its
	// default size cap (10% of /run) would rotate the oldest away.
	conf := s.Path("/run/systemd/journald.conf.d")
	if err := os.MkdirAll(conf, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "bench.conf"), []byte("[Journal]\nRateLimitIntervalSec=0\nRuntimeMaxUse=4G\nRuntimeMaxFileSize=1G\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Run(ctx, "systemctl", "restart", "systemd-journald"); err != nil {
		b.Fatal(err)
	}
	for _, u := range []string{service.DefaultUnit, benchNoiseUnit} {
		if err := s.InstallUnit(ctx, u, "[Service]\nExecStart=/bin/sleep infinity\n"); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Run(ctx, "systemctl", "start", u); err != nil {
			b.Fatal(err)
		}
	}
	bin := sandbox.CopyTestBinary(b, filepath.Join(testenv.SharedDir(b), "logs-bench.test"))
	s.RunTest(ctx, b, bin, "TestBenchJournalFillInner")
}

// TestBenchJournalFillInner runs inside the sandbox for
// BenchmarkLogsJournal: two sender processes, one in each unit's cgroup,
// take turns so that the unit's entries are spread through the journal.
func TestBenchJournalFillInner(t *testing.T) {
	if !sandbox.Inside() || os.Getenv(senderEnv) != "" {
		t.Skip("runs inside the sandbox, for BenchmarkLogsJournal")
	}
	ctx := context.Background()
	unitSender := startSender(ctx, t, service.DefaultUnit)
	noiseSender := startSender(ctx, t, benchNoiseUnit)
	// An authorisation that nobody completed, and one that the mailer
	// completed before polling for months.
	unitSender.send(t, "setup")
	for i := range benchRounds {
		unitSender.send(t, strconv.Itoa(benchUnitEntries/benchRounds))
		noiseSender.send(t, strconv.Itoa(benchOtherEntries/benchRounds))
		if i%20 == 0 {
			t.Logf("round %d of %d", i, benchRounds)
		}
	}
	unitSender.close(t)
	noiseSender.close(t)
	// journalctl --sync returns once journald has stored everything sent
	// before it.
	if out, err := exec.Command("journalctl", "--sync").CombinedOutput(); err != nil {
		t.Fatalf("journalctl --sync: %v: %s", err, out)
	}
	out, err := exec.Command("journalctl", "-u", service.DefaultUnit, "--output=cat", "-n", "1", "MESSAGE_ID="+events.Login).Output()
	if err != nil || !strings.Contains(string(out), benchMailer) {
		t.Fatalf("the unit's journal does not end with the mailer's logins: %q, %v", out, err)
	}
}

type sender struct {
	cmd *exec.Cmd
	in  *bufio.Writer
	out *bufio.Scanner
}

// startSender runs this binary's TestBenchJournalSender in unit's cgroup.
func startSender(ctx context.Context, t *testing.T, unit string) *sender {
	cg, err := exec.Command("systemctl", "show", "-p", "ControlGroup", "--value", unit).Output()
	if err != nil || len(strings.TrimSpace(string(cg))) == 0 {
		t.Fatalf("ControlGroup of %s: %q, %v", unit, cg, err)
	}
	var dirs []string
	for _, h := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup"} {
		d := filepath.Join(h, strings.TrimSpace(string(cg)))
		if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err == nil {
			dirs = append(dirs, d)
		}
	}
	if len(dirs) == 0 {
		t.Fatalf("no cgroup directory for %s (%s)", unit, cg)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, self, "-test.run=^TestBenchJournalSender$", "-test.count=1")
	cmd.Env = append(os.Environ(), senderEnv+"="+strings.Join(dirs, ":"))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &sender{cmd: cmd, in: bufio.NewWriter(stdin), out: bufio.NewScanner(stdout)}
	s.wait(t) // in its cgroup
	return s
}

func (s *sender) send(t *testing.T, what string) {
	t.Helper()
	fmt.Fprintln(s.in, what)
	if err := s.in.Flush(); err != nil {
		t.Fatal(err)
	}
	s.wait(t)
}

func (s *sender) wait(t *testing.T) {
	t.Helper()
	for s.out.Scan() {
		if line := s.out.Text(); line == "ack" {
			return
		} else if msg, ok := strings.CutPrefix(line, "fail "); ok {
			t.Fatal(msg)
		}
	}
	t.Fatalf("the sender ended: %v", s.out.Err())
}

func (s *sender) close(t *testing.T) {
	fmt.Fprintln(s.in, "quit")
	_ = s.in.Flush()
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("sender: %v", err)
	}
}

// TestBenchJournalSender is a sender process for TestBenchJournalFillInner:
// it moves into the cgroup named in its environment (so journald files its
// entries under that unit), then writes native journal datagrams on
// request, answering "ack" after each request.
func TestBenchJournalSender(t *testing.T) {
	dirs := os.Getenv(senderEnv)
	if dirs == "" {
		t.Skip("a helper process of TestBenchJournalFillInner")
	}
	ack := func(err error) {
		if err != nil {
			fmt.Printf("fail %v\n", err)
			os.Exit(1)
		}
		fmt.Println("ack")
	}
	for _, d := range strings.Split(dirs, ":") {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			ack(err)
		}
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: "/run/systemd/journal/socket", Net: "unixgram"})
	if err != nil {
		ack(err)
	}
	ack(nil)
	noise := strings.Contains(dirs, "bench-noise")
	in := bufio.NewScanner(os.Stdin)
	n := 0
	for in.Scan() {
		var err error
		switch cmd := in.Text(); cmd {
		case "quit":
			return
		case "setup":
			for _, d := range [][]string{
				{"MESSAGE_ID=" + events.AuthURL, "ORBIT_ACCOUNT=" + benchWaiting, "ORBIT_AUTH_URL=" + benchWaitingURL,
					"MESSAGE=" + fmt.Sprintf(events.AuthURLText, benchWaiting, benchWaitingURL)},
				{"MESSAGE_ID=" + events.AuthURL, "ORBIT_ACCOUNT=" + benchMailer, "ORBIT_AUTH_URL=https://login.example/m",
					"MESSAGE=" + fmt.Sprintf(events.AuthURLText, benchMailer, "https://login.example/m")},
				{"MESSAGE_ID=" + events.AuthSucceeded, "ORBIT_ACCOUNT=" + benchMailer, "MESSAGE=authorised " + benchMailer},
			} {
				if _, err = conn.Write([]byte(strings.Join(append(d, "PRIORITY=6", "SYSLOG_IDENTIFIER=orbit"), "\n") + "\n")); err != nil {
					break
				}
			}
		default:
			count, _ := strconv.Atoi(cmd)
			for range count {
				n++
				var msg string
				if noise {
					msg = fmt.Sprintf("MESSAGE=backup job %d: copied 1 file\nPRIORITY=6\nSYSLOG_IDENTIFIER=backup\n", n)
				} else {
					msg = fmt.Sprintf("MESSAGE_ID=%s\nORBIT_ACCOUNT=%s\nORBIT_PROTOCOL=IMAP\nORBIT_CLIENT=127.0.0.1:%d\nMESSAGE=IMAP login %s from 127.0.0.1\nPRIORITY=6\nSYSLOG_IDENTIFIER=orbit\n",
						events.Login, benchMailer, 30000+n%30000, benchMailer)
				}
				if _, err = conn.Write([]byte(msg)); err != nil {
					break
				}
			}
		}
		ack(err)
	}
}
