package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func mustParse(t testing.TB, s string) *Config {
	t.Helper()
	c, err := Parse([]byte(s), "test.config")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func TestParsePythonWrittenFile(t *testing.T) {
	c, err := Load("testdata/python-written.config")
	if err != nil {
		t.Fatal(err)
	}
	wantGlobal := Global{DeleteAccountTokenOnPasswordError: false, AllowCatchAllAccounts: true, MaxSessions: DefaultMaxSessions, KeepAlive: true}
	if c.Global != wantGlobal {
		t.Errorf("Global = %+v, want %+v", c.Global, wantGlobal)
	}
	wantServers := []Server{
		{Section: "IMAP-1993", Protocol: IMAP, LocalPort: 1993, LocalAddress: "127.0.0.1", ServerAddress: "outlook.office365.com", ServerPort: 993, MaxSessions: DefaultMaxSessions},
		{Section: "POP-1995", Protocol: POP, LocalPort: 1995, LocalAddress: "127.0.0.1", ServerAddress: "outlook.office365.com", ServerPort: 995, MaxSessions: DefaultMaxSessions},
		{Section: "SMTP-1587", Protocol: SMTP, LocalPort: 1587, LocalAddress: "127.0.0.1", ServerAddress: "smtp.office365.com", ServerPort: 587, ServerStartTLS: true, MaxSessions: DefaultMaxSessions},
	}
	if !reflect.DeepEqual(c.Servers, wantServers) {
		t.Errorf("Servers =\n%+v\nwant\n%+v", c.Servers, wantServers)
	}
	a, ok := c.Account("alice@example.com")
	if !ok {
		t.Fatal("alice@example.com not resolved")
	}
	if a.Section != "alice@example.com" || a.TokenURL != "https://login.microsoftonline.com/common/oauth2/v2.0/token" ||
		a.ClientSecret != "Xy8Q~abcdefghijklmnopqrstuvwxyz0123456" || a.RedirectURI != "http://localhost" {
		t.Errorf("alice settings not inherited from [@example.com]: %+v", a)
	}
	wantTokens := InlineTokens{
		TokenSalt: "bXlzYWx0c2FsdHNhbHQxMg==", TokenIterations: 1200000,
		AccessToken:       "gAAAAABnAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
		AccessTokenExpiry: 1767225600,
		RefreshToken:      "gAAAAABnBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB==",
		LastActivity:      1767222000,
	}
	if a.Tokens != wantTokens {
		t.Errorf("tokens = %+v, want %+v", a.Tokens, wantTokens)
	}
	if a.EffectiveFlow() != FlowAuthorizationCode || !a.Interactive() {
		t.Errorf("flow = %s", a.EffectiveFlow())
	}
	if ds := c.Validate(); HasErrors(ds) {
		t.Errorf("a file the Python proxy wrote has errors: %v", ds)
	}
}

func TestAccountResolution(t *testing.T) {
	const base = `[emailproxy]
allow_catch_all_accounts = %s
[@]
token_url = https://all.example/token
oauth2_scope = all-scope
token_salt = c2FsdA==
access_token = from-catch-all
[@example.com]
token_url = https://domain.example/token
token_iterations = 100000
[bob@example.com]
client_id = bob-client
access_token = bob-token
[CaSe@example.com]
client_id = case
[DEFAULT]
client_secret = default-secret
oauth2_scope = default-scope
`
	type want struct {
		ok                                 bool
		section, tokenURL, scope, clientID string
		secret, salt, accessToken          string
		iterations                         int
	}
	tests := []struct {
		name, allow, user string
		want              want
	}{
		{"own section with catch-all chain", "True", "bob@example.com", want{true, "bob@example.com", "https://domain.example/token", "all-scope", "bob-client", "default-secret", "c2FsdA==", "bob-token", 100000}},
		{"domain catch-all, tokens not inherited", "True", "carol@example.com", want{true, "@example.com", "https://domain.example/token", "all-scope", "", "default-secret", "c2FsdA==", "", 100000}},
		{"global catch-all", "True", "dave@other.org", want{true, "@", "https://all.example/token", "all-scope", "", "default-secret", "c2FsdA==", "", 0}},
		{"catch-all off: own section only, DEFAULT still applies", "False", "bob@example.com", want{true, "bob@example.com", "", "default-scope", "bob-client", "default-secret", "", "bob-token", 0}},
		{"catch-all off: no section, no account", "False", "carol@example.com", want{}},
		{"section names are case-sensitive", "False", "case@example.com", want{}},
		{"exact case matches", "False", "CaSe@example.com", want{true, "CaSe@example.com", "", "default-scope", "case", "default-secret", "", "", 0}},
		{"a catch-all name is not a login", "True", "@example.com", want{}},
		{"empty login", "True", "", want{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, strings.Replace(base, "%s", tt.allow, 1))
			a, ok := c.Account(tt.user)
			got := want{ok, a.Section, a.TokenURL, a.Scope, a.ClientID, a.ClientSecret, a.Tokens.TokenSalt, a.Tokens.AccessToken, a.Tokens.TokenIterations}
			if got != tt.want {
				t.Errorf("Account(%q) =\n%+v\nwant\n%+v", tt.user, got, tt.want)
			}
		})
	}
}

