package remote

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestParseJSONOutput(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{`{"a": 1}` + "\n", `{"a": 1}`, true},
		{"[]\n", "[]", true},
		{"{\"a\":1}\n{\"a\":2}\n", `[{"a":1},{"a":2}]`, true}, // NDJSON: an array
		{"orbit dev\n", "", false},
		{"{\"a\":1}\ntrailing text\n", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := parseJSONOutput([]byte(tt.in))
		if ok != tt.ok || (ok && string(got) != tt.want) {
			t.Errorf("parseJSONOutput(%q) = %s, %v; want %s, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestReadHostsFile(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "hosts")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got, err := ReadHostsFile(write("# fleet\nmt4adm@vault01  # first\n\n  ssh://vault02:2222\n[::1]:22\n"))
	if want := []string{"mt4adm@vault01", "ssh://vault02:2222", "[::1]:22"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("got %q, %v; want %q", got, err, want)
	}
	for body, want := range map[string]string{
		"vault01 vault02\n": "hosts:1: \"vault01 vault02\" holds more than one address",
		"ok\nvault:0\n":     "hosts:2: --host \"vault:0\"",
		"# nothing\n":       "names no host",
	} {
		if _, err := ReadHostsFile(write(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to say %q", body, err, want)
		}
	}
	if _, err := ReadHostsFile(filepath.Join(dir, "absent")); err == nil {
		t.Error("a missing hosts file was accepted")
	}
}

func TestPrefixWriterWholeLines(t *testing.T) {
	var out bytes.Buffer
	var mu sync.Mutex
	first := ""
	p := &prefixWriter{w: &out, mu: &mu, prefix: "h1 | ", first: &first}
	p.Write([]byte("par"))
	p.Write([]byte("tial\nsecond\nno newline"))
	p.Flush()
	if want := "h1 | partial\nh1 | second\nh1 | no newline\n"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
	if first != "partial" {
		t.Errorf("first line %q", first)
	}
}

func TestBroadcastGivesEveryReaderAll(t *testing.T) {
	pr, pw := io.Pipe()
	b := newBroadcast(pr)
	readers := []io.Reader{b.reader(), b.reader(), b.reader()}
	go func() {
		pw.Write([]byte("secret\n"))
		pw.Write([]byte("more"))
		pw.Close()
	}()
	for i, r := range readers {
		got, err := io.ReadAll(r)
		if err != nil || string(got) != "secret\nmore" {
			t.Errorf("reader %d: %q, %v", i, got, err)
		}
	}
}

func TestSummaryShowsErrorsOfFailedHostsOnly(t *testing.T) {
	var out bytes.Buffer
	writeSummary(&out, FleetResult{Hosts: []*HostResult{
		{Host: "vault01", ExitCode: 0, firstError: "warning: something minor"},
		{Host: "vault02", ExitCode: 4, firstError: "orbit: the configuration is invalid"},
	}, Succeeded: 1, Failed: 1})
	got := out.String()
	if strings.Contains(got, "something minor") {
		t.Errorf("a warning of a host that succeeded is in the ERROR column:\n%s", got)
	}
	for _, want := range []string{"HOST     EXIT         DURATION  ERROR", "vault02  4 (invalid)  0s        orbit: the configuration is invalid", "1 of 2 hosts succeeded"} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
}
