package config

import (
	"slices"
	"strings"
	"time"
)

// Protocol is the kind of listener a server section describes.
type Protocol string

const (
	IMAP Protocol = "IMAP"
	POP  Protocol = "POP"
	SMTP Protocol = "SMTP"
)

// Flow is an OAuth 2.0 flow name as written in oauth2_flow.
type Flow string

const (
	FlowAuthorizationCode Flow = "authorization_code"
	FlowDevice            Flow = "device"
	FlowClientCredentials Flow = "client_credentials"
	FlowPassword          Flow = "password"
	FlowServiceAccount    Flow = "service_account"
)

// Flows lists every flow the engine knows, in documentation order.
var Flows = []Flow{FlowAuthorizationCode, FlowDevice, FlowClientCredentials, FlowPassword, FlowServiceAccount}

// Global is the [emailproxy] section.
type Global struct {
	DeleteAccountTokenOnPasswordError         bool // default true
	EncryptClientSecretOnFirstUse             bool
	UseLoginPasswordAsClientCredentialsSecret bool
	AllowCatchAllAccounts                     bool
	// MaxSessions (orbit only) is each listener's cap on concurrent
	// client sessions unless its section sets its own.
	MaxSessions int

	// Failed-login back-off (orbit only; the Python proxy ignores these
	// keys). Zero means the token layer's default.
	FailedLoginFreeAttempts int           // failed_login_free_attempts
	FailedLoginMaxDelay     time.Duration // failed_login_max_delay, in seconds
	FailedLoginQueue        int           // failed_login_queue
	// KeepAlive (orbit only, keep_alive, default true): the engine refreshes
	// the tokens of accounts that logged in since it started before they
	// expire, and their refresh tokens at least daily.
	KeepAlive bool
	// BackgroundRefresh (orbit only, background_refresh, default false):
	// keep a copy of each account's tokens sealed with the service's
	// systemd credential, so the keep-alive goes on after a restart.
	BackgroundRefresh bool
}

// Limits of max_sessions. The default allows 10,000 idle mailer sessions
// on one listener; the unit's LimitNOFILE is sized from the values in use.
const (
	DefaultMaxSessions = 10000
	MaxMaxSessions     = 100000
)

// Server is one [IMAP-n], [POP-n] or [SMTP-n] section.
type Server struct {
	Section        string // e.g. "IMAP-2993"
	Protocol       Protocol
	LocalPort      int    // the n of the section name
	LocalAddress   string // default "::" (dual stack); orbit writes 127.0.0.1
	ServerAddress  string
	ServerPort     int
	ServerStartTLS bool // SMTP only: server_starttls, or the legacy starttls key
	// LocalStartTLS: with a local certificate, the listener is plain and
	// offers STARTTLS (IMAP, SMTP) or STLS (POP) instead of implicit TLS.
	// The Python proxy honours it for SMTP only.
	LocalStartTLS bool
	// LocalStartTLSRequired (orbit only, local_starttls_required): which
	// clients of a local_starttls listener must upgrade before they may
	// send a password. Empty means RequireTLSRemote.
	LocalStartTLSRequired TLSRequirement
	LocalCertificatePath  string
	LocalKeyPath          string
	// MaxSessions (orbit only): concurrent client sessions this listener
	// serves; more are told to come back later. The section's
	// max_sessions, else [emailproxy]'s, else DefaultMaxSessions.
	MaxSessions int
}

// TLSRequirement is a local_starttls_required value.
type TLSRequirement string

// The local_starttls_required values. The default spares loopback clients:
// their traffic never leaves the host (the plain loopback listener is what
// `register` writes), and the appliance's own mailer may not speak STARTTLS;
// a password from another host is what local_starttls exists to protect.
const (
	RequireTLSRemote TLSRequirement = "remote" // clients not on 127.0.0.0/8 or ::1
	RequireTLSAlways TLSRequirement = "always" // every client, loopback too
	RequireTLSNever  TLSRequirement = "never"  // none: the Python proxy's behaviour
)

// TLSRequirements lists the values in documentation order.
var TLSRequirements = []TLSRequirement{RequireTLSRemote, RequireTLSAlways, RequireTLSNever}

// ParseTLSRequirement reads a local_starttls_required value, ignoring case
// and surrounding space.
func ParseTLSRequirement(v string) (TLSRequirement, bool) {
	r := TLSRequirement(strings.ToLower(strings.TrimSpace(v)))
	if slices.Contains(TLSRequirements, r) {
		return r, true
	}
	return "", false
}

// PasswordNeedsTLS reports whether a client of this listener must upgrade
// with STARTTLS (POP: STLS) before it may log in; loopback says whether
// the client connects from 127.0.0.0/8 or ::1. Only a local_starttls
// listener can require it: a plain one has no TLS to offer, an implicit
// TLS one is encrypted from the first byte.
func (s Server) PasswordNeedsTLS(loopback bool) bool {
	if !s.LocalStartTLS || s.LocalCertificatePath == "" || s.LocalKeyPath == "" {
		return false
	}
	switch s.LocalStartTLSRequired {
	case RequireTLSNever:
		return false
	case RequireTLSAlways:
		return true
	default:
		return !loopback
	}
}

// Account is the effective settings for one login name after catch-all
// resolution ([user@domain], then [@domain], then [@]).
type Account struct {
	Name    string // the login username, e.g. alice@example.com
	Section string // the section the settings were resolved from: "alice@example.com", "@example.com" or "@"

	PermissionURL         string
	TokenURL              string
	Scope                 string
	Resource              string
	Flow                  Flow // as written; see EffectiveFlow
	RedirectURI           string
	RedirectListenAddress string
	ClientID              string
	ClientSecret          string
	ClientSecretEncrypted string
	UsePKCE               bool // orbit: on unless use_pkce is a false-ish value
	JWTCertificatePath    string
	JWTKeyPath            string

	// Token fields written back by a proxy. Only ever read from the
	// account's own section (TokenSalt/TokenIterations may be inherited).
	Tokens InlineTokens
}

// InlineTokens are the written-back keys as they stand in an INI section.
// Encrypted values stay encrypted here; pkg/emailproxy/tokens decodes them.
type InlineTokens struct {
	TokenSalt         string
	TokenIterations   int // 0 when absent
	AccessToken       string
	AccessTokenExpiry int64
	RefreshToken      string
	LastActivity      int64
}

// EffectiveFlow is the flow that will really run. The Python proxy (and so
// this engine) uses authorization_code whenever a permission_url is set and
// the flow is not device, whatever oauth2_flow says; that is why the
// senhasegura example (client_credentials plus a permission_url) makes the
// admin visit a URL.
func (a Account) EffectiveFlow() Flow {
	if a.PermissionURL != "" && a.Flow != FlowDevice {
		return FlowAuthorizationCode
	}
	if a.Flow == "" {
		return FlowAuthorizationCode
	}
	return a.Flow
}

// Interactive reports whether the account's flow needs a person (browser or
// device code) to authorise it.
func (a Account) Interactive() bool {
	f := a.EffectiveFlow()
	return f == FlowAuthorizationCode || f == FlowDevice
}

// IsAccountSection reports whether an INI section name is an account
// section: any name containing '@'.
func IsAccountSection(name string) bool { return strings.Contains(name, "@") }
