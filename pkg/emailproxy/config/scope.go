package config

import (
	"slices"
	"strings"
)

// An error confined to one account section (a missing redirect_uri, a
// malformed token_url) concerns only the logins that section serves; every
// other error (the syntax, [emailproxy], a server section, two listeners
// on one port) concerns the listeners and so the whole file. The engine
// serves a file whose errors are all confined to accounts, with those
// accounts disabled: one incomplete example account in the Python proxy's
// sample file must not take every listener down.

// AccountScoped reports whether d concerns one account section only, and
// which.
func (d Diagnostic) AccountScoped() (section string, ok bool) {
	if d.Flag != "" || !IsAccountSection(d.Section) {
		return "", false
	}
	return d.Section, true
}

// Disabled maps each account section with an Error of its own to those
// errors, in order.
type Disabled map[string][]Diagnostic

// SplitErrors divides the Error diagnostics of ds into those that make the
// whole file unusable (fatal) and those that disable one account section.
// Warnings and notes are in neither.
func SplitErrors(ds []Diagnostic) (fatal []Diagnostic, disabled Disabled) {
	for _, d := range ds {
		if d.Severity != Error {
			continue
		}
		if sec, ok := d.AccountScoped(); ok {
			if disabled == nil {
				disabled = Disabled{}
			}
			disabled[sec] = append(disabled[sec], d)
			continue
		}
		fatal = append(fatal, d)
	}
	return fatal, disabled
}

// ServeErrors is SplitErrors as the engine applies it to c: account errors
// disable their sections, unless every account section with settings of
// its own would be disabled. Then no login could succeed, and starting
// would only hide the mistake behind a running unit, so every error is
// fatal (the file is refused as a whole, as before per-account disabling).
func (c *Config) ServeErrors(ds []Diagnostic) (fatal []Diagnostic, disabled Disabled) {
	fatal, disabled = SplitErrors(ds)
	if len(fatal) > 0 || len(disabled) == 0 || c == nil {
		return fatal, disabled
	}
	for _, s := range c.AccountSections() {
		if _, off := disabled[s]; !off && !c.onlyTokens(s) {
			return nil, disabled // at least one account is served
		}
	}
	for _, d := range ds {
		if d.Severity == Error {
			fatal = append(fatal, d)
		}
	}
	fatal = append(fatal, Diagnostic{Severity: Error,
		Message: "every account section has errors, so no login could succeed; with at least one working account the others would only be disabled",
		Hint:    "fix the accounts as listed"})
	return fatal, nil
}

// Sections lists the disabled sections, sorted.
func (d Disabled) Sections() []string {
	out := make([]string, 0, len(d))
	for s := range d {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Reason is one line naming every problem of a disabled section, for logs
// and for the reply to its logins.
func (d Disabled) Reason(section string) string {
	var msgs []string
	for _, diag := range d[section] {
		m := diag.Message
		if diag.Key != "" && !strings.HasPrefix(m, diag.Key+" ") {
			m = diag.Key + ": " + m
		}
		msgs = append(msgs, m)
	}
	return strings.Join(msgs, "; ")
}

// For reports which disabled section would serve a login, if any. A login
// is served by its own section, and with allow_catch_all_accounts by
// [@domain] and then [@] for whatever its own section does not set. An own
// section that holds only written-back tokens takes its settings from the
// catch-all, so the catch-all's problems are its problems; an own section
// with settings of its own was judged with what it inherits, so only its
// own state counts.
func (d Disabled) For(c *Config, username string) (section string, disabled bool) {
	if len(d) == 0 || username == "" {
		return "", false
	}
	for _, s := range c.loginChain(username) {
		if _, ok := d[s]; ok {
			return s, true
		}
		if !c.onlyTokens(s) {
			return "", false
		}
	}
	return "", false
}

// loginChain lists the sections a login is resolved from, in order (the
// same rule as Account).
func (c *Config) loginChain(username string) []string {
	if IsCatchAllSection(username) {
		return nil
	}
	var chain []string
	if IsAccountSection(username) && c.HasSection(username) {
		chain = append(chain, username)
	}
	if c.Global.AllowCatchAllAccounts {
		if at := strings.LastIndexByte(username, '@'); at >= 0 && len(username[at:]) > 1 && c.HasSection(username[at:]) {
			chain = append(chain, username[at:])
		}
		if c.HasSection("@") {
			chain = append(chain, "@")
		}
	}
	return chain
}

// onlyTokens reports whether an account section sets nothing but
// written-back tokens (the per-account section a proxy adds under a
// catch-all).
func (c *Config) onlyTokens(section string) bool {
	for _, k := range c.Keys(section) {
		if slices.Contains(accountKeys, k) && !slices.Contains(TokenKeys, k) {
			return false
		}
	}
	return true
}
