package main

import (
	"bytes"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/testenv"
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

// TestManPagesRenderWithoutWarnings renders every man page with groff's
// warnings on, as man(1) would show it, and fails on any warning; text in
// angle brackets must survive the markdown step cobra's generator takes.
func TestManPagesRenderWithoutWarnings(t *testing.T) {
	groff := testenv.RequireCommand(t, "groff")
	files, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	rendered := map[string]string{}
	for name, data := range files {
		if !strings.HasPrefix(name, "docs/man/") {
			continue
		}
		cmd := exec.Command(groff, "-ww", "-man", "-Tutf8")
		cmd.Stdin = bytes.NewReader(data)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil || errOut.Len() > 0 {
			t.Errorf("%s: groff -ww -man: %v\n%s", name, err, errOut.String())
		}
		// Drop the overstrike bold and underline groff uses on a terminal.
		rendered[name] = regexp.MustCompile(".\b").ReplaceAllString(out.String(), "")
	}
	if len(rendered) == 0 {
		t.Fatal("no man pages generated")
	}
	for page, want := range map[string]string{
		"docs/man/orbit-email-oauth2-proxy-logs.1":     `"account<TAB>url"`,
		"docs/man/orbit-email-oauth2-proxy-config.1":   "config <command> [flags]",
		"docs/man/orbit-email-oauth2-proxy-register.1": "http://<this host>/email-oauth2-proxy-authorize/",
		"docs/man/orbit-completion-bash.1":             "source <(orbit completion bash)",
	} {
		// Lines may break anywhere, even inside a URL, so compare
		// without white space.
		flat := func(s string) string { return strings.Join(strings.Fields(strings.ReplaceAll(s, "\u2010", "")), "") }
		if !strings.Contains(flat(rendered[page]), flat(want)) {
			t.Errorf("%s does not show %q:\n%s", page, want, rendered[page])
		}
	}
}
