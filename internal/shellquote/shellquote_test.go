package shellquote

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

var quoteCases = []string{
	"", "plain", "/etc/orbit/email-oauth2-proxy/emailproxy.config", "a b", "it's", "$HOME", "`id`", "a;b", "a|b",
	"a&b", "*", "?", "[x]", "~root", "#c", "!x", "a\nb", "tab\there", "user@example.com", "50%", "k=v", "a,b", "x:y",
	"-flag", "--unit=x.service", "ünïcode", "\\", `"`, "{a,b}", "(x)", "<in", ">out", "'", "''",
}

func TestShellQuoteLikePythonShlex(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is missing: cannot compare with shlex.quote (.ci/install-deps.sh installs it)")
	}
	// One case a line; newlines inside cases are escaped for the trip.
	var in strings.Builder
	for _, c := range quoteCases {
		fmt.Fprintf(&in, "%q\n", c)
	}
	cmd := exec.Command(py, "-c", `import sys, shlex, json
for line in sys.stdin:
    print(json.dumps(shlex.quote(json.loads(line))))`)
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i, c := range quoteCases {
		var want string
		if _, err := fmt.Sscanf(lines[i], "%q", &want); err != nil {
			t.Fatalf("python answer %q: %v", lines[i], err)
		}
		// The same words are left bare; the quoting of a ' inside differs
		// ('\'' here, '"'"' there), both read back by sh (tested below).
		if got := Quote(c); (got == c) != (want == c) || (!strings.Contains(c, "'") && got != want) {
			t.Errorf("Quote(%q) = %s, shlex.quote = %s", c, got, want)
		}
	}
}

func TestShellQuoteRoundTripsThroughSh(t *testing.T) {
	for _, c := range quoteCases {
		out, err := exec.Command("sh", "-c", "printf '%s' "+Quote(c)).Output()
		if err != nil || string(out) != c {
			t.Errorf("sh read %s as %q (%v), want %q", Quote(c), out, err, c)
		}
	}
	if got := Join("orbit", "a b", "c"); got != "orbit 'a b' c" {
		t.Errorf("Join = %s", got)
	}
}
