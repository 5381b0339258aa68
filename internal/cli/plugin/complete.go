package plugin

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CompleteTimeout bounds how long a plugin may take to answer a completion
// request: a shell waits on every TAB.
const CompleteTimeout = 5 * time.Second

// cobra's completion directives (cobra.ShellCompDirective), as numbers on
// the last line of a __complete answer.
const (
	directiveDefault    = 0 // the shell's own (file) completion
	directiveNoFileComp = 4
)

var directiveLine = regexp.MustCompile(`^:[0-9]+$`)

// Complete answers a shell completion request (request is cobra's
// __complete or __completeNoDesc) for a command line that starts with a
// plugin's words. words are the complete words typed after `orbit`,
// toComplete the word under the cursor. The answer is cobra's protocol:
// one candidate per line, then ":DIRECTIVE".
//
// It offers the next word of longer plugin names (orbit-foo-bar offers
// "bar" after `orbit foo`), and asks the longest matching plugin itself by
// running `orbit-NAME __complete ARGS... TOCOMPLETE` (cobra programs answer
// this out of the box). A plugin that does not implement the protocol, or
// fails, or takes longer than CompleteTimeout, contributes nothing, and the
// shell falls back to file names. ok is false when no plugin starts with
// words[0].
func (f Finder) Complete(ctx context.Context, request string, words []string, toComplete string, env []string) (answer string, ok bool) {
	if len(words) == 0 {
		return "", false
	}
	var lines []string
	directive := -1
	seen := map[string]bool{}
	leading := 0
	for leading < len(words) && !strings.HasPrefix(words[leading], "-") {
		leading++
	}
	runnable := f.Runnable()
	for _, p := range runnable {
		pw := p.Words()
		if leading == len(words) && len(pw) > len(words) && slices.Equal(pw[:len(words)], words) &&
			strings.HasPrefix(pw[len(words)], toComplete) && !seen[pw[len(words)]] {
			seen[pw[len(words)]] = true
			lines = append(lines, pw[len(words)]+"\tplugin "+Prefix+p.Name)
			directive = directiveNoFileComp
		}
		if pw[0] == words[0] {
			ok = true
		}
	}
	if !ok {
		return "", false
	}
	if p, n, found := f.Match(words); found {
		// Always the request with descriptions: every cobra program answers
		// it; they are cut below when the shell asked for none.
		args := append(append([]string{"__complete"}, words[n:]...), toComplete)
		if got, d, err := askPlugin(ctx, p, args, env); err == nil {
			lines = append(lines, got...)
			directive = d
		} else if directive < 0 {
			directive = directiveDefault
		}
	}
	if directive < 0 {
		directive = directiveNoFileComp
	}
	if request != "__complete" {
		for i, l := range lines {
			lines[i], _, _ = strings.Cut(l, "\t")
		}
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	b.WriteString(":" + strconv.Itoa(directive) + "\n")
	return b.String(), true
}

func askPlugin(ctx context.Context, p Plugin, args, env []string) ([]string, int, error) {
	ctx, cancel := context.WithTimeout(ctx, CompleteTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.Path, args...)
	cmd.Args[0] = p.Path
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout = &out // stdin stays /dev/null; stderr (cobra's debug lines) is dropped
	if err := cmd.Run(); err != nil {
		return nil, 0, err
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	last := lines[len(lines)-1]
	if !directiveLine.MatchString(last) {
		return nil, 0, errNoProtocol
	}
	d, err := strconv.Atoi(last[1:])
	if err != nil {
		return nil, 0, errNoProtocol
	}
	var cands []string
	for _, l := range lines[:len(lines)-1] {
		if l != "" {
			cands = append(cands, l)
		}
	}
	return cands, d, nil
}

var errNoProtocol = errors.New("the plugin's answer does not end with cobra's :DIRECTIVE line")
