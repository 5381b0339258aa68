package proxy

import (
	"strings"
	"testing"

	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
)

// quietError is a failed login the token layer sums up elsewhere.
type quietError struct{ error }

func (quietError) Quiet() bool { return true }

// TestQuietFailedLoginIsADebugLine: a failed login the token layer marks
// quiet (one of a storm it sums up once a minute) is logged at debug level,
// with the same event and fields, not as a warning.
func TestQuietFailedLoginIsADebugLine(t *testing.T) {
	e, _, addr := imapEnv(t)
	e.auth.fail("alice@example.com", quietError{oauth.ErrBadPassword})
	c := dialClient(t, addr)
	c.expect("* OK")
	c.send(`a1 LOGIN alice@example.com "wrong"`)
	c.expect("a1 NO LOGIN ")
	logs := e.logs.String()
	var line string
	for l := range strings.SplitSeq(logs, "\n") {
		if strings.Contains(l, `"message_id":"3d733e0968fa4ba3aa5bb8d5390190da"`) {
			line = l
		}
	}
	if !strings.Contains(line, `"level":"DEBUG"`) || !strings.Contains(line, `"client":"127.0.0.1:`) {
		t.Errorf("quiet failed login logged as %q, want a debug LoginFailed line:\n%s", line, logs)
	}
}
