package config

import (
	"os"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, name := range []string{"seed-example.config", "python-written.config", "existing-with-tokens.config"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{"", "[s]\nk = v\n  c\n", "[DEFAULT]\na=1\n[@]\n", "\ufeff[a]\r\nb:c\r", "[IMAP-0]\n[SMTP-99999999999999999999]\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz")
		if err != nil {
			if len(syntaxDiagnostics(err)) == 0 {
				t.Fatalf("error without diagnostics: %v", err)
			}
			return
		}
		_ = c.Validate()
		_ = c.Redacted()
		for _, s := range c.AccountSections() {
			c.Account(s)
		}
		// A no-op edit gives back the file, unless it used a lone \r,
		// which Python (and so Parse) reads as a line break.
		if !strings.Contains(strings.ReplaceAll(string(data), "\r\n", ""), "\r") {
			out, err := Edit(data, "fuzz", func(*Editor) error { return nil })
			if err != nil || string(out) != string(data) {
				t.Fatalf("no-op edit changed the file: %q -> %q (%v)", data, out, err)
			}
		}
		m, err := Masked(data)
		if err != nil {
			t.Fatalf("Masked fails on a readable file: %v", err)
		}
		if _, err := Parse(m, "masked"); err != nil {
			t.Fatalf("Masked output unreadable: %v\n%q", err, m)
		}
		// Setting a key anywhere keeps the file readable with the value.
		if secs := c.Sections(); len(secs) > 0 {
			out, err := Edit(data, "fuzz", func(e *Editor) error { return e.Set(secs[0], "token_url", "https://t.example/token") })
			if err != nil {
				t.Fatalf("Set: %v", err)
			}
			c2, err := Parse(out, "edited")
			if err != nil {
				t.Fatalf("edited file unreadable: %v\n%q", err, out)
			}
			if v, _ := c2.Get(secs[0], "token_url"); v != "https://t.example/token" {
				t.Fatalf("edited value = %q\n%q", v, out)
			}
		}
	})
}

func BenchmarkParseAndAccount(b *testing.B) {
	data, err := os.ReadFile("testdata/python-written.config")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		c, err := Parse(data, "bench")
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := c.Account("alice@example.com"); !ok {
			b.Fatal("no account")
		}
	}
}

func BenchmarkAccount(b *testing.B) {
	data, err := os.ReadFile("testdata/python-written.config")
	if err != nil {
		b.Fatal(err)
	}
	c, err := Parse(data, "bench")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.Account("bob@example.com"); !ok {
			b.Fatal("no account")
		}
	}
}
