package journal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/events"
)

const journalRemote = "/lib/systemd/systemd-journal-remote"

// rec is one entry in export form: field names and values in order, so
// repeated fields can be expressed.
type rec [][2]string

// base is the first realtime timestamp of generated entries.
var base = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// writeJournal turns records into a real journal file with
// systemd-journal-remote (appending when the file exists) and returns its
// path. Each record gets realtime base+i ms and the address fields a journal
// file needs unless it sets them itself.
func writeJournal(t testing.TB, path string, first int, recs ...rec) string {
	t.Helper()
	if _, err := os.Stat(journalRemote); err != nil {
		t.Skipf("%s is missing (apt-get install systemd-journal-remote, or run .ci/install-deps.sh): %v", journalRemote, err)
	}
	var buf bytes.Buffer
	for i, r := range recs {
		n := first + i
		have := map[string]bool{}
		for _, kv := range r {
			have[kv[0]] = true
		}
		if !have["__REALTIME_TIMESTAMP"] {
			fmt.Fprintf(&buf, "__REALTIME_TIMESTAMP=%d\n", base.Add(time.Duration(n)*time.Millisecond).UnixMicro())
		}
		if !have["__MONOTONIC_TIMESTAMP"] {
			fmt.Fprintf(&buf, "__MONOTONIC_TIMESTAMP=%d\n", 1000+n*1000)
		}
		if !have["_BOOT_ID"] {
			buf.WriteString("_BOOT_ID=0123456789abcdef0123456789abcdef\n")
		}
		for _, kv := range r {
			writeExportField(&buf, kv[0], kv[1])
		}
		buf.WriteByte('\n')
	}
	export := path + fmt.Sprintf(".%d.export", first)
	if err := os.WriteFile(export, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(journalRemote, "-o", path, export).CombinedOutput()
	if err != nil {
		t.Fatalf("%s -o %s %s: %v\n%s", journalRemote, path, export, err, out)
	}
	return path
}

// writeExportField uses the binary-safe form for values that the text form
// cannot carry (newlines, control bytes, invalid UTF-8).
func writeExportField(buf *bytes.Buffer, name, value string) {
	safe := true
	for i := 0; i < len(value); i++ {
		if c := value[i]; c < 0x20 || c >= 0x7f {
			safe = false
			break
		}
	}
	if safe {
		fmt.Fprintf(buf, "%s=%s\n", name, value)
		return
	}
	buf.WriteString(name)
	buf.WriteByte('\n')
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(value)))
	buf.Write(n[:])
	buf.WriteString(value)
	buf.WriteByte('\n')
}

const unit = "email-oauth2-proxy.service"

// fixture is a small journal with the unit's entries mixed with others.
func fixture(t testing.TB) (string, []rec) {
	recs := []rec{
		{{"_SYSTEMD_UNIT", unit}, {"_PID", "4242"}, {"PRIORITY", "6"}, {"SYSLOG_IDENTIFIER", "orbit"},
			{"MESSAGE_ID", events.Lifecycle}, {"ORBIT_STATE", "listening"}, {"MESSAGE", "listening on 127.0.0.1:2993"}},
		{{"_SYSTEMD_UNIT", "other.service"}, {"_PID", "7"}, {"MESSAGE_ID", events.AuthURL}, {"MESSAGE", "not ours"}},
		{{"_SYSTEMD_UNIT", unit}, {"_PID", "4242"}, {"PRIORITY", "6"}, {"MESSAGE_ID", events.AuthURL},
			{"ORBIT_ACCOUNT", "a@example.com"}, {"ORBIT_AUTH_URL", "https://login.example/a?x=1"},
			{"MESSAGE", "Please visit the following URL to authenticate account a@example.com: https://login.example/a?x=1"}},
		{{"_SYSTEMD_UNIT", unit}, {"_PID", "4242"}, {"PRIORITY", "3"}, {"MESSAGE", "bin\xff\x00ary\nsecond line"}, {"TAG", "one"}, {"TAG", "two"}},
		{{"_PID", "1"}, {"UNIT", unit}, {"PRIORITY", "6"}, {"MESSAGE", "Started email-oauth2-proxy.service."}},
	}
	path := writeJournal(t, filepath.Join(t.TempDir(), "fixture.journal"), 0, recs...)
	return path, recs
}

func messages(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Message)
	}
	return out
}

