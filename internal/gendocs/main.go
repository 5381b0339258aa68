// Command gendocs writes orbit's generated files: shell completions under
// completions/, the markdown command reference under docs/reference/ and man
// pages under docs/man/. With -check it writes nothing and fails when any
// committed file differs from what would be generated, so CI catches a
// command change that forgot `make generate`.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/cli/root"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/pkg/emailproxy/errcatalog"
	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"
)

func main() {
	out := flag.String("out", ".", "repository root to write into")
	check := flag.Bool("check", false, "write nothing; exit 1 when a generated file is stale")
	flag.Parse()
	files, err := Generate()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err)
		os.Exit(1)
	}
	stale, err := sync(*out, files, *check)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err)
		os.Exit(1)
	}
	if *check && len(stale) > 0 {
		fmt.Fprintf(os.Stderr, "gendocs: these generated files are stale; run `make generate` and commit:\n  %s\n", strings.Join(stale, "\n  "))
		os.Exit(1)
	}
}

// Generate renders every generated file in memory, keyed by path relative
// to the repository root.
func Generate() (map[string][]byte, error) {
	io, _, _, _ := iostreams.Test()
	f := factory.New(io)
	// Generated text must not depend on the machine that generates it.
	f.Hostname = func() (string, error) { return "vault.example.com", nil }
	cmd := root.New(f)
	cmd.DisableAutoGenTag = true
	files := map[string][]byte{}

	for _, sh := range []struct {
		name string
		gen  func(*bytes.Buffer) error
	}{
		{"completions/orbit.bash", func(b *bytes.Buffer) error { return cmd.GenBashCompletionV2(b, true) }},
		{"completions/orbit.zsh", func(b *bytes.Buffer) error { return cmd.GenZshCompletion(b) }},
		{"completions/orbit.fish", func(b *bytes.Buffer) error { return cmd.GenFishCompletion(b, true) }},
		{"completions/orbit.ps1", func(b *bytes.Buffer) error { return cmd.GenPowerShellCompletionWithDesc(b) }},
	} {
		var b bytes.Buffer
		if err := sh.gen(&b); err != nil {
			return nil, fmt.Errorf("%s: %w", sh.name, err)
		}
		files[sh.name] = b.Bytes()
	}

	files["docs/exit-codes.md"] = exitCodesDoc()
	files["docs/provider-errors.md"] = providerErrorsDoc()

	var walk func(c *cobra.Command) error
	walk = func(c *cobra.Command) error {
		if !c.IsAvailableCommand() && c != cmd || c.IsAdditionalHelpTopicCommand() {
			return nil
		}
		base := strings.ReplaceAll(c.CommandPath(), " ", "_")
		var md bytes.Buffer
		if err := doc.GenMarkdownCustom(c, &md, func(s string) string { return s }); err != nil {
			return err
		}
		files["docs/reference/"+base+".md"] = md.Bytes()
		man, err := genMan(c)
		if err != nil {
			return err
		}
		files["docs/man/"+strings.ReplaceAll(c.CommandPath(), " ", "-")+".1"] = man
		for _, sub := range c.Commands() {
			if err := walk(sub); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(cmd); err != nil {
		return nil, err
	}
	return files, nil
}

// genMan renders c's man page. cobra writes the page as markdown and
// converts it, so help text meant literally is escaped first: a markdown
// reader takes "<TAB>" or "<command>" for an HTML tag and drops it
// ("account<TAB>url" became "accounturl", "config <command>" "config ").
// The command is left as it was.
func genMan(c *cobra.Command) ([]byte, error) {
	esc := strings.NewReplacer(`<`, `\<`, `>`, `\>`).Replace
	use, long := c.Use, c.Long
	c.Use, c.Long = esc(c.Use), escapeProse(c.Long, esc)
	type saved struct {
		f     *pflag.Flag
		usage string
	}
	var flags []saved
	for _, fs := range []*pflag.FlagSet{c.NonInheritedFlags(), c.InheritedFlags()} {
		fs.VisitAll(func(f *pflag.Flag) {
			flags = append(flags, saved{f, f.Usage})
			f.Usage = esc(f.Usage)
		})
	}
	defer func() {
		c.Use, c.Long = use, long
		for _, s := range flags {
			s.f.Usage = s.usage
		}
	}()
	var man bytes.Buffer
	hdr := &doc.GenManHeader{Title: strings.ToUpper(strings.ReplaceAll(c.CommandPath(), " ", "-")), Section: "1", Source: "orbit", Manual: "orbit manual"}
	if err := doc.GenMan(c, hdr, &man); err != nil {
		return nil, err
	}
	return fixManPage(man.Bytes()), nil
}

// escapeProse applies esc to the prose lines of markdown text, leaving code
// (fenced, or indented by a tab or four spaces) as it is: code is shown
// literally, escapes included.
func escapeProse(text string, esc func(string) string) string {
	lines := strings.Split(text, "\n")
	fenced := false
	for i, l := range lines {
		switch {
		case strings.HasPrefix(strings.TrimSpace(l), "```"):
			fenced = !fenced
		case fenced, strings.HasPrefix(l, "\t"), strings.HasPrefix(l, "    "):
		default:
			lines[i] = esc(l)
		}
	}
	return strings.Join(lines, "\n")
}

// fixManPage removes the generation date cobra puts in the .TH line, which
// would make every regeneration a change, and sets left-aligned text (.ad
// l): justified lines cannot stretch around a flag name as long as
// --use-login-password-as-client-credentials-secret, and troff warns
// "cannot adjust line".
func fixManPage(b []byte) []byte {
	lines := strings.SplitN(string(b), "\n", 3)
	for i, l := range lines {
		if strings.HasPrefix(l, ".TH ") {
			fields := strings.Split(l, "\" \"")
			if len(fields) >= 3 {
				fields[2] = ""
				lines[i] = strings.Join(fields, "\" \"") + "\n.ad l"
			}
		}
	}
	return []byte(strings.Join(lines, "\n"))
}

// sync writes files under dir (or only compares them with check) and removes
// generated files that no longer belong, returning the stale paths.
func sync(dir string, files map[string][]byte, check bool) ([]string, error) {
	var stale []string
	for _, sub := range []string{"docs/reference", "docs/man"} {
		entries, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range entries {
			p := sub + "/" + e.Name()
			if _, ok := files[p]; !ok {
				stale = append(stale, p+" (no longer generated)")
				if !check {
					if err := os.Remove(filepath.Join(dir, p)); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		full := filepath.Join(dir, p)
		old, err := os.ReadFile(full)
		if err == nil && bytes.Equal(old, files[p]) {
			continue
		}
		stale = append(stale, p)
		if check {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(full, files[p], 0o644); err != nil {
			return nil, err
		}
	}
	return stale, nil
}

// exitCodesDoc renders the exit code table, so the documentation cannot
// drift from the codes the program really returns.
func exitCodesDoc() []byte {
	var b bytes.Buffer
	b.WriteString(`# Exit codes

Every orbit command exits with one of these codes. Scripts can rely on them:
the same code means the same thing for every command. This file is generated
from internal/exitcode (run ` + "`make generate`" + `).

"used by" says who exits with the code: the administrator's *commands*
(register, start, status, ...), whose status a script or shell sees, or
*serve*, the daemon the systemd unit runs, whose status systemd records
(` + "`systemctl status`" + ` and the journal show it as ` + "`status=78/CONFIG`" + `, for
example). The unit does not restart the daemon after 2, 10 or 78: those
failures need an administrator, and a restart loop would only bury the reason
in the journal.

| code | name | used by | meaning |
|---:|---|---|---|
`)
	for _, e := range exitcode.Table {
		fmt.Fprintf(&b, "| %d | %s | %s | %s |\n", e.Code, e.Name, e.UsedBy, e.Meaning)
	}
	b.WriteString(`
Errors are printed to standard error as ` + "`orbit: <what is wrong>`" + `, followed by
what to do about it. With ` + "`--output json`" + `, standard output carries only JSON.
`)
	return b.Bytes()
}

// providerErrorsDoc renders the provider error catalogue, so the page and
// the hints the proxy prints cannot drift apart.
func providerErrorsDoc() []byte {
	var b bytes.Buffer
	b.WriteString(`# Provider errors and their fixes

When a token request, the browser step or the mail server's XOAUTH2 login
fails with one of these errors, orbit explains it and says what to do: in the
mailer's login reply (a reply line has room for the explanation, not for the
provider's whole text too), in the journal entry and its ` + "`ORBIT_REASON`" + `
field, in ` + "`status`" + ` and on the browser page; the journal and ` + "`status`" + ` keep
the provider's own words next to it. This file is generated from
pkg/emailproxy/errcatalog (run ` + "`make generate`" + `); an error missing here is
worth adding there, with the provider's wording as an example.

Where it comes from: *token endpoint* is an OAuth 2.0 error answer, *authorisation
redirect* the error sent back to the redirect URI after the browser step, *mail
server login* the upstream server's reply to AUTHENTICATE XOAUTH2.

`)
	for _, e := range errcatalog.All() {
		var srcs []string
		for _, s := range e.Sources {
			srcs = append(srcs, s.String())
		}
		fmt.Fprintf(&b, "## %s\n\n", e.ID)
		fmt.Fprintf(&b, "%s, from the %s.\n\n", e.Provider, strings.Join(srcs, " or the "))
		fmt.Fprintf(&b, "- **What it means:** %s\n", e.Meaning)
		fmt.Fprintf(&b, "- **Fix:** %s\n", e.Fix)
		fmt.Fprintf(&b, "- **Looks like:** `%s`\n\n", e.Examples[0])
	}
	return b.Bytes()
}
