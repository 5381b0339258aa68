package cmdutil

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
)

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
