package config

import "fmt"

// checkKeepAlive: keep_alive is orbit's own and the Python proxy ignores
// it, so a bad value is no error there, but orbit reads it as the default.
func checkKeepAlive(l loc, v string) []Diagnostic {
	if _, ok := ParseBool(v); ok {
		return nil
	}
	return []Diagnostic{l.diag(Error,
		fmt.Sprintf("%s = %q is not a boolean; orbit would keep tokens alive (the default, True)", l.name(), v),
		"write True (refresh tokens in the background, the default) or False (refresh only when a mailer logs in)")}
}

func checkBackgroundRefresh(l loc, v string) []Diagnostic {
	if _, ok := ParseBool(v); ok {
		return nil
	}
	return []Diagnostic{l.diag(Error,
		fmt.Sprintf("%s = %q is not a boolean; orbit would not keep sealed copies (the default, False)", l.name(), v),
		"write True (with the systemd credential orbit-background-refresh, see docs/background-refresh.md) or False")}
}
