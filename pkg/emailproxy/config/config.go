package config

// Config is a loaded proxy configuration file.
// CONTRACT (being implemented): Load/Parse fill Global and Servers and keep
// the underlying INI so that account sections can be resolved and the file
// re-rendered without losing comments or unknown sections.
type Config struct {
	Path    string
	Global  Global
	Servers []Server
}

// Account resolves the effective settings for a login name: [user@domain],
// then [@domain], then [@] (the last two only with allow_catch_all_accounts).
// Token fields come only from the account's own section.
func (c *Config) Account(username string) (Account, bool) {
	panic("config.Account: not implemented yet")
}
