package engine

import (
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/oauth/interactive"
	"github.com/senhasegura/orbit/pkg/emailproxy/proxy"
)

// TestLoginTimeoutCoversAuthTimeout: the proxy ends a login's token wait at
// its login deadline, so that deadline must leave room for the whole wait
// for an administrator that --auth-timeout promises.
func TestLoginTimeoutCoversAuthTimeout(t *testing.T) {
	for _, auth := range []time.Duration{0, -1, time.Second, interactive.DefaultTimeout, 30 * time.Minute} {
		got := loginTimeout(auth)
		want := auth
		if auth == 0 {
			want = interactive.DefaultTimeout
		}
		if got < proxy.DefaultLoginTimeout {
			t.Errorf("AuthTimeout %v: login timeout %v is below the proxy's default %v", auth, got, proxy.DefaultLoginTimeout)
		}
		if want > 0 && got <= want {
			t.Errorf("AuthTimeout %v: login timeout %v would end the wait for an administrator early", auth, got)
		}
	}
}
