package cmdutil

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/senhasegura/orbit/internal/exitcode"
)

// RootHint is the fix for a refused file or operation: orbit's files, units
// and the service manager belong to root.
const RootHint = "run as root (sudo orbit ...)"

// hinted is an error whose message replaces the one it wraps, so that the
// cause (fs.ErrPermission, a *fs.PathError) stays visible to errors.Is/As.
type hinted struct {
	msg string
	err error
}

func (h *hinted) Error() string { return h.msg }
func (h *hinted) Unwrap() error { return h.err }

// Explained is err with msg as its whole message: for a cause (a tool's
// command line and its own words) that would only bury what to do. err
// stays visible to errors.Is and errors.As.
func Explained(msg string, err error) error { return &hinted{msg, err} }

// FileError gives an error from opening, reading or writing path its exit
// code and wording. verb says what was being done ("read", "write",
// "create"). Permission denied becomes exit code 10:
//
//	cannot read /etc/orbit/x.config: permission denied; run as root (sudo orbit ...)
//
// anything else exit code 1, "cannot read PATH: CAUSE". A nil err stays
// nil. A missing file is left to the caller before calling FileError, since
// what it means differs (nothing to merge for register, an invalid --config
// for validate).
func FileError(verb, path string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, fs.ErrPermission) {
		return exitcode.With(exitcode.Permission, &hinted{fmt.Sprintf("cannot %s %s: permission denied; %s", verb, path, RootHint), err})
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == path {
		err = pe.Err // "cannot read X: open X: no such file" says X twice
	}
	return &hinted{fmt.Sprintf("cannot %s %s: %v", verb, path, err), err}
}

// Denied is err for an operation the system refused for lack of privilege
// (the service manager, a D-Bus call): exit code 10, the cause as it was
// given, and the fix on a line of its own:
//
//	cannot start email-oauth2-proxy.service: Access denied
//	Run as root (sudo orbit ...).
//
// what says what could not be done; "" when err says it already.
func Denied(what string, err error) error {
	msg := err.Error()
	if what != "" {
		msg = what + ": " + msg
	}
	return exitcode.With(exitcode.Permission, &hinted{msg + "\nRun as root (sudo orbit ...).", err})
}

// IsPermission reports whether err is a permission problem (EACCES, EPERM).
func IsPermission(err error) bool { return errors.Is(err, fs.ErrPermission) }
