package journallog

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"testing"
	"testing/slogtest"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// Message IDs of a made-up catalogue: the handler knows no application.
const (
	idURL   = "5d2f0c7b9e8a4d1fb3c6a7e8d9f0a1b2"
	idLogin = "5d2f0c7b9e8a4d1fb3c6a7e8d9f0a1b3"
)

type sent struct {
	msg    string
	pri    journal.Priority
	fields map[string]string
}

type recorder struct{ entries []sent }

func (r *recorder) send(msg string, pri journal.Priority, fields map[string]string) error {
	r.entries = append(r.entries, sent{msg: msg, pri: pri, fields: maps.Clone(fields)})
	return nil
}

func TestJournalFields(t *testing.T) {
	tests := []struct {
		name    string
		log     func(*slog.Logger)
		wantMsg string
		wantPri journal.Priority
		want    map[string]string
	}{
		{
			name: "auth URL event",
			log: func(l *slog.Logger) {
				l.Info("Please visit the following URL to authenticate account a@example.com: https://login.example/authorize?x=1",
					MessageIDKey, idURL,
					"ACCOUNT", "a@example.com",
					"AUTH_URL", "https://login.example/authorize?x=1")
			},
			wantMsg: "Please visit the following URL to authenticate account a@example.com: https://login.example/authorize?x=1",
			wantPri: journal.PriInfo,
			want: map[string]string{
				"SYSLOG_IDENTIFIER": "orbit",
				"MESSAGE_ID":        idURL,
				"ORBIT_ACCOUNT":     "a@example.com",
				"ORBIT_AUTH_URL":    "https://login.example/authorize?x=1",
			},
		},
		{
			name: "lower and camel case keys, groups, kinds",
			log: func(l *slog.Logger) {
				l.Warn("upstream slow",
					"userCode", "ABCD-EFGH",
					slog.Group("upstream", "host", "outlook.office365.com", "port", 993),
					"took", 1500*time.Millisecond,
					"err", errors.New("i/o timeout"),
					"ok", false)
			},
			wantMsg: "upstream slow",
			wantPri: journal.PriWarning,
			want: map[string]string{
				"SYSLOG_IDENTIFIER":   "orbit",
				"ORBIT_USER_CODE":     "ABCD-EFGH",
				"ORBIT_UPSTREAM_HOST": "outlook.office365.com",
				"ORBIT_UPSTREAM_PORT": "993",
				"ORBIT_TOOK":          "1.5s",
				"ORBIT_ERR":           "i/o timeout",
				"ORBIT_OK":            "false",
			},
		},
		{
			name: "secrets are dropped and the drop is visible",
			log: func(l *slog.Logger) {
				l.Error("login failed",
					"account", "a@example.com",
					"password", "hunter2",
					"client_secret", "s3cr3t",
					"access_token", "eyJ...",
					"refreshToken", "r-123",
					slog.Group("oauth", "token_url", "https://login.example/token", "token", "t"),
					"auth_url", "https://login.example/authorize")
			},
			wantMsg: "login failed",
			wantPri: journal.PriErr,
			want: map[string]string{
				"SYSLOG_IDENTIFIER":     "orbit",
				"ORBIT_ACCOUNT":         "a@example.com",
				"ORBIT_OAUTH_TOKEN_URL": "https://login.example/token",
				"ORBIT_AUTH_URL":        "https://login.example/authorize",
				"ORBIT_REDACTED":        "password,client_secret,access_token,refreshToken,oauth.token",
			},
		},
		{
			name: "debug and beyond error",
			log: func(l *slog.Logger) {
				l.Log(context.Background(), slog.LevelError+4, "boom")
			},
			wantMsg: "boom",
			wantPri: journal.PriCrit,
			want:    map[string]string{"SYSLOG_IDENTIFIER": "orbit"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec recorder
			var stderr bytes.Buffer
			h := New(Options{Mode: ModeJournal, Send: rec.send, Writer: &stderr, Level: slog.LevelDebug})
			tt.log(slog.New(h))
			if len(rec.entries) != 1 {
				t.Fatalf("sent %d entries, want 1", len(rec.entries))
			}
			if stderr.Len() != 0 {
				t.Errorf("also wrote to stderr (logged twice): %q", stderr.String())
			}
			e := rec.entries[0]
			if e.msg != tt.wantMsg {
				t.Errorf("MESSAGE = %q, want %q", e.msg, tt.wantMsg)
			}
			if e.pri != tt.wantPri {
				t.Errorf("PRIORITY = %d, want %d", e.pri, tt.wantPri)
			}
			if !maps.Equal(e.fields, tt.want) {
				t.Errorf("fields:\n got %v\nwant %v", e.fields, tt.want)
			}
			for k, v := range e.fields {
				for _, secret := range []string{"hunter2", "s3cr3t", "eyJ", "r-123"} {
					if strings.Contains(v, secret) {
						t.Errorf("field %s carries a secret: %q", k, v)
					}
				}
			}
		})
	}
}

