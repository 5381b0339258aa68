// Package errcatalog turns the errors admins actually meet from Microsoft
// Entra ID, Google and the mail servers behind them into an explanation and
// a fix. Providers answer with codes (AADSTS700082, invalid_grant, 5.7.139)
// whose meaning is buried in vendor documentation; the login reply, the
// journal, status and notifications show the catalogue's words next to the
// provider's own text, so the admin reads what to do instead of searching.
//
// The catalogue is data: each entry carries the provider texts it must
// recognise (Examples), which its tests check and the generated page
// docs/provider-errors.md shows.
package errcatalog

import (
	"regexp"
	"strings"
)

// Source says where an error text came from, since the same words mean
// different things from a token endpoint and from a mail server.
type Source int

const (
	// TokenEndpoint is an OAuth 2.0 error answer (RFC 6749 5.2):
	// the error code and its error_description.
	TokenEndpoint Source = iota
	// Authorization is the error a provider sends back to the redirect URI
	// (error and error_description in the query) after the browser step.
	Authorization
	// MailServer is the upstream IMAP, POP3 or SMTP server's reply to the
	// proxy's AUTHENTICATE XOAUTH2.
	MailServer
)

func (s Source) String() string {
	switch s {
	case TokenEndpoint:
		return "token endpoint"
	case Authorization:
		return "authorisation redirect"
	case MailServer:
		return "mail server login"
	}
	return "unknown"
}

// Entry is one known error: how to recognise it, what it means and the fix.
type Entry struct {
	// ID is stable and short: the provider's own code where it has one
	// (AADSTS700082, 5.7.139), else a name of ours (google-testing-app).
	ID       string
	Provider string
	Sources  []Source
	// Meaning is one sentence on what happened, for someone who has never
	// seen the code.
	Meaning string
	// Fix says what to do, naming orbit's commands where one applies.
	Fix string
	// Examples are provider answers this entry must recognise, as
	// "code: description" for token endpoints and the raw reply for mail
	// servers. Tests resolve each one; the docs show the first.
	Examples []string

	// match reports whether code/text is this entry's error. Entries are
	// tried in order, so specific ones come before generic ones.
	match func(code, text string) bool
}

// MaxHint bounds an entry's Hint, so that a login reply holding it and
// the proxy's own words fits the 512 characters POP3 and SMTP allow for a
// reply line.
const MaxHint = 300

// Hint is the one-line form used in login replies, the journal, status and
// notifications: "AADSTS700082: <meaning> Fix: <fix>".
func (e Entry) Hint() string {
	return e.ID + ": " + e.Meaning + " Fix: " + e.Fix
}

// Generic reports whether the entry explains a code any provider may send
// (RFC 6749's invalid_grant...), whose meaning the provider's own
// description usually narrows: shown after that description, not instead.
func (e Entry) Generic() bool { return e.Provider == anyOAuth }

// From reports whether the entry applies to errors from src.
func (e Entry) From(src Source) bool {
	for _, s := range e.Sources {
		if s == src {
			return true
		}
	}
	return false
}

// Lookup finds the entry for an error from src: code is the OAuth error
// code (empty for mail server replies), text the description or reply.
func Lookup(src Source, code, text string) (Entry, bool) {
	code = strings.TrimSpace(code)
	for _, e := range catalogue {
		if e.From(src) && e.match(code, text) {
			return e, true
		}
	}
	return Entry{}, false
}

// All lists the catalogue in its matching order.
func All() []Entry {
	out := make([]Entry, len(catalogue))
	copy(out, catalogue)
	return out
}

var aadsts = regexp.MustCompile(`\bAADSTS(\d+)\b`)

// entraCode is the AADSTS number in an Entra error text, or "".
func entraCode(text string) string {
	if m := aadsts.FindStringSubmatch(text); m != nil {
		return "AADSTS" + m[1]
	}
	return ""
}

// enhancedStatus matches an SMTP enhanced status code (RFC 3463) as a
// whole word, so 5.7.3 does not match inside 5.7.30.
func enhancedStatus(status string) func(string, string) bool {
	re := regexp.MustCompile(`(^|[^0-9.])` + regexp.QuoteMeta(status) + `($|[^0-9])`)
	return func(_, text string) bool { return re.MatchString(text) }
}

