// Package events names the things the proxy engine reports, so that the
// engine (which writes them to the journal) and the CLI (which reads them
// back) agree on exact MESSAGE_IDs instead of grepping free text.
package events

import "github.com/senhasegura/orbit/internal/journallog"

// MESSAGE_ID values, one per event kind. They are stable: scripts and
// `orbit email-oauth2-proxy logs` match on them, so never change one.
const (
	// AuthURL: "Please visit the following URL to authenticate account <a>: <url>".
	// Fields: ACCOUNT, AUTH_URL.
	AuthURL = "7f990a110b074b1aaa72587258e4a97d"
	// AuthRequest: "Authorisation request received for <a> (local server auth mode)".
	AuthRequest = "16801cdd7c4e4733aa3aabe04f8e0dc5"
	// AuthSucceeded: an interactive authorisation completed. Fields: ACCOUNT.
	AuthSucceeded = "a48f2ef1c63341a8bd8b94711cdb3c49"
	// AuthFailed: an authorisation or token request failed. Fields: ACCOUNT, REASON.
	AuthFailed = "6e0d81949bde4ac4983993668f0394af"
	// DeviceCode: "Visit <uri> and use code <code>". Fields: ACCOUNT, AUTH_URL, USER_CODE.
	DeviceCode = "8b90f2137fd340109ea2081330222639"
	// Login: a client logged in upstream. Fields: ACCOUNT, PROTOCOL, CLIENT.
	Login = "7c6e248aa9e84bd59f4b72399fd6d545"
	// LoginFailed: a client login was refused. Fields: ACCOUNT, PROTOCOL, CLIENT, REASON.
	LoginFailed = "3d733e0968fa4ba3aa5bb8d5390190da"
	// Lifecycle: started, listening, reloaded, stopping. Fields: STATE.
	Lifecycle = "e3ea8296b55349b79a6d1ffecc679000"
	// AccountDisabled: an account section has errors of its own, so its
	// logins are refused while every other account is served (at start and
	// at each reload). Fields: ACCOUNT (the section), REASON.
	AccountDisabled = "7816cb1a88b8417d9427adb70274dc4e"
)

// Journal field names the engine attaches (without the ORBIT_ prefix that the
// journal handler adds, so entries do not collide with other programs' fields).
const (
	FieldAccount  = "ACCOUNT"
	FieldAuthURL  = "AUTH_URL"
	FieldUserCode = "USER_CODE"
	FieldProtocol = "PROTOCOL"
	FieldClient   = "CLIENT"
	FieldReason   = "REASON"
	FieldState    = "STATE"
)

// Prefix is what the journal handler puts in front of every custom field name.
const Prefix = journallog.FieldPrefix

// MessageIDKey is the log attribute whose value becomes MESSAGE_ID:
// logger.Info(msg, events.MessageIDKey, events.AuthURL, ...).
const MessageIDKey = journallog.MessageIDKey

// Text forms shared with the Python proxy: the CLI must recognise these in
// plain log lines too, and the engine writes them word for word.
const (
	AuthURLText     = "Please visit the following URL to authenticate account %s: %s"
	AuthRequestText = "Authorisation request received for %s (local server auth mode)"
	DeviceCodeText  = "Visit %s and use code %s"
)
