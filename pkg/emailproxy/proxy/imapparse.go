package proxy

import (
	"errors"
	"strconv"
	"strings"
)

// splitIMAP splits "tag command rest" (rest may be empty).
func splitIMAP(line string) (tag, cmd, rest string) {
	tag, after, ok := strings.Cut(line, " ")
	if !ok {
		return line, "", ""
	}
	cmd, rest, _ = strings.Cut(after, " ")
	return tag, cmd, rest
}

// validTag accepts RFC 3501 tag characters (ASTRING-CHAR minus '+').
func validTag(tag string) bool {
	if tag == "" || tag == "*" || tag == "+" {
		return false
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\+`, c) >= 0 {
			return false
		}
	}
	return true
}

// literalSuffix reports whether a line ends with a literal marker {n} or
// {n+} (the latter is non-synchronising: RFC 7888 LITERAL+).
func literalSuffix(line string) (n int, sync, ok bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, false, false
	}
	open := strings.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false, false
	}
	inner := line[open+1 : len(line)-1]
	sync = true
	if strings.HasSuffix(inner, "+") {
		inner, sync = inner[:len(inner)-1], false
	}
	if inner == "" || len(inner) > 10 {
		return 0, false, false
	}
	for i := 0; i < len(inner); i++ {
		if inner[i] < '0' || inner[i] > '9' {
			return 0, false, false
		}
	}
	v, err := strconv.Atoi(inner)
	if err != nil {
		return 0, false, false
	}
	return v, sync, true
}

var errBadLoginArgs = errors.New("LOGIN takes a user name and a password (atoms, quoted strings or literals)")

// parseLoginArgs parses the arguments of LOGIN in their wire form, literals
// included: `astring SP astring [CRLF]`, where a literal is {n} or {n+},
// CRLF, then n bytes.
func parseLoginArgs(b []byte) (user, pass string, err error) {
	user, b, err = parseAstring(b)
	if err != nil {
		return "", "", err
	}
	if len(b) == 0 || b[0] != ' ' {
		return "", "", errBadLoginArgs
	}
	pass, b, err = parseAstring(b[1:])
	if err != nil {
		return "", "", err
	}
	switch string(b) {
	case "", "\r\n", "\n":
		return user, pass, nil
	}
	return "", "", errBadLoginArgs
}

func parseAstring(b []byte) (string, []byte, error) {
	if len(b) == 0 {
		return "", nil, errBadLoginArgs
	}
	switch b[0] {
	case '"':
		var sb strings.Builder
		for i := 1; i < len(b); i++ {
			switch c := b[i]; c {
			case '"':
				return sb.String(), b[i+1:], nil
			case '\\':
				if i+1 >= len(b) || (b[i+1] != '"' && b[i+1] != '\\') {
					return "", nil, errors.New("a quoted string may escape only \" and \\")
				}
				i++
				sb.WriteByte(b[i])
			case '\r', '\n', 0:
				return "", nil, errors.New("a quoted string cannot hold CR, LF or NUL; use a literal")
			default:
				sb.WriteByte(c)
			}
		}
		return "", nil, errors.New("unterminated quoted string")
	case '{':
		end := -1
		for i := 1; i < len(b) && i < 14; i++ {
			if b[i] == '}' {
				end = i
				break
			}
		}
		if end < 0 {
			return "", nil, errors.New("malformed literal")
		}
		n, _, ok := literalSuffix(string(b[:end+1]))
		if !ok {
			return "", nil, errors.New("malformed literal")
		}
		rest := b[end+1:]
		switch {
		case len(rest) >= 2 && rest[0] == '\r' && rest[1] == '\n':
			rest = rest[2:]
		case len(rest) >= 1 && rest[0] == '\n':
			rest = rest[1:]
		default:
			return "", nil, errors.New("a literal must be followed by CRLF")
		}
		if n > len(rest) {
			return "", nil, errors.New("literal shorter than announced")
		}
		return string(rest[:n]), rest[n:], nil
	default:
		// Atoms: be lenient (mail clients send passwords with ']' or '%'
		// unquoted) and stop only at space or line end.
		i := 0
		for i < len(b) && b[i] != ' ' && b[i] != '\r' && b[i] != '\n' {
			if b[i] == '"' || b[i] == 0 {
				return "", nil, errBadLoginArgs
			}
			i++
		}
		if i == 0 {
			return "", nil, errBadLoginArgs
		}
		return string(b[:i]), b[i:], nil
	}
}

// capOffer is what the proxy advertises to a client that has not logged
// in yet.
type capOffer int

const (
	offerLogin         capOffer = iota // AUTH=PLAIN AUTH=LOGIN SASL-IR
	offerLoginStartTLS                 // the same and STARTTLS
	// offerStartTLSOnly: the listener takes passwords only over TLS, so
	// STARTTLS and LOGINDISABLED (RFC 3501 6.2.3, 7.2.1) and no AUTH=:
	// a client that honours them sends no password in the clear.
	offerStartTLSOnly
)

// rewriteIMAPCaps applies the proxy's capability rules to a list: the
// AUTH=* entries become AUTH=PLAIN AUTH=LOGIN (the mechanisms the proxy
// takes before doing XOAUTH2 itself), SASL-IR is added, LOGINDISABLED and
// STARTTLS go (LOGIN works here, and the upstream's STARTTLS is not the
// proxy's); the proxy's own STARTTLS is added when the offer has it, and
// with offerStartTLSOnly no mechanism but LOGINDISABLED.
func rewriteIMAPCaps(caps []string, offer capOffer) []string {
	out := make([]string, 0, len(caps)+3)
	auth, sasl := false, false
	login := offer != offerStartTLSOnly
	for _, c := range caps {
		u := strings.ToUpper(c)
		switch {
		case strings.HasPrefix(u, "AUTH="):
			if !auth && login {
				out = append(out, "AUTH=PLAIN", "AUTH=LOGIN")
			}
			auth = true
		case u == "LOGINDISABLED" || u == "STARTTLS":
		case u == "SASL-IR":
			sasl = true
			out = append(out, c)
		default:
			out = append(out, c)
		}
	}
	if login {
		if !auth {
			out = append(out, "AUTH=PLAIN", "AUTH=LOGIN")
		}
		if !sasl {
			out = append(out, "SASL-IR")
		}
	}
	if offer != offerLogin {
		out = append(out, "STARTTLS")
	}
	if !login {
		out = append(out, "LOGINDISABLED")
	}
	return out
}

// rewriteIMAPLine rewrites a `* CAPABILITY ...` response or a [CAPABILITY
// ...] response code inside a status response; other lines pass unchanged.
func rewriteIMAPLine(line string, offer capOffer) string {
	if len(line) > 13 && strings.EqualFold(line[:13], "* CAPABILITY ") {
		return line[:13] + strings.Join(rewriteIMAPCaps(strings.Fields(line[13:]), offer), " ")
	}
	i := indexFoldASCII(line, "[CAPABILITY ")
	if i < 0 {
		return line
	}
	j := strings.IndexByte(line[i:], ']')
	if j < 0 {
		return line
	}
	start, end := i+len("[CAPABILITY "), i+j
	return line[:start] + strings.Join(rewriteIMAPCaps(strings.Fields(line[start:end]), offer), " ") + line[end:]
}

// indexFoldASCII is strings.Index ignoring ASCII case. strings.ToUpper
// would not do: it turns invalid UTF-8 into three-byte U+FFFD, so its
// indexes are not the line's (FuzzRewriteIMAPLine found the panic).
func indexFoldASCII(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}