func TestUsePKCE(t *testing.T) {
	for v, want := range map[string]bool{"": true, "True": true, "yes": true, "False": false, "off": false, "anything": true} {
		s := "[a@b.c]\n"
		if v != "" {
			s += "use_pkce = " + v + "\n"
		}
		a, _ := mustParse(t, s).Account("a@b.c")
		if a.UsePKCE != want {
			t.Errorf("use_pkce = %q: UsePKCE = %v, want %v", v, a.UsePKCE, want)
		}
	}
}

func TestParseBool(t *testing.T) {
	tests := []struct {
		in      string
		val, ok bool
	}{
		{"True", true, true}, {"true", true, true}, {"TRUE", true, true}, {"yes", true, true}, {"On", true, true}, {"1", true, true},
		{"False", false, true}, {"no", false, true}, {"OFF", false, true}, {"0", false, true},
		{"", false, false}, {"y", false, false}, {"2", false, false}, {"enabled", false, false},
	}
	for _, tt := range tests {
		v, ok := ParseBool(tt.in)
		if v != tt.val || ok != tt.ok {
			t.Errorf("ParseBool(%q) = %v, %v; want %v, %v", tt.in, v, ok, tt.val, tt.ok)
		}
	}
}

func TestGlobalDefaultsAndLegacyStartTLS(t *testing.T) {
	c := mustParse(t, "[SMTP-2465]\nserver_address = s\nserver_port = 587\nstarttls = yes\n[SMTP-2587]\nserver_address = s\nserver_port = 587\nstarttls = True\nserver_starttls = False\n[smtp-1]\nx = y\n")
	if !c.Global.DeleteAccountTokenOnPasswordError || c.Global.AllowCatchAllAccounts {
		t.Errorf("defaults wrong: %+v", c.Global)
	}
	if len(c.Servers) != 2 {
		t.Fatalf("servers = %+v (lower-case [smtp-1] must not count)", c.Servers)
	}
	if !c.Servers[0].ServerStartTLS || c.Servers[0].LocalAddress != "::" {
		t.Errorf("legacy starttls not read or default local_address wrong: %+v", c.Servers[0])
	}
	if c.Servers[1].ServerStartTLS {
		t.Errorf("server_starttls must win over starttls: %+v", c.Servers[1])
	}
}

func TestParseValuesLikeConfigparser(t *testing.T) {
	tests := []struct {
		name, in, section, key, want string
	}{
		{"continuation", "[s]\nscope = a\n  b\n\n  c\nnext = 1\n", "s", "scope", "a\nb\n\nc"},
		{"comment inside a value is skipped", "[s]\nk = a\n# note\n  b\n", "s", "k", "a\nb"},
		{"no inline comments", "[s]\nk = abc # not a comment ; really\n", "s", "k", "abc # not a comment ; really"},
		{"colon delimiter", "[s]\nk: v\n", "s", "k", "v"},
		{"first delimiter splits", "[s]\nk = a=b:c\n", "s", "k", "a=b:c"},
		{"quotes kept", "[s]\nk = \"quoted\"\n", "s", "k", "\"quoted\""},
		{"backtick kept", "[s]\nk = `x`\n", "s", "k", "`x`"},
		{"trailing backslash kept", "[s]\nk = a\\\nj = b\n", "s", "k", "a\\"},
		{"key names case-insensitive", "[s]\nToken_URL = v\n", "s", "token_url", "v"},
		{"header trailing text", "[s] trailing\nk = v\n", "s", "k", "v"},
		{"crlf", "[s]\r\nk = v\r\n", "s", "k", "v"},
		{"bom", "\ufeff[s]\nk = v\n", "s", "k", "v"},
		{"empty value", "[s]\nk =\n", "s", "k", ""},
		{"DEFAULT fallback", "[DEFAULT]\nk = d\n[s]\n", "s", "k", "d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.in)
			got, ok := c.Get(tt.section, tt.key)
			if !ok || got != tt.want {
				t.Errorf("Get(%q, %q) = %q, %v; want %q", tt.section, tt.key, got, ok, tt.want)
			}
		})
	}
	if c := mustParse(t, "[S]\nk = v\n"); c.HasSection("s") {
		t.Error("section names must be case-sensitive")
	}
}