func TestReaderOnRealJournalFile(t *testing.T) {
	path, _ := fixture(t)
	r := &Reader{Args: []string{"--file=" + path}}
	ctx := context.Background()

	all, err := r.Collect(ctx, Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 {
		t.Fatalf("read %d entries, want 5: %q", len(all), messages(all))
	}

	tests := []struct {
		name string
		q    Query
		want []string
	}{
		{"unit", Query{Units: []string{unit}}, []string{
			"listening on 127.0.0.1:2993",
			"Please visit the following URL to authenticate account a@example.com: https://login.example/a?x=1",
			"bin\xff\x00ary\nsecond line",
			"Started email-oauth2-proxy.service.",
		}},
		{"unit and message id", Query{Units: []string{unit}, MessageIDs: []string{events.AuthURL}}, []string{
			"Please visit the following URL to authenticate account a@example.com: https://login.example/a?x=1",
		}},
		{"two message ids are ORed", Query{MessageIDs: []string{events.AuthURL, events.Lifecycle}}, []string{
			"listening on 127.0.0.1:2993", "not ours",
			"Please visit the following URL to authenticate account a@example.com: https://login.example/a?x=1",
		}},
		{"field match", Query{Matches: []string{"ORBIT_ACCOUNT=a@example.com"}}, []string{
			"Please visit the following URL to authenticate account a@example.com: https://login.example/a?x=1",
		}},
		{"lines keeps the newest", Query{Units: []string{unit}, Lines: 1}, []string{"Started email-oauth2-proxy.service."}},
		{"since", Query{Since: base.Add(3 * time.Millisecond)}, []string{"bin\xff\x00ary\nsecond line", "Started email-oauth2-proxy.service."}},
		{"after cursor", Query{AfterCursor: all[3].Cursor}, []string{"Started email-oauth2-proxy.service."}},
		// The newest of the window, not journalctl's oldest-after-since.
		{"since and lines keep the newest", Query{Since: base, Lines: 2}, []string{"bin\xff\x00ary\nsecond line", "Started email-oauth2-proxy.service."}},
		{"no match", Query{Units: []string{"nothing.service"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Collect(ctx, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(messages(got), tt.want) {
				t.Errorf("messages:\n got %q\nwant %q", messages(got), tt.want)
			}
		})
	}

	e := all[2]
	if e.Unit != unit || e.PID != 4242 || e.Priority != 6 || e.MessageID != events.AuthURL ||
		e.Field("ORBIT_ACCOUNT") != "a@example.com" || !e.Time.Equal(base.Add(2*time.Millisecond)) || e.Cursor == "" {
		t.Errorf("structured entry decoded as %+v", e)
	}
	bin := all[3]
	if bin.Priority != 3 || bin.Field("TAG") != "one" || !slices.Equal(bin.Multi["TAG"], []string{"one", "two"}) {
		t.Errorf("binary entry: priority %d, TAG %q, Multi %v", bin.Priority, bin.Field("TAG"), bin.Multi)
	}
	if sys := all[4]; sys.Unit != unit || sys.PID != 1 {
		t.Errorf("systemd's own entry about the unit: Unit %q PID %d", sys.Unit, sys.PID)
	}
	if all[1].Priority != -1 {
		t.Errorf("entry without PRIORITY has Priority %d, want -1", all[1].Priority)
	}
}

func TestFollowSeesNewEntriesAndStopsWithContext(t *testing.T) {
	path, _ := fixture(t)
	r := &Reader{Args: []string{"--file=" + path}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	type item struct {
		e   Entry
		err error
	}
	got := make(chan item, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e, err := range r.Entries(ctx, Query{Units: []string{unit}, Follow: true}) {
			got <- item{e, err}
		}
	}()
	next := func() item {
		t.Helper()
		select {
		case it := <-got:
			return it
		case <-time.After(20 * time.Second):
			t.Fatal("follow delivered nothing within 20 s")
			return item{}
		}
	}
	for i := 0; i < 4; i++ {
		if it := next(); it.err != nil {
			t.Fatalf("entry %d: %v", i, it.err)
		}
	}
	writeJournal(t, path, 10, rec{{"_SYSTEMD_UNIT", unit}, {"MESSAGE", "appended while following"}})
	if it := next(); it.err != nil || it.e.Message != "appended while following" {
		t.Fatalf("after appending: %q, %v", it.e.Message, it.err)
	}

	cancel()
	if it := next(); !errors.Is(it.err, context.Canceled) {
		t.Errorf("last value after cancel: %+v, want context.Canceled", it)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the iterator is still running 10 s after its context ended")
	}
}

func TestBreakingOutOfFollowKillsJournalctl(t *testing.T) {
	path, _ := fixture(t)
	r := &Reader{Args: []string{"--file=" + path}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, err := range r.Entries(context.Background(), Query{Follow: true}) {
			if err != nil {
				t.Error(err)
			}
			break
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("breaking out of a follow did not return within 10 s")
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("no journalctl", func(t *testing.T) {
		r := &Reader{Journalctl: "journalctl-that-does-not-exist"}
		_, err := r.Collect(ctx, Query{})
		if !errors.Is(err, ErrNoJournalctl) {
			t.Errorf("err = %v, want ErrNoJournalctl", err)
		}
	})
	t.Run("journalctl fails", func(t *testing.T) {
		if _, err := exec.LookPath("journalctl"); err != nil {
			t.Skip("journalctl is missing (install systemd, or run .ci/install-deps.sh)")
		}
		missing := filepath.Join(t.TempDir(), "missing.journal")
		r := &Reader{Args: []string{"--file=" + missing}}
		_, err := r.Collect(ctx, Query{})
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !strings.Contains(err.Error(), "journalctl") {
			t.Errorf("err = %v, want journalctl's exit error with its message", err)
		}
	})
	t.Run("bad queries", func(t *testing.T) {
		r := &Reader{Journalctl: "/bin/false"}
		for _, q := range []Query{
			{Matches: []string{"lower=x"}},
			{Matches: []string{"NOEQUALS"}},
			{MessageIDs: []string{"not-an-id"}},
			{Units: []string{"--root=/"}},
			{Lines: -1},
		} {
			if _, err := r.Collect(ctx, q); err == nil || !strings.HasPrefix(err.Error(), "journal: ") {
				t.Errorf("query %+v: err = %v, want a validation error", q, err)
			}
		}
	})
	t.Run("collect refuses follow", func(t *testing.T) {
		if _, err := (&Reader{}).Collect(ctx, Query{Follow: true}); err == nil {
			t.Error("Collect with Follow returned no error")
		}
	})
}

func TestCommand(t *testing.T) {
	r := &Reader{Journalctl: "/usr/bin/journalctl", Args: []string{"--namespace=x"}}
	got := r.Command(Query{Units: []string{unit}, MessageIDs: []string{events.AuthURL}, Since: time.UnixMicro(1700000000000123), Follow: true})
	want := []string{"/usr/bin/journalctl", "--output=json", "--all", "--no-pager", "--quiet", "--namespace=x",
		"--unit=" + unit, "--since=@1700000000.000123", "--lines=all", "--follow", "MESSAGE_ID=" + events.AuthURL}
	if !slices.Equal(got, want) {
		t.Errorf("argv:\n got %q\nwant %q", got, want)
	}
}

func TestParseEntry(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    map[string]string
		multi   map[string][]string
		wantErr bool
	}{
		{"strings", `{"MESSAGE":"hi","_PID":"3"}`, map[string]string{"MESSAGE": "hi", "_PID": "3"}, nil, false},
		{"byte array", `{"MESSAGE":[104,255,0,105]}`, map[string]string{"MESSAGE": "h\xff\x00i"}, nil, false},
		{"null", `{"MESSAGE":null,"A":"b"}`, map[string]string{"A": "b"}, nil, false},
		{"repeated", `{"X":["1","2"]}`, map[string]string{"X": "1"}, map[string][]string{"X": {"1", "2"}}, false},
		{"repeated binary", `{"X":[[97,10],"b",null]}`, map[string]string{"X": "a\n"}, map[string][]string{"X": {"a\n", "b"}}, false},
		{"empty array", `{"X":[]}`, map[string]string{"X": ""}, nil, false},
		{"not json", `MESSAGE=hi`, nil, nil, true},
		{"number value", `{"X":1}`, nil, nil, true},
		{"byte out of range", `{"X":[300]}`, nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := ParseEntry([]byte(tt.line))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if !maps.Equal(e.Fields, tt.want) {
				t.Errorf("Fields = %q, want %q", e.Fields, tt.want)
			}
			if !maps.EqualFunc(e.Multi, tt.multi, slices.Equal) {
				t.Errorf("Multi = %q, want %q", e.Multi, tt.multi)
			}
		})
	}
}

func BenchmarkParseEntry(b *testing.B) {
	line := []byte(`{"__CURSOR":"s=caf362a6d89e43a1821321d1d5ddf774;i=2;b=0123456789abcdef0123456789abcdef;m=7d0;t=60a24181e43e8;x=66801c5cb362b0b0","__REALTIME_TIMESTAMP":"1700000000001000","_SYSTEMD_UNIT":"email-oauth2-proxy.service","_PID":"4242","PRIORITY":"6","MESSAGE_ID":"7f990a110b074b1aaa72587258e4a97d","ORBIT_ACCOUNT":"a@example.com","ORBIT_AUTH_URL":"https://login.example/a?x=1","MESSAGE":"Please visit the following URL to authenticate account a@example.com: https://login.example/a?x=1"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseEntry(line); err != nil {
			b.Fatal(err)
		}
	}
}
