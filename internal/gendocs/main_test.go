package main

import (
	"strings"
	"testing"

	"github.com/senhasegura/orbit/internal/exitcode"
)

// TestGeneratedFilesAreFresh fails when a command, flag or exit code changed
// without `make generate`: completions, reference and man pages are
// committed, and shells and packages use them as they are.
func TestGeneratedFilesAreFresh(t *testing.T) {
	files, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	stale, err := sync("../..", files, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) > 0 {
		t.Errorf("stale generated files; run `make generate` and commit:\n  %s", strings.Join(stale, "\n  "))
	}
}

func TestCompletionsOfferFlagValues(t *testing.T) {
	files, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	bash := string(files["completions/orbit.bash"])
	if !strings.Contains(bash, "__complete") {
		t.Errorf("bash completion does not call back into orbit for dynamic values")
	}
	for _, name := range []string{"completions/orbit.bash", "completions/orbit.zsh", "completions/orbit.fish", "completions/orbit.ps1"} {
		if len(files[name]) == 0 {
			t.Errorf("%s is empty", name)
		}
	}
	doc := string(files["docs/exit-codes.md"])
	for _, e := range exitcode.Table {
		if !strings.Contains(doc, "| "+e.Name+" |") {
			t.Errorf("docs/exit-codes.md lacks %s", e.Name)
		}
	}
}