func TestWithAttrsAndGroups(t *testing.T) {
	var rec recorder
	h := New(Options{Mode: ModeJournal, Send: rec.send})
	l := slog.New(h).With(MessageIDKey, idLogin, "account", "a@example.com").
		WithGroup("client").With("addr", "127.0.0.1:5555")
	l.Info("logged in", "protocol", "IMAP")
	// The parent logger must be unaffected by the child's group.
	slog.New(h).Info("plain")

	want := map[string]string{
		"SYSLOG_IDENTIFIER":     "orbit",
		"MESSAGE_ID":            idLogin,
		"ORBIT_ACCOUNT":         "a@example.com",
		"ORBIT_CLIENT_ADDR":     "127.0.0.1:5555",
		"ORBIT_CLIENT_PROTOCOL": "IMAP",
	}
	if len(rec.entries) != 2 {
		t.Fatalf("sent %d entries, want 2", len(rec.entries))
	}
	if !maps.Equal(rec.entries[0].fields, want) {
		t.Errorf("fields:\n got %v\nwant %v", rec.entries[0].fields, want)
	}
	if got := rec.entries[1].fields; len(got) != 1 {
		t.Errorf("parent handler picked up the child's attributes: %v", got)
	}
}

func TestPlainAndTerminalLines(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 890_000_000, time.UTC)
	tests := []struct {
		mode Mode
		want string
	}{
		{ModePlain, `INFO Please visit the following URL to authenticate account a@b.c: https://x/y?z=1 message_id=` + idURL + ` ACCOUNT=a@b.c note="two words" redacted=password` + "\n"},
		{ModeTerminal, `2025-03-04T05:06:07.890Z INFO Please visit the following URL to authenticate account a@b.c: https://x/y?z=1 message_id=` + idURL + ` ACCOUNT=a@b.c note="two words" redacted=password` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			var buf bytes.Buffer
			var rec recorder
			h := New(Options{Mode: tt.mode, Writer: &buf, Send: rec.send})
			r := slog.NewRecord(at, slog.LevelInfo, "Please visit the following URL to authenticate account a@b.c: https://x/y?z=1", 0)
			r.AddAttrs(slog.String(MessageIDKey, idURL), slog.String("ACCOUNT", "a@b.c"),
				slog.String("note", "two words"), slog.String("password", "hunter2"))
			if err := h.Handle(context.Background(), r); err != nil {
				t.Fatal(err)
			}
			if buf.String() != tt.want {
				t.Errorf("line:\n got %q\nwant %q", buf.String(), tt.want)
			}
			if len(rec.entries) != 0 {
				t.Errorf("%v mode sent %d native entries (logged twice)", tt.mode, len(rec.entries))
			}
		})
	}
}

