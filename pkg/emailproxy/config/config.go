package config

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DefaultPath is where orbit keeps the proxy configuration on an appliance.
const DefaultPath = "/etc/orbit/email-oauth2-proxy/emailproxy.config"

// GlobalSection is the name of the global section.
const GlobalSection = "emailproxy"

// Config is a loaded proxy configuration file.
//
// Load and Parse accept exactly the files the Python proxy's reader accepts
// (a *SyntaxError, naming file and line, for the rest). Values that parse
// but are wrong (a boolean that is not a boolean, a port that is not a
// number) do not fail Parse: the field keeps its default and Validate
// reports the problem, so that `config validate` can list every problem at
// once. Anything that serves from a Config must refuse to start when
// Validate returns an Error.
type Config struct {
	Path    string
	Global  Global
	Servers []Server

	doc *document
}

var serverSectionRE = regexp.MustCompile(`^(IMAP|POP|SMTP)-(\d+)$`)

// Load reads and parses the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading proxy config: %w", err)
	}
	return Parse(data, path)
}

// Parse parses data; path only names the file in errors and diagnostics.
func Parse(data []byte, path string) (*Config, error) {
	doc, err := parseDocument(data, path)
	if err != nil {
		return nil, err
	}
	c := &Config{Path: path, doc: doc}
	c.Global = Global{
		DeleteAccountTokenOnPasswordError:         c.boolOr(GlobalSection, "delete_account_token_on_password_error", true),
		EncryptClientSecretOnFirstUse:             c.boolOr(GlobalSection, "encrypt_client_secret_on_first_use", false),
		UseLoginPasswordAsClientCredentialsSecret: c.boolOr(GlobalSection, "use_login_password_as_client_credentials_secret", false),
		AllowCatchAllAccounts:                     c.boolOr(GlobalSection, "allow_catch_all_accounts", false),
		MaxSessions:                               c.sessionsOr(GlobalSection, DefaultMaxSessions),
		FailedLoginFreeAttempts:                   c.count(GlobalSection, "failed_login_free_attempts"),
		FailedLoginMaxDelay:                       time.Duration(c.count(GlobalSection, "failed_login_max_delay")) * time.Second,
		FailedLoginQueue:                          c.count(GlobalSection, "failed_login_queue"),
		KeepAlive:                                 c.boolOr(GlobalSection, "keep_alive", true),
		BackgroundRefresh:                         c.boolOr(GlobalSection, "background_refresh", false),
	}
	for _, s := range doc.sections {
		m := serverSectionRE.FindStringSubmatch(s.name)
		if m == nil {
			continue
		}
		port, _ := strconv.Atoi(m[2]) // Validate reports ports out of range
		srv := Server{
			Section:              s.name,
			Protocol:             Protocol(m[1]),
			LocalPort:            port,
			LocalAddress:         "::",
			LocalCertificatePath: c.str(s.name, "local_certificate_path"),
			LocalKeyPath:         c.str(s.name, "local_key_path"),
			ServerAddress:        c.str(s.name, "server_address"),
			LocalStartTLS:        c.boolOr(s.name, "local_starttls", false),
			MaxSessions:          c.sessionsOr(s.name, c.Global.MaxSessions),
		}
		if v, ok := c.Get(s.name, "local_starttls_required"); ok {
			// Unreadable: the default (Validate reports it), never less
			// than the default.
			srv.LocalStartTLSRequired, _ = ParseTLSRequirement(v)
		}
		if v, ok := c.Get(s.name, "local_address"); ok && v != "" {
			srv.LocalAddress = v
		}
		srv.ServerPort, _ = strconv.Atoi(c.str(s.name, "server_port"))
		// server_starttls is the key both engines write; starttls is what the
		// senhasegura docs wrote. The current key wins when both are set.
		if _, ok := c.Get(s.name, "server_starttls"); ok {
			srv.ServerStartTLS = c.boolOr(s.name, "server_starttls", false)
		} else {
			srv.ServerStartTLS = c.boolOr(s.name, "starttls", false)
		}
		c.Servers = append(c.Servers, srv)
	}
	return c, nil
}

// Get returns a section's value for key the way configparser's get does:
// the section's own key, else the [DEFAULT] section's. Key names are
// case-insensitive, section names are not.
func (c *Config) Get(sectionName, key string) (string, bool) {
	key = strings.ToLower(key)
	if s, ok := c.doc.section(sectionName); ok {
		if e, ok := s.get(key); ok {
			return e.value, true
		}
	} else if sectionName != DefaultSection {
		return "", false
	}
	if c.doc.defaults != nil {
		if e, ok := c.doc.defaults.get(key); ok {
			return e.value, true
		}
	}
	return "", false
}

func (c *Config) str(sectionName, key string) string {
	v, _ := c.Get(sectionName, key)
	return v
}

// boolOr reads a boolean as configparser's getboolean does, falling back
// to def when the key is missing or (reported by Validate) unreadable.
func (c *Config) boolOr(sectionName, key string, def bool) bool {
	v, ok := c.Get(sectionName, key)
	if !ok {
		return def
	}
	b, ok := ParseBool(v)
	if !ok {
		return def
	}
	return b
}

// sessionsOr reads max_sessions, falling back to def when the key is
// missing or (reported by Validate) not a number in range.
func (c *Config) sessionsOr(sectionName string, def int) int {
	v, ok := c.Get(sectionName, "max_sessions")
	if !ok {
		return def
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 1 || n > MaxMaxSessions {
		return def
	}
	return n
}

// count reads a positive whole number; 0 when missing or (reported by
// Validate) unreadable.
func (c *Config) count(sectionName, key string) int {
	n, err := strconv.Atoi(strings.TrimSpace(c.str(sectionName, key)))
	if err != nil || n < 1 || n > maxCount {
		return 0
	}
	return n
}

// maxCount bounds the count settings (a day, in seconds, is the largest
// sensible one).
const maxCount = 86400

// ParseBool reads a boolean the way Python's configparser does: 1, yes,
// true, on / 0, no, false, off, in any case. Anything else is not a
// boolean (the Python proxy fails on it).
func ParseBool(s string) (value, ok bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "yes", "true", "on":
		return true, true
	case "0", "no", "false", "off":
		return false, true
	}
	return false, false
}

