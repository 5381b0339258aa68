package config

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

var testSecrets = []string{
	"Xy8Q~abcdefghijklmnopqrstuvwxyz0123456",                                       // client_secret
	"gAAAAABnAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==", // access_token
	"gAAAAABnBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB==", // refresh_token
	"bXlzYWx0c2FsdHNhbHQxMg==",                                                     // token_salt
}

func TestMasked(t *testing.T) {
	data, err := os.ReadFile("testdata/python-written.config")
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, []byte("[x@example.com]\nclient_secret = multi\n  line-secret-part\nclient_id = visible\n")...)
	out, err := Masked(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range append(testSecrets, "line-secret-part") {
		if strings.Contains(string(out), s) {
			t.Errorf("Masked output shows %q", s)
		}
	}
	for _, want := range []string{"client_secret = " + Mask, "access_token = " + Mask, "refresh_token = " + Mask, "token_salt = " + Mask,
		"access_token_expiry = 1767225600", "client_id = 2a9c6f9e-3b6d-4b9c-8f1e-7f3a2b1c0d9e", "client_id = visible"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("Masked output lacks %q", want)
		}
	}
	if _, err := Parse(out, "masked"); err != nil {
		t.Errorf("Masked output is not a readable file: %v", err)
	}
}

func TestRedacted(t *testing.T) {
	c, err := Load("testdata/python-written.config")
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(c.Redacted())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range testSecrets {
		if strings.Contains(string(b), s) {
			t.Errorf("Redacted JSON shows %q", s)
		}
	}
	if strings.Contains(string(b), "token_salt") {
		t.Error("Redacted JSON includes token_salt")
	}
	var v View
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, s := range v.Sections {
		kinds[s.Name] = s.Kind
	}
	want := map[string]string{"emailproxy": "global", "IMAP-1993": "server", "POP-1995": "server", "SMTP-1587": "server", "@example.com": "catch-all", "alice@example.com": "account"}
	for k, w := range want {
		if kinds[k] != w {
			t.Errorf("section %s kind = %q, want %q", k, kinds[k], w)
		}
	}
	if !strings.Contains(string(b), `{"key":"client_secret","value":"********"}`) {
		t.Errorf("client_secret not masked in %s", b)
	}
}