func TestMultilineMessageStaysOneLine(t *testing.T) {
	var buf bytes.Buffer
	slog.New(New(Options{Mode: ModePlain, Writer: &buf})).Info("first\nsecond")
	if got := strings.Count(buf.String(), "\n"); got != 1 {
		t.Errorf("one record became %d lines: %q", got, buf.String())
	}
}

func TestSendFailureFallsBackOnce(t *testing.T) {
	var buf bytes.Buffer
	calls := 0
	h := New(Options{Mode: ModeJournal, Writer: &buf, Send: func(string, journal.Priority, map[string]string) error {
		calls++
		return errors.New("dial unixgram /run/systemd/journal/socket: no such file")
	}})
	slog.New(h).Info("hello", "account", "a@b.c")
	if calls != 1 {
		t.Errorf("send called %d times, want 1", calls)
	}
	got := buf.String()
	if !strings.HasPrefix(got, "INFO hello account=a@b.c journal_error=") || strings.Count(got, "\n") != 1 {
		t.Errorf("fallback line = %q", got)
	}
}

func TestFieldName(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{[]string{"ACCOUNT"}, "ACCOUNT"},
		{[]string{"account"}, "ACCOUNT"},
		{[]string{"auth_url"}, "AUTH_URL"},
		{[]string{"authURL"}, "AUTH_URL"},
		{[]string{"URLPath"}, "URL_PATH"},
		{[]string{"user-code"}, "USER_CODE"},
		{[]string{"upstream", "tls.version"}, "UPSTREAM_TLS_VERSION"},
		{[]string{"ipv6Addr"}, "IPV6_ADDR"},
		{[]string{"_x_"}, "X"},
		{[]string{"é"}, "EMPTY"},
	}
	for _, tt := range tests {
		if got := FieldName(tt.in...); got != tt.want {
			t.Errorf("FieldName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestLooksSecret(t *testing.T) {
	tests := []struct {
		key  string
		want bool
	}{
		{"password", true}, {"Password", true}, {"login_password", true}, {"passwd", true},
		{"client_secret", true}, {"clientSecret", true}, {"access_token", true}, {"refresh_token", true},
		{"token", true}, {"bearer", true}, {"credentials", true},
		{"auth_url", false}, {"AUTH_URL", false}, {"authURL", false}, {"token_url", false},
		{"account", false}, {"user_code", false}, {"reason", false},
	}
	for _, tt := range tests {
		if got := LooksSecret(tt.key); got != tt.want {
			t.Errorf("LooksSecret(%q) = %v, want %v", tt.key, got, tt.want)
		}
	}
}

// TestSlogConformance runs the standard library's handler test suite
// against the terminal output, parsed back into nested maps; the journal
// mode shares the flattening code but has no time to report.
func TestSlogConformance(t *testing.T) {
	var buf bytes.Buffer
	h := New(Options{Mode: ModeTerminal, Writer: &buf, Level: slog.LevelDebug})
	results := func() []map[string]any {
		var out []map[string]any
		for _, line := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
			words := strings.Fields(line)
			m := map[string]any{}
			if _, err := time.Parse("2006-01-02T15:04:05.000Z07:00", words[0]); err == nil {
				m[slog.TimeKey] = words[0]
				words = words[1:]
			}
			m[slog.LevelKey], m[slog.MessageKey] = words[0], words[1]
			for _, kv := range words[2:] {
				k, v, _ := strings.Cut(kv, "=")
				if uq, err := strconv.Unquote(v); err == nil {
					v = uq
				}
				insert(m, strings.Split(k, "."), v)
			}
			out = append(out, m)
		}
		return out
	}
	if err := slogtest.TestHandler(h, results); err != nil {
		t.Error(err)
	}
}

func insert(m map[string]any, path []string, v string) {
	for len(path) > 1 {
		sub, ok := m[path[0]].(map[string]any)
		if !ok {
			sub = map[string]any{}
			m[path[0]] = sub
		}
		m, path = sub, path[1:]
	}
	m[path[0]] = v
}
