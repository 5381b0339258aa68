package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
)

// The soak (docs/soak.md): serve runs for a while under a mix of everything
// a mailer, a scanner and an operator do to it, and what it holds is
// compared between two idle moments, after a warm-up and at the end. The
// normal run lasts soakDefault; ORBIT_SOAK=10m (make soak) runs longer.

const (
	soakDefault = 45 * time.Second
	// soakLifetime and soakMargin: tokens last seconds, so the keep-alive
	// and logins refresh all the time.
	soakLifetime = 8 * time.Second
	soakMargin   = "3s"
	// soakInfoPerLogin bounds serve's info lines in the measured phase
	// (logins, reloads, background renewals, everything) per successful
	// login: each login logs one line ("login succeeded for ..."), a
	// background renewal none, a reload one.
	soakInfoPerLogin = 1.2
	// soakWarnPerRefusal bounds the warnings per refused login: a name the
	// provider refuses logs two ("login failed for ..." and "could not get
	// an access token for ..."), a storm of wrong passwords for one
	// account from one address one in all plus a summary a minute.
	soakWarnPerRefusal = 2.05
	// soakWrittenPerLogin bounds the bytes serve passes to write(2)
	// (/proc/PID/io wchar: files, sockets, the log) per login, refused or
	// not. A refused catch-all name once rewrote the whole status file
	// (half a megabyte with 1000 entries) each.
	soakWrittenPerLogin = 128 << 10
	// soakHeapGrowth bounds the live heap's growth between the two idle
	// samples; the catch-all names added in between (at most 1000 kept,
	// a few hundred bytes each) fit in it many times over.
	soakHeapGrowth = 16 << 20
	// soakRSSGrowth bounds VmRSS's growth; RSS follows the GC's pacing and
	// the allocator's caching, so only a gross leak trips it.
	soakRSSGrowth = 64 << 20
	// soakMaxNames bounds the catch-all names the provider knows (see
	// startMix).
	soakMaxNames = 40
)

func soakDuration(t *testing.T) time.Duration {
	v := os.Getenv("ORBIT_SOAK")
	if v == "" {
		return soakDefault
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 20*time.Second {
		t.Fatalf("ORBIT_SOAK=%q: want a duration of at least 20s, such as 10m", v)
	}
	return d
}

// soakSample is what serve holds at one moment.
type soakSample struct {
	fds, threads, goroutines int
	rss, heapLive, wchar     int64
	files                    map[string]int64 // state file -> size
	statusAccounts           int
	trustPairs, trustMaxAcct int
	tokenSections            int
}

func (s soakSample) String() string {
	return fmt.Sprintf("fds %d, threads %d, goroutines %d, VmRSS %.1f MiB, live heap %.2f MiB, status.json %d B (%d accounts), trusted-clients.json %d B (%d pairs, at most %d per account), tokens.cache %d B (%d sections), background-refresh.json %d B",
		s.fds, s.threads, s.goroutines, float64(s.rss)/(1<<20), float64(s.heapLive)/(1<<20),
		s.files["status.json"], s.statusAccounts, s.files["trusted-clients.json"], s.trustPairs, s.trustMaxAcct,
		s.files["tokens.cache"], s.tokenSections, s.files["background-refresh.json"])
}

// soakWorld is the running soak: counters the workers share.
type soakWorld struct {
	e       *env
	metrics string
	stop    chan struct{}
	wg      sync.WaitGroup

	logins    atomic.Int64 // successful logins
	refused   atomic.Int64 // wrong passwords and unknown names refused
	newNames  atomic.Int64 // catch-all names that logged in for the first time
	dropped   atomic.Int64 // sessions cut short by the client
	python    atomic.Int64 // sessions by Python's imaplib/poplib/smtplib
	addrSeq   atomic.Int64 // next loopback address for the unknown names
	nameSeq   atomic.Int64
	catchAllN atomic.Int64 // names registered at the provider so far

	mu     sync.Mutex
	errs   []string
	known  []string // catch-all names that logged in, with their passwords
	idle   atomic.Int64
	reload atomic.Int64
}

func (w *soakWorld) fail(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) < 20 {
		w.errs = append(w.errs, fmt.Sprintf(format, args...))
	}
}

func (w *soakWorld) stopped() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

// run starts f in a loop on its own goroutine until stop, pausing every
// between rounds.
func (w *soakWorld) run(every time.Duration, f func(round int)) {
	w.wg.Go(func() {
		for i := 0; !w.stopped(); i++ {
			f(i)
			select {
			case <-w.stop:
			case <-time.After(every):
			}
		}
	})
}

