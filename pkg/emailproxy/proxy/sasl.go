package proxy

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// The SASL pieces the proxy decodes from clients (PLAIN, LOGIN) and the
// one it builds for the upstream server (XOAUTH2). Every byte here comes
// from an untrusted client or token endpoint, so nothing is assumed about
// its form.

// errAuthzid is a SASL PLAIN response asking to act as someone else.
var errAuthzid = errors.New("authorisation identity differs from the login name")

// plainError is a SASL PLAIN response the proxy refuses; authz marks a
// well-formed response whose authorisation identity is another user, which
// deserves a NO (authorisation failed) rather than a BAD (syntax).
type plainError struct {
	msg   string
	authz bool
}

func (e *plainError) Error() string { return e.msg }
func (e *plainError) Unwrap() error {
	if e.authz {
		return errAuthzid
	}
	return nil
}

// decodePlain decodes a SASL PLAIN response (RFC 4616):
// authzid NUL authcid NUL passwd. The login name is authcid (authzid when
// authcid is empty, as some clients send it). An authzid that is neither
// empty nor the login name asks to act as another user, which the proxy
// cannot grant: it is refused, as RFC 4616 requires of a server that does
// not authorise one identity to act as another.
func decodePlain(b64 string) (user, pass string, err error) {
	raw, err := decodeB64(b64)
	if err != nil {
		return "", "", &plainError{msg: "the SASL PLAIN response is not valid base64"}
	}
	parts := strings.Split(string(raw), "\x00")
	if len(parts) != 3 {
		return "", "", &plainError{msg: "the SASL PLAIN response is not authzid NUL authcid NUL password"}
	}
	authzid, authcid, pass := parts[0], parts[1], parts[2]
	user = authcid
	if user == "" {
		user = authzid
	}
	if user == "" {
		return "", "", &plainError{msg: "the SASL PLAIN response has no user name"}
	}
	if authzid != "" && authzid != user {
		return "", "", &plainError{authz: true, msg: fmt.Sprintf(
			"the SASL PLAIN authorisation identity %q is not the login name %q; the proxy logs in only as the user whose password it was given (leave the authorisation identity empty)",
			oneLine(authzid), oneLine(user))}
	}
	return user, pass, nil
}

// decodeB64 accepts padded and unpadded standard base64, as clients differ.
func decodeB64(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

// The SASL LOGIN mechanism's prompts (draft-murchison-sasl-login), as
// every server sends them.
var (
	b64Username = base64.StdEncoding.EncodeToString([]byte("Username:"))
	b64Password = base64.StdEncoding.EncodeToString([]byte("Password:"))
)

// checkUserName refuses a login name that cannot be put into an XOAUTH2
// string: its fields are separated by ^A, so a control character in the
// name could add fields (a second auth=) or cut the string short, and no
// provider has login names with control characters anyway.
func checkUserName(user string) error {
	if i := strings.IndexFunc(user, isCtl); i >= 0 {
		return fmt.Errorf("the login name contains the control character %#x; log in with the account's e-mail address", user[i])
	}
	return nil
}

// checkToken refuses an access token that would corrupt the XOAUTH2
// string. RFC 6750 tokens are base64-like text; a control character or a
// space means the token endpoint (or something between it and the proxy)
// returned something that is not a bearer token.
func checkToken(token string) error {
	if strings.IndexFunc(token, func(r rune) bool { return isCtl(r) || r == ' ' }) >= 0 {
		return errors.New("the OAuth 2.0 provider returned an access token containing a control character or a space, which cannot be sent in an XOAUTH2 login; the token was discarded, try again, and if it persists check the provider's token endpoint (token_url)")
	}
	return nil
}

func isCtl(r rune) bool { return r < 0x20 || r == 0x7f }

// loginXOAUTH2 is the SASL XOAUTH2 initial response for a login. It
// refuses what would change the string's structure, whatever the caller
// checked before.
func loginXOAUTH2(user, token string) (string, error) {
	if err := checkUserName(user); err != nil {
		return "", err
	}
	if err := checkToken(token); err != nil {
		return "", err
	}
	return xoauth2(user, token), nil
}

// xoauth2 encodes the SASL XOAUTH2 initial response; use loginXOAUTH2.
func xoauth2(user, token string) string {
	return base64.StdEncoding.EncodeToString([]byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01"))
}
