package authurl

import (
	"context"
	"fmt"
	"iter"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/journal"
	"github.com/senhasegura/orbit/pkg/journal/journaltest"
)

// Records of a unit's journal as the orbit engine and systemd write them.
func recStarting() journaltest.Rec {
	return journaltest.Rec{{"_PID", "1"}, {"UNIT", unit}, {"MESSAGE_ID", UnitStarting}, {"MESSAGE", "Starting the proxy..."}}
}

func recEvent(id, account string, kv ...string) journaltest.Rec {
	r := journaltest.Rec{{"_SYSTEMD_UNIT", unit}, {"_PID", "42"}, {"MESSAGE_ID", id}, {"ORBIT_ACCOUNT", account}, {"MESSAGE", "event " + id + " " + account}}
	for i := 0; i+1 < len(kv); i += 2 {
		r = append(r, [2]string{kv[i], kv[i+1]})
	}
	return r
}

func recURL(account, url string) journaltest.Rec {
	return recEvent(events.AuthURL, account, "ORBIT_AUTH_URL", url)
}

func recOther(msg string) journaltest.Rec {
	return journaltest.Rec{{"_SYSTEMD_UNIT", "other.service"}, {"_PID", "7"}, {"MESSAGE_ID", events.Login}, {"ORBIT_ACCOUNT", "a@x"}, {"MESSAGE", msg}}
}

// oracle is the plain fold over every entry of the unit, the way --auth-url
// worked before Find read selectively.
func oracle(t *testing.T, r *journal.Reader) []Pending {
	all, err := r.Collect(context.Background(), journal.Query{Units: []string{unit}})
	if err != nil {
		t.Fatal(err)
	}
	w := &Watch{tracker: NewTracker()}
	for _, e := range all {
		w.observe(e)
	}
	return w.Pending()
}

func hasPlain(recs []journaltest.Rec) bool {
	for _, r := range recs {
		for _, kv := range r {
			if kv[0] == "MESSAGE" && strings.HasPrefix(kv[1], "Email OAuth 2.0 Proxy: ") {
				return true
			}
		}
	}
	return false
}

func summary(p []Pending) []string {
	var out []string
	for _, a := range p {
		out = append(out, a.Account+" "+a.URL)
	}
	return out
}

// TestFindAgreesWithTheFullFold: on random histories in a real journal
// file, read by journalctl, the selective read (either engine) finds exactly
// what folding the unit's whole journal finds. Odd rounds hold the Python
// proxy's lines too, which only the Python engine's read looks for.
func TestFindAgreesWithTheFullFold(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	accounts := []string{"a@x", "b@x", "c@x", "d@x"}
	rounds := 16
	if testing.Short() {
		rounds = 4
	}
	for round := range rounds {
		var recs []journaltest.Rec
		for i := range 40 {
			a := accounts[rng.IntN(len(accounts))]
			switch k := rng.IntN(20); {
			case k < 4:
				recs = append(recs, recURL(a, fmt.Sprintf("https://login.example/%s/%d", a, i)))
			case k < 5:
				recs = append(recs, recEvent(events.DeviceCode, a, "ORBIT_AUTH_URL", "https://login.example/device", "ORBIT_USER_CODE", fmt.Sprint("CODE", i)))
			case k < 7:
				recs = append(recs, recEvent(events.AuthSucceeded, a))
			case k < 8:
				recs = append(recs, recEvent(events.AuthFailed, a))
			case k < 12:
				recs = append(recs, recEvent(events.Login, a))
			case k < 13:
				recs = append(recs, recStarting())
			case k < 14:
				recs = append(recs, recOther(fmt.Sprint("noise ", i)))
			case k < 15 && round%2 == 1:
				// The syslog copy, and now and then the stdout copy with
				// the date the line was written.
				msg := visit(a, fmt.Sprintf("https://py.example/%s/%d", a, i))
				recs = append(recs, journaltest.Rec{{"_SYSTEMD_UNIT", unit}, {"MESSAGE", "Email OAuth 2.0 Proxy: " + msg}})
				if rng.IntN(2) == 0 {
					recs = append(recs, journaltest.Rec{{"_SYSTEMD_UNIT", unit}, {"MESSAGE", journaltest.Base.Add(time.Duration(i)*time.Millisecond).In(time.Local).Format("2006-01-02 15:04:05") + ": " + msg}})
				}
			case k < 16 && round%2 == 1:
				recs = append(recs, journaltest.Rec{{"_SYSTEMD_UNIT", unit}, {"MESSAGE", "Email OAuth 2.0 Proxy: " + success(a)}})
			default:
				recs = append(recs, journaltest.Rec{{"_SYSTEMD_UNIT", unit}, {"MESSAGE", fmt.Sprint("plain ", i)}})
			}
		}
		path := journaltest.Write(t, filepath.Join(t.TempDir(), "r.journal"), 0, recs...)
		r := &journal.Reader{Args: []string{"--file=" + path}}
		want := summary(oracle(t, r))
		for _, mode := range []struct {
			python    bool
			perAcount int
		}{{false, 16}, {false, 0}, {true, 16}} {
			if !mode.python && hasPlain(recs) {
				continue // orbit mode reads structured entries only
			}
			perAccountQueries = mode.perAcount
			w, err := Find(context.Background(), r, Options{Unit: unit, PythonLines: mode.python})
			perAccountQueries = 16
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(w.Pending()); !slices.Equal(got, want) {
				t.Errorf("round %d, %+v: Find = %q, the full fold %q", round, mode, got, want)
			}
		}
	}
}