// phase runs the mix for d, then stops the workers and waits for them.
func (w *soakWorld) phase(t *testing.T, d time.Duration) {
	w.stop = make(chan struct{})
	w.startMix()
	deadline := time.Now().Add(d)
	// The operator: a reload every few seconds, every third after an edit
	// by hand, and once a broken file that is then fixed.
	for n := 0; time.Now().Before(deadline); n++ {
		time.Sleep(min(3*time.Second, time.Until(deadline)))
		if time.Until(deadline) < time.Second {
			break
		}
		w.reloadRound(t, n)
	}
	close(w.stop)
	w.wg.Wait()
}

func (w *soakWorld) reloadRound(t *testing.T, n int) {
	e := w.e
	switch {
	case n%3 == 1:
		data := readFile(t, e.config)
		if err := os.WriteFile(e.config, []byte(data+fmt.Sprintf("# edited by hand, round %d\n", n)), 0o600); err != nil {
			t.Fatal(err)
		}
	case n == 5 && w.reload.Load() < 5:
		good := readFile(t, e.config)
		bad := strings.Replace(good, "oauth2_flow = client_credentials", "oauth2_flow = client-credentials", 1)
		if err := os.WriteFile(e.config, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		e.hup("reload refused; still serving the previous configuration", 1)
		if err := os.WriteFile(e.config, []byte(good), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.hup("configuration reloaded", int(w.reload.Add(1)))
}

// startMix starts the workers. Everything is raw sockets (cheap on a
// 2-core machine) except one Python client every few seconds.
func (w *soakWorld) startMix() {
	e := w.e
	// Mailers with the right password: alice (authorization_code), bob
	// (client_credentials, from many loopback addresses to fill the trust
	// file's per-account bound) and the catch-all names known so far.
	w.run(20*time.Millisecond, func(i int) {
		user, pw, from := alice, mailerPassword, "127.0.0.1"
		switch i % 4 {
		case 1:
			user, from = bob, fmt.Sprintf("127.0.9.%d", 1+i%24)
		case 2, 3:
			if n := w.knownName(i); n != "" {
				user, pw = n, catchAllPassword(n)
			}
		}
		switch i % 3 {
		case 0:
			w.imapGood(from, user, pw, i%2 == 0)
		case 1:
			w.popGood(user, pw)
		case 2:
			w.smtpGood(user, pw)
		}
	})
	// Python's libraries, one every few seconds.
	w.run(2*time.Second, func(i int) {
		user := []string{alice, bob}[i%2]
		var out string
		var err error
		switch i % 3 {
		case 0:
			_, out, err = e.imapFetchAll(user, mailerPassword)
		case 1:
			_, out, err = e.popFetchAll(user, mailerPassword)
		case 2:
			out, err = e.smtpSend(user, mailerPassword, user, user, testMessage(user, user, fmt.Sprintf("soak %d", i)))
		}
		if err != nil || !strings.Contains(out, "DONE") && !strings.Contains(out, "SENT") {
			w.fail("python client %d as %s: %v\n%s", i, user, err, out)
			return
		}
		w.python.Add(1)
		w.logins.Add(1)
	})
	// A new catch-all name every 1.5 s, up to soakMaxNames: the provider
	// knows it, so the first login runs the password grant and a key
	// derivation and stores tokens under a section of its own. Capped so
	// a long run reaches a steady state: every account is renewed every
	// few seconds here, and each renewal rewrites the whole token store.
	w.run(1500*time.Millisecond, func(int) {
		if w.catchAllN.Load() >= soakMaxNames {
			return
		}
		name := fmt.Sprintf("soak-%d@example.test", w.catchAllN.Add(1))
		e.prov.AddUser(name, catchAllPassword(name))
		if w.imapGood("127.0.0.1", name, catchAllPassword(name), false) {
			w.newNames.Add(1)
			w.mu.Lock()
			w.known = append(w.known, name)
			w.mu.Unlock()
		}
	})
	// Names nobody has, each from a new loopback address (a scanner): the
	// provider refuses each; guard records and status entries pile up to
	// their bounds.
	for k := range 2 {
		w.run(0, func(int) {
			n := w.addrSeq.Add(1)
			from := fmt.Sprintf("127.%d.%d.%d", 10+k, n/250%250, 1+n%250)
			w.imapBad(from, fmt.Sprintf("nobody-%d@example.test", w.nameSeq.Add(1)), "guess")
		})
	}
	// Wrong passwords for bob from two addresses.
	for _, from := range []string{"127.0.0.2", "127.0.0.3"} {
		w.run(700*time.Millisecond, func(i int) { w.imapBad(from, bob, fmt.Sprintf("wrong-%d", i)) })
	}
	// Clients that give up: before the greeting, halfway through a
	// command, during a login, and right after sending a command.
	w.run(50*time.Millisecond, func(i int) { w.drop(i) })
	// Idle sessions: a few held for seconds, then closed (some with
	// LOGOUT, some by just closing).
	for k := range 4 {
		w.run(time.Second, func(i int) {
			c, err := w.imapLogin("127.0.0.1", []string{alice, bob}[k%2], mailerPassword)
			if err != nil {
				w.fail("idle session: %v", err)
				return
			}
			defer c.c.Close()
			w.logins.Add(1)
			w.idle.Add(1)
			select {
			case <-w.stop:
			case <-time.After(time.Duration(2+i%5) * time.Second):
			}
			if i%2 == 0 {
				c.imapCmd("O1", "LOGOUT")
			}
		})
	}
}

func catchAllPassword(name string) string { return "pw-" + strings.TrimSuffix(name, "@example.test") }

func (w *soakWorld) knownName(i int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.known) == 0 {
		return ""
	}
	return w.known[i%len(w.known)]
}

// dialFrom connects to port from a loopback source address, every read and
// write bounded so a worker never outlives the phase by long.
func dialFrom(from string, port int) (*lineConn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", testenv.Addr(port))
	if err != nil {
		return nil, err
	}
	return &lineConn{c: c, r: bufio.NewReader(c)}, nil
}

func (w *soakWorld) imapLogin(from, user, pw string) (*lineConn, error) {
	c, err := dialFrom(from, w.e.imapPort)
	if err != nil {
		return nil, err
	}
	if g, err := c.line(); err != nil || !strings.HasPrefix(g, "* OK") {
		c.c.Close()
		return nil, fmt.Errorf("greeting %q: %v", g, err)
	}
	done, _, err := c.imapCmd("L1", fmt.Sprintf("LOGIN %s %s", imapQuote(user), imapQuote(pw)))
	if err != nil || !strings.HasPrefix(done, "L1 OK") {
		c.c.Close()
		return nil, fmt.Errorf("LOGIN as %s from %s: %q %v", user, from, done, err)
	}
	return c, nil
}

// imapGood logs in, selects INBOX (the session reaches Dovecot) and logs
// out, or just closes.
func (w *soakWorld) imapGood(from, user, pw string, logout bool) bool {
	c, err := w.imapLogin(from, user, pw)
	if err != nil {
		w.fail("%v", err)
		return false
	}
	defer c.c.Close()
	if l, _, err := c.imapCmd("S1", "SELECT INBOX"); err != nil || !strings.HasPrefix(l, "S1 OK") {
		w.fail("SELECT as %s: %q %v", user, l, err)
		return false
	}
	if logout {
		c.imapCmd("O1", "LOGOUT")
	}
	w.logins.Add(1)
	return true
}

func (w *soakWorld) imapBad(from, user, pw string) {
	c, err := dialFrom(from, w.e.imapPort)
	if err != nil {
		return
	}
	defer c.c.Close()
	// The guard may hold a refused address's next attempt for up to a
	// minute; the worker does not wait that long.
	c.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.r.ReadString('\n'); err != nil {
		return
	}
	fmt.Fprintf(c.c, "L1 LOGIN %s %s\r\n", imapQuote(user), imapQuote(pw))
	l, err := c.r.ReadString('\n')
	if err != nil {
		return
	}
	if strings.HasPrefix(l, "L1 OK") {
		w.fail("a wrong password logged in as %s from %s", user, from)
		return
	}
	w.refused.Add(1)
}

func (w *soakWorld) popGood(user, pw string) {
	c, err := dialFrom("127.0.0.1", w.e.popPort)
	if err != nil {
		w.fail("POP3 connect: %v", err)
		return
	}
	defer c.c.Close()
	for _, step := range []struct{ send, want string }{{"", "+OK"}, {"USER " + user, "+OK"}, {"PASS " + pw, "+OK"}, {"STAT", "+OK"}, {"QUIT", "+OK"}} {
		if step.send != "" {
			c.send(step.send)
		}
		if l, err := c.line(); err != nil || !strings.HasPrefix(l, step.want) {
			w.fail("POP3 as %s at %q: %q %v", user, strings.Fields(step.send + " greeting")[0], l, err)
			return
		}
	}
	w.logins.Add(1)
}

func (w *soakWorld) smtpGood(user, pw string) {
	c, err := dialFrom("127.0.0.1", w.e.smtpPort)
	if err != nil {
		w.fail("SMTP connect: %v", err)
		return
	}
	defer c.c.Close()
	auth := "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pw))
	for _, step := range []struct{ send, want string }{{"", "220"}, {"EHLO soak.example.test", "250"}, {auth, "235"}, {"NOOP", "250"}, {"QUIT", "221"}} {
		if step.send != "" {
			c.send(step.send)
		}
		if l, err := c.smtpReply(); err != nil || !strings.HasPrefix(l, step.want) {
			w.fail("SMTP as %s at %q: %q %v", user, strings.Fields(step.send + " greeting")[0], l, err)
			return
		}
	}
	w.logins.Add(1)
}

// drop is a client that goes away at an awkward moment.
func (w *soakWorld) drop(i int) {
	e := w.e
	port := []int{e.imapPort, e.popPort, e.smtpPort}[i%3]
	c, err := dialFrom("127.0.0.1", port)
	if err != nil {
		return
	}
	defer c.c.Close()
	w.dropped.Add(1)
	switch i / 3 % 4 {
	case 0: // before the greeting
		return
	case 1: // half a command
		c.line()
		c.c.Write([]byte("A1 LOGIN \"half"))
	case 2: // the login under way: IMAP waits for the token, POP/SMTP mid-dialogue
		c.smtpReply()
		switch port {
		case e.imapPort:
			c.send(fmt.Sprintf("L1 LOGIN %s %s", imapQuote(alice), imapQuote(mailerPassword)))
		case e.popPort:
			c.send("USER " + bob)
		default:
			c.send("EHLO soak.example.test")
		}
	case 3: // logged in, a command sent, gone before the answer
		if port != e.imapPort {
			return
		}
		c.c.Close()
		lc, err := w.imapLogin("127.0.0.1", bob, mailerPassword)
		if err != nil {
			w.fail("%v", err)
			return
		}
		w.logins.Add(1)
		lc.send("S1 SELECT INBOX")
		lc.c.Close()
	}
}

// sample reads what serve holds now. It first waits until no session is
// open and the descriptor count has settled (sessions the clients closed
// are closed by serve a moment later).
func (w *soakWorld) sample(t *testing.T) soakSample {
	t.Helper()
	e := w.e
	pid := e.proc.cmd.Process.Pid
	deadline := time.Now().Add(30 * time.Second)
	for n := sessionsOpen(t, w.metrics); n > 0; n = sessionsOpen(t, w.metrics) {
		if time.Now().After(deadline) {
			// Sample anyway: the descriptors and goroutines say what leaked.
			t.Errorf("%d sessions still open 30 s after every client closed", n)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	s := soakSample{files: map[string]int64{}}
	// Settled: the same count twice, 200 ms apart (a closing connection
	// or the provider's idle HTTP connection may still be going away).
	prev := -1
	waitFor(t, "the descriptors to settle", 20*time.Second, func() bool {
		n := countFDs(t, pid)
		settled := n == prev
		prev = n
		time.Sleep(200 * time.Millisecond)
		return settled
	})
	s.fds = prev
	st := readFile(t, fmt.Sprintf("/proc/%d/status", pid))
	s.threads = int(procField(st, "Threads:"))
	s.rss = procField(st, "VmRSS:") << 10
	s.wchar = procField(readFile(t, fmt.Sprintf("/proc/%d/io", pid)), "wchar:")
	body := scrapeQuiet(t, w.metrics)
	s.goroutines = int(value(body, "go_goroutines"))
	s.heapLive = int64(value(body, "go_gc_heap_live_bytes"))
	dir := filepath.Dir(e.status)
	for _, f := range []string{"status.json", "trusted-clients.json", "tokens.cache", "background-refresh.json"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err == nil {
			s.files[f] = fi.Size()
		}
	}
	if sf, err := oauth.ReadStatus(e.status); err == nil {
		s.statusAccounts = len(sf.Accounts)
	}
	var trust struct {
		Trusted []struct{ Account string }
	}
	if data, err := os.ReadFile(filepath.Join(dir, oauth.TrustFileName)); err == nil && json.Unmarshal(data, &trust) == nil {
		s.trustPairs = len(trust.Trusted)
		per := map[string]int{}
		for _, p := range trust.Trusted {
			per[p.Account]++
			s.trustMaxAcct = max(s.trustMaxAcct, per[p.Account])
		}
	}
	s.tokenSections = len(regexp.MustCompile(`(?m)^\[`).FindAllString(readFile(t, e.tokens), -1))
	return s
}

func countFDs(t *testing.T, pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// procField reads a "Name:   123 kB" line of /proc/PID/status.
func procField(status, name string) int64 {
	for _, l := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(l, name); ok {
			n, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return n
		}
	}
	return -1
}

// scrapeQuiet scrapes without keeping the connection, so the scrape
// leaves no descriptor behind in serve.
func scrapeQuiet(t *testing.T, addr string) string {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := hc.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

var sessionsSeries = regexp.MustCompile(`(?m)^orbit_emailproxy_sessions_open\{[^}]*\} ([0-9.e+]+)`)

func sessionsOpen(t *testing.T, addr string) int {
	n := 0
	for _, m := range sessionsSeries.FindAllStringSubmatch(scrapeQuiet(t, addr), -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		n += int(v)
	}
	return n
}

// TestE2ESoak: serve runs under a mix for soakDefault (ORBIT_SOAK longer):
// alice (authorization_code, signed in up front), bob (client_credentials)
// and a catch-all [@] (password flow) log in over IMAP, POP and SMTP with
// raw sockets and Python's libraries; new catch-all names keep coming,
// some the provider knows and many it does not (each from a new address);
// wrong passwords come from two addresses; clients drop before the
// greeting, mid-command and mid-login; idle sessions are held and closed;
// the file is reloaded every 3 s, edited by hand, broken once and fixed;
// tokens last 8 s, so refreshes run all the time (keep_alive and
// background_refresh on). Between an idle moment after a warm-up and one at
// the end: descriptors back to the baseline (±2), goroutines within 10,
// live heap within 16 MiB, RSS within 64 MiB, state files within their
// bounds, no secret in the log, and few log lines per successful login.
func TestE2ESoak(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak runs for a minute; not in -short")
	}
	total := soakDuration(t)
	e := newEnv(t)
	e.addClient(bob)
	e.registerCode(alice)
	e.register("--account", bob, "--oauth2-flow", "client_credentials")
	e.register("--account", "@", "--oauth2-flow", "password", "--allow-catch-all-accounts")
	data := readFile(t, e.config)
	if err := os.WriteFile(e.config, []byte(strings.Replace(data, "[emailproxy]\n", "[emailproxy]\nbackground_refresh = True\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	creds := t.TempDir()
	key := make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile(filepath.Join(creds, oauth.BackgroundCredential), key, 0o400); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	e.prov.SetAccessTokenLifetime(soakLifetime)
	e.prov.RotateRefreshTokens(true)
	metricsAddr := testenv.Addr(testenv.FreePorts(t, 1)[0])
	e.serve("--refresh-margin", soakMargin, "--metrics-listen", metricsAddr)
	pid := e.proc.cmd.Process.Pid

	// alice is signed in ahead of time, as an admin would.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := e.authorizeCmd(ctx, alice, mailerPassword, "--no-wait", "--output", "json").Output()
	var waiting struct {
		AuthURL string `json:"auth_url"`
	}
	if err != nil || json.Unmarshal(out, &waiting) != nil || waiting.AuthURL == "" {
		t.Fatalf("authorize --no-wait: %v\n%s", err, out)
	}
	e.authorize(alice, waiting.AuthURL)
	waitFor(t, "alice's sign-in", 30*time.Second, func() bool {
		return strings.Contains(e.proc.Log(), "account "+alice+" signed in through the control socket")
	})

	// bob's first login sets the password his stored tokens open with;
	// the wrong passwords must not come first.
	if r := e.imapLoginReply(bob, mailerPassword); r != "L1 OK" {
		t.Fatalf("bob's first login: %q", r)
	}
	w := &soakWorld{e: e, metrics: metricsAddr}
	t.Cleanup(func() {
		// A failed assertion mid-phase leaves the workers running; they
		// stop before serve does.
		if w.stop != nil && !w.stopped() {
			close(w.stop)
		}
		w.wg.Wait()
	})
	warm := min(total/3, 20*time.Second)
	w.phase(t, warm)
	base := w.sample(t)
	baseLog := len(e.proc.Log())
	baseLogins, baseRefused := w.logins.Load(), w.refused.Load()
	t.Logf("after the %v warm-up: %v", warm, base)

	w.phase(t, total-warm)
	end := w.sample(t)
	measured := e.proc.Log()[baseLog:]
	info, warn := strings.Count(measured, " INFO "), strings.Count(measured, " WARN ")
	logins, refused := w.logins.Load()-baseLogins, w.refused.Load()-baseRefused
	written := end.wchar - base.wchar
	t.Logf("at the end, %v later: %v", total-warm, end)
	t.Logf("in all: %d successful logins (%d by Python's libraries, %d in the measured phase), %d refused, %d new catch-all names, %d dropped clients, %d idle sessions, %d reloads", w.logins.Load(), w.python.Load(), logins, w.refused.Load(), w.newNames.Load(), w.dropped.Load(), w.idle.Load(), w.reload.Load())
	t.Logf("measured phase: %d info lines (%.3f per successful login), %d warnings (%.3f per refused login), %d bytes written (%.0f per login, refused or not)",
		info, float64(info)/float64(max(logins, 1)), warn, float64(warn)/float64(max(refused, 1)), written, float64(written)/float64(max(logins+refused, 1)))

	for _, msg := range w.errs {
		t.Errorf("during the soak: %s", msg)
	}
	if len(w.errs) > 0 {
		t.Logf("(serve's log follows at the end)")
	}
	select {
	case <-e.proc.done:
		t.Fatalf("serve exited during the soak: %v", e.proc.err)
	default:
	}
	if d := end.fds - base.fds; d > 2 || d < -2 {
		t.Errorf("serve holds %d descriptors at the end, %d after the warm-up: a leak (ls -l /proc/%d/fd)", end.fds, base.fds, pid)
	}
	if end.goroutines > base.goroutines+10 {
		t.Errorf("serve runs %d goroutines at the end, %d after the warm-up: a leak", end.goroutines, base.goroutines)
	}
	if end.heapLive > base.heapLive+soakHeapGrowth {
		t.Errorf("serve's live heap grew from %d to %d bytes (more than %d)", base.heapLive, end.heapLive, soakHeapGrowth)
	}
	if end.rss > base.rss+soakRSSGrowth {
		t.Errorf("serve's RSS grew from %d to %d bytes (more than %d)", base.rss, end.rss, soakRSSGrowth)
	}
	if end.threads > 64 {
		t.Errorf("serve runs %d threads at the end (%d after the warm-up)", end.threads, base.threads)
	}
	// The documented bounds of the state files (pkg/emailproxy/oauth):
	// status 1000 accounts, trust 16 per account and 4096 pairs. The
	// token store holds one section per account that logged in (alice,
	// bob, the catch-all names the provider knows, the [@] section's
	// absence aside): the unknown names and wrong passwords add nothing.
	if end.statusAccounts > 1000 || end.statusAccounts == 0 {
		t.Errorf("status.json has %d accounts, want 1..1000", end.statusAccounts)
	}
	if end.trustPairs > 4096 || end.trustMaxAcct > 16 {
		t.Errorf("trusted-clients.json has %d pairs, up to %d for one account; want at most 4096 and 16", end.trustPairs, end.trustMaxAcct)
	}
	if want := 2 + int(w.newNames.Load()); end.tokenSections > want {
		t.Errorf("tokens.cache has %d sections, want at most %d (alice, bob and the %d catch-all names that logged in)", end.tokenSections, want, w.newNames.Load())
	}
	if end.files["background-refresh.json"] == 0 {
		t.Errorf("no background-refresh.json: the sealed copies were never written")
	}
	if r := float64(info) / float64(max(logins, 1)); r > soakInfoPerLogin {
		t.Errorf("%d info lines for %d successful logins (%.3f each), want at most %v", info, logins, r, soakInfoPerLogin)
	}
	if r := float64(warn) / float64(max(refused, 1)); r > soakWarnPerRefusal {
		t.Errorf("%d warnings for %d refused logins (%.3f each), want at most %v", warn, refused, r, soakWarnPerRefusal)
	}
	if r := float64(written) / float64(max(logins+refused, 1)); r > soakWrittenPerLogin {
		t.Errorf("%d bytes written for %d logins (%.0f each), want at most %d", written, logins+refused, r, soakWrittenPerLogin)
	}
	secrets := []string{"alice-provider-pw"}
	w.mu.Lock()
	for _, n := range w.known {
		secrets = append(secrets, catchAllPassword(n))
	}
	w.mu.Unlock()
	e.checkNoSecrets(secrets...)
	if st := e.statusEntry(alice); st.State != oauth.StateAuthorised {
		t.Errorf("alice at the end: %+v", st)
	}
}
