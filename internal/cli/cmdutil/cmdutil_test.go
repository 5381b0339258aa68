package cmdutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
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
		if got := ShellQuote(c); (got == c) != (want == c) || (!strings.Contains(c, "'") && got != want) {
			t.Errorf("ShellQuote(%q) = %s, shlex.quote = %s", c, got, want)
		}
	}
}

func TestShellQuoteRoundTripsThroughSh(t *testing.T) {
	for _, c := range quoteCases {
		out, err := exec.Command("sh", "-c", "printf '%s' "+ShellQuote(c)).Output()
		if err != nil || string(out) != c {
			t.Errorf("sh read %s as %q (%v), want %q", ShellQuote(c), out, err, c)
		}
	}
	if got := ShellJoin("orbit", "a b", "c"); got != "orbit 'a b' c" {
		t.Errorf("ShellJoin = %s", got)
	}
}

func TestFileError(t *testing.T) {
	denied := &fs.PathError{Op: "open", Path: "/etc/x", Err: syscall.EACCES}
	err := FileError("read", "/etc/x", denied)
	if exitcode.Of(err) != exitcode.Permission || err.Error() != "cannot read /etc/x: permission denied; run as root (sudo orbit ...)" || !errors.Is(err, fs.ErrPermission) {
		t.Errorf("permission: %d %q", exitcode.Of(err), err)
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		t.Error("the *fs.PathError is no longer in the chain")
	}
	err = FileError("write", "/etc/x", &fs.PathError{Op: "open", Path: "/etc/x", Err: syscall.EROFS})
	if exitcode.Of(err) != exitcode.Error || err.Error() != "cannot write /etc/x: read-only file system" || !errors.Is(err, syscall.EROFS) {
		t.Errorf("other: %d %q", exitcode.Of(err), err)
	}
	if FileError("read", "/x", nil) != nil {
		t.Error("nil error mapped to an error")
	}
	// A real refusal: a file only its owner may read, read as another user,
	// is what the tests (running as root) cannot produce; EACCES above is
	// what os.ReadFile returns then.
	if _, err := os.ReadFile("/nonexistent/x"); IsPermission(err) {
		t.Error("a missing file is not a permission problem")
	}

	err = Denied("cannot start x.service", errors.Join(fs.ErrPermission, errors.New("Access denied")))
	if exitcode.Of(err) != exitcode.Permission || !strings.HasSuffix(err.Error(), "\nRun as root (sudo orbit ...).") || !strings.HasPrefix(err.Error(), "cannot start x.service: ") {
		t.Errorf("Denied: %d %q", exitcode.Of(err), err)
	}
	if err := Denied("", errors.New("open /x: permission denied")); err.Error() != "open /x: permission denied\nRun as root (sudo orbit ...)." {
		t.Errorf("Denied without what: %q", err)
	}
}

func TestColorScheme(t *testing.T) {
	io, _, _, _ := iostreams.Test()
	cs := NewColorScheme(io)
	for _, got := range []string{cs.Success("ok"), cs.Warning("ok"), cs.Failure("ok"), cs.Bold("ok"), cs.Faint("ok")} {
		if got != "ok" {
			t.Errorf("no terminal: %q, want plain text", got)
		}
	}
	if cs.Enabled() {
		t.Error("colour enabled without a terminal")
	}
	io.SetTTY(false, true, false)
	cs = NewColorScheme(io)
	if got := cs.Failure("bad"); !strings.Contains(got, "\x1b[") || !strings.Contains(got, "bad") {
		t.Errorf("terminal: Failure = %q, want colour", got)
	}
	if got := cs.Box("x"); !strings.Contains(got, "╭") {
		t.Errorf("Box = %q", got)
	}
	io.SetNoColor(true)
	if got := NewColorScheme(io).Success("ok"); got != "ok" {
		t.Errorf("NO_COLOR: %q", got)
	}
}