// TestFindReadsLittle: with many logins after a URL, the selective read
// still finds the pending URL and the one that a login retired, and
// journalctl is asked only for the fields the tracker uses.
func TestFindReadsLittle(t *testing.T) {
	recs := []journaltest.Rec{recStarting(), recURL("old@x", "https://void"), recStarting(),
		recURL("waiting@x", "https://login.example/w"), recURL("busy@x", "https://login.example/b")}
	for i := range 500 {
		recs = append(recs, recEvent(events.Login, "busy@x"), recOther(fmt.Sprint("noise ", i)))
	}
	path := journaltest.Write(t, filepath.Join(t.TempDir(), "r.journal"), 0, recs...)
	src := &countingSource{r: &journal.Reader{Args: []string{"--file=" + path}}}
	w, err := Find(context.Background(), src, Options{Unit: unit})
	if err != nil {
		t.Fatal(err)
	}
	if got := summary(w.Pending()); !slices.Equal(got, []string{"waiting@x https://login.example/w"}) {
		t.Errorf("pending %q", got)
	}
	// The newest relevant entry, the URLs back to the start, and one
	// login of busy@x; not its 500 logins nor the other unit's lines.
	if src.n > 6 {
		t.Errorf("read %d entries, want at most 6", src.n)
	}
	for _, q := range src.queries {
		if len(q.MessageIDs) == 0 {
			t.Errorf("query %+v selects no MESSAGE_ID", q)
		}
	}
}

type countingSource struct {
	r       *journal.Reader
	n       int
	queries []journal.Query
}

func (c *countingSource) Entries(ctx context.Context, q journal.Query) iter.Seq2[journal.Entry, error] {
	c.queries = append(c.queries, q)
	return func(yield func(journal.Entry, error) bool) {
		for e, err := range c.r.Entries(ctx, q) {
			c.n++
			if !yield(e, err) {
				return
			}
		}
	}
}

// TestFollowResumes: after Find, Follow sees a URL logged later, and an
// engine start voids what was pending.
func TestFollowResumes(t *testing.T) {
	dir := t.TempDir()
	path := journaltest.Write(t, filepath.Join(dir, "r.journal"), 0, recStarting(), recURL("a@x", "https://a"), recEvent(events.Login, "a@x"))
	r := &journal.Reader{Args: []string{"--file=" + path}}
	w, err := Find(context.Background(), r, Options{Unit: unit})
	if err != nil || len(w.Pending()) != 0 {
		t.Fatalf("Find: %v, %v", w.Pending(), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		time.Sleep(200 * time.Millisecond)
		journaltest.Write(t, path, 10, recURL("b@x", "https://b"))
	}()
	var got []Pending
	err = w.Follow(ctx, r, func(p []Pending) bool { got = p; return len(p) == 0 })
	if err != nil || !slices.Equal(summary(got), []string{"b@x https://b"}) {
		t.Fatalf("Follow: %q, %v", summary(got), err)
	}
}

// TestFollowSeesWhatFindMissed: a URL logged after Find read the journal
// but before Follow started journalctl is already there when Follow starts;
// Follow must still report it, whatever entry its cursor names (journalctl
// 252's --after-cursor skips the first matching entry after a cursor whose
// own entry does not match; pkg/journal works around it).
func TestFollowSeesWhatFindMissed(t *testing.T) {
	tests := []struct {
		name    string
		history []journaltest.Rec
		python  bool
	}{
		{"after a login", []journaltest.Rec{recStarting(), recURL("a@x", "https://a"), recEvent(events.Login, "a@x")}, false},
		{"after the engine start", []journaltest.Rec{recStarting()}, false},
		{"after the engine start, others logging", []journaltest.Rec{recStarting(), recOther("o1"), recOther("o2")}, false},
		{"python, after a plain line", []journaltest.Rec{recStarting(), {{"_SYSTEMD_UNIT", unit}, {"MESSAGE", "Email OAuth 2.0 Proxy: listening"}}}, true},
		{"nothing of the unit yet", []journaltest.Rec{recOther("o1")}, false},
		{"after systemd's own start entry", []journaltest.Rec{{{"_PID", "1"}, {"_UID", "0"}, {"_SYSTEMD_UNIT", "init.scope"}, {"UNIT", unit}, {"MESSAGE_ID", UnitStarting}, {"MESSAGE", "Starting the proxy..."}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := journaltest.Write(t, filepath.Join(t.TempDir(), "r.journal"), 0, tt.history...)
			r := &journal.Reader{Args: []string{"--file=" + path}}
			w, err := Find(context.Background(), r, Options{Unit: unit, PythonLines: tt.python})
			if err != nil || len(w.Pending()) != 0 {
				t.Fatalf("Find: %v, %v", w.Pending(), err)
			}
			// Between Find and Follow: something of the unit that Follow
			// does not look for, then the URL.
			journaltest.Write(t, path, 10, journaltest.Rec{{"_SYSTEMD_UNIT", unit}, {"_PID", "42"}, {"MESSAGE", "connection from 127.0.0.1"}}, recURL("b@x", "https://b"))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var got []Pending
			err = w.Follow(ctx, r, func(p []Pending) bool { got = p; return len(p) == 0 })
			if err != nil || !slices.Equal(summary(got), []string{"b@x https://b"}) {
				t.Fatalf("Follow: %q, %v (want the URL logged before Follow started)", summary(got), err)
			}
		})
	}
}