func TestParseSyntaxErrors(t *testing.T) {
	tests := []struct {
		name, in string
		lines    []int
		msg      string
	}{
		{"key before any section", "k = v\n[s]\n", []int{1}, "before any [section]"},
		{"line without delimiter", "[s]\nk = v\njunk\n", []int{3}, "neither a [section] header nor"},
		{"empty key name", "[s]\n= v\n", []int{2}, "no key name"},
		{"duplicate section", "[s]\na = 1\n[t]\n[s]\n", []int{4}, "second time (first at line 1)"},
		{"duplicate key, any case", "[s]\ntoken_url = a\nTOKEN_URL = b\n", []int{3}, "appears a second time"},
		{"several problems at once", "x\n[s]\ny\n", []int{1, 3}, ""},
		{"invalid utf-8", "[s]\nk = \xff\n", []int{2}, "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in), "/etc/x.config")
			if err == nil {
				t.Fatal("Parse accepted a file configparser refuses")
			}
			if !errors.Is(err, ErrSyntax) {
				t.Errorf("errors.Is(err, ErrSyntax) = false for %v", err)
			}
			var se *SyntaxError
			if !errors.As(err, &se) || se.Path != "/etc/x.config" {
				t.Fatalf("no *SyntaxError with the path: %v", err)
			}
			var got []int
			for _, d := range syntaxDiagnostics(err) {
				got = append(got, d.Line)
			}
			if !reflect.DeepEqual(got, tt.lines) {
				t.Errorf("lines = %v, want %v (%v)", got, tt.lines, err)
			}
			if !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), "/etc/x.config:") {
				t.Errorf("error %q lacks %q or the file name", err, tt.msg)
			}
		})
	}
}

func TestSyntaxErrorsNeverRepeatTheLine(t *testing.T) {
	_, err := Parse([]byte("[s]\nsuper-secret-token-value\n"), "x")
	if err == nil || strings.Contains(err.Error(), "super-secret") {
		t.Fatalf("error must not quote a stray line, got %v", err)
	}
}

// pythonReader dumps what Python's configparser (as the Python proxy sets
// it up) reads from a file, as JSON {section: {key: value}}.
const pythonReader = `
import configparser, json, sys
for path in sys.argv[1:]:
    p = configparser.ConfigParser(interpolation=None)
    try:
        p.read_string(open(path, encoding='utf-8').read())
    except configparser.Error as e:
        print(json.dumps({"__error__": type(e).__name__}))
        continue
    out = {s: {k: p.get(s, k) for k in p.options(s)} for s in p.sections()}
    out["DEFAULT"] = dict(p.defaults())
    print(json.dumps(out))
`

// TestReaderMatchesConfigparser runs the same files through Python's
// configparser, which defines the format, and through Parse.
func TestReaderMatchesConfigparser(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed: cannot compare with configparser")
	}
	inputs := []string{
		"[s]\nk = v\n",
		"[s]\nscope = a\n  b\n\n  c\nnext = 1\n",
		"[s]\nk = a\n# note\n  b\n\n\n",
		"[s]\nk = abc # x ; y\nK2 : v2\n",
		"[s]\n  indented = key\n",
		"[s]\nk = a\n\tb\n [t]\n",
		"[DEFAULT]\nd = 1\n[s]\nk = v\n",
		"[s] tail\nk=v\n[a]b]\nx = \"q\" \n",
		"[s]\nk =\nj = `x`\n",
		"k = v\n",
		"[s]\nnodelim\n",
		"[s]\n[s]\n",
		"[s]\nk=1\nK=2\n",
		"[s]\r\nk = v\r\n  w\r\n",
		"[s]\nk = v \x1c\n",
	}
	for _, f := range []string{"seed-example.config", "python-written.config", "existing-with-tokens.config"} {
		b, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, string(b))
	}
	dir := t.TempDir()
	args := []string{"-c", pythonReader}
	for i, in := range inputs {
		path := filepath.Join(dir, fmt.Sprintf("in%d.config", i))
		if err := os.WriteFile(path, []byte(in), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, path)
	}
	out, err := exec.Command(py, args...).Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	results := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(results) != len(inputs) {
		t.Fatalf("python3 gave %d results for %d inputs", len(results), len(inputs))
	}
	compared := 0
	for i, in := range inputs {
		out := []byte(results[i])
		var want map[string]map[string]string
		if err := json.Unmarshal(out, &want); err != nil {
			// {"__error__": "..."} does not fit the map of maps.
			var e map[string]string
			_ = json.Unmarshal(out, &e)
			if _, perr := Parse([]byte(in), "x"); perr == nil {
				t.Errorf("input %d %q: configparser refuses it (%s), Parse accepts it", i, in, e["__error__"])
			}
			continue
		}
		c, err := Parse([]byte(in), "x")
		if err != nil {
			t.Errorf("input %d %q: configparser reads it, Parse fails: %v", i, in, err)
			continue
		}
		got := map[string]map[string]string{"DEFAULT": {}}
		for _, s := range c.Sections() {
			got[s] = map[string]string{}
		}
		for s := range got {
			keys := c.Keys(s)
			if c.doc.defaults != nil && s != DefaultSection {
				keys = append(keys, c.Keys(DefaultSection)...)
			}
			for _, k := range keys {
				got[s][k], _ = c.Get(s, k)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("input %d %q:\n Parse       %v\n configparser %v", i, in, got, want)
		}
		compared++
	}
	if compared < len(inputs)/2 {
		t.Errorf("only %d of %d inputs were readable by configparser; the comparison proves little", compared, len(inputs))
	}
}