func entra(id string) func(string, string) bool {
	return func(_, text string) bool { return entraCode(text) == id }
}

func oauthCode(code string) func(string, string) bool {
	return func(c, _ string) bool { return c == code }
}

func containsFold(substrs ...string) func(string, string) bool {
	return func(_, text string) bool {
		t := strings.ToLower(text)
		for _, s := range substrs {
			if !strings.Contains(t, strings.ToLower(s)) {
				return false
			}
		}
		return true
	}
}

func all(fs ...func(string, string) bool) func(string, string) bool {
	return func(code, text string) bool {
		for _, f := range fs {
			if !f(code, text) {
				return false
			}
		}
		return true
	}
}

var (
	tokenOrRedirect = []Source{TokenEndpoint, Authorization}
	tokenOnly       = []Source{TokenEndpoint}
	mailOnly        = []Source{MailServer}
)

// signInAgain is the common first step; the next mailer login also logs a
// new URL, which `logs --auth-url` shows.
const signInAgain = "Sign the account in again (the next login logs a new URL; see `logs --auth-url`)"

const (
	microsoft = "Microsoft Entra ID"
	exchange  = "Exchange Online"
	google    = "Google"
	anyOAuth  = "any OAuth 2.0 provider"
)

// catalogue is tried in order: provider-specific codes first, the generic
// RFC 6749 codes last, so an Entra invalid_grant with an AADSTS number gets
// the specific explanation.
var catalogue = []Entry{
	{
		ID: "AADSTS700082", Provider: microsoft, Sources: tokenOnly, match: entra("AADSTS700082"),
		Meaning: "The refresh token expired because it was not used for 90 days (Entra's inactivity limit).",
		Fix:     signInAgain + "; a login at least once in 90 days keeps the refresh token alive.",
		Examples: []string{
			"invalid_grant: AADSTS700082: The refresh token has expired due to inactivity. The token was issued on 2026-08-01T10:00:00Z and was inactive for 90.00:00:00.",
		},
	},
	{
		ID: "AADSTS70043", Provider: microsoft, Sources: tokenOnly, match: entra("AADSTS70043"),
		Meaning: "A Conditional Access sign-in frequency policy ended the session, so the refresh token is no longer accepted.",
		Fix:     signInAgain + "; to stop it recurring, exclude the mailbox or the app from the sign-in frequency policy.",
		Examples: []string{
			"invalid_grant: AADSTS70043: The refresh token has expired or is invalid due to sign-in frequency checks by conditional access.",
		},
	},
	{
		ID: "AADSTS50076", Provider: microsoft, Sources: tokenOrRedirect, match: entra("AADSTS50076"),
		Meaning: "Multi-factor authentication is required, which a password-flow (ROPC) sign-in cannot perform.",
		Fix:     "Use --oauth2-flow authorization_code or device (a person completes MFA once in a browser), or exclude the mailbox from the MFA policy in Conditional Access.",
		Examples: []string{
			"invalid_grant: AADSTS50076: Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '00000002-0000-0ff1-ce00-000000000000'.",
		},
	},
	{
		ID: "AADSTS50079", Provider: microsoft, Sources: tokenOrRedirect, match: entra("AADSTS50079"),
		Meaning: "The user must register for multi-factor authentication before signing in.",
		Fix:     "Sign in once as the mailbox user at https://aka.ms/mfasetup to register MFA, then use the authorization_code or device flow.",
		Examples: []string{
			"invalid_grant: AADSTS50079: Due to a configuration change made by your administrator, or because you moved to a new location, you must enroll in multi-factor authentication to access '00000002-0000-0ff1-ce00-000000000000'.",
		},
	},
	{
		ID: "AADSTS53003", Provider: microsoft, Sources: tokenOrRedirect, match: entra("AADSTS53003"),
		Meaning: "A Conditional Access policy blocked the sign-in (for example a location or device rule).",
		Fix:     "Check the sign-in log in Entra ID for the policy that applied and allow this appliance's address or the app.",
		Examples: []string{
			"invalid_grant: AADSTS53003: Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
		},
	},
	{
		ID: "AADSTS7000215", Provider: microsoft, Sources: tokenOnly, match: entra("AADSTS7000215"),
		Meaning: "The client secret is wrong; often the secret's ID was copied instead of its value.",
		Fix:     "Create or copy the secret's Value (not its Secret ID) under App registrations > Certificates & secrets and run `register --oauth2-client-secret-file FILE` again.",
		Examples: []string{
			"invalid_client: AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '0f1e2d3c-4b5a-6978-8091-a2b3c4d5e6f7'.",
		},
	},
	{
		ID: "AADSTS7000222", Provider: microsoft, Sources: tokenOnly, match: entra("AADSTS7000222"),
		Meaning: "The client secret has expired.",
		Fix:     "Create a new secret under App registrations > Certificates & secrets and run `register --oauth2-client-secret-file FILE` again.",
		Examples: []string{
			"invalid_client: AADSTS7000222: The provided client secret keys for app '0f1e2d3c-4b5a-6978-8091-a2b3c4d5e6f7' are expired.",
		},
	},
	{
		ID: "AADSTS7000218", Provider: microsoft, Sources: tokenOnly, match: entra("AADSTS7000218"),
		Meaning: "The app is a confidential client but the request carried no client secret or certificate.",
		Fix:     "Give the secret with `register --oauth2-client-secret-file FILE`, or set \"Allow public client flows\" to Yes in the app's Authentication page if no secret is intended.",
		Examples: []string{
			"invalid_client: AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
		},
	},
	{
		ID: "AADSTS700016", Provider: microsoft, Sources: tokenOrRedirect, match: entra("AADSTS700016"),
		Meaning: "No app with this client ID exists in the tenant the URLs name.",
		Fix:     "Check --oauth2-client-id against the app's Application (client) ID and --tenant-id against the Directory (tenant) ID, then register again; a single-tenant app must use its own tenant, not common.",
		Examples: []string{
			"unauthorized_client: AADSTS700016: Application with identifier '0f1e2d3c-4b5a-6978-8091-a2b3c4d5e6f7' was not found in the directory 'Contoso'.",
		},
	},
	{
		ID: "AADSTS90002", Provider: microsoft, Sources: tokenOrRedirect, match: entra("AADSTS90002"),
		Meaning: "The tenant in the token and permission URLs does not exist.",
		Fix:     "Use the Directory (tenant) ID or the tenant's domain with `register --tenant-id`.",
		Examples: []string{
			"invalid_request: AADSTS90002: Tenant '7c1d0000-0000-0000-0000-000000000000' not found.",
		},
	},
	{
		ID: "AADSTS65001", Provider: microsoft, Sources: tokenOrRedirect, match: entra("AADSTS65001"),
		Meaning: "Nobody has consented to the app's permissions for this user or tenant.",
		Fix:     "Grant admin consent under App registrations > API permissions (IMAP.AccessAsUser.All, SMTP.Send, offline_access), or sign in interactively once so the user consents.",
		Examples: []string{
			"invalid_grant: AADSTS65001: The user or administrator has not consented to use the application with ID '0f1e2d3c-4b5a-6978-8091-a2b3c4d5e6f7'.",
		},
	},
	{
		ID: "AADSTS70011", Provider: microsoft, Sources: tokenOrRedirect, match: entra("AADSTS70011"),
		Meaning: "The requested scope is invalid for this flow.",
		Fix:     "For client_credentials use --oauth2-scope https://outlook.office365.com/.default; for the other flows the Office 365 preset's scopes.",
		Examples: []string{
			"invalid_scope: AADSTS70011: The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid.",
		},
	},
	{
		ID: "AADSTS50126", Provider: microsoft, Sources: tokenOnly, match: entra("AADSTS50126"),
		Meaning: "The user name or password sent in the password flow is wrong (or the account is federated, which ROPC cannot use).",
		Fix:     "Check the mailer's password for the account; federated accounts need the authorization_code or device flow.",
		Examples: []string{
			"invalid_grant: AADSTS50126: Error validating credentials due to invalid username or password.",
		},
	},
	{
		ID: "AADSTS50034", Provider: microsoft, Sources: tokenOrRedirect, match: entra("AADSTS50034"),
		Meaning: "The account does not exist in this tenant.",
		Fix:     "Check the account's address (the section name in the file) and that the tenant is the mailbox's own.",
		Examples: []string{
			"invalid_grant: AADSTS50034: The user account {EUII Hidden} does not exist in the contoso.com directory.",
		},
	},
	{
		ID: "AADSTS50053", Provider: microsoft, Sources: tokenOrRedirect, match: entra("AADSTS50053"),
		Meaning: "The account is locked, usually after too many wrong passwords, or sign-in came from a blocked address.",
		Fix:     "Wait for the lock to end or unlock the account, and check that no mailer is retrying an old password.",
		Examples: []string{
			"invalid_grant: AADSTS50053: The account is locked, you've tried to sign in too many times with an incorrect user ID or password.",
		},
	},
	{
		ID: "AADSTS50055", Provider: microsoft, Sources: tokenOrRedirect, match: entra("AADSTS50055"),
		Meaning: "The account's password has expired.",
		Fix:     "Change the mailbox's password, then sign the account in again.",
		Examples: []string{
			"invalid_grant: AADSTS50055: The password is expired.",
		},
	},
	{
		ID: "AADSTS50173", Provider: microsoft, Sources: tokenOnly, match: entra("AADSTS50173"),
		Meaning: "The refresh token was revoked, usually because the user's password changed or sessions were revoked by an admin.",
		Fix:     signInAgain + ".",
		Examples: []string{
			"invalid_grant: AADSTS50173: The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.",
		},
	},
	{
		ID: "AADSTS50011", Provider: microsoft, Sources: tokenOrRedirect, match: entra("AADSTS50011"),
		Meaning: "The redirect URI sent does not match one registered for the app.",
		Fix:     "Add the file's redirect_uri exactly (scheme, host, port, path) under the app's Authentication > Redirect URIs, or register again with --redirect-uri set to a registered one.",
		Examples: []string{
			"invalid_request: AADSTS50011: The redirect URI 'http://localhost:8080/' specified in the request does not match the redirect URIs configured for the application '0f1e2d3c-4b5a-6978-8091-a2b3c4d5e6f7'.",
		},
	},
	{
		ID: "google-testing-app", Provider: google, Sources: tokenOnly,
		match:   all(oauthCode("invalid_grant"), containsFold("token has been expired or revoked")),
		Meaning: "Google refused the refresh token: apps whose consent screen is in \"Testing\" get tokens that expire after 7 days (or the user revoked access).",
		Fix:     "Set the consent screen to \"In production\" (or the app to Internal), then sign the account in again.",
		Examples: []string{
			"invalid_grant: Token has been expired or revoked.",
		},
	},
	{
		ID: "google-delegation", Provider: google, Sources: tokenOnly,
		match:   all(oauthCode("unauthorized_client"), containsFold("client is unauthorized to retrieve access tokens")),
		Meaning: "The service account is not allowed domain-wide delegation for the requested scope.",
		Fix:     "In the Workspace admin console, Security > API controls > Domain-wide delegation, add the service account's client ID with the scope https://mail.google.com/.",
		Examples: []string{
			"unauthorized_client: Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
		},
	},
	{
		ID: "google-admin-policy", Provider: google, Sources: tokenOrRedirect, match: oauthCode("admin_policy_enforced"),
		Meaning: "A Google Workspace admin policy does not allow this app to access the account.",
		Fix:     "In the admin console, Security > API controls > App access control, trust the app (by its client ID).",
		Examples: []string{
			"admin_policy_enforced: Access blocked: your organization's admin has not allowed this app.",
		},
	},
	{
		ID: "5.7.139", Provider: exchange, Sources: mailOnly, match: enhancedStatus("5.7.139"),
		Meaning: "Exchange Online has SMTP AUTH disabled for the tenant or this mailbox (or security defaults block it).",
		Fix:     "Enable it: Set-CASMailbox ADDRESS -SmtpClientAuthenticationDisabled $false, and Set-TransportConfig -SmtpClientAuthenticationDisabled $false for the tenant.",
		Examples: []string{
			"535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.",
			"535 5.7.139 Authentication unsuccessful, the user credentials were incorrect.",
		},
	},
	{
		ID: "5.7.3", Provider: exchange, Sources: mailOnly, match: enhancedStatus("5.7.3"),
		Meaning: "Exchange Online rejected the token for SMTP: it lacks SMTP.Send, names another mailbox, or the app has no Exchange service principal.",
		Fix:     "Check the app's API permissions and the account name; for client_credentials run New-ServicePrincipal and Add-MailboxPermission in Exchange Online.",
		Examples: []string{
			"535 5.7.3 Authentication unsuccessful [SN4PR0501CA0054.namprd05.prod.outlook.com]",
		},
	},
	{
		ID: "exchange-imap-authenticate-failed", Provider: exchange, Sources: mailOnly,
		match:   containsFold("authenticate failed"),
		Meaning: "Exchange Online refused the token for IMAP: it lacks IMAP.AccessAsUser.All, names another mailbox, or the app has no service principal.",
		Fix:     "Check the app's API permissions and the account name; for client_credentials grant it FullAccess with Add-MailboxPermission.",
		Examples: []string{
			"a1 NO AUTHENTICATE failed.",
		},
	},
	{
		ID: "google-invalid-credentials", Provider: google, Sources: mailOnly,
		match:   containsFold("invalid credentials (failure)"),
		Meaning: "Gmail rejected the token: it lacks the scope https://mail.google.com/ or belongs to another account.",
		Fix:     "Register with --oauth2-scope https://mail.google.com/ (the Google preset's default) and sign the account in again as the mailbox user.",
		Examples: []string{
			"a1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)",
		},
	},
	{
		ID: "invalid_client", Provider: anyOAuth, Sources: tokenOnly, match: oauthCode("invalid_client"),
		Meaning: "The provider did not accept the client ID or secret.",
		Fix:     "Check --oauth2-client-id and the client secret (its value, not its ID, and not expired), then register again.",
		Examples: []string{
			"invalid_client: The OAuth client was not found.",
		},
	},
	{
		ID: "unauthorized_client", Provider: anyOAuth, Sources: tokenOrRedirect, match: oauthCode("unauthorized_client"),
		Meaning: "The app is not allowed to use this grant type (flow).",
		Fix:     "Enable the flow for the app at the provider (for example \"Allow public client flows\" for device and password), or choose another --oauth2-flow.",
		Examples: []string{
			"unauthorized_client: The client is not authorized to request a token using this method.",
		},
	},
	{
		ID: "invalid_scope", Provider: anyOAuth, Sources: tokenOrRedirect, match: oauthCode("invalid_scope"),
		Meaning: "The provider does not know or will not grant the requested scope.",
		Fix:     "Use the provider preset's scopes (register --provider office365|google) or correct --oauth2-scope.",
		Examples: []string{
			"invalid_scope: The requested scope is invalid, unknown, or malformed.",
		},
	},
	{
		ID: "access_denied", Provider: anyOAuth, Sources: tokenOrRedirect, match: oauthCode("access_denied"),
		Meaning: "The person at the browser (or an admin policy) declined the authorisation.",
		Fix:     "Sign in again and accept the requested permissions; if an admin must approve the app, ask for admin consent first.",
		Examples: []string{
			"access_denied: The user denied the request.",
		},
	},
	{
		ID: "invalid_grant", Provider: anyOAuth, Sources: tokenOnly, match: oauthCode("invalid_grant"),
		Meaning: "The provider no longer accepts the refresh token, code or credentials (expired, revoked, or already used).",
		Fix:     signInAgain + "; for the password flow check the mailer's password.",
		Examples: []string{
			"invalid_grant: The refresh token is invalid or expired.",
		},
	},
}
