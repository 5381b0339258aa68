package journal

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/journal/journaltest"
)

// rec, base and writeJournal are short names for the journaltest helpers.
type rec = journaltest.Rec

var base = journaltest.Base

func writeJournal(t testing.TB, path string, first int, recs ...rec) string {
	t.Helper()
	return journaltest.Write(t, path, first, recs...)
}

// Message IDs of a made-up application: the reader knows no application.
const (
	idHello = "0f2cb5f9a6b04a0b8a1d55c3e0d1e001"
	idState = "0f2cb5f9a6b04a0b8a1d55c3e0d1e002"
)

const unit = "email-oauth2-proxy.service"

// fixture is a small journal with the unit's entries mixed with others.
func fixture(t testing.TB) (string, []rec) {
	recs := []rec{
		{{"_SYSTEMD_UNIT", unit}, {"_PID", "4242"}, {"PRIORITY", "6"}, {"SYSLOG_IDENTIFIER", "orbit"},
			{"MESSAGE_ID", idState}, {"ORBIT_STATE", "listening"}, {"MESSAGE", "listening on 127.0.0.1:2993"}},
		{{"_SYSTEMD_UNIT", "other.service"}, {"_PID", "7"}, {"MESSAGE_ID", idHello}, {"MESSAGE", "not ours"}},
		{{"_SYSTEMD_UNIT", unit}, {"_PID", "4242"}, {"PRIORITY", "6"}, {"MESSAGE_ID", idHello},
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
		{"unit and message id", Query{Units: []string{unit}, MessageIDs: []string{idHello}}, []string{
			"Please visit the following URL to authenticate account a@example.com: https://login.example/a?x=1",
		}},
		{"two message ids are ORed", Query{MessageIDs: []string{idHello, idState}}, []string{
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
		{"after cursor and lines keep the newest", Query{AfterCursor: all[0].Cursor, Lines: 2}, []string{"bin\xff\x00ary\nsecond line", "Started email-oauth2-proxy.service."}},
		{"reverse: newest first", Query{Units: []string{unit}, Reverse: true}, []string{
			"Started email-oauth2-proxy.service.",
			"bin\xff\x00ary\nsecond line",
			"Please visit the following URL to authenticate account a@example.com: https://login.example/a?x=1",
			"listening on 127.0.0.1:2993",
		}},
		{"reverse with lines and since", Query{Since: base.Add(time.Millisecond), Lines: 2, Reverse: true}, []string{
			"Started email-oauth2-proxy.service.", "bin\xff\x00ary\nsecond line",
		}},
		{"reverse stops at since", Query{Units: []string{unit}, Since: base.Add(2 * time.Millisecond), Reverse: true}, []string{
			"Started email-oauth2-proxy.service.",
			"bin\xff\x00ary\nsecond line",
			"Please visit the following URL to authenticate account a@example.com: https://login.example/a?x=1",
		}},
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

	t.Run("grep: only matching messages; none is not an error", func(t *testing.T) {
		got, err := r.Collect(ctx, Query{Units: []string{unit}, Grep: `^listening|^Started`})
		if want := []string{"listening on 127.0.0.1:2993", "Started email-oauth2-proxy.service."}; err != nil || !slices.Equal(messages(got), want) {
			t.Errorf("messages %q, %v; want %q", messages(got), err, want)
		}
		// Case-sensitive even for an all-lower-case pattern.
		if got, err := r.Collect(ctx, Query{Units: []string{unit}, Grep: `started`}); err != nil || len(got) != 0 {
			t.Errorf("lower-case pattern: %q, %v; want nothing and no error", messages(got), err)
		}
	})
	t.Run("fields: only those asked for, and the address", func(t *testing.T) {
		got, err := r.Collect(ctx, Query{MessageIDs: []string{idHello}, Units: []string{unit}, Fields: []string{"ORBIT_ACCOUNT", "MESSAGE_ID"}})
		if err != nil || len(got) != 1 {
			t.Fatalf("%d entries, %v", len(got), err)
		}
		e := got[0]
		if e.MessageID != idHello || e.Field("ORBIT_ACCOUNT") != "a@example.com" || e.Message != "" || e.Cursor != all[2].Cursor || !e.Time.Equal(all[2].Time) {
			t.Errorf("entry %+v", e)
		}
		if _, ok := e.Fields["ORBIT_AUTH_URL"]; ok {
			t.Errorf("a field not asked for came along: %v", e.Fields)
		}
	})

	e := all[2]
	if e.Unit != unit || e.PID != 4242 || e.Priority != 6 || e.MessageID != idHello ||
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
	t.Run("not allowed", func(t *testing.T) {
		// What journalctl 252 says, and how it exits, for a user outside
		// the systemd-journal and adm groups on a system journal (seen in
		// the systemd sandbox as nobody).
		fake := filepath.Join(t.TempDir(), "journalctl")
		script := "#!/bin/sh\necho 'No journal files were opened due to insufficient permissions.' >&2\nexit 1\n"
		if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := (&Reader{Journalctl: fake}).Collect(ctx, Query{Units: []string{"x.service"}})
		if !errors.Is(err, ErrDenied) || !errors.Is(err, fs.ErrPermission) {
			t.Errorf("err = %v, want ErrDenied (and fs.ErrPermission)", err)
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

func TestCommandReverseFields(t *testing.T) {
	r := &Reader{}
	got := r.Command(Query{Units: []string{unit}, Lines: 1, Reverse: true, Fields: []string{"MESSAGE", "MESSAGE_ID"}})
	want := []string{"journalctl", "--output=json", "--all", "--no-pager", "--quiet", "--unit=" + unit,
		"--lines=1", "--reverse", "--output-fields=MESSAGE,MESSAGE_ID"}
	if !slices.Equal(got, want) {
		t.Errorf("argv\n got %q\nwant %q", got, want)
	}
	for _, q := range []Query{{Reverse: true, Follow: true}, {Reverse: true, AfterCursor: "c"}, {Fields: []string{"a,b"}}} {
		if _, err := r.Collect(context.Background(), q); err == nil {
			t.Errorf("query %+v accepted", q)
		}
	}
}

func TestCommand(t *testing.T) {
	r := &Reader{Journalctl: "/usr/bin/journalctl", Args: []string{"--namespace=x"}}
	got := r.Command(Query{Units: []string{unit}, MessageIDs: []string{idHello}, Since: time.UnixMicro(1700000000000123), Follow: true})
	want := []string{"/usr/bin/journalctl", "--output=json", "--all", "--no-pager", "--quiet", "--namespace=x",
		"--unit=" + unit, "--since=@1700000000.000123", "--lines=all", "--follow", "MESSAGE_ID=" + idHello}
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

// TestAfterCursorWithMatches: AfterCursor means "every selected entry
// after this one" whether or not the cursor's own entry is selected.
// journalctl 252's --after-cursor skips the first selected entry when the
// cursor's entry does not match (it steps twice from the cursor's place,
// assuming the first step lands on the cursor's entry), and with only one
// such entry it shows nothing at all.
func TestAfterCursorWithMatches(t *testing.T) {
	u := func(msg string, kv ...string) rec {
		r := rec{{"_SYSTEMD_UNIT", unit}, {"_PID", "4242"}, {"MESSAGE", msg}}
		for i := 0; i+1 < len(kv); i += 2 {
			r = append(r, [2]string{kv[i], kv[i+1]})
		}
		return r
	}
	path := writeJournal(t, filepath.Join(t.TempDir(), "cursor.journal"), 0,
		u("plain 0"),
		u("hello 1", "MESSAGE_ID", idHello),
		u("plain 2"),
		u("hello 3", "MESSAGE_ID", idHello),
		u("hello 4", "MESSAGE_ID", idHello),
		u("state 5", "MESSAGE_ID", idState),
		rec{{"_SYSTEMD_UNIT", "other.service"}, {"MESSAGE", "other 6"}},
		u("plain 7"),
	)
	r := &Reader{Args: []string{"--file=" + path}}
	ctx := context.Background()
	all, err := r.Collect(ctx, Query{})
	if err != nil || len(all) != 8 {
		t.Fatalf("%d entries, %v", len(all), err)
	}
	hello := []string{idHello}
	tests := []struct {
		name string
		q    Query
		want []string
	}{
		{"cursor not selected", Query{Units: []string{unit}, MessageIDs: hello, AfterCursor: all[0].Cursor}, []string{"hello 1", "hello 3", "hello 4"}},
		{"cursor not selected, between", Query{Units: []string{unit}, MessageIDs: hello, AfterCursor: all[2].Cursor}, []string{"hello 3", "hello 4"}},
		{"one selected entry after the cursor", Query{MessageIDs: []string{idState}, AfterCursor: all[4].Cursor}, []string{"state 5"}},
		{"cursor selected", Query{Units: []string{unit}, MessageIDs: hello, AfterCursor: all[1].Cursor}, []string{"hello 3", "hello 4"}},
		{"cursor of another unit", Query{Units: []string{unit}, AfterCursor: all[6].Cursor}, []string{"plain 7"}},
		{"cursor of the last entry", Query{Units: []string{unit}, AfterCursor: all[7].Cursor}, nil},
		{"nothing selected after the cursor", Query{MessageIDs: hello, AfterCursor: all[5].Cursor}, nil},
		{"with lines", Query{MessageIDs: hello, AfterCursor: all[2].Cursor, Lines: 1}, []string{"hello 4"}},
		{"with grep", Query{Units: []string{unit}, AfterCursor: all[3].Cursor, Grep: `^(hello|plain)`}, []string{"hello 4", "plain 7"}},
		{"with grep, cursor not selected", Query{Units: []string{unit}, AfterCursor: all[2].Cursor, Grep: `^hello`}, []string{"hello 3", "hello 4"}},
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

	// Following: what is already there when journalctl starts comes
	// first, the cursor's own entry never.
	for _, c := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("follow after entry %d", c), func(t *testing.T) {
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			var got []string
			for e, err := range r.Entries(fctx, Query{Units: []string{unit}, MessageIDs: hello, AfterCursor: all[c].Cursor, Follow: true}) {
				if err != nil {
					t.Fatalf("after %q: %v", got, err)
				}
				if got = append(got, e.Message); e.Message == "hello 4" {
					break
				}
			}
			want := []string{"hello 1", "hello 3", "hello 4"}[min(c, 1):]
			if !slices.Equal(got, want) {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}
