package config

import (
	"testing"

	"gopkg.in/ini.v1"
)

// TestWhyNotIniV1 records why this package reads INI itself instead of with
// gopkg.in/ini.v1 (docs/compatibility.md): with the options closest to
// Python's configparser, ini.v1 still reads these files differently from the
// Python proxy. If a later ini.v1 reads them the same way, this test fails,
// and it is time to reconsider.
func TestWhyNotIniV1(t *testing.T) {
	const data = "[alice@example]\n" +
		"client_id = parent\n" +
		"[alice@example.com]\n" +
		"oauth2_scope = `quoted`\n"
	opts := ini.LoadOptions{
		InsensitiveKeys:            true,
		IgnoreInlineComment:        true,
		AllowPythonMultilineValues: true,
		PreserveSurroundedQuote:    true,
		IgnoreContinuation:         true,
	}
	f, err := ini.LoadSources(opts, []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	ours, err := Parse([]byte(data), "test.config")
	if err != nil {
		t.Fatal(err)
	}
	sec := f.Section("alice@example.com")
	diverges := 0

	// configparser: a section never inherits from another by its name.
	_, ok := ours.Get("alice@example.com", "client_id")
	if inherited := sec.HasKey("client_id") || sec.Key("client_id").String() != ""; inherited != ok {
		diverges++
		t.Logf("ini.v1 gives [alice@example.com] the client_id of [alice@example]; configparser does not (ours: %v)", ok)
	}
	// configparser keeps backticks; they are part of the value.
	v, _ := ours.Get("alice@example.com", "oauth2_scope")
	if got := f.Section("alice@example.com").Key("oauth2_scope").String(); got != v {
		diverges++
		t.Logf("ini.v1 reads `quoted` as %q; configparser and this package read %q", got, v)
	}
	if diverges == 0 {
		t.Errorf("ini.v1 now reads these files like configparser: consider using it (see docs/compatibility.md)")
	}
}
