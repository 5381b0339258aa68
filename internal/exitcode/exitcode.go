// Package exitcode is orbit's table of process exit codes. Every command
// returns errors; only cli.Main turns them into a number, through this table,
// so scripts can rely on the same code meaning the same thing everywhere.
// docs/exit-codes.md documents the table; a test keeps the two in step.
package exitcode

import (
	"errors"
	"fmt"
)

// Code is a process exit status.
type Code int

const (
	OK          Code = 0   // success
	Error       Code = 1   // a failure not covered below
	Usage       Code = 2   // unknown command or flag, bad flag value, wrong number of arguments
	NotRunning  Code = 3   // status: the service is not running (as systemctl status and LSB)
	Invalid     Code = 4   // the configuration or input is invalid; nothing was changed
	Exists      Code = 5   // the target exists and overwriting was not confirmed (--force)
	NoSystemd   Code = 6   // systemd or its D-Bus API is not available on this machine
	Failed      Code = 7   // the service manager ran the job and it failed (unit did not start/stop)
	Timeout     Code = 8   // waited for something (--timeout) that did not happen in time
	Permission  Code = 10  // permission denied (run as root or the file's owner)
	HostsFailed Code = 11  // several hosts (--host repeated, --hosts-file): at least one failed
	Credential  Code = 12  // a credential the file asks for could not be created; everything else was done
	Config      Code = 78  // serve: the configuration file is invalid or missing (EX_CONFIG, systemd's 78/CONFIG)
	Interrupted Code = 130 // interrupted by SIGINT/SIGTERM
)

// Who uses a code: the administrator's commands, the daemon (serve, whose
// status systemd records and the journal shows), or both.
const (
	ByCommands = "commands"
	ByServe    = "serve"
	ByBoth     = "commands, serve"
)

// Table lists every code with its meaning, in order, for documentation and
// for the test that checks docs/exit-codes.md.
var Table = []struct {
	Code    Code
	Name    string
	UsedBy  string
	Meaning string
}{
	{OK, "ok", ByBoth, "Success. `config validate` also exits 0 when it found only warnings; `serve` exits 0 when stopped by SIGTERM or SIGINT."},
	{Error, "error", ByBoth, "A failure not covered below (I/O error, unexpected answer; `serve`: a listener could not be opened)."},
	{Usage, "usage", ByBoth, "Unknown command or flag, a bad flag value, or the wrong number of arguments."},
	{NotRunning, "not-running", ByCommands, "`status`: the proxy is not running (as `systemctl status`); `reload`: there is no running proxy to reload."},
	{Invalid, "invalid", ByCommands, "The configuration or the flags are invalid; nothing was written, started or stopped."},
	{Exists, "exists", ByCommands, "The file exists and overwriting was not confirmed: pass `--force`."},
	{NoSystemd, "no-systemd", ByCommands, "systemd (or its D-Bus API) is not available on this machine."},
	{Failed, "failed", ByCommands, "systemd ran the job and it failed: the unit did not start, stop, restart or reload."},
	{Timeout, "timeout", ByCommands, "A wait (`--timeout`) ended before what was waited for happened."},
	{Permission, "permission", ByBoth, "Permission denied: run as root (or as the owner of the file)."},
	{HostsFailed, "hosts-failed", ByCommands, "Run on several hosts (`--host` repeated, `--hosts-file`, `ORBIT_HOSTS`): at least one host failed or could not be reached. Each host's own code is in the summary table (or the JSON's `exit_code`)."},
	{Credential, "credential", ByCommands, "`start`, `restart`, `reload` and `register`: the file sets `background_refresh = True` and the credential it needs could not be created (`systemd-creds` missing or failing). Everything else was done: the unit runs without the credential, so tokens are kept alive only while it runs. The message says why and how to fix it ([background-refresh.md](background-refresh.md))."},
	{Config, "config", ByServe, "`serve`: the configuration file is invalid or missing (`EX_CONFIG`; systemd shows `status=78/CONFIG` and does not restart the unit)."},
	{Interrupted, "interrupted", ByCommands, "Interrupted by a signal (Ctrl-C)."},
}

// Error carries an exit code with an error. Commands return it (wrapped or
// not); Of finds it with errors.As.
type ExitError struct {
	Code Code
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// With attaches code to err. A nil err stays nil.
func With(code Code, err error) error {
	if err == nil {
		return nil
	}
	return &ExitError{Code: code, Err: err}
}

// Withf is With over fmt.Errorf.
func Withf(code Code, format string, args ...any) error {
	return &ExitError{Code: code, Err: fmt.Errorf(format, args...)}
}

// Silent is an exit status that has already been reported to the user
// (status printing "inactive" and exiting 3, say): Main prints nothing more.
func Silent(code Code) error { return &ExitError{Code: code} }

// Of maps an error to its exit code: the code of the outermost ExitError in
// its chain, OK for nil, Error otherwise.
func Of(err error) Code {
	if err == nil {
		return OK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return Error
}