// TestIndexedLookups: sections and the keys of a long section are looked
// up through an index (BenchmarkConfigScale); it must agree with the file
// in every way a scan did: values, lines, duplicates reported with the
// first occurrence's line.
func TestIndexedLookups(t *testing.T) {
	var b strings.Builder
	b.WriteString("[emailproxy]\n")
	for i := range 40 {
		fmt.Fprintf(&b, "[a%d@example.com]\n", i)
		for k := range 30 {
			fmt.Fprintf(&b, "key%d = v%d.%d\n", k, i, k)
		}
	}
	c, err := Parse([]byte(b.String()), "big.config")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := c.Get("a39@example.com", "KEY29"); !ok || v != "v39.29" {
		t.Errorf("Get(a39, key29) = %q, %v; want v39.29", v, ok)
	}
	if _, ok := c.Get("a39@example.com", "key30"); ok {
		t.Error("Get found a key the section does not have")
	}
	// Header of section i is line 2+31*i; key k follows it.
	if got, want := c.Line("a7@example.com", "key20"), 2+31*7+21; got != want {
		t.Errorf("Line(a7, key20) = %d, want %d", got, want)
	}
	if got := len(c.Keys("a7@example.com")); got != 30 {
		t.Errorf("Keys(a7) has %d keys, want 30", got)
	}

	dup := b.String() + "key3 = again\n[a5@example.com]\n"
	_, err = Parse([]byte(dup), "big.config")
	if err == nil {
		t.Fatal("duplicates not reported")
	}
	for _, want := range []string{
		fmt.Sprintf(`big.config:%d: key "key3" appears a second time in [a39@example.com] (first at line %d)`, 2+31*40, 2+31*39+4),
		fmt.Sprintf("big.config:%d: section [a5@example.com] appears a second time (first at line %d)", 2+31*40+1, 2+31*5),
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\nlacks %q", err, want)
		}
	}
}

// TestMaxSessions: a server section's max_sessions wins, else the
// [emailproxy] one, else the default; a value Validate refuses falls back.
func TestMaxSessions(t *testing.T) {
	c := mustParse(t, `[emailproxy]
max_sessions = 300
[IMAP-2993]
server_address = s
server_port = 993
max_sessions = 50
[POP-2995]
server_address = s
server_port = 995
[SMTP-2465]
server_address = s
server_port = 465
max_sessions = -1
`)
	got := map[string]int{}
	for _, s := range c.Servers {
		got[s.Section] = s.MaxSessions
	}
	want := map[string]int{"IMAP-2993": 50, "POP-2995": 300, "SMTP-2465": 300}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("max_sessions = %v, want %v", got, want)
	}
	if c := mustParse(t, "[IMAP-2993]\nserver_address = s\nserver_port = 993\n"); c.Servers[0].MaxSessions != DefaultMaxSessions || c.Global.MaxSessions != DefaultMaxSessions {
		t.Errorf("default max_sessions = %d/%d, want %d", c.Servers[0].MaxSessions, c.Global.MaxSessions, DefaultMaxSessions)
	}
}

// TestKeepAlive: keep_alive is on unless the file turns it off; a value
// that is no boolean reads as the default.
func TestKeepAlive(t *testing.T) {
	for _, tc := range []struct {
		keys string
		want bool
	}{{"", true}, {"keep_alive = False", false}, {"keep_alive = no", false}, {"keep_alive = True", true}, {"keep_alive = often", true}} {
		if got := mustParse(t, "[emailproxy]\n"+tc.keys+"\n").Global.KeepAlive; got != tc.want {
			t.Errorf("%q: KeepAlive = %v, want %v", tc.keys, got, tc.want)
		}
	}
}
