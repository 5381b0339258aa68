package service

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/senhasegura/orbit/internal/cli/cmdutil"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/pkg/emailproxy/engine"
)

// CheckFile loads the file exactly as the engine does on start and on
// SIGHUP, so that restart and reload refuse what the engine would refuse,
// before anything happens to a running proxy. The error (exit 4, or 10
// when the file cannot be read) lists every problem; keep says what was
// left alone ("the running proxy was not restarted").
func CheckFile(path, keep string) error {
	_, err := engine.Load(path)
	if err == nil {
		return nil
	}
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w; %s", cmdutil.FileError("read", path, err), keep)
	case errors.Is(err, fs.ErrNotExist) && errors.As(err, &pe) && pe.Path == path:
		return exitcode.Withf(exitcode.Invalid, "%s does not exist; %s.\nWrite it with orbit email-oauth2-proxy register, or name the file with --config", path, keep)
	}
	msg := strings.TrimPrefix(err.Error(), engine.ErrInvalidConfig.Error()+": ")
	return exitcode.With(exitcode.Invalid, fmt.Errorf("%s is not valid; %s:\n%s\nFix the file (orbit email-oauth2-proxy config validate %s explains each problem), then try again", path, keep, indent(msg), cmdutil.ShellQuote(path)))
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}