// FormatBool writes a boolean the way the Python proxy does.
func FormatBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// Sections lists every section name in file order, [DEFAULT] excluded (as
// configparser's sections() does).
func (c *Config) Sections() []string {
	out := make([]string, 0, len(c.doc.sections))
	for _, s := range c.doc.sections {
		out = append(out, s.name)
	}
	return out
}

// Keys lists a section's own keys (lower-cased, file order).
func (c *Config) Keys(sectionName string) []string {
	s, ok := c.doc.section(sectionName)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(s.keys))
	for _, e := range s.keys {
		out = append(out, e.name)
	}
	return out
}

// HasSection reports whether the file has a section of exactly that name.
func (c *Config) HasSection(name string) bool {
	_, ok := c.doc.section(name)
	return ok
}

// Line returns the 1-based line of a key (or, with key "", of the section
// header); 0 when absent.
func (c *Config) Line(sectionName, key string) int {
	s, ok := c.doc.section(sectionName)
	if !ok {
		return 0
	}
	if key == "" {
		return s.line
	}
	if e, ok := s.get(strings.ToLower(key)); ok {
		return e.line
	}
	return 0
}

// AccountSections lists the account sections (names containing '@') in
// file order.
func (c *Config) AccountSections() []string {
	var out []string
	for _, s := range c.doc.sections {
		if IsAccountSection(s.name) {
			out = append(out, s.name)
		}
	}
	return out
}

// IsCatchAllSection reports whether an account section name is a catch-all:
// "@" (every account) or "@domain" (every account of that domain).
func IsCatchAllSection(name string) bool { return strings.HasPrefix(name, "@") }

// Server returns the server section of that name.
func (c *Config) Server(sectionName string) (Server, bool) {
	for _, s := range c.Servers {
		if s.Section == sectionName {
			return s, true
		}
	}
	return Server{}, false
}

// Account resolves the effective settings for a login name.
//
// Login names are compared with section names exactly, case included:
// that is what the Python proxy does (configparser section names are
// case-sensitive), so an account section must be spelt the way the mail
// client sends the login. With allow_catch_all_accounts, a login without
// its own section is served by [@domain] (domain = the text after the last
// '@' of the login) or else [@], and every option missing from the own
// section is looked up in [@domain], then [@]. [DEFAULT] comes last, as in
// configparser. Token fields (and client_secret_encrypted, which is
// encrypted with one account's password) come only from the own section;
// token_salt and token_iterations may be inherited.
func (c *Config) Account(username string) (Account, bool) {
	if username == "" || IsCatchAllSection(username) {
		return Account{}, false
	}
	var chain []*section
	own, hasOwn := c.doc.section(username)
	if hasOwn && IsAccountSection(username) {
		chain = append(chain, own)
	} else {
		hasOwn = false
	}
	if c.Global.AllowCatchAllAccounts {
		if at := strings.LastIndexByte(username, '@'); at >= 0 {
			if s, ok := c.doc.section(username[at:]); ok && len(username[at:]) > 1 {
				chain = append(chain, s)
			}
		}
		if s, ok := c.doc.section("@"); ok {
			chain = append(chain, s)
		}
	}
	if len(chain) == 0 {
		return Account{}, false
	}
	get := func(key string) string {
		for _, s := range chain {
			if e, ok := s.get(key); ok {
				return e.value
			}
		}
		if c.doc.defaults != nil {
			if e, ok := c.doc.defaults.get(key); ok {
				return e.value
			}
		}
		return ""
	}
	ownGet := func(key string) string {
		if !hasOwn {
			return ""
		}
		if e, ok := own.get(key); ok {
			return e.value
		}
		return ""
	}
	a := Account{
		Name:                  username,
		Section:               chain[0].name,
		PermissionURL:         get("permission_url"),
		TokenURL:              get("token_url"),
		Scope:                 get("oauth2_scope"),
		Resource:              get("oauth2_resource"),
		Flow:                  Flow(get("oauth2_flow")),
		RedirectURI:           get("redirect_uri"),
		RedirectListenAddress: get("redirect_listen_address"),
		ClientID:              get("client_id"),
		ClientSecret:          get("client_secret"),
		ClientSecretEncrypted: ownGet("client_secret_encrypted"),
		JWTCertificatePath:    get("jwt_certificate_path"),
		JWTKeyPath:            get("jwt_key_path"),
	}
	// PKCE costs nothing and protects the code, so orbit uses it unless
	// told not to. The Python proxy uses it only when use_pkce is set, but
	// for any non-empty value, even "False"; orbit honours an explicit
	// false (Validate warns).
	a.UsePKCE = true
	if b, ok := ParseBool(get("use_pkce")); ok && !b {
		a.UsePKCE = false
	}
	a.Tokens.TokenSalt = get("token_salt")
	a.Tokens.TokenIterations, _ = strconv.Atoi(get("token_iterations"))
	a.Tokens.AccessToken = ownGet("access_token")
	a.Tokens.AccessTokenExpiry, _ = strconv.ParseInt(ownGet("access_token_expiry"), 10, 64)
	a.Tokens.RefreshToken = ownGet("refresh_token")
	a.Tokens.LastActivity, _ = strconv.ParseInt(ownGet("last_activity"), 10, 64)
	return a, true
}
