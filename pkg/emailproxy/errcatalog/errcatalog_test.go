package errcatalog

import (
	"strings"
	"testing"
)

// split turns an example into what Lookup receives: "code: description"
// for OAuth answers, the raw reply for mail servers.
func split(src Source, example string) (code, text string) {
	if src == MailServer {
		return "", example
	}
	code, text, ok := strings.Cut(example, ": ")
	if !ok {
		return "", example
	}
	return code, text
}

// Every example of every entry resolves to that entry from each source it
// claims, so an entry placed after a broader one (which would swallow it)
// fails here.
func TestEveryExampleFindsItsEntry(t *testing.T) {
	for _, e := range All() {
		if len(e.Examples) == 0 {
			t.Errorf("%s has no example", e.ID)
		}
		for _, src := range e.Sources {
			for _, ex := range e.Examples {
				code, text := split(src, ex)
				got, ok := Lookup(src, code, text)
				if !ok || got.ID != e.ID {
					t.Errorf("Lookup(%s, %q, %q) = %q, %v; want %s", src, code, text, got.ID, ok, e.ID)
				}
			}
		}
	}
}

func TestEntriesAreComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range All() {
		if seen[e.ID] {
			t.Errorf("duplicate ID %s", e.ID)
		}
		seen[e.ID] = true
		if e.Provider == "" || e.Meaning == "" || e.Fix == "" || len(e.Sources) == 0 || e.match == nil {
			t.Errorf("%s is incomplete: %+v", e.ID, e)
		}
		// The hint goes into one protocol reply line: POP3 and SMTP allow
		// 512 characters in all, and the proxy's own words come first.
		if n := len(e.Hint()); n > MaxHint {
			t.Errorf("%s: hint is %d characters, at most %d fit a reply", e.ID, n, MaxHint)
		}
		for _, s := range []string{e.Meaning, e.Fix} {
			if strings.ContainsAny(s, "\r\n") {
				t.Errorf("%s: text must be one line (it goes into protocol replies): %q", e.ID, s)
			}
		}
	}
}

func TestLookup(t *testing.T) {
	for _, tc := range []struct {
		name       string
		src        Source
		code, text string
		want       string // "" = no entry
	}{
		{"an AADSTS code wins over the generic OAuth code", TokenEndpoint, "invalid_grant", "AADSTS700082: The refresh token has expired due to inactivity.", "AADSTS700082"},
		{"AADSTS inside a longer description with trace IDs", TokenEndpoint, "invalid_client", "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1b2c Correlation ID: 3d4e", "AADSTS7000215"},
		{"a longer AADSTS number is not a prefix match", TokenEndpoint, "invalid_grant", "AADSTS7000820: something else", "invalid_grant"},
		{"unknown AADSTS falls back to the OAuth code", TokenEndpoint, "invalid_request", "AADSTS999999: new", ""},
		{"Google's expired-or-revoked text needs invalid_grant", TokenEndpoint, "invalid_request", "Token has been expired or revoked.", ""},
		{"5.7.3 does not match 5.7.30", MailServer, "", "535 5.7.30 something", ""},
		{"5.7.139 is not taken for 5.7.3", MailServer, "", "535 5.7.139 Authentication unsuccessful", "5.7.139"},
		{"mail server entries are not used for token errors", TokenEndpoint, "", "535 5.7.3 Authentication unsuccessful", ""},
		{"token entries are not used for mail server replies", MailServer, "", "AADSTS700082: expired", ""},
		{"a redirect error uses the redirect entries", Authorization, "access_denied", "the user declined", "access_denied"},
		{"an unknown code has no entry", TokenEndpoint, "server_error", "boom", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Lookup(tc.src, tc.code, tc.text)
			if tc.want == "" {
				if ok {
					t.Fatalf("got %s, want no entry", got.ID)
				}
				return
			}
			if !ok || got.ID != tc.want {
				t.Fatalf("got %q (%v), want %s", got.ID, ok, tc.want)
			}
		})
	}
}

func TestHint(t *testing.T) {
	e, _ := Lookup(MailServer, "", "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.")
	h := e.Hint()
	if !strings.HasPrefix(h, "5.7.139: ") || !strings.Contains(h, " Fix: ") || !strings.Contains(h, "SmtpClientAuthenticationDisabled") {
		t.Fatalf("hint = %q", h)
	}
}
